//! Broker and network faults are weather: a RabbitMQ restart, a management
//! API that refuses or stalls, an S3 transfer that stalls. The library's
//! queue and storage clients fail each call with a transient error within
//! their timeouts and work again once the service is back; the runner binary
//! lives through a broker restart (those tests wait for the scheduler's
//! completion records and are ignored until then).
//!
//! The restarted broker is a private one ([`PrivateRabbitMq`]); the shared
//! services of scripts/test.sh are only reached through a
//! [`TcpFaultProxy`], never stopped.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use runner::failure::{Class, Classify};
use runner::queue::amqp::{AmqpError, AmqpQueues, MANAGEMENT_TIMEOUT};
use runner::queue::{QueueFilter, Queues};
use runner::s3::{S3Failure, Timeouts, s3_get_with};
use runner::storage::{self, Location};
use sgr_test_support::{PrivateRabbitMq, Service, TcpFaultProxy, service};

use crate::cli::{Setup, TestResult};

/// Poll `condition` until it holds or `within` has passed.
fn eventually<T>(
    within: Duration,
    what: &str,
    mut condition: impl FnMut() -> Option<T>,
) -> Result<T, String> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = condition() {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not within {} s", within.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Declare `queue` (durable) and publish `bodies` to it as persistent messages.
fn publish(url: &str, queue: &str, bodies: &[&str]) -> TestResult {
    let runtime = sgr_test_support::runtime()?;
    runtime.block_on(async {
        let connection =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        for body in bodies {
            channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    lapin::BasicProperties::default().with_delivery_mode(2),
                )
                .await?
                .await?;
        }
        connection.close(200, "published".into()).await?;
        Ok(())
    })
}

fn only(queue: &str) -> Result<QueueFilter, regex::Error> {
    Ok(QueueFilter::new(
        regex::Regex::new(&format!("^{queue}$"))?,
        None,
    ))
}

/// Publish, claim, restart the broker: operations fail transiently while it
/// is down, then work again; the claim taken before the restart cannot be
/// acked (stale), and its message comes back exactly once.
#[test]
fn rabbitmq_queues_live_through_a_broker_restart() -> TestResult {
    let Some(mut broker) = PrivateRabbitMq::start_or_skip()? else {
        return Ok(());
    };
    let queue = "restart_me";
    publish(&broker.amqp_url(), queue, &["the request"])?;
    let queues = AmqpQueues::connect(&broker.amqp_url(), &broker.management_url(), only(queue)?)?;
    assert_eq!(queues.queues()?, [queue]);
    let (body, old_claim) = queues.claim(queue)?.ok_or("the message was not there")?;
    assert_eq!(body, b"the request");

    broker.stop()?;
    let claimed = queues
        .claim(queue)
        .err()
        .ok_or("a claim worked with the broker down")?;
    assert_eq!(claimed.class(), Class::Transient, "{claimed}");
    let listed = queues
        .queues()
        .err()
        .ok_or("queues listed with the broker down")?;
    assert!(matches!(listed, AmqpError::Management { .. }), "{listed}");
    assert_eq!(listed.class(), Class::Transient);
    assert!(!queues.connected());

    broker.start()?;
    // The next attempt is due within the backoff (a few seconds here).
    let (body, new_claim) =
        eventually(Duration::from_mins(1), "a claim after the restart", || {
            queues.claim(queue).ok().flatten()
        })?;
    assert_eq!(body, b"the request");
    assert!(queues.connected());
    let stale = queues
        .ack(old_claim)
        .err()
        .ok_or("the claim from before the restart was acked")?;
    assert!(stale.is_stale(), "{stale}");
    assert_eq!(stale.class(), Class::Transient);
    queues.ack(new_claim)?;
    assert!(
        queues.claim(queue)?.is_none(),
        "the message came back a second time"
    );
    assert_eq!(queues.queues()?, [queue]);
    queues.close();
    Ok(())
}

