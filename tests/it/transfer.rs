//! Registry-to-registry blob copies (the second registry of `sgr push`)
//! against the real htpasswd docker-registry, through a TCP proxy that
//! makes the link slow or dead: a copy that outlasts the old whole-request
//! deadline but keeps moving completes in one attempt, and a copy that
//! stops moving fails after the idle limit, naming the blob and both
//! registries. The time limits are made small for the test, as
//! `SGR_REGISTRY_REQUEST_TIMEOUT` and `SGR_REGISTRY_IDLE_TIMEOUT` make them
//! for the CLI.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use sgr::registry::Credentials;
use sgr::registry::client::{ClientError, RegistryClient, Timeouts};
use sgr::registry::transfer::copy_blob;
use sgr_test_support::{Service, TcpFaultProxy, service};

use crate::common::TestResult;

type Failure = Box<dyn std::error::Error>;

/// Small limits: a whole-request deadline of one second, half a second idle.
const TIMEOUTS: Timeouts = Timeouts {
    connect: Duration::from_secs(5),
    request: Duration::from_secs(1),
    idle: Duration::from_millis(500),
};

/// Two MiB: four seconds at 512 KiB/s, four times the request deadline.
const SIZE: usize = 2 << 20;

struct Blob {
    digest: String,
    bytes: Bytes,
}

/// Bytes no registry holds yet (a seeded xorshift), and their digest.
fn fresh_blob() -> Result<Blob, Failure> {
    use sha2::Digest as _;
    let mut state = u64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() % u128::from(u64::MAX),
    )? | 1;
    let mut bytes = Vec::with_capacity(SIZE);
    while bytes.len() < SIZE {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(SIZE);
    let digest =
        sha2::Sha256::digest(&bytes)
            .iter()
            .fold(String::with_capacity(64), |mut text, byte| {
                use std::fmt::Write as _;
                let _ = write!(text, "{byte:02x}");
                text
            });
    Ok(Blob {
        digest: format!("sha256:{digest}"),
        bytes: Bytes::from(bytes),
    })
}

/// The htpasswd registry and its credentials, or `None` without services.
fn registry() -> Option<(String, Credentials)> {
    let host = service(Service::Registry)?;
    let user = sgr_test_support::service_setting(Service::Registry, "SGR_TEST_REGISTRY_USERNAME")?;
    let password =
        sgr_test_support::service_setting(Service::Registry, "SGR_TEST_REGISTRY_PASSWORD")?;
    Some((host, Credentials::new(user, password)))
}

/// `blob` uploaded to `repository` of `host` directly (no proxy).
async fn seed(
    host: &str,
    credentials: &Credentials,
    repository: &str,
    blob: &Blob,
) -> Result<RegistryClient, Failure> {
    let client =
        RegistryClient::with_timeouts(host, Some(credentials.clone()), Timeouts::default())?;
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(blob.bytes.clone())]);
    client
        .upload_blob(repository, &blob.digest, blob.bytes.len() as u64, chunks)
        .await?;
    assert!(client.has_blob(repository, &blob.digest).await?);
    Ok(client)
}

/// The copy's two ends with the test's small limits: the source behind `proxy`, the
/// target direct.
fn ends(
    proxy: &TcpFaultProxy,
    host: &str,
    credentials: &Credentials,
) -> Result<(RegistryClient, RegistryClient), Failure> {
    Ok((
        RegistryClient::with_timeouts(&proxy.address(), Some(credentials.clone()), TIMEOUTS)?,
        RegistryClient::with_timeouts(host, Some(credentials.clone()), TIMEOUTS)?,
    ))
}

fn repositories(test: &str) -> Result<(String, String), Failure> {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() % 1_000_000_000;
    Ok((
        format!("transfer{nanos}/{test}-source"),
        format!("transfer{nanos}/{test}-target"),
    ))
}

#[test]
fn a_copy_slower_than_the_request_deadline_completes_in_one_attempt() -> TestResult {
    let Some((host, credentials)) = registry() else {
        return Ok(());
    };
    let blob = fresh_blob()?;
    let (source, target) = repositories("slow")?;
    // The source is behind a 512 KiB/s link: the blob streams through sgr
    // for four seconds, every chunk a sign of progress.
    let proxy = TcpFaultProxy::start(&host)?;
    proxy.throttle(512 << 10);
    sgr_test_support::runtime()?.block_on(async {
        seed(&host, &credentials, &source, &blob).await?;
        let (from, to) = ends(&proxy, &host, &credentials)?;
        let started = Instant::now();
        let attempts = copy_blob(&from, &source, &to, &target, &blob.digest, SIZE as u64).await?;
        let took = started.elapsed();
        assert_eq!(attempts, 1, "the blob was uploaded {attempts} times");
        assert!(
            took > TIMEOUTS.request * 2,
            "the copy took {took:?}: the link was not slower than the request deadline"
        );
        let check = RegistryClient::new(&host, Some(credentials.clone()))?;
        assert!(
            check.has_blob(&target, &blob.digest).await?,
            "the target lacks the blob"
        );
        Ok::<_, Failure>(())
    })?;
    Ok(())
}

#[test]
fn a_copy_that_stops_moving_fails_after_the_idle_limit_naming_the_blob() -> TestResult {
    let Some((host, credentials)) = registry() else {
        return Ok(());
    };
    let blob = fresh_blob()?;
    let (source, target) = repositories("stall")?;
    let proxy = TcpFaultProxy::start(&host)?;
    // The source's answers stop after 256 KiB: the download stalls part way.
    proxy.stall_after(256 << 10);
    sgr_test_support::runtime()?.block_on(async {
        seed(&host, &credentials, &source, &blob).await?;
        let (from, to) = ends(&proxy, &host, &credentials)?;
        let started = Instant::now();
        let copied = tokio::time::timeout(
            Duration::from_mins(1),
            copy_blob(&from, &source, &to, &target, &blob.digest, SIZE as u64),
        )
        .await;
        let took = started.elapsed();
        let Ok(Err(error)) = copied else {
            panic!("a stalled copy did not fail within a minute: {copied:?}");
        };
        assert!(
            matches!(error.source, ClientError::Stalled { .. }),
            "not a stall: {error:?}"
        );
        assert_eq!(error.attempts, 3, "{error:?}");
        let message = sgr::error::chain(&error);
        for expected in [
            blob.digest.as_str(),
            proxy.address().as_str(),
            host.as_str(),
            "made no progress for 0.5 s",
        ] {
            assert!(message.contains(expected), "{message:?} lacks {expected:?}");
        }
        // Three idle limits and two pauses, never the old minute per attempt.
        assert!(
            took < Duration::from_secs(20),
            "the stall took {took:?} to notice"
        );
        assert!(
            took >= TIMEOUTS.idle * 3,
            "failed before the idle limit: {took:?}"
        );
        Ok::<_, Failure>(())
    })?;
    Ok(())
}
