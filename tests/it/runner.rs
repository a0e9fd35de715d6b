//! `sgr runner state` and `sgr runner status` against the fake API server:
//! the state maps written with server-side apply (other keys kept), a node
//! map created and cleared, the runners' reports listed with stale ones
//! marked, and the usage errors.

use std::time::Duration;

use predicates::prelude::*;
use predicates::str::contains;
use serde_json::{Value, json};
use sgr_test_support::FakeKube;

use crate::common::{TestResult, sgr_command};

const NAMESPACE: &str = "studioml";

struct Fixture {
    _directory: tempfile::TempDir,
    kube: FakeKube,
    kubeconfig: std::path::PathBuf,
}

fn fixture() -> Result<Fixture, Box<dyn std::error::Error>> {
    let directory = tempfile::tempdir()?;
    let kube = FakeKube::start()?;
    let kubeconfig = directory.path().join("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig("operator-token"))?;
    Ok(Fixture {
        _directory: directory,
        kube,
        kubeconfig,
    })
}

impl Fixture {
    fn sgr(&self, args: &[&str]) -> assert_cmd::Command {
        let mut command = sgr_command();
        command
            .arg("runner")
            .args(args)
            .args(["--namespace", NAMESPACE])
            .env("KUBECONFIG", &self.kubeconfig)
            .timeout(Duration::from_mins(1));
        command
    }

    fn data(&self, name: &str) -> Value {
        self.kube
            .object("configmaps", NAMESPACE, name)
            .map_or(Value::Null, |map| map["data"].clone())
    }
}

fn config_map(name: &str, data: &Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": NAMESPACE}, "data": data})
}

#[test]
fn state_sets_the_global_and_node_maps() -> TestResult {
    let fixture = fixture()?;
    fixture.kube.put(
        "configmaps",
        NAMESPACE,
        config_map(
            "studioml-go-runner",
            &json!({"STATE": "Running", "QUEUE_MATCH": "^rmq_gpu"}),
        ),
    );
    fixture
        .sgr(&["state", "DrainAndSuspend"])
        .assert()
        .success()
        .stdout(contains(
            "studioml/studioml-go-runner: STATE Running -> DrainAndSuspend",
        ));
    assert_eq!(
        fixture.data("studioml-go-runner"),
        json!({"STATE": "DrainAndSuspend", "QUEUE_MATCH": "^rmq_gpu"}),
        "only STATE changes"
    );
    fixture
        .sgr(&["state", "DrainAndSuspend"])
        .assert()
        .success()
        .stdout(contains("STATE is already DrainAndSuspend"));

    let output = fixture
        .sgr(&[
            "state",
            "--node",
            "gpu-node-3",
            "DrainAndTerminate",
            "--output",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let result: Value = serde_json::from_slice(&output)?;
    assert_eq!(result["map"], "gpu-node-3");
    assert_eq!(result["state"], "DrainAndTerminate");
    assert_eq!(result["previous"], Value::Null);
    assert_eq!(
        fixture.data("gpu-node-3"),
        json!({"STATE": "DrainAndTerminate"})
    );

    fixture
        .sgr(&["state", "--node", "gpu-node-3", "--clear"])
        .assert()
        .success()
        .stdout(contains(
            "STATE DrainAndTerminate removed; the global state applies",
        ));
    assert_eq!(fixture.data("gpu-node-3"), json!({}));

    // A dry run changes nothing and needs no cluster.
    let before = fixture.kube.received().len();
    sgr_command()
        .args([
            "runner",
            "state",
            "Running",
            "--dry-run",
            "--namespace",
            NAMESPACE,
        ])
        .env("KUBECONFIG", "/nonexistent")
        .assert()
        .success()
        .stdout(contains(
            "would set studioml/studioml-go-runner: STATE=Running",
        ));
    assert_eq!(fixture.kube.received().len(), before);
    assert_eq!(
        fixture.data("studioml-go-runner")["STATE"],
        "DrainAndSuspend"
    );
    Ok(())
}

#[test]
fn status_lists_what_runners_reported() -> TestResult {
    let fixture = fixture()?;
    fixture
        .sgr(&["status"])
        .assert()
        .success()
        .stdout(contains("STATE (not set: Running)"))
        .stdout(contains("no runner has reported"));
    let now = jiff::Timestamp::now();
    let fresh = json!({"state": "DrainAndSuspend", "since": now.to_string(),
                       "running": {"exp-7": now.to_string()}, "updated": now.to_string()})
    .to_string();
    let old = (now - jiff::SignedDuration::from_mins(10)).to_string();
    let stale =
        json!({"state": "Running", "since": old, "running": {}, "updated": old}).to_string();
    fixture.kube.put(
        "configmaps",
        NAMESPACE,
        config_map("studioml-go-runner", &json!({"STATE": "DrainAndSuspend"})),
    );
    fixture.kube.put(
        "configmaps",
        NAMESPACE,
        config_map(
            "studioml-go-runner-status",
            &json!({"runner-a": fresh, "runner-b": stale}),
        ),
    );
    fixture
        .sgr(&["status"])
        .assert()
        .success()
        .stdout(contains(
            "studioml/studioml-go-runner: STATE DrainAndSuspend",
        ))
        .stdout(contains("RUNNER").and(contains("RUNNING")))
        .stdout(contains("runner-a").and(contains("exp-7")))
        .stdout(contains("(stale)").count(1));
    let output = fixture
        .sgr(&["status", "--output", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: Value = serde_json::from_slice(&output)?;
    let runners = listed["runners"].as_array().ok_or("no runners")?;
    assert_eq!(runners.len(), 2);
    assert_eq!(runners[0]["runner"], "runner-a");
    assert_eq!(runners[0]["state"], "DrainAndSuspend");
    assert_eq!(runners[0]["stale"], false);
    assert_eq!(runners[1]["stale"], true);
    Ok(())
}

#[test]
fn bad_input_and_no_cluster_are_usage_errors() -> TestResult {
    let fixture = fixture()?;
    fixture
        .sgr(&["state", "Paused"])
        .assert()
        .code(2)
        .stderr(contains("invalid value 'Paused'"));
    fixture
        .sgr(&["state", "--node", "Bad_Name", "Running"])
        .assert()
        .code(2)
        .stderr(contains("'Bad_Name' is not a valid config map name"));
    Ok(())
}