/// The management API refused (and connections reset) or stalled: listing
/// fails within its timeout, and works again once it answers.
#[test]
fn an_unreachable_management_api_fails_the_listing_within_its_timeout() -> TestResult {
    let (Some(url), Some(management)) = (service(Service::Amqp), service(Service::AmqpManagement))
    else {
        return Ok(());
    };
    let proxy = TcpFaultProxy::start(management.trim_start_matches("http://"))?;
    let queue = format!("management_faults_{}", std::process::id());
    publish(&url, &queue, &[])?;
    let queues = AmqpQueues::new(&url, &proxy.http_url(), only(&queue)?)?;
    assert_eq!(queues.queues()?, [queue.as_str()]);

    proxy.refuse();
    proxy.reset_all();
    let started = Instant::now();
    let refused = queues
        .queues()
        .err()
        .ok_or("listed through a refusing proxy")?;
    assert!(matches!(refused, AmqpError::Management { .. }), "{refused}");
    assert_eq!(refused.class(), Class::Transient);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a refused listing took {:?}",
        started.elapsed()
    );

    proxy.stall();
    let started = Instant::now();
    let stalled = queues
        .queues()
        .err()
        .ok_or("listed through a stalled proxy")?;
    assert!(matches!(stalled, AmqpError::Management { .. }), "{stalled}");
    let took = started.elapsed();
    assert!(
        took >= MANAGEMENT_TIMEOUT.saturating_sub(Duration::from_secs(1))
            && took < MANAGEMENT_TIMEOUT + Duration::from_secs(5),
        "a stalled listing took {took:?}"
    );

    proxy.forward();
    assert_eq!(queues.queues()?, [queue.as_str()]);
    Ok(())
}

/// A download through a proxy that stalls part way through the body fails
/// with a transient "stalled" error within the idle timeout (plus margin);
/// one that stalls from the start fails within the request attempts'
/// timeouts; once the proxy forwards again the download works.
#[test]
fn a_stalled_s3_download_fails_within_the_idle_timeout() -> TestResult {
    let Some(endpoint) = service(Service::S3) else {
        return Ok(());
    };
    let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    let client = crate::cli::s3_client(&endpoint, &access_key, &secret_key);
    let bucket = format!("runner-stall-{}", std::process::id());
    let content: Vec<u8> = (0..4 << 20).map(|index: u32| (index % 251) as u8).collect();
    sgr_test_support::runtime()?.block_on(async {
        client.create_bucket().bucket(&bucket).send().await?;
        client
            .put_object()
            .bucket(&bucket)
            .key("data")
            .body(aws_sdk_s3::primitives::ByteStream::from(content.clone()))
            .send()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let proxy = TcpFaultProxy::start(endpoint.trim_start_matches("http://"))?;
    let artifact = runner::request::Artifact {
        qualified: format!("s3://{}/{bucket}/data", proxy.address()),
        credentials: Some(runner::request::Credentials {
            aws: Some(runner::request::AwsCredentials {
                access_key,
                secret_access_key: secret_key,
                region: "us-east-1".to_owned(),
            }),
        }),
        ..runner::request::Artifact::default()
    };
    let Location::S3(object) =
        storage::location("data", &artifact, &std::collections::BTreeMap::new())?
    else {
        return Err("not an S3 location".into());
    };
    let work = tempfile::tempdir()?;
    let target = work.path().join("data");
    let timeouts = Timeouts::with_idle(Duration::from_secs(2));

    // The answers' first 64 KiB pass (the HEAD and the GET's headers), then nothing.
    proxy.stall_after(64 << 10);
    let started = Instant::now();
    let stalled = s3_get_with("data", &object, &target, &timeouts)
        .err()
        .ok_or("a stalled download succeeded")?;
    let took = started.elapsed();
    assert!(
        matches!(stalled.reason, S3Failure::Stalled { .. }),
        "{stalled}"
    );
    assert_eq!(stalled.class(), Class::Transient);
    assert!(
        took >= timeouts.idle && took < timeouts.idle + Duration::from_secs(5),
        "a stalled body failed after {took:?}"
    );

    // Nothing at all: the HEAD's attempts time out (the SDK tries 3 times).
    proxy.stall();
    let started = Instant::now();
    let silent = s3_get_with("data", &object, &target, &timeouts)
        .err()
        .ok_or("a download through a silent proxy succeeded")?;
    let took = started.elapsed();
    assert_eq!(silent.class(), Class::Transient, "{silent}");
    assert!(
        took < 3 * timeouts.idle + Duration::from_secs(10),
        "a silent S3 failed after {took:?}"
    );

    proxy.forward();
    assert!(s3_get_with("data", &object, &target, &timeouts)?);
    assert!(fs::read(&target)? == content, "the download differs");
    Ok(())
}

/// An experiment that records each run in `runs-<key>` and waits for the
/// file `release` (so a test can act while it runs).
fn waiting_script(root: &Path) -> String {
    format!(
        r#"
import os, pathlib, sys, time
root = pathlib.Path("{root}")
key = os.environ.get("EXPERIMENT_KEY", "")
with open(root / "runs", "a") as runs:
    runs.write(" ".join(sys.argv[1:]) + "\n")
(root / "started").write_text("yes")
deadline = time.time() + 300
while not (root / "release").exists() and time.time() < deadline:
    time.sleep(0.1)
print("finished")
"#,
        root = root.display()
    )
}

/// The runner serving `queue` of `broker`, as a child process with its
/// stderr in `log`.
fn serve(
    setup: &Setup,
    broker: &PrivateRabbitMq,
    queue: &str,
    log: &Path,
) -> Result<std::process::Child, Box<dyn std::error::Error>> {
    let mut command = setup.without_queues();
    command
        .args(["--amqp-url", &broker.amqp_url()])
        .args(["--amqp-mgt-url", &broker.management_url()])
        .args(["--queue-match", &format!("^{queue}$")])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(log)?);
    Ok(command.spawn()?)
}

/// `error` with the runner's log, for a failure of the binary-level tests.
fn with_log(log: &Path) -> impl FnOnce(String) -> String + '_ {
    move |error| {
        format!(
            "{error}; the runner's log:\n{}",
            fs::read_to_string(log).unwrap_or_default()
        )
    }
}

