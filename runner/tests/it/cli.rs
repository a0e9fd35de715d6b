//! The runner with the local directory queue and `file://` artifacts: a
//! real Python experiment, its output stored, its message settled.

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::cargo::cargo_bin_cmd;
use predicates::prelude::*;
use predicates::str::contains;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

pub struct Setup {
    _directory: tempfile::TempDir,
    pub root: PathBuf,
}

impl Setup {
    pub fn new() -> Result<Self, Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let root = directory.path().to_path_buf();
        fs::create_dir_all(root.join("queues/local_experiments"))?;
        Ok(Self {
            _directory: directory,
            root,
        })
    }

    /// A workspace tar holding `script` as `main.py`.
    pub fn workspace(&self, script: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let source = self.root.join("workspace-source");
        fs::create_dir_all(&source)?;
        fs::write(source.join("main.py"), script)?;
        let archive = self.root.join("store/workspace.tar");
        fs::create_dir_all(archive.parent().ok_or("no parent")?)?;
        let mut builder = tar::Builder::new(fs::File::create(&archive)?);
        builder.append_dir_all(".", &source)?;
        builder.finish()?;
        Ok(archive)
    }

    pub fn request(&self, key: &str, max_duration: &str) -> String {
        let store = self.root.join("store");
        format!(
            r#"{{"config": {{"env": {{"GREETING": "hello from %USER_LABEL%"}}, "pip": null}},
               "experiment": {{"key": "{key}", "filename": "main.py", "args": ["--epochs", "2"], "pythonver": "3",
                 "resources_needed": {{"cpus": 2, "gpus": 0, "hdd": "1gb", "ram": "1gb"}}, "max_duration": "{max_duration}",
                 "artifacts": {{
                   "workspace": {{"qualified": "file://{store}/workspace.tar", "mutable": false, "unpack": true}},
                   "output": {{"qualified": "file://{store}/{key}-output.tar", "mutable": true, "unpack": true}},
                   "modeldir": {{"qualified": "file://{store}/{key}-modeldir.tar.gz", "mutable": true, "unpack": true}}}}}}}}"#,
            store = store.display()
        )
    }

    pub fn publish(&self, name: &str, body: &str) -> Result<(), std::io::Error> {
        fs::write(self.root.join("queues/local_experiments").join(name), body)
    }

    /// Date the queued message `name` a minute back, so that the directory
    /// queue does not take it for a file still being written.
    pub fn age(&self, name: &str) -> Result<(), std::io::Error> {
        fs::File::options()
            .write(true)
            .open(self.root.join("queues/local_experiments").join(name))?
            .set_modified(std::time::SystemTime::now() - std::time::Duration::from_mins(1))
    }

    /// The runner on this setup's queues, work and venv directories, with
    /// text logs and no GPU variables from the test's environment.
    pub fn command(&self) -> std::process::Command {
        let mut command = self.without_queues();
        command.arg("--queue-root").arg(self.root.join("queues"));
        command
    }

    /// The runner with this setup's work and venv directories but no queue
    /// (the test adds `--amqp-url` or `--sqs`).
    pub fn without_queues(&self) -> std::process::Command {
        let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin!("runner"));
        command
            .arg("--work-dir")
            .arg(self.root.join("work"))
            .arg("--venv-cache")
            .arg(self.root.join("venvs"))
            .env("USER_LABEL", "the runner")
            // Experiments get only what --pass-env names of the runner's environment.
            .env("RUNNER_PASS_ENV", "USER_LABEL")
            .env("RUNNER_LOG_FORMAT", "text")
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env_remove("NVIDIA_VISIBLE_DEVICES");
        command
    }

    /// [`Setup::command`] with `--once`, for assertions.
    pub fn runner(&self) -> assert_cmd::Command {
        Self::once(self.command())
    }

    /// The runner on a queue service (flags to add), with `--once`.
    fn service_runner(&self) -> assert_cmd::Command {
        Self::once(self.without_queues())
    }

    fn once(mut command: std::process::Command) -> assert_cmd::Command {
        command.arg("--once");
        let mut command = assert_cmd::Command::from_std(command);
        command.timeout(std::time::Duration::from_mins(2));
        command
    }

    pub fn unpacked(&self, archive: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
        let target = self.root.join(format!("unpacked-{archive}"));
        fs::create_dir_all(&target)?;
        let file = fs::File::open(self.root.join("store").join(archive))?;
        let gzip = Path::new(archive)
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("gz"));
        let reader: Box<dyn std::io::Read> = if gzip {
            Box::new(flate2::read::GzDecoder::new(file))
        } else {
            Box::new(file)
        };
        tar::Archive::new(reader).unpack(&target)?;
        Ok(target)
    }

    /// The message files of the queue (`""`), its dead letters
    /// (`".dead"`) or held by runners (`".inflight"`: one directory per runner).
    pub fn queue_files(&self, sub: &str) -> Vec<String> {
        let directory = self.root.join("queues/local_experiments").join(sub);
        if sub == ".inflight" {
            return fs::read_dir(&directory)
                .map(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
                        .flat_map(|entry| {
                            let held = format!(".inflight/{}", entry.file_name().to_string_lossy());
                            self.queue_files(&held)
                        })
                        .collect()
                })
                .unwrap_or_default();
        }
        fs::read_dir(directory)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
                    .filter_map(|entry| entry.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// An S3 client for the test's SeaweedFS.
pub fn s3_client(endpoint: &str, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            access_key, secret_key, None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// An SQS client for moto (the AWS configuration test.sh exports).
fn sqs_client(runtime: &tokio::runtime::Runtime) -> aws_sdk_sqs::Client {
    runtime.block_on(async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        aws_sdk_sqs::Client::new(&config)
    })
}

/// Nothing is left in the SQS queue at `url`.
async fn assert_drained(
    client: &aws_sdk_sqs::Client,
    url: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let left = client
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(1)
        .send()
        .await?;
    assert!(
        left.messages().is_empty(),
        "a message is still in the queue"
    );
    Ok(())
}

/// Whether Python with venv is here; under `scripts/test.sh`
/// (`SGR_TEST_SERVICES=1`) its absence fails the test instead of skipping it.
const SCRIPT: &str = r#"
import os, sys
print("args", sys.argv[1:])
print("greeting", os.environ["GREETING"])
print("cuda", os.environ["CUDA_VISIBLE_DEVICES"], "threads", os.environ["OMP_NUM_THREADS"])
print("oops on stderr", file=sys.stderr)
os.makedirs("../modeldir", exist_ok=True)
with open("../modeldir/model.txt", "w") as handle:
    handle.write("trained")
"#;

#[test]
fn an_experiment_runs_its_output_is_stored_and_its_message_acked() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(SCRIPT)?;
    setup.publish("first.json", &setup.request("exp-1", "10m"))?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment exp-1: Succeeded"));
    let output = fs::read_to_string(setup.unpacked("exp-1-output.tar")?.join("output"))?;
    assert!(output.contains("args ['--epochs', '2']"), "{output}");
    assert!(
        output.contains("greeting hello from the runner"),
        "{output}"
    );
    assert!(output.contains("cuda -1 threads 2"), "{output}");
    assert!(output.contains("oops on stderr"), "{output}");
    assert_eq!(
        fs::read_to_string(setup.unpacked("exp-1-modeldir.tar.gz")?.join("model.txt"))?,
        "trained"
    );
    assert!(
        setup.queue_files("").is_empty(),
        "the message is still queued"
    );
    assert!(
        setup.queue_files(".inflight").is_empty(),
        "the message was not acked"
    );
    Ok(())
}

