//! The runner's state from Kubernetes config maps (through kube-rs, against
//! the fake API server of test-support) and from `--state-file`: drain
//! while an experiment runs, the node map over the global one, a deleted
//! node map, an invalid value, dropped and compacted watches, terminate when
//! idle, and the status the runner reports.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sgr_test_support::FakeKube;

use crate::cli::{Setup, TestResult};

const NAMESPACE: &str = "studioml";

/// Writes `<key>.start` and `<key>.end` to $MARKS around a nap of $NAP s.
const NAP: &str = r#"
import os, time
marks, key = os.environ["MARKS"], os.environ["KEY"]
open(os.path.join(marks, key + ".start"), "w").write("x")
time.sleep(float(os.environ.get("NAP", "0.2")))
open(os.path.join(marks, key + ".end"), "w").write("x")
"#;

/// The runner's debug line at the end of an intake pass that took nothing.
const PASS: &str = "intake pass: nothing taken";

struct Running {
    setup: Setup,
    child: Child,
    log: PathBuf,
}

impl Running {
    fn start(setup: Setup, extra: &[&str], kubeconfig: Option<&Path>) -> std::io::Result<Self> {
        let log = setup.root.join("runner.log");
        let mut command = setup.command();
        command
            .args(["--node-name", "node-a"])
            .args(extra)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("K8S_NAMESPACE")
            .env_remove("K8S_POD_NAME")
            // The debug line at the end of each intake pass: what a test
            // waits for before it asserts that nothing was taken.
            .env("RUNNER_LOG", "warn,runner=debug")
            .stderr(fs::File::create(&log)?);
        if let Some(path) = kubeconfig {
            command.env("KUBECONFIG", path);
        }
        let child = command.spawn()?;
        Ok(Self { setup, child, log })
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait until the log says `text` (at most 30 s).
    fn said(&self, text: &str) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.log().contains(text) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "the runner never said {text:?}; its log:\n{}",
            self.log()
        ))
    }

    /// How many intake passes that took nothing the log shows so far.
    fn passes(&self) -> usize {
        self.log().matches(PASS).count()
    }

    /// Wait (at most 30 s) until the log shows two more passes than
    /// `before`: the second of them began after `before` was counted, so
    /// whatever was published before then was there for it to take.
    fn passed_since(&self, before: usize) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.passes() >= before + 2 {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!(
            "the runner never ended two intake passes after the {before} it had; its log:\n{}",
            self.log()
        ))
    }

    fn publish(&self, key: &str) -> std::io::Result<()> {
        let store = self.setup.root.join("store");
        let marks = self.setup.root.join("marks");
        self.setup.publish(
            &format!("{key}.json"),
            &format!(
                r#"{{"config": {{"env": {{"MARKS": "{}", "KEY": "{key}", "NAP": "{}"}}}},
                   "experiment": {{"key": "{key}", "filename": "main.py",
                     "resources_needed": {{"cpus": 1, "hdd": "10mb", "ram": "100mb"}},
                     "artifacts": {{"workspace": {{"qualified": "file://{}/workspace.tar", "unpack": true}}}}}}}}"#,
                marks.display(),
                if key.starts_with("long") { "3" } else { "0.2" },
                store.display()
            ),
        )
    }

    fn marked(&self, name: &str) -> bool {
        self.setup.root.join("marks").join(name).exists()
    }

    fn queued(&self) -> Vec<String> {
        self.setup.queue_files("")
    }

    /// Wait for the runner to exit (at most 30 s).
    fn exit(&mut self) -> Result<std::process::ExitStatus, String> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().map_err(|error| error.to_string())? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(format!("the runner did not exit; its log:\n{}", self.log()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prepare() -> Result<Setup, Box<dyn std::error::Error>> {
    let setup = Setup::new()?;
    setup.workspace(NAP)?;
    fs::create_dir_all(setup.root.join("marks"))?;
    Ok(setup)
}

fn config_map(name: &str, data: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": NAMESPACE}, "data": data})
}

fn cluster(setup: &Setup) -> Result<(FakeKube, PathBuf), Box<dyn std::error::Error>> {
    let kube = FakeKube::start()?;
    let path = setup.root.join("kubeconfig");
    fs::write(&path, kube.kubeconfig("runner-token"))?;
    Ok((kube, path))
}

/// The runner's report in the status map, once it says `state`.
fn reported(kube: &FakeKube, state: &str, running: usize) -> Result<Value, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = Value::Null;
    while Instant::now() < deadline {
        if let Some(map) = kube.object("configmaps", NAMESPACE, "studioml-go-runner-status") {
            last = serde_json::from_str(map["data"]["node-a"].as_str().unwrap_or("null"))
                .unwrap_or(Value::Null);
            if last["state"] == state
                && last["running"].as_object().map_or(0, serde_json::Map::len) == running
            {
                return Ok(last);
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "the status map never showed {state} with {running} running: {last}"
    ))
}

/// `DrainAndSuspend` while an experiment runs: it finishes and is acked, the
/// next message is not taken; Running takes it; `DrainAndTerminate` on the
/// node map makes the idle runner exit 0. The status map follows.
#[test]
fn drain_suspend_resume_and_terminate_from_config_maps() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = prepare()?;
    let (kube, kubeconfig) = cluster(&setup)?;
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("studioml-go-runner", &json!({"STATE": "Running"})),
    );
    let mut runner = Running::start(
        setup,
        &["--kubernetes", "--namespace", NAMESPACE],
        Some(&kubeconfig),
    )?;
    runner.said("following ConfigMaps studioml/studioml-go-runner and studioml/node-a")?;
    runner.publish("long-1")?;
    let deadline = Instant::now() + Duration::from_mins(2);
    while !runner.marked("long-1.start") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let report = reported(&kube, "Running", 1)?;
    assert!(report["running"]["long-1"].is_string(), "{report}");

    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("studioml-go-runner", &json!({"STATE": "DrainAndSuspend"})),
    );
    runner.said("state: Running -> DrainAndSuspend (ConfigMap studioml/studioml-go-runner)")?;
    runner.publish("next")?;
    runner.said("experiment long-1: Succeeded")?;
    runner.passed_since(runner.passes())?;
    assert_eq!(runner.queued(), ["next.json"], "{}", runner.log());
    assert!(!runner.marked("next.start"));
    reported(&kube, "DrainAndSuspend", 0)?;

    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("studioml-go-runner", &json!({"STATE": "Running"})),
    );
    runner.said("experiment next: Succeeded")?;
    assert!(runner.queued().is_empty());

    // DrainAndTerminate while an experiment runs: it finishes, then the runner exits.
    runner.publish("long-2")?;
    let deadline = Instant::now() + Duration::from_mins(1);
    while !runner.marked("long-2.start") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("node-a", &json!({"STATE": "DrainAndTerminate"})),
    );
    runner.said("state: Running -> DrainAndTerminate")?;
    assert!(runner.exit()?.success());
    assert!(
        runner.marked("long-2.end"),
        "the running experiment finished first"
    );
    assert!(runner.log().contains("experiment long-2: Succeeded"));
    assert!(
        runner
            .log()
            .contains("DrainAndTerminate and no experiment running: exiting")
    );
    // The runner only read maps and patched its status: no token or map leaked.
    for (method, path, _) in kube.received() {
        assert!(
            method == "GET" || (method == "PATCH" && path.contains("studioml-go-runner-status")),
            "{method} {path}"
        );
    }
    Ok(())
}

