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
use std::sync::Mutex;
use std::time::Duration;

use sgr_test_support::{Service, service};

use crate::cli::TestResult;

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
        }))
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
        let mut command = Command::new(assert_cmd::cargo::cargo_bin!("runner"));
        command
            .arg("--once")
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