#[test]
fn a_bad_message_is_dead_lettered_and_a_missing_workspace_too() -> TestResult {
    let setup = Setup::new()?;
    setup.publish("broken.json", "{not json")?;
    setup.age("broken.json")?;
    setup.publish(
        "noram.json",
        &setup
            .request("exp-2", "1m")
            .replace("\"ram\": \"1gb\"", "\"ram\": \"\""),
    )?;
    setup.publish("noworkspace.json", &setup.request("exp-3", "1m"))?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("dead-lettered").count(3));
    let mut dead = setup.queue_files(".dead");
    dead.sort();
    assert_eq!(
        dead,
        [
            "broken.json",
            "broken.json.reason",
            "noram.json",
            "noram.json.reason",
            "noworkspace.json",
            "noworkspace.json.reason"
        ]
    );
    let reason = fs::read_to_string(
        setup
            .root
            .join("queues/local_experiments/.dead/noram.json.reason"),
    )?;
    assert!(reason.contains("resources_needed.ram"), "{reason}");
    let reason = fs::read_to_string(
        setup
            .root
            .join("queues/local_experiments/.dead/noworkspace.json.reason"),
    )?;
    assert!(
        reason.contains("workspace") && reason.contains("does not exist"),
        "{reason}"
    );
    Ok(())
}