/// The node map overrides the global one key by key; an invalid STATE is
/// ignored with the last good state kept; after the watch connections drop
/// and history is compacted (410 Gone), deleting the node map brings the
/// global state back.
#[test]
fn node_map_over_global_invalid_values_and_watch_resumption() -> TestResult {
    let setup = prepare()?;
    let (kube, kubeconfig) = cluster(&setup)?;
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map(
            "studioml-go-runner",
            &json!({"STATE": "DrainAndSuspend", "QUEUE_MATCH": "^local_"}),
        ),
    );
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("other-node", &json!({"STATE": "DrainAndTerminate"})),
    );
    let runner = Running::start(
        setup,
        &["--kubernetes", "--namespace", NAMESPACE],
        Some(&kubeconfig),
    )?;
    runner.said("state: Running -> DrainAndSuspend (ConfigMap studioml/studioml-go-runner)")?;
    runner.said("QUEUE_MATCH: ^local_")?;

    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("node-a", &json!({"STATE": "Running"})),
    );
    runner.said(
        "state: DrainAndSuspend -> Running (ConfigMaps studioml/studioml-go-runner and studioml/node-a)",
    )?;
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("node-a", &json!({"STATE": "Paused"})),
    );
    runner.said("ignoring STATE from ConfigMaps studioml/studioml-go-runner and studioml/node-a: 'Paused' is not a state")?;
    reported(&kube, "Running", 0)?;

    kube.remove("configmaps", NAMESPACE, "node-a");
    // The same line as at start-up, a second time.
    let deadline = Instant::now() + Duration::from_secs(30);
    while runner
        .log()
        .matches("state: Running -> DrainAndSuspend (ConfigMap studioml/studioml-go-runner)")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "{}", runner.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    reported(&kube, "DrainAndSuspend", 0)?;

    // The API server drops every watch and forgets its history: the watch
    // comes back (410 Gone, then a fresh list) and sees the next change.
    kube.drop_watches();
    kube.compact();
    kube.put(
        "configmaps",
        NAMESPACE,
        config_map("studioml-go-runner", &json!({"STATE": "Running"})),
    );
    runner.said("state: DrainAndSuspend -> Running (ConfigMap studioml/studioml-go-runner)")?;
    runner.said("QUEUE_MATCH: back to the flag's")?;
    reported(&kube, "Running", 0)?;
    Ok(())
}

/// Without Kubernetes: the same states from `--state-file`.
#[test]
fn the_state_file_drains_and_terminates() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = prepare()?;
    let state = setup.root.join("state");
    fs::write(&state, "DrainAndSuspend\n")?;
    let state_arg = state.to_string_lossy().into_owned();
    let mut runner = Running::start(setup, &["--state-file", &state_arg], None)?;
    runner.said("state: Running -> DrainAndSuspend (state file")?;
    runner.publish("waiting")?;
    runner.passed_since(runner.passes())?;
    assert_eq!(runner.queued(), ["waiting.json"]);
    fs::write(&state, "# back to work\nSTATE=Running\n")?;
    runner.said("experiment waiting: Succeeded")?;
    fs::write(&state, "DrainAndTerminate")?;
    assert!(runner.exit()?.success());
    Ok(())
}