/// Stops the runner (SIGTERM, then waits) however the test ends.
struct Running(std::process::Child);

impl Running {
    fn alive(&mut self) -> bool {
        matches!(self.0.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id())
            && let Some(pid) = rustix::process::Pid::from_raw(pid)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let _ = self.0.wait();
    }
}

/// RabbitMQ restarted while an experiment runs: the runner stays up, stores
/// the result once (the redelivered message is recognised as done, not run
/// again) and takes the next request.
#[test]
fn the_runner_lives_through_a_broker_restart_during_an_experiment() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let Some(mut broker) = PrivateRabbitMq::start_or_skip()? else {
        return Ok(());
    };
    let setup = Setup::new()?;
    setup.workspace(&waiting_script(&setup.root))?;
    let queue = "runner_restart_busy";
    publish(&broker.amqp_url(), queue, &[&setup.request("exp-a", "10m")])?;
    let log = setup.root.join("runner.log");
    let mut runner = Running(serve(&setup, &broker, queue, &log)?);
    let started = setup.root.join("started");
    eventually(Duration::from_mins(3), "the experiment started", || {
        started.exists().then_some(())
    })
    .map_err(with_log(&log))?;

    broker.stop()?;
    broker.start()?;
    fs::write(setup.root.join("release"), "go")?;
    let first = setup.root.join("store/exp-a-output.tar");
    eventually(Duration::from_mins(2), "exp-a's output stored", || {
        first.exists().then_some(())
    })
    .map_err(with_log(&log))?;
    assert!(
        runner.alive(),
        "the runner ended: {}",
        fs::read_to_string(&log)?
    );

    publish(&broker.amqp_url(), queue, &[&setup.request("exp-b", "10m")])?;
    let second = setup.root.join("store/exp-b-output.tar");
    eventually(Duration::from_mins(2), "exp-b's output stored", || {
        second.exists().then_some(())
    })
    .map_err(with_log(&log))?;
    assert!(
        runner.alive(),
        "the runner ended: {}",
        fs::read_to_string(&log)?
    );
    // exp-a's message came back after the restart (its ack was stale) and
    // was taken before exp-b: had it run again, `runs` would say so.
    let runs = fs::read_to_string(setup.root.join("runs"))?;
    assert_eq!(runs.lines().count(), 2, "runs:\n{runs}");
    Ok(())
}

