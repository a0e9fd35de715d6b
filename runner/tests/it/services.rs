//! Smoke tests for the services the runner uses: RabbitMQ through lapin and
//! S3 (SeaweedFS) through aws-sdk-s3. Skipped without scripts/test.sh.

use sgr_test_support::{Service, runtime, service};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn rabbitmq_accepts_an_amqp_connection() -> TestResult {
    let Some(url) = service(Service::Amqp) else {
        return Ok(());
    };
    runtime()?.block_on(async {
        let connection =
            lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let queue = channel
            .queue_declare(
                "sgr-smoke".into(),
                lapin::options::QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                lapin::types::FieldTable::default(),
            )
            .await?;
        assert_eq!(queue.name().as_str(), "sgr-smoke");
        connection.close(200, "done".into()).await?;
        Ok(())
    })
}

#[test]
fn seaweedfs_round_trips_an_s3_object() -> TestResult {
    let Some(endpoint) = service(Service::S3) else {
        return Ok(());
    };
    let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    runtime()?.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                access_key, secret_key, None, None, "test",
            ))
            .load()
            .await;
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .build();
        let client = aws_sdk_s3::Client::from_conf(s3_config);
        let bucket = format!("sgr-smoke-{}", std::process::id());
        let wrong_config = aws_sdk_s3::config::Builder::from(&config)
            .endpoint_url(&endpoint)
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "nobody", "wrong", None, None, "test",
            ))
            .build();
        let refused = aws_sdk_s3::Client::from_conf(wrong_config)
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await;
        assert!(refused.is_err(), "SeaweedFS accepted unknown credentials");
        client.create_bucket().bucket(&bucket).send().await?;
        let body = b"experiment output\n".to_vec();
        client
            .put_object()
            .bucket(&bucket)
            .key("dir/output")
            .body(aws_sdk_s3::primitives::ByteStream::from(body.clone()))
            .send()
            .await?;
        let fetched = client
            .get_object()
            .bucket(&bucket)
            .key("dir/output")
            .send()
            .await?
            .body
            .collect()
            .await?
            .into_bytes();
        assert_eq!(fetched.as_ref(), body.as_slice());
        client
            .delete_object()
            .bucket(&bucket)
            .key("dir/output")
            .send()
            .await?;
        client.delete_bucket().bucket(&bucket).send().await?;
        Ok(())
    })
}
