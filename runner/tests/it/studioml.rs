//! The real `StudioML` Python client (`studioml` 0.0.49, the venv
//! `scripts/test.sh` makes) against the runner, one test per transport the
//! client has: `studio-run` submits from a project directory, the runner
//! (`--once`) runs it, and the client's own API (`get_db_provider`,
//! `get_experiment`, `get_artifact`) reads the results back from S3
//! (SeaweedFS). Nothing on the client's side is changed for the runner.
//!
//! The experiment's `pythonenv` is the client's whole `pip freeze`, which
//! the runner installs from the package index: slow once, so every test
//! shares one `--venv-cache` under the target directory and the tests run
//! one at a time.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sgr_test_support::{Service, service};

use crate::cli::TestResult;

/// The runner's RSA key (passphrase-protected PKCS#8, with its public half
/// in PEM for the client) and two submitters' Ed25519 signing keys, made
/// for this test run with `ssh-keygen` as docs/studioml.md tells users to
/// make them: `encrypt/` (as mounted from the Secrets), `runner-public.pem`,
/// `client-signing[.pub]`, `other-signing[.pub]`.
fn made_keys() -> Result<PathBuf, String> {
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("studioml-keys-{}", std::process::id()));
    let run = |arguments: &[&str]| -> Result<Vec<u8>, String> {
        let output = Command::new("ssh-keygen")
            .args(arguments)
            .current_dir(&directory)
            .output()
            .map_err(|error| format!("ssh-keygen (openssh-client): {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "ssh-keygen {arguments:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(output.stdout)
    };
    let _ = fs::remove_dir_all(&directory);
    for sub in ["encrypt/encryption", "encrypt/passphrase"] {
        fs::create_dir_all(directory.join(sub)).map_err(|error| error.to_string())?;
    }
    let passphrase = "a passphrase made for this run";
    fs::write(
        directory.join("encrypt/passphrase/ssh-passphrase"),
        passphrase,
    )
    .map_err(|error| error.to_string())?;
    run(&[
        "-q",
        "-t",
        "rsa",
        "-b",
        "2048",
        "-m",
        "PKCS8",
        "-N",
        passphrase,
        "-C",
        "runner",
        "-f",
        "encrypt/encryption/ssh-privatekey",
    ])?;
    let public = run(&[
        "-f",
        "encrypt/encryption/ssh-privatekey.pub",
        "-e",
        "-m",
        "PEM",
    ])?;
    fs::write(directory.join("runner-public.pem"), public).map_err(|error| error.to_string())?;
    fs::remove_file(directory.join("encrypt/encryption/ssh-privatekey.pub"))
        .map_err(|error| error.to_string())?;
    for name in ["client-signing", "other-signing"] {
        run(&["-q", "-t", "ed25519", "-N", "", "-C", name, "-f", name])?;
    }
    Ok(directory)
}

/// A file of the keys made for this run (see [`made_keys`]).
fn keys(name: &str) -> PathBuf {
    static MADE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match MADE.get_or_init(made_keys) {
        Ok(directory) => directory.join(name),
        Err(error) => panic!("cannot make the test keys: {error}"),
    }
}

/// One client run at a time: they share the venv cache and two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The longest a runner may take; the first run installs the client's
/// `pip freeze` from the package index.
const RUNNER_DEADLINE: Duration = Duration::from_mins(20);

/// The experiment: output on both streams, its arguments, a `config.env`
/// variable, a model saved where `StudioML` code saves models, and a
/// hyperparameter the client substitutes into the script's text.
const TRAIN: &str = r#"import os
import sys
from studio import fs_tracker

learning_rate = 0.5
print("args", sys.argv[1:])
print("to stderr", file=sys.stderr)
print("greeting", os.environ.get("GREETING"))
print("rate", learning_rate)
with open(os.path.join(fs_tracker.get_model_directory(), "model.txt"), "w") as model:
    model.write("weights " + str(learning_rate))
"#;

/// Reads experiments back as a `StudioML` user does; prints JSON
/// `{key: {"output": text, "model": text or null}}`.
const READ_BACK: &str = r#"import json, os, sys
from studio import model
config = model.get_config(sys.argv[1])
found = {}
with model.get_db_provider(config) as db:
    for key in sys.argv[2:]:
        experiment = db.get_experiment(key)
        output = db.get_artifact(experiment.artifacts["output"])
        modeldir = db.get_artifact(experiment.artifacts["modeldir"])
        saved = os.path.join(modeldir, "model.txt")
        found[key] = {
            "output": open(os.path.join(output, "output")).read(),
            "model": open(saved).read() if os.path.exists(saved) else None,
        }
print(json.dumps(found))
"#;

/// The client's transport.
enum Transport {
    /// `StudioML.topic` exchange, an `rmq_` queue.
    RabbitMq { url: String, management: String },
    /// An `sqs_` queue on moto.
    Sqs,
    /// `~/.studioml/queue/local_…` of the client's HOME.
    Local,
}

/// A `StudioML` user's machine: a project, a HOME, a config.yaml; and an
/// empty HOME for the runner.
struct Client {
    _directory: tempfile::TempDir,
    root: PathBuf,
    bin: PathBuf,
    queue: String,
    transport: Transport,
    /// Flags the runner gets besides the transport's.
    runner_args: Vec<std::ffi::OsString>,
}

impl Client {
    /// `None` (skipped) without the client or S3.
    fn new(name: &str, transport: Transport) -> Result<Option<Self>, Box<dyn std::error::Error>> {
        let Some(bin) = service(Service::StudioMl) else {
            return Ok(None);
        };
        let Some(endpoint) = service(Service::S3) else {
            return Ok(None);
        };
        let access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
        let secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
        let directory = tempfile::tempdir()?;
        let root = directory.path().to_path_buf();
        for made in ["project", "client-home", "runner-home", "work"] {
            fs::create_dir_all(root.join(made))?;
        }
        fs::write(root.join("project/train.py"), TRAIN)?;
        let unique = format!(
            "{name}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
        );
        let prefix = match transport {
            Transport::RabbitMq { .. } => "rmq",
            Transport::Sqs => "sqs",
            Transport::Local => "local",
        };
        let queue = format!("{prefix}_{}", unique.replace('-', "_"));
        let cloud = match &transport {
            Transport::RabbitMq { url, .. } => format!("cloud:\n  queue:\n    rmq: \"{url}\"\n"),
            Transport::Sqs => format!(
                "cloud:\n  queue:\n    sqs:\n      credentials:\n        aws:\n          access_key: {}\n          secret_access_key: {}\n          region: {}\n",
                std::env::var("AWS_ACCESS_KEY_ID")?,
                std::env::var("AWS_SECRET_ACCESS_KEY")?,
                std::env::var("AWS_REGION")?,
            ),
            Transport::Local => String::new(),
        };
        let credentials = format!(
            "  credentials:\n    aws:\n      access_key: {access_key}\n      secret_access_key: {secret_key}\n      region: us-east-1\n"
        );
        // Two buckets for every test (keys are unique): SeaweedFS makes a
        // collection per bucket, and fails writes once it runs out of volumes.
        let config = format!(
            "database:\n  type: s3\n  endpoint: {endpoint}\n  bucket: studioml-it-meta\n  authentication: none\n{credentials}\
             storage:\n  type: s3\n  endpoint: {endpoint}\n  bucket: studioml-it-artifacts\n{credentials}\
             {cloud}env:\n  GREETING: hello from the config\n\
             resources_needed:\n  cpus: 1\n  ram: 1g\n  hdd: 2g\n  gpus: 0\n\
             saveWorkspaceFrequency: 3m\nexperimentLifetime: 30m\nverbose: info\n"
        );
        fs::write(root.join("config.yaml"), config)?;
        Ok(Some(Self {
            _directory: directory,
            root,
            bin: PathBuf::from(bin),
            queue,
            transport,
            runner_args: Vec::new(),
        }))
    }

    /// Message privacy on: the client encrypts for the runner key made for
    /// this run and signs with its submitter key (`public_key_path`,
    /// `signing_key_path`); the runner takes only encrypted requests and
    /// verifies them with `registered` (a public key file) as the key of
    /// the transport's queue prefix (`local_`, `rmq_`, `sqs_`).
    fn encrypted(mut self, registered: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let signatures = self.root.join("signatures");
        fs::create_dir_all(&signatures)?;
        fs::copy(registered, signatures.join(self.prefix()))?;
        self.set_privacy(true)?;
        self.runner_args.extend([
            "--encrypt-dir".into(),
            keys("encrypt").into(),
            "--request-signatures-dir".into(),
            signatures.into(),
            "--clear-text-messages=false".into(),
        ]);
        Ok(self)
    }

    /// The queue-name prefix of the transport.
    fn prefix(&self) -> &'static str {
        match self.transport {
            Transport::RabbitMq { .. } => "rmq_",
            Transport::Sqs => "sqs_",
            Transport::Local => "local_",
        }
    }

    /// Turn the client's message privacy on or off in its config.yaml.
    fn set_privacy(&self, on: bool) -> TestResult {
        let path = self.root.join("config.yaml");
        let config = fs::read_to_string(&path)?;
        let mut kept = String::new();
        for line in config.lines().filter(|line| {
            !line.starts_with("public_key_path") && !line.starts_with("signing_key_path")
        }) {
            kept.push_str(line);
            kept.push('\n');
        }
        if on {
            use std::fmt::Write as _;
            write!(
                kept,
                "public_key_path: \"{}\"\nsigning_key_path: \"{}\"\n",
                keys("runner-public.pem").display(),
                keys("client-signing").display()
            )?;
        }
        fs::write(path, kept)?;
        Ok(())
    }

    /// The client's local queue directory (`Transport::Local`).
    fn local_queue(&self) -> PathBuf {
        self.root
            .join("client-home/.studioml/queue")
            .join(&self.queue)
    }

    /// The dead-letter reasons of the local queue, by message file.
    fn dead_letters(&self) -> Vec<String> {
        let mut reasons: Vec<String> = fs::read_dir(self.local_queue().join(".dead"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter(|entry| entry.file_name().to_string_lossy().ends_with(".reason"))
                    .filter_map(|entry| fs::read_to_string(entry.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        reasons.sort();
        reasons
    }

    /// A client program run as the user: in the project, with its HOME.
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(self.bin.join(program));
        command
            .current_dir(self.root.join("project"))
            .env("HOME", self.root.join("client-home"));
        command
    }

    /// `studio-run --config config.yaml --queue <queue> [extra] train.py alpha beta`;
    /// the keys of the experiments it submitted.
    fn submit(&self, extra: &[&str]) -> Result<Vec<String>, Box<dyn std::error::Error>> {
        let output = self
            .client("studio-run")
            .arg("--config")
            .arg(self.root.join("config.yaml"))
            .args(["--queue", &self.queue])
            .args(extra)
            .args(["train.py", "alpha", "beta"])
            .output()?;
        let text = both(&output);
        assert!(output.status.success(), "studio-run failed:\n{text}");
        let keys: Vec<String> = text
            .lines()
            .filter_map(|line| line.split_once("studio run: submitted experiment "))
            .map(|(_, key)| key.trim().to_owned())
            .collect();
        assert!(!keys.is_empty(), "studio-run submitted nothing:\n{text}");
        Ok(keys)
    }

    /// The runner, `--once`, on this client's queue, with an empty HOME.
    fn run(&self) -> Result<Output, Box<dyn std::error::Error>> {
        let mut command = self.runner();
        command.arg("--once");
        let started = std::time::Instant::now();
        let output = assert_cmd::Command::from_std(command)
            .timeout(RUNNER_DEADLINE)
            .output()?;
        eprintln!(
            "runner on {} took {:.1} s",
            self.queue,
            started.elapsed().as_secs_f64()
        );
        Ok(output)
    }

    /// The runner on this client's queue, with an empty HOME.
    fn runner(&self) -> Command {
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("runner"));
        command
            .args(&self.runner_args)
            .arg("--work-dir")
            .arg(self.root.join("work"))
            .arg("--venv-cache")
            .arg(venv_cache())
            .args(["--queue-match", &format!("^{}$", self.queue)])
            .env("HOME", self.root.join("runner-home"))
            .env("RUNNER_LOG_FORMAT", "text")
            .env_remove("CUDA_VISIBLE_DEVICES")
            .env_remove("NVIDIA_VISIBLE_DEVICES");
        match &self.transport {
            Transport::RabbitMq { url, management } => {
                command.args(["--amqp-url", url, "--amqp-mgt-url", management]);
            }
            Transport::Sqs => {
                command.arg("--sqs");
            }
            Transport::Local => {
                // The client's queue root, exactly where the client writes.
                command
                    .arg("--queue-root")
                    .arg(self.root.join("client-home/.studioml/queue"));
            }
        }
        command
    }

    /// What the client's API reads back for `keys`.
    fn read_back(&self, keys: &[String]) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let output = self
            .client("python")
            .arg("-c")
            .arg(READ_BACK)
            .arg(self.root.join("config.yaml"))
            .args(keys)
            .output()?;
        assert!(
            output.status.success(),
            "reading back failed:\n{}",
            both(&output)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let last = text.lines().last().unwrap_or_default();
        Ok(serde_json::from_str(last)?)
    }

    /// The runner's HOME holds nothing.
    fn assert_runner_home_untouched(&self) -> TestResult {
        let left: Vec<_> = fs::read_dir(self.root.join("runner-home"))?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        assert!(left.is_empty(), "the runner wrote into its HOME: {left:?}");
        Ok(())
    }

    /// Submit `train.py alpha beta` (with `extra` flags), run it, read it
    /// back and check every experiment's output and model; `rates` are the
    /// `learning_rate`s the experiments print, in any order.
    fn round_trip(&self, extra: &[&str], rates: &[&str]) -> TestResult {
        let _guard = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let keys = self.submit(extra)?;
        assert_eq!(keys.len(), rates.len(), "experiments submitted: {keys:?}");
        let output = self.run()?;
        let log = both(&output);
        assert!(output.status.success(), "the runner failed:\n{log}");
        for key in &keys {
            assert!(
                log.contains(&format!("experiment {key}: Succeeded")),
                "{key} did not succeed:\n{log}"
            );
        }
        let found = self.read_back(&keys)?;
        let mut seen_rates = Vec::new();
        for key in &keys {
            let experiment = &found[key];
            let output = experiment["output"].as_str().unwrap_or_default();
            for expected in [
                "args ['alpha', 'beta']",
                "to stderr",
                "greeting hello from the config",
            ] {
                assert!(
                    output.contains(expected),
                    "{key}: no {expected:?} in\n{output}"
                );
            }
            let rate = rates
                .iter()
                .find(|rate| output.contains(&format!("rate {rate}\n")))
                .ok_or_else(|| format!("{key}: none of the rates {rates:?} in\n{output}"))?;
            assert_eq!(
                experiment["model"].as_str(),
                Some(format!("weights {rate}").as_str()),
                "{key}: the model saved in fs_tracker.get_model_directory()"
            );
            seen_rates.push(*rate);
        }
        seen_rates.sort_unstable();
        let mut expected_rates = rates.to_vec();
        expected_rates.sort_unstable();
        assert_eq!(seen_rates, expected_rates);
        self.assert_runner_home_untouched()
    }
}

/// The venv cache every test here shares (once per target directory).
fn venv_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("studioml-venvs")
}

fn both(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn rabbitmq() -> Option<Transport> {
    Some(Transport::RabbitMq {
        url: service(Service::Amqp)?,
        management: service(Service::AmqpManagement)?,
    })
}

#[test]
fn the_client_over_rabbitmq() -> TestResult {
    let Some(transport) = rabbitmq() else {
        return Ok(());
    };
    let Some(client) = Client::new("rmq", transport)? else {
        return Ok(());
    };
    client.round_trip(&[], &["0.5"])
}

#[test]
fn the_client_over_sqs() -> TestResult {
    if service(Service::Aws).is_none() {
        return Ok(());
    }
    let Some(client) = Client::new("sqs", Transport::Sqs)? else {
        return Ok(());
    };
    client.round_trip(&[], &["0.5"])
}

#[test]
fn the_client_over_its_local_queue() -> TestResult {
    let Some(client) = Client::new("local", Transport::Local)? else {
        return Ok(());
    };
    client.round_trip(&[], &["0.5"])
}

#[test]
fn a_hyperparameter_search_runs_every_experiment() -> TestResult {
    let Some(client) = Client::new("hyper", Transport::Local)? else {
        return Ok(());
    };
    client.round_trip(
        &["--hyperparam=learning_rate=0.25,0.75,1.5"],
        &["0.25", "0.75", "1.5"],
    )
}

/// Message privacy on: the client encrypts and signs, the runner verifies,
/// decrypts and runs it, the client reads the results back.
#[test]
fn an_encrypted_signed_request_runs_over_the_local_queue() -> TestResult {
    let Some(client) = Client::new("enc-local", Transport::Local)? else {
        return Ok(());
    };
    let client = client.encrypted(&keys("client-signing.pub"))?;
    client.round_trip(&[], &["0.5"])
}

#[test]
fn an_encrypted_signed_request_runs_over_rabbitmq() -> TestResult {
    let Some(transport) = rabbitmq() else {
        return Ok(());
    };
    let Some(client) = Client::new("enc-rmq", transport)? else {
        return Ok(());
    };
    let client = client.encrypted(&keys("client-signing.pub"))?;
    client.round_trip(&[], &["0.5"])
}

/// What the client sends that must not run is dead-lettered with the
/// reason: signed by a key not registered for the queue's prefix, tampered
/// with on the queue, clear text under `--clear-text-messages=false`.
#[test]
fn requests_that_must_not_run_are_dead_lettered() -> TestResult {
    let Some(client) = Client::new("enc-dead", Transport::Local)? else {
        return Ok(());
    };
    // Another key is registered for `local_`.
    let client = client.encrypted(&keys("other-signing.pub"))?;
    let run_and_expect = |count: usize, reason: &str| -> TestResult {
        let output = client.run()?;
        let log = both(&output);
        assert!(output.status.success(), "the runner failed:\n{log}");
        let reasons = client.dead_letters();
        assert_eq!(reasons.len(), count, "{reasons:?}\n{log}");
        assert!(
            reasons
                .iter()
                .filter(|found| found.contains(reason))
                .count()
                >= 1,
            "no dead letter says {reason:?}: {reasons:?}\n{log}"
        );
        assert!(!log.contains("Succeeded"), "{log}");
        Ok(())
    };
    client.submit(&[])?;
    run_and_expect(
        1,
        "does not verify with the signing key registered for queue",
    )?;

    // The right key, but the payload changed on the queue.
    fs::copy(
        keys("client-signing.pub"),
        client.root.join("signatures/local_"),
    )?;
    client.submit(&[])?;
    let queued: Vec<PathBuf> = fs::read_dir(client.local_queue())?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    assert_eq!(queued.len(), 1, "{queued:?}");
    for path in &queued {
        let body = fs::read_to_string(path)?;
        fs::write(path, crate::envelope::tampered(&body)?)?;
    }
    run_and_expect(2, "tampered with")?;

    // Privacy off on the client: clear text.
    client.set_privacy(false)?;
    client.submit(&[])?;
    run_and_expect(3, "the request is not encrypted")
}

/// A key added to the signatures directory while the runner runs is used
/// for the next request (as a Kubernetes Secret updates in place).
#[test]
fn a_signing_key_added_while_running_is_used_for_the_next_request() -> TestResult {
    let Some(client) = Client::new("enc-added", Transport::Local)? else {
        return Ok(());
    };
    let client = client.encrypted(&keys("other-signing.pub"))?;
    fs::remove_file(client.root.join("signatures/local_"))?;
    let _guard = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let log_path = client.root.join("runner.log");
    let mut runner = client
        .runner()
        .stderr(fs::File::create(&log_path)?)
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let result = (|| -> TestResult {
        client.submit(&[])?;
        let deadline = std::time::Instant::now() + Duration::from_mins(1);
        while client.dead_letters().is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let reasons = client.dead_letters();
        assert!(
            reasons.len() == 1 && reasons[0].contains("no signing key is registered"),
            "{reasons:?}\n{}",
            fs::read_to_string(&log_path)?
        );
        fs::copy(
            keys("client-signing.pub"),
            client.root.join("signatures/local_tmp"),
        )?;
        fs::rename(
            client.root.join("signatures/local_tmp"),
            client.root.join("signatures/local_"),
        )?;
        let keys = client.submit(&[])?;
        let done = format!("experiment {}: Succeeded", keys[0]);
        let deadline = std::time::Instant::now() + RUNNER_DEADLINE;
        loop {
            let log = fs::read_to_string(&log_path)?;
            if log.contains(&done) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline && !log.contains("Failed"),
                "{done:?} not in\n{log}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let found = client.read_back(&keys)?;
        let output = found[&keys[0]]["output"].as_str().unwrap_or_default();
        assert!(output.contains("rate 0.5"), "{output}");
        assert_eq!(client.dead_letters().len(), 1);
        Ok(())
    })();
    let pid = rustix::process::Pid::from_raw(i32::try_from(runner.id())?).ok_or("no pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    runner.wait()?;
    result
}

/// The dead-letter reasons of `<queue>.dead` on the broker at `url` (taken).
fn rabbitmq_dead_letters(
    url: &str,
    queue: &str,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let runtime = sgr_test_support::runtime()?;
    runtime.block_on(async {
        let connection =
            lapin::Connection::connect(url, lapin::ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let mut reasons = Vec::new();
        while let Some(message) = channel
            .basic_get(
                format!("{queue}.dead").as_str().into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await?
        {
            let reason = message
                .delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|headers| headers.inner().get("x-runner-reason").cloned());
            reasons.push(match reason {
                Some(lapin::types::AMQPValue::LongString(text)) => {
                    String::from_utf8_lossy(text.as_bytes()).into_owned()
                }
                other => format!("{other:?}"),
            });
        }
        connection.close(200, "drained".into()).await?;
        Ok(reasons)
    })
}

/// Over RabbitMQ: a request signed by a key not registered for `rmq_` is
/// dead-lettered with the reason, and so is clear text under
/// `--clear-text-messages=false`.
#[test]
fn requests_that_must_not_run_are_dead_lettered_over_rabbitmq() -> TestResult {
    let Some(transport) = rabbitmq() else {
        return Ok(());
    };
    let Transport::RabbitMq { url, .. } = &transport else {
        return Ok(());
    };
    let url = url.clone();
    let Some(client) = Client::new("enc-dead-rmq", transport)? else {
        return Ok(());
    };
    let client = client.encrypted(&keys("other-signing.pub"))?;
    client.submit(&[])?;
    client.set_privacy(false)?;
    client.submit(&[])?;
    let output = client.run()?;
    let log = both(&output);
    assert!(output.status.success(), "the runner failed:\n{log}");
    assert!(!log.contains("Succeeded"), "{log}");
    let reasons = rabbitmq_dead_letters(&url, &client.queue)?;
    assert_eq!(reasons.len(), 2, "{reasons:?}\n{log}");
    assert!(
        reasons.iter().any(|reason| reason
            .contains("does not verify with the signing key registered for queue")
            && reason.contains("prefix 'rmq_'")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("the request is not encrypted")),
        "{reasons:?}"
    );
    Ok(())
}