#[test]
fn an_experiment_past_its_deadline_is_killed_with_its_children() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    let marker = setup.root.join("child-alive");
    let child_pid = setup.root.join("child-pid");
    setup.workspace(&format!(
        r#"
import subprocess, sys, time
child = subprocess.Popen(["sh", "-c", "sleep 3; touch {marker}"])
open("{child_pid}", "w").write(str(child.pid))
print("started", flush=True)
time.sleep(60)
"#,
        marker = marker.display(),
        child_pid = child_pid.display()
    ))?;
    setup.publish("slow.json", &setup.request("exp-slow", "1s"))?;
    let started = std::time::Instant::now();
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment exp-slow: TimedOut"));
    assert!(
        started.elapsed().as_secs() < 30,
        "not killed at the deadline"
    );
    // The child's end, not a nap, is the signal: once it is gone it can
    // touch nothing, and had it outlived the deadline it would have touched
    // the marker before it ended.
    let pid = fs::read_to_string(&child_pid)?;
    let process = Path::new("/proc").join(pid.trim());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while process_lives(&process) {
        assert!(
            std::time::Instant::now() < deadline,
            "the experiment's child {} still runs 30 s after the deadline",
            pid.trim()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(
        !Path::new(&marker).exists(),
        "a child of the experiment survived the deadline"
    );
    let output = fs::read_to_string(setup.unpacked("exp-slow-output.tar")?.join("output"))?;
    assert!(output.contains("started"), "{output}");
    Ok(())
}

/// Whether the process of `/proc/<pid>` exists and is not a zombie.
fn process_lives(process: &Path) -> bool {
    fs::read_to_string(process.join("stat")).is_ok_and(|stat| {
        // The state follows the command's closing parenthesis.
        stat.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
    })
}

#[test]
fn usage_errors_exit_2() {
    cargo_bin_cmd!("runner")
        .assert()
        .code(2)
        .stderr(contains("--queue-root"));
    cargo_bin_cmd!("runner")
        .args(["--queue-root", "/nonexistent/queues", "--once"])
        .assert()
        .code(2)
        .stderr(contains("is not a directory").and(contains("hint:")));
    cargo_bin_cmd!("runner")
        .arg("--version")
        .assert()
        .success()
        .stdout(contains("runner "));
}

/// The same experiment with its artifacts in S3 (SeaweedFS), credentials in the request.
#[test]
fn artifacts_come_from_and_go_to_s3() -> TestResult {
    let Some(endpoint) = sgr_test_support::service(sgr_test_support::Service::S3) else {
        return Ok(());
    };
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    let setup = Setup::new()?;
    let workspace = setup.workspace(SCRIPT)?;
    let bucket = format!("runner-{}", std::process::id());
    let client = s3_client(&endpoint, &access_key, &secret_key);
    let runtime = sgr_test_support::runtime()?;
    runtime.block_on(async {
        client.create_bucket().bucket(&bucket).send().await?;
        client
            .put_object()
            .bucket(&bucket)
            .key("workspace.tar")
            .body(aws_sdk_s3::primitives::ByteStream::from_path(&workspace).await?)
            .send()
            .await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    let host = endpoint.trim_start_matches("http://");
    let credentials = format!(
        r#""credentials": {{"aws": {{"access_key": "{access_key}", "secret_access_key": "{secret_key}", "region": "us-east-1"}}}}"#
    );
    let request = format!(
        r#"{{"config": {{"env": {{"GREETING": "hi"}}}},
           "experiment": {{"key": "exp-s3", "filename": "main.py", "pythonver": 3,
             "resources_needed": {{"cpus": 1, "hdd": "1gb", "ram": "1gb"}},
             "artifacts": {{
               "workspace": {{"qualified": "s3://{host}/{bucket}/workspace.tar", "bucket": "{bucket}", "key": "workspace.tar", "unpack": true, {credentials}}},
               "output": {{"qualified": "s3://{host}/{bucket}/output.tar", "mutable": true, "unpack": true, {credentials}}},
               "modeldir": {{"qualified": "s3://{host}/{bucket}/modeldir.tar.gz", "mutable": true, "unpack": true, {credentials}}}}}}}}}"#
    );
    setup.publish("s3.json", &request)?;
    // A second experiment with the same workspace: the cache downloads it once.
    setup.publish("s3-again.json", &request.replace("exp-s3", "exp-s3-again"))?;
    let output = setup
        .runner()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_ENDPOINT_URL_S3")
        .arg("--cache-dir")
        .arg(setup.root.join("cache"))
        .args(["--cache-size", "100MiB"])
        .assert()
        .success()
        .stderr(contains("experiment exp-s3: Succeeded"))
        .stderr(contains("experiment exp-s3-again: Succeeded"))
        .stderr(contains("artifact cache: 1 hit(s), 1 miss(es)"))
        .get_output()
        .clone();
    assert!(!String::from_utf8_lossy(&output.stderr).contains(&secret_key));
    let stored = runtime.block_on(async {
        let object = client
            .get_object()
            .bucket(&bucket)
            .key("output.tar")
            .send()
            .await?;
        let bytes = object.body.collect().await?.into_bytes();
        Ok::<_, Box<dyn std::error::Error>>(bytes.to_vec())
    })?;
    let mut archive = tar::Archive::new(stored.as_slice());
    let mut text = String::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.ends_with("output") {
            std::io::Read::read_to_string(&mut entry, &mut text)?;
        }
    }
    assert!(text.contains("greeting hi"), "{text}");
    Ok(())
}

