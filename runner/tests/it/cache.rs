//! Reference scenario A6 (the original's `TestCacheXhaust`, scaled down)
//! against SeaweedFS: a byte-size LRU of ten 1 MiB objects fed eleven,
//! promotion on hits, the evicted object's file gone, and the hit and miss
//! counters moving exactly as expected. Skipped without scripts/test.sh.

use std::collections::BTreeMap;
use std::fs;
use std::time::Duration;

use runner::cache::{Cache, file_name};
use runner::request::{Artifact, AwsCredentials, Credentials};
use runner::storage;
use sgr_test_support::{Service, service};

use crate::cli::TestResult;

const MIB: usize = 1 << 20;

#[test]
fn the_cache_keeps_the_most_recently_used_bytes() -> TestResult {
    let Some(endpoint) = service(Service::S3) else {
        return Ok(());
    };
    let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    let client = crate::cli::s3_client(&endpoint, &access_key, &secret_key);
    let bucket = format!("runner-cache-{}", std::process::id());
    let runtime = sgr_test_support::runtime()?;
    // Eleven objects that differ in their first byte, as the original did.
    let mut etags = BTreeMap::new();
    runtime.block_on(async {
        client.create_bucket().bucket(&bucket).send().await?;
        for index in 1..=11u8 {
            let mut body = vec![7u8; MIB];
            body[0] = index;
            let put = client
                .put_object()
                .bucket(&bucket)
                .key(format!("data-{index:02}"))
                .body(aws_sdk_s3::primitives::ByteStream::from(body))
                .send()
                .await?;
            etags.insert(index, put.e_tag().unwrap_or_default().to_owned());
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let host = endpoint.trim_start_matches("http://");
    let artifact = |index: u8| Artifact {
        qualified: format!("s3://{host}/{bucket}/data-{index:02}"),
        credentials: Some(Credentials {
            aws: Some(AwsCredentials {
                access_key: access_key.clone(),
                secret_access_key: secret_key.clone(),
                region: "us-east-1".to_owned(),
            }),
        }),
        ..Artifact::default()
    };
    let work = tempfile::tempdir()?;
    let cache = Cache::open(
        &work.path().join("cache"),
        10 * MIB as u64 + MIB as u64 / 2,
        Duration::from_hours(48),
    )?;
    let env = BTreeMap::new();
    let fetch = |index: u8| -> Result<(u64, u64), Box<dyn std::error::Error>> {
        let target = work.path().join(format!("run-{index}"));
        let _ = fs::remove_dir_all(&target);
        let (hits, misses) = (cache.hits.get(), cache.misses.get());
        storage::fetch(
            "data",
            &artifact(index),
            &env,
            &target,
            Some(&cache),
            &runner::unpack::Budget::unlimited(),
        )?;
        let bytes = fs::read(target.join(format!("data-{index:02}")))?;
        assert_eq!((bytes.len(), bytes[0]), (MIB, index));
        Ok((cache.hits.get() - hits, cache.misses.get() - misses))
    };
    // 11, 10, …, 1: each a miss; the eleventh pushes the oldest (11) out.
    for index in (1..=11).rev() {
        assert_eq!(fetch(index)?, (0, 1), "first fetch of {index}");
    }
    let name = |index: u8| file_name(&etags[&index], MIB as u64);
    assert!(!cache.contains(&name(11)));
    assert!(!work.path().join("cache").join(name(11)).exists());
    // 2 … 10 again: exactly one hit each, no download.
    for index in 2..=10 {
        assert_eq!(fetch(index)?, (1, 0), "second fetch of {index}");
    }
    // 11 is gone: a miss again, and that evicts 1, the least recently used.
    assert_eq!(fetch(11)?, (0, 1));
    assert!(!cache.contains(&name(1)) && cache.contains(&name(2)));
    assert_eq!(cache.bytes.get(), i64::try_from(10 * MIB)?);
    Ok(())
}
