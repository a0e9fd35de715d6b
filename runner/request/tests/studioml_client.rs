//! The request exactly as the `StudioML` Python client 0.0.49 writes it
//! (`studio run --queue local_cap train.py alpha beta`, captured from its
//! local queue; only the credentials were replaced by fakes): every field
//! it writes, its units and its `null`s must be read, and the fields the
//! runner has no use for must never refuse a request whatever they hold.

use std::time::Duration;

use runner_request::{Request, RequestError};
use serde_json::{Value, json};

const CLIENT_REQUEST: &str = include_str!("fixtures/studioml-0.0.49.json");

fn client_request() -> Value {
    serde_json::from_str(CLIENT_REQUEST).unwrap_or_default()
}

/// The client's request with the value at `pointer` (`/experiment/git`)
/// replaced.
fn with(pointer: &str, value: Value) -> Vec<u8> {
    let mut document = client_request();
    match document.pointer_mut(pointer) {
        Some(slot) => *slot = value,
        None => panic!("the client's request has no {pointer}"),
    }
    serde_json::to_vec(&document).unwrap_or_default()
}

#[test]
fn the_fixture_is_what_the_client_wrote() {
    // One line of `json.dumps` output, no newline, the fake credentials only.
    assert!(!CLIENT_REQUEST.contains('\n'));
    assert!(CLIENT_REQUEST.starts_with(r#"{"experiment": {"key": ""#));
    assert_eq!(CLIENT_REQUEST.matches("FAKE-secret-access-key").count(), 9);
}

#[test]
fn the_client_request_parses_whole() -> Result<(), RequestError> {
    let request = Request::parse(CLIENT_REQUEST.as_bytes())?;
    let experiment = &request.experiment;
    assert_eq!(
        experiment.key,
        "1796017734_16146dc8-d23d-4432-951c-44a75aadf666"
    );
    assert_eq!(experiment.filename, "train.py");
    assert_eq!(experiment.args, ["alpha", "beta"]);
    assert_eq!(experiment.pythonver, "3.11");
    assert_eq!(experiment.pythonenv.len(), 75);
    assert!(
        experiment
            .pythonenv
            .iter()
            .any(|entry| entry == "studioml==0.0.49")
    );
    assert_eq!(experiment.resources_needed.cpus, 1);
    assert_eq!(experiment.resources_needed.gpus, 0);
    assert_eq!(request.ram(), 1_000_000_000, "ram: \"1g\"");
    assert_eq!(request.hdd(), 2_000_000_000, "hdd: \"2g\"");
    assert_eq!(experiment.max_duration(), None, "max_duration: null");
    assert!(experiment.time_added().is_some());
    assert_eq!(
        experiment.artifacts.keys().collect::<Vec<_>>(),
        [
            "_metadata",
            "_metrics",
            "modeldir",
            "output",
            "retval",
            "tb",
            "workspace"
        ]
    );
    let workspace = &experiment.artifacts["workspace"];
    assert!(!workspace.mutable && workspace.unpack);
    assert_eq!(workspace.bucket, "studioml-artifacts-cap");
    assert!(
        workspace.key.starts_with("blobstore/")
            && workspace
                .key
                .rsplit_once('.')
                .map(|(_, extension)| extension)
                == Some("tar")
    );
    assert!(
        workspace
            .qualified
            .starts_with("s3://127.0.0.1:50675/studioml-artifacts-cap/blobstore/")
    );
    let aws = workspace
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.aws.as_ref());
    assert_eq!(
        aws.map(|aws| aws.access_key.as_str()),
        Some("FAKE-access-key")
    );
    assert_eq!(aws.map(|aws| aws.region.as_str()), Some("us-east-1"));
    let modeldir = &experiment.artifacts["modeldir"];
    assert!(modeldir.mutable && modeldir.unpack);
    assert_eq!(
        modeldir.key,
        "experiments/1796017734_16146dc8-d23d-4432-951c-44a75aadf666/modeldir.tar"
    );
    assert_eq!(request.config.env["GREETING"], "hello");
    assert_eq!(
        request.config.experiment_lifetime(),
        Some(Duration::from_mins(30))
    );
    assert_eq!(
        request.config.save_workspace_frequency(),
        Some(Duration::from_mins(3))
    );
    assert!(request.config.pip.is_empty());
    let shown = format!("{request:?}");
    assert!(!shown.contains("FAKE-secret-access-key"), "{shown}");
    Ok(())
}

/// Every field the client may leave `null` (it writes `None` for each value
/// it has none for), one at a time and all at once.
const CLIENT_NULLABLE: &[&str] = &[
    "/experiment/project",
    "/experiment/status",
    "/experiment/time_added",
    "/experiment/time_started",
    "/experiment/time_last_checkpoint",
    "/experiment/time_finished",
    "/experiment/info",
    "/experiment/git",
    "/experiment/metric",
    "/experiment/max_duration",
    "/experiment/owner",
    "/experiment/from_compl_service",
    "/experiment/pythonver",
    "/experiment/pythonenv",
    "/experiment/args",
    "/experiment/resources_needed/gpus",
    "/experiment/resources_needed/cpus",
    "/experiment/artifacts/output/local",
    "/experiment/artifacts/output/credentials",
    "/experiment/artifacts/modeldir/key",
    "/experiment/artifacts/modeldir/bucket",
    "/experiment/artifacts/_metadata",
    "/config/env",
    "/config/verbose",
    "/config/database",
    "/config/storage",
    "/config/saveWorkspaceFrequency",
    "/config/experimentLifetime",
];

#[test]
fn every_null_the_client_may_write_is_read() {
    for pointer in CLIENT_NULLABLE {
        let body = with(pointer, Value::Null);
        assert!(
            Request::parse(&body).is_ok(),
            "{pointer}: null refused: {:?}",
            Request::parse(&body).err()
        );
    }
    let mut document = client_request();
    for pointer in CLIENT_NULLABLE {
        if let Some(slot) = document.pointer_mut(pointer) {
            *slot = Value::Null;
        }
    }
    let request = Request::parse(&serde_json::to_vec(&document).unwrap_or_default());
    assert!(request.is_ok(), "{:?}", request.err());
}

#[test]
fn the_values_the_client_writes_when_it_has_them_are_read() -> Result<(), RequestError> {
    // --project, a clean git checkout, --metric, --max-duration, a run that
    // started and checkpointed, the information the client's database adds.
    for (pointer, value) in [
        ("/experiment/project", json!("moonshot")),
        (
            "/experiment/git",
            json!({"url": "git@github.com:studioml/studio.git", "commit": "0123abcd"}),
        ),
        ("/experiment/metric", json!("val_loss:min")),
        ("/experiment/status", json!("running")),
        ("/experiment/time_started", json!(1_796_017_800.5)),
        ("/experiment/time_finished", json!(1_796_017_900.25)),
        (
            "/experiment/info",
            json!({"logtail": ["a", "b"], "metric_value": 0.5}),
        ),
        ("/experiment/from_compl_service", json!(true)),
        ("/experiment/owner", json!("guest")),
    ] {
        let body = with(pointer, value.clone());
        assert!(
            Request::parse(&body).is_ok(),
            "{pointer}: {value} refused: {:?}",
            Request::parse(&body).err()
        );
    }
    let request = Request::parse(&with("/experiment/max_duration", json!("48h2m10s")))?;
    assert_eq!(
        request.experiment.max_duration(),
        Some(Duration::from_secs(48 * 3600 + 2 * 60 + 10))
    );
    Ok(())
}

#[test]
fn the_hardware_flags_of_the_client_are_read() -> Result<(), RequestError> {
    // `--gpus 1 --cpus 2 --ram 10G --hdd 10GB --gpuMem 4G --gpuCount 1`:
    // argparse makes `gpus`/`cpus` ints and the rest strings.
    let request = Request::parse(&with(
        "/experiment/resources_needed",
        json!({"gpus": 1, "cpus": 2, "ram": "10G", "hdd": "10GB", "gpuMem": "4G", "gpuCount": "1"}),
    ))?;
    let needed = &request.experiment.resources_needed;
    assert_eq!((needed.gpus, needed.cpus), (1, 2));
    assert_eq!(request.ram(), 10_000_000_000);
    assert_eq!(request.hdd(), 10_000_000_000);
    assert_eq!(needed.gpu_memory(), 4_000_000_000);
    Ok(())
}

#[test]
fn pythonver_as_the_client_writes_it() -> Result<(), RequestError> {
    for (written, read) in [
        (json!("3.11"), "3.11"),
        (json!("3.8"), "3.8"),
        (json!(3), "3"),
    ] {
        let request = Request::parse(&with("/experiment/pythonver", written))?;
        assert_eq!(request.experiment.pythonver, read);
    }
    Ok(())
}

#[test]
fn a_hyperparameter_experiment_is_read() -> Result<(), RequestError> {
    // `--hyperparam`: the workspace is a per-experiment copy, mutable, with
    // `unpack: null` (the client's Artifact was made without it), and the
    // key carries `__opt__`.
    let mut document = client_request();
    if let Some(experiment) = document.pointer_mut("/experiment") {
        experiment["key"] = json!("f00d__opt__0123456789abcdefghijklmnopqrstuv__1796017734");
        experiment["project"] = json!("hyperparam_f00d");
        experiment["artifacts"]["workspace"]["mutable"] = json!(true);
        experiment["artifacts"]["workspace"]["unpack"] = Value::Null;
        experiment["artifacts"]["workspace"]["key"] = json!(
            "experiments/f00d__opt__0123456789abcdefghijklmnopqrstuv__1796017734/workspace.tar"
        );
    }
    // ... and the client forgets its credentials: they come from
    // `config.storage`.
    if let Some(workspace) = document.pointer_mut("/experiment/artifacts/workspace") {
        workspace
            .as_object_mut()
            .map(|workspace| workspace.remove("credentials"));
    }
    let request = Request::parse(&serde_json::to_vec(&document).unwrap_or_default())?;
    let workspace = &request.experiment.artifacts["workspace"];
    assert!(workspace.mutable);
    assert!(workspace.unpack, "unpack: null is the client's tar archive");
    let aws = workspace
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.aws.as_ref());
    assert_eq!(
        aws.map(|aws| aws.access_key.as_str()),
        Some("FAKE-access-key")
    );
    assert_eq!(
        aws.map(|aws| aws.secret_access_key.as_str()),
        Some("FAKE-secret-access-key")
    );
    Ok(())
}

