//! Smoke tests proving that scripts/test.sh started each service and that
//! the client crates sgr uses can talk to it. Skipped (with a line naming the
//! service) when the script did not run; failures when it did.

use sgr_test_support::{Service, runtime, service};

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[test]
fn dockerd_answers_version() -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    runtime()?.block_on(async {
        let docker = bollard::Docker::connect_with_unix(
            host.trim_start_matches("unix://"),
            30,
            bollard::API_DEFAULT_VERSION,
        )?
        .negotiate_version()
        .await?;
        let version = docker.version().await?;
        assert!(version.api_version.is_some_and(|api| !api.is_empty()));
        Ok(())
    })
}

#[test]
fn htpasswd_registry_answers_v2() -> TestResult {
    let Some(registry) = service(Service::Registry) else {
        return Ok(());
    };
    let user = std::env::var("SGR_TEST_REGISTRY_USERNAME")?;
    let password = std::env::var("SGR_TEST_REGISTRY_PASSWORD")?;
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{registry}/v2/");
        let anonymous = client.get(&url).send().await?;
        assert_eq!(anonymous.status(), reqwest::StatusCode::UNAUTHORIZED);
        assert!(
            anonymous
                .headers()
                .get("www-authenticate")
                .is_some_and(|value| value.to_str().is_ok_and(|text| text.starts_with("Basic")))
        );
        let wrong = client
            .get(&url)
            .basic_auth(&user, Some("wrong"))
            .send()
            .await?;
        assert_eq!(wrong.status(), reqwest::StatusCode::UNAUTHORIZED);
        let authorised = client
            .get(&url)
            .basic_auth(&user, Some(&password))
            .send()
            .await?;
        assert_eq!(authorised.status(), reqwest::StatusCode::OK);
        Ok(())
    })
}

#[test]
fn token_registry_answers_v2_with_an_exchanged_token() -> TestResult {
    let Some(registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    let Some(token_service) = service(Service::TokenService) else {
        return Ok(());
    };
    let aad_token = std::env::var("SGR_TEST_AAD_TOKEN")?;
    runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let url = format!("http://{registry}/v2/");
        let challenge = client.get(&url).send().await?;
        assert_eq!(challenge.status(), reqwest::StatusCode::UNAUTHORIZED);
        let header = challenge
            .headers()
            .get("www-authenticate")
            .map(|value| value.to_str().map(str::to_owned))
            .transpose()?
            .unwrap_or_default();
        assert!(header.starts_with("Bearer realm=\""), "{header}");
        // The ACR flow: AAD token -> refresh token -> access token as the null GUID.
        let exchange: serde_json::Value = client
            .post(format!("{token_service}/oauth2/exchange"))
            .body(format!(
                "grant_type=access_token&service={registry}&access_token={aad_token}"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let refresh_token = exchange["refresh_token"]
            .as_str()
            .ok_or("no refresh_token")?
            .to_owned();
        let rejected = client
            .post(format!("{token_service}/oauth2/exchange"))
            .body(format!(
                "grant_type=access_token&service={registry}&access_token=not-the-token"
            ))
            .header("content-type", "application/x-www-form-urlencoded")
            .send()
            .await?;
        assert_eq!(rejected.status(), reqwest::StatusCode::UNAUTHORIZED);
        let token: serde_json::Value = client
            .get(format!(
                "{token_service}/oauth2/token?service={registry}&scope=registry:catalog:*"
            ))
            .basic_auth("00000000-0000-0000-0000-000000000000", Some(&refresh_token))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let access_token = token["access_token"].as_str().ok_or("no access_token")?;
        let authorised = client.get(&url).bearer_auth(access_token).send().await?;
        assert_eq!(authorised.status(), reqwest::StatusCode::OK);
        Ok(())
    })
}

#[test]
fn moto_answers_sts_get_caller_identity() -> TestResult {
    let Some(endpoint) = service(Service::Aws) else {
        return Ok(());
    };
    runtime()?.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-west-2"))
            .credentials_provider(aws_sdk_sts::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load()
            .await;
        let identity = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await?;
        assert_eq!(identity.account(), Some("123456789012"));
        Ok(())
    })
}