/// RabbitMQ restarted while the runner is idle: it stays up, reconnects and
/// takes the next request.
#[test]
fn the_runner_lives_through_a_broker_restart_while_idle() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let Some(mut broker) = PrivateRabbitMq::start_or_skip()? else {
        return Ok(());
    };
    let setup = Setup::new()?;
    setup.workspace(&waiting_script(&setup.root))?;
    fs::write(setup.root.join("release"), "go")?;
    let queue = "runner_restart_idle";
    publish(&broker.amqp_url(), queue, &[&setup.request("exp-a", "10m")])?;
    let log = setup.root.join("runner.log");
    let mut runner = Running(serve(&setup, &broker, queue, &log)?);
    let first = setup.root.join("store/exp-a-output.tar");
    eventually(Duration::from_mins(3), "exp-a's output stored", || {
        first.exists().then_some(())
    })
    .map_err(with_log(&log))?;

    broker.stop()?;
    broker.start()?;
    assert!(
        runner.alive(),
        "the runner ended: {}",
        fs::read_to_string(&log)?
    );
    publish(&broker.amqp_url(), queue, &[&setup.request("exp-b", "10m")])?;
    let second = setup.root.join("store/exp-b-output.tar");
    eventually(Duration::from_mins(2), "exp-b's output stored", || {
        second.exists().then_some(())
    })
    .map_err(with_log(&log))?;
    assert!(
        runner.alive(),
        "the runner ended: {}",
        fs::read_to_string(&log)?
    );
    let runs = fs::read_to_string(setup.root.join("runs"))?;
    assert_eq!(runs.lines().count(), 2, "each experiment ran once:\n{runs}");
    Ok(())
}

/// Count (and take) the messages of `queue` on the broker at `url`.
fn drain(url: &str, queue: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let runtime = sgr_test_support::runtime()?;
    runtime.block_on(async {
        let connection =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let mut bodies = Vec::new();
        while let Some(message) = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await?
        {
            bodies.push(String::from_utf8_lossy(&message.delivery.data).into_owned());
        }
        connection.close(200, "drained".into()).await?;
        Ok(bodies)
    })
}