#[test]
fn a_config_without_resources_is_refused_with_the_field() {
    // A config.yaml with no `resources_needed` and no --ram/--hdd flags makes
    // the client send `{}`: refused (dead-lettered) with the missing field
    // named, where the original requeued it for ever. docs/studioml.md tells
    // users to set them.
    assert_eq!(
        Request::parse(&with("/experiment/resources_needed", json!({}))).err(),
        Some(RequestError::Missing("experiment.resources_needed.ram"))
    );
}

#[test]
fn the_demo_request_has_the_client_shape() -> Result<(), RequestError> {
    // examples/demo.sh fills in the store and the Python version.
    let demo = include_str!("../../../examples/runner/request.json")
        .replace("@STORE@", "/tmp/store")
        .replace("@PYTHONVER@", "3.11");
    let demo: Value = serde_json::from_str(&demo).unwrap_or_default();
    let client = client_request();
    let fields = |value: &Value| -> Vec<String> {
        value
            .as_object()
            .map(|object| object.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(fields(&demo), fields(&client));
    assert_eq!(fields(&demo["experiment"]), fields(&client["experiment"]));
    assert_eq!(
        fields(&demo["experiment"]["artifacts"]),
        fields(&client["experiment"]["artifacts"])
    );
    let request = Request::parse(&serde_json::to_vec(&demo).unwrap_or_default())?;
    assert_eq!(request.experiment.pythonver, "3.11");
    Ok(())
}