/// RabbitMQ: queues found through the management API, one experiment run and
/// acked, a bad message dead-lettered to `<queue>.dead` with its reason.
#[test]
fn requests_come_from_rabbitmq() -> TestResult {
    use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let Some(url) = sgr_test_support::service(sgr_test_support::Service::Amqp) else {
        return Ok(());
    };
    let Some(management) = sgr_test_support::service(sgr_test_support::Service::AmqpManagement)
    else {
        return Ok(());
    };
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(SCRIPT)?;
    let queue = format!("rmq_runner_{}", std::process::id());
    let runtime = sgr_test_support::runtime()?;
    let connection = runtime.block_on(async {
        let connection =
            lapin::Connection::connect(&url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        for body in [setup.request("exp-rmq", "5m"), "{not json".to_owned()] {
            channel
                .basic_publish(
                    "".into(),
                    queue.as_str().into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    lapin::BasicProperties::default(),
                )
                .await?
                .await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(connection)
    })?;
    setup
        .service_runner()
        .args([
            "--amqp-url",
            &url,
            "--amqp-mgt-url",
            &management,
            "--queue-match",
        ])
        .arg(format!("^{queue}$"))
        .env("USER_LABEL", "rabbit")
        .assert()
        .success()
        .stderr(contains("experiment exp-rmq: Succeeded").and(contains("dead-lettered")));
    let output = fs::read_to_string(setup.unpacked("exp-rmq-output.tar")?.join("output"))?;
    assert!(output.contains("greeting hello from rabbit"), "{output}");
    runtime.block_on(async {
        let channel = connection.create_channel().await?;
        let left = channel
            .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
            .await?;
        assert!(left.is_none(), "a message is still in the queue");
        let dead = channel
            .basic_get(
                format!("{queue}.dead").as_str().into(),
                BasicGetOptions { no_ack: true },
            )
            .await?
            .ok_or("nothing was dead-lettered")?;
        assert_eq!(dead.delivery.data, b"{not json");
        let reason = dead
            .delivery
            .properties
            .headers()
            .as_ref()
            .and_then(|headers| headers.inner().get("x-runner-reason").cloned());
        let reason = match reason {
            Some(lapin::types::AMQPValue::LongString(text)) => {
                String::from_utf8_lossy(text.as_bytes()).into_owned()
            }
            other => format!("{other:?}"),
        };
        assert!(reason.contains("not a StudioML request"), "{reason}");
        connection.close(200, "done".into()).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// SQS (moto): an experiment run and deleted, a bad message sent to `<queue>-dead`.
#[test]
fn requests_come_from_sqs() -> TestResult {
    if sgr_test_support::service(sgr_test_support::Service::Aws).is_none()
        || sgr_test_support::require_python().is_none()
    {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(SCRIPT)?;
    let queue = format!("sqs_runner_{}", std::process::id());
    let runtime = sgr_test_support::runtime()?;
    let client = sqs_client(&runtime);
    runtime.block_on(async {
        let created = client.create_queue().queue_name(&queue).send().await?;
        let url = created.queue_url().unwrap_or_default().to_owned();
        for body in [setup.request("exp-sqs", "5m"), "{not json".to_owned()] {
            client
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    setup
        .service_runner()
        .args(["--sqs", "--queue-match"])
        .arg(format!("^{queue}$"))
        .env("USER_LABEL", "sqs")
        .assert()
        .success()
        .stderr(contains("experiment exp-sqs: Succeeded").and(contains("dead-lettered")));
    let output = fs::read_to_string(setup.unpacked("exp-sqs-output.tar")?.join("output"))?;
    assert!(output.contains("greeting hello from sqs"), "{output}");
    runtime.block_on(async {
        let url = client
            .get_queue_url()
            .queue_name(&queue)
            .send()
            .await?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        assert_drained(&client, &url).await?;
        let dead_url = client
            .get_queue_url()
            .queue_name(format!("{queue}-dead"))
            .send()
            .await?
            .queue_url()
            .unwrap_or_default()
            .to_owned();
        let dead = client
            .receive_message()
            .queue_url(&dead_url)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await?;
        let message = dead.messages().first().ok_or("nothing was dead-lettered")?;
        assert_eq!(message.body(), Some("{not json"));
        let reason = message
            .message_attributes()
            .and_then(|attributes| attributes.get("x-runner-reason"))
            .and_then(|value| value.string_value())
            .unwrap_or_default();
        assert!(reason.contains("not a StudioML request"), "{reason}");
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

/// SIGTERM: no new work is taken; the running experiment gets the drain
/// timeout, is then killed, and its message goes back to the queue.
#[test]
fn sigterm_drains_and_requeues_what_did_not_finish() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace("import time\nprint('started', flush=True)\ntime.sleep(60)\n")?;
    setup.publish("a-long.json", &setup.request("exp-long", "10m"))?;
    let child = setup
        .command()
        .args(["--drain-timeout", "1"])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    // Wait until the experiment runs (its log exists and says so).
    let deadline = std::time::Instant::now() + std::time::Duration::from_mins(1);
    let started = loop {
        // <work>/runs/<id>/experiments/<id>/output/output
        let logs: Vec<PathBuf> = fs::read_dir(setup.root.join("work/runs"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| {
                        let id = entry.file_name();
                        entry
                            .path()
                            .join("experiments")
                            .join(id)
                            .join("output/output")
                    })
                    .collect()
            })
            .unwrap_or_default();
        if logs
            .iter()
            .any(|log| fs::read_to_string(log).is_ok_and(|text| text.contains("started")))
        {
            break true;
        }
        if std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    setup.publish("b-next.json", &setup.request("exp-next", "10m"))?;
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?).ok_or("no pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    let output = child.wait_with_output()?;
    assert!(started, "the experiment never started");
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("requeued") && stderr.contains("stopping"),
        "{stderr}"
    );
    let mut queued = setup.queue_files("");
    queued.sort();
    assert_eq!(queued, ["a-long.json", "b-next.json"], "{stderr}");
    assert!(setup.queue_files(".inflight").is_empty());
    Ok(())
}

/// One plain HTTP GET on loopback: status line and body.
pub fn http_get(address: &str, path: &str) -> Result<(String, String), Box<dyn std::error::Error>> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let status = text.lines().next().unwrap_or_default().to_owned();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

#[test]
fn healthz_and_metrics_are_served_while_it_runs() -> TestResult {
    use std::io::BufRead as _;
    let setup = Setup::new()?;
    let mut child = setup
        .command()
        .args(["--http-addr", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
    let serving = loop {
        let line = lines.next().ok_or("no serving line")??;
        if line.contains("serving /healthz") {
            break line;
        }
    };
    let address = serving.rsplit(' ').next().ok_or("no address")?.to_owned();
    let (status, body) = http_get(&address, "/healthz")?;
    assert!(
        status.contains("200") && body.starts_with("ok"),
        "{status} {body}"
    );
    setup.publish("broken.json", "{not json")?;
    setup.age("broken.json")?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let metrics = loop {
        let (_, body) = http_get(&address, "/metrics")?;
        if body.contains("result=\"dead_lettered\"") || std::time::Instant::now() > deadline {
            break body;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(
        metrics.contains(
            "runner_messages_total{queue=\"local_experiments\",result=\"dead_lettered\"} 1"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("runner_experiments_running 0"),
        "{metrics}"
    );
    assert!(http_get(&address, "/nope")?.0.contains("404"));
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?).ok_or("no pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    assert!(child.wait()?.success());
    Ok(())
}

/// Reference scenario A8: with SQS, a message held longer than its
/// visibility stays hidden (the runner renews it) so it runs once; a failed
/// run is given back (visibility 0) and redelivered; the queue ends empty.
#[test]
fn sqs_keeps_held_messages_hidden_and_redelivers_after_a_nack() -> TestResult {
    if sgr_test_support::service(sgr_test_support::Service::Aws).is_none()
        || sgr_test_support::require_python().is_none()
    {
        return Ok(());
    }
    let script = r#"
import os, sys, time
path = os.path.join(os.environ["MARKS"], os.environ["KEY"])
with open(path, "a") as handle:
    handle.write("x\n")
if os.environ["KEY"] == "exp-nack" and open(path).read().count("x") == 1:
    sys.exit(4)
time.sleep(float(os.environ.get("NAP", "0")))
"#;
    let setup = crate::scheduling::prepare(script)?;
    let needs = r#""cpus": 1, "hdd": "10mb", "ram": "100mb""#;
    let queue = format!("sqs_held_{}", std::process::id());
    let runtime = sgr_test_support::runtime()?;
    let client = sqs_client(&runtime);
    let url = runtime.block_on(async {
        let created = client.create_queue().queue_name(&queue).send().await?;
        let url = created.queue_url().unwrap_or_default().to_owned();
        for body in [
            crate::scheduling::request(&setup, "exp-hold", needs, r#", "NAP": "6""#),
            crate::scheduling::request(&setup, "exp-nack", needs, ""),
        ] {
            client
                .send_message()
                .queue_url(&url)
                .message_body(body)
                .send()
                .await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(url)
    })?;
    setup
        .service_runner()
        .args(["--sqs", "--queue-match"])
        .arg(format!("^{queue}$"))
        .args([
            "--sqs-visibility",
            "3",
            "--retry-failed",
            "1",
            "--max-cores",
            "2",
        ])
        .assert()
        .success()
        .stderr(contains("experiment exp-nack exited with 4"))
        .stderr(contains("experiment exp-nack: Succeeded"))
        .stderr(contains("experiment exp-hold: Succeeded"));
    let runs = |key: &str| {
        fs::read_to_string(setup.root.join("marks").join(key)).map(|text| text.lines().count())
    };
    assert_eq!(runs("exp-hold")?, 1, "a held message was delivered again");
    assert_eq!(runs("exp-nack")?, 2);
    runtime.block_on(async {
        assert_drained(&client, &url).await?;
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