/// Poison messages (values that once panicked the runner) under RabbitMQ,
/// taken by two runners at once: neither dies, both poison messages end in
/// `<queue>.dead`, the good request runs once.
#[test]
fn poison_messages_under_rabbitmq_kill_no_runner() -> TestResult {
    let Some(url) = service(Service::Amqp) else {
        return Ok(());
    };
    let Some(management) = service(Service::AmqpManagement) else {
        return Ok(());
    };
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace("print('ran')\n")?;
    let queue = format!("rmq_poison_{}", std::process::id());
    let poison_duration = setup.request("poison-a", "10m").replace(
        r#""max_duration": "10m""#,
        r#""max_duration": "99999999999999999999h""#,
    );
    let poison_time = setup.request("poison-b", "10m").replace(
        r#""max_duration": "10m""#,
        r#""max_duration": "10m", "time_added": 1e300"#,
    );
    assert_ne!(poison_duration, setup.request("poison-a", "10m"));
    assert_ne!(poison_time, setup.request("poison-b", "10m"));
    let good = setup.request("good", "10m");
    publish(&url, &queue, &[&poison_duration, &poison_time, &good])?;
    // The second runner has a work directory of its own.
    let other = Setup::new()?;
    let runner = |on: &Setup| {
        let mut command = on.without_queues();
        command
            .args(["--once", "--amqp-url", &url, "--amqp-mgt-url", &management])
            .args(["--queue-match", &format!("^{queue}$")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        command.spawn()
    };
    let first = runner(&setup)?;
    let second = runner(&other)?;
    let mut logs = String::new();
    for child in [first, second] {
        let output = child.wait_with_output()?;
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{log}");
        assert!(!log.contains("panicked"), "{log}");
        logs.push_str(&log);
    }
    assert_eq!(
        logs.matches("experiment good: Succeeded").count(),
        1,
        "{logs}"
    );
    let dead = drain(&url, &format!("{queue}.dead"))?;
    assert_eq!(dead.len(), 2, "{logs}");
    assert!(drain(&url, &queue)?.is_empty());
    Ok(())
}

/// The management API away for 30 s (connections refused and reset): the
/// runner stays up through it and takes the next request once it is back.
#[test]
fn the_runner_waits_out_a_management_api_outage() -> TestResult {
    let Some(url) = service(Service::Amqp) else {
        return Ok(());
    };
    let Some(management) = service(Service::AmqpManagement) else {
        return Ok(());
    };
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace("print('ran')\n")?;
    let queue = format!("rmq_outage_{}", std::process::id());
    publish(&url, &queue, &[])?;
    let proxy = TcpFaultProxy::start(management.trim_start_matches("http://"))?;
    proxy.refuse();
    proxy.reset_all();
    let log = setup.root.join("runner.log");
    let mut command = setup.without_queues();
    command
        .args(["--amqp-url", &url, "--amqp-mgt-url", &proxy.http_url()])
        .args(["--queue-match", &format!("^{queue}$")])
        .stdout(std::process::Stdio::null())
        .stderr(fs::File::create(&log)?);
    let mut runner = Running(command.spawn()?);
    eventually(Duration::from_secs(30), "the outage noticed", || {
        fs::read_to_string(&log)
            .ok()
            .filter(|text| text.contains("the queues fail"))
    })
    .map_err(with_log(&log))?;
    let outage = Instant::now();
    while outage.elapsed() < Duration::from_secs(30) {
        assert!(
            runner.alive(),
            "the runner ended: {}",
            fs::read_to_string(&log)?
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    proxy.forward();
    publish(&url, &queue, &[&setup.request("after", "10m")])?;
    let stored = setup.root.join("store/after-output.tar");
    eventually(
        Duration::from_mins(2),
        "the request after the outage ran",
        || stored.exists().then_some(()),
    )
    .map_err(with_log(&log))?;
    assert!(runner.alive());
    let text = fs::read_to_string(&log)?;
    assert!(text.contains("the queues answer again"), "{text}");
    Ok(())
}

/// A workspace behind an S3 link that stalls mid-body: the runner gives
/// the message back within the idle timeout (no hung thread), tries again
/// after its back-off, then dead-letters it with both reasons; the good
/// request behind it runs.
#[test]
fn a_stalled_s3_workspace_is_given_back_within_the_idle_timeout() -> TestResult {
    let Some(endpoint) = service(Service::S3) else {
        return Ok(());
    };
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    let setup = Setup::new()?;
    let archive = setup.workspace("print('ran')\n")?;
    let mut workspace = fs::read(&archive)?;
    // Past the proxy's first 64 KiB, so the body stalls rather than the headers.
    workspace.extend(std::iter::repeat_n(0_u8, 1 << 20));
    let client = crate::cli::s3_client(&endpoint, &access_key, &secret_key);
    let bucket = format!("runner-stall-bin-{}", std::process::id());
    sgr_test_support::runtime()?.block_on(async {
        client.create_bucket().bucket(&bucket).send().await?;
        client
            .put_object()
            .bucket(&bucket)
            .key("workspace.tar")
            .body(aws_sdk_s3::primitives::ByteStream::from(workspace))
            .send()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let proxy = TcpFaultProxy::start(endpoint.trim_start_matches("http://"))?;
    proxy.stall_after(64 << 10);
    let stalled = setup.request("stalled", "10m").replacen(
        &format!(
            r#""qualified": "file://{}/workspace.tar""#,
            setup.root.join("store").display()
        ),
        &format!(
            r#""qualified": "s3://{}/{bucket}/workspace.tar", "credentials": {{"aws": {{"access_key": "{access_key}", "secret_access_key": "{secret_key}", "region": "us-east-1"}}}}"#,
            proxy.address()
        ),
        1,
    );
    assert!(stalled.contains("s3://"), "{stalled}");
    setup.publish("a.json", &stalled)?;
    setup.publish("b.json", &setup.request("good", "10m"))?;
    let started = Instant::now();
    let output = setup
        .runner()
        .args(["--s3-idle-timeout", "2s", "--max-attempts", "2"])
        .output()?;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert!(log.contains("experiment good: Succeeded"), "{log}");
    assert_eq!(log.matches("requeued:").count(), 1, "{log}");
    assert!(
        started.elapsed() < Duration::from_secs(90),
        "took {:?}:\n{log}",
        started.elapsed()
    );
    let dead = setup.root.join("queues/local_experiments/.dead");
    let reason = fs::read_dir(&dead)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "reason")
        })
        .ok_or("no dead letter")?;
    let reason = fs::read_to_string(reason)?;
    assert!(reason.contains("gave up after 2 attempt(s)"), "{reason}");
    assert!(
        !reason.contains(&secret_key),
        "the secret key leaked: {reason}"
    );
    Ok(())
}
