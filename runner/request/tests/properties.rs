//! Properties of the request parser over hostile input: it never panics,
//! and whatever it accepts is within the bounds it promises (the runner
//! relies on those bounds instead of converting raw values itself).

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use runner_request::{
    MAX_ARG_BYTES, MAX_ARGS, MAX_ARGS_TOTAL_BYTES, MAX_ARTIFACTS, MAX_CPUS, MAX_DURATION,
    MAX_ENV_VARIABLES, MAX_FILENAME_BYTES, MAX_GPUS, MAX_KEY_BYTES, MAX_PACKAGES, Policy, Request,
    is_plain_label, is_variable_name,
};
use serde_json::{Map, Number, Value};

const EXAMPLE: &str = include_str!("fixtures/example.json");

/// Every field the parser reads, and a few it ignores.
const POINTERS: &[&str] = &[
    "/config",
    "/config/env",
    "/config/pip",
    "/config/experimentLifetime",
    "/config/saveWorkspaceFrequency",
    "/config/database",
    "/config/database/projectId",
    "/experiment",
    "/experiment/key",
    "/experiment/filename",
    "/experiment/args",
    "/experiment/pythonver",
    "/experiment/pythonenv",
    "/experiment/resources_needed",
    "/experiment/resources_needed/cpus",
    "/experiment/resources_needed/gpus",
    "/experiment/resources_needed/ram",
    "/experiment/resources_needed/hdd",
    "/experiment/resources_needed/gpuMem",
    "/experiment/max_duration",
    "/experiment/time_added",
    "/experiment/time_started",
    "/experiment/git",
    "/experiment/artifacts",
    "/experiment/artifacts/workspace",
    "/experiment/artifacts/output",
    "/experiment/artifacts/output/saveFrequency",
    "/experiment/artifacts/output/mutable",
    "/experiment/artifacts/workspace/credentials",
    "/experiment/artifacts/workspace/credentials/aws",
    "/experiment/artifacts/workspace/credentials/aws/secret_access_key",
    "/experiment/artifacts/workspace/bucket",
    "/experiment/artifacts/workspace/qualified",
];

/// Names the parser knows, so that random objects reach its fields.
const NAMES: &[&str] = &[
    "config",
    "experiment",
    "env",
    "pip",
    "experimentLifetime",
    "saveWorkspaceFrequency",
    "database",
    "projectId",
    "key",
    "filename",
    "args",
    "pythonver",
    "pythonenv",
    "resources_needed",
    "cpus",
    "gpus",
    "ram",
    "hdd",
    "gpuMem",
    "max_duration",
    "time_added",
    "artifacts",
    "workspace",
    "output",
    "..",
    ".",
    "saveFrequency",
    "mutable",
    "unpack",
    "credentials",
    "aws",
    "bucket",
    "qualified",
];

/// Strings shaped like the values the parser reads, and arbitrary ones.
fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{1,30}(\\.[0-9]{0,5})?(h|m|s|ms|us|ns)([0-9]{1,5}(h|m|s))?",
        "[0-9]{1,25}(\\.[0-9]{1,3})?(b|kb|mb|gb|tb|kib|gib|tib)",
        "-?[0-9]{1,320}(\\.[0-9]{0,5})?",
        "(inf|-inf|NaN|1e308|1e309)",
        "[a-zA-Z0-9_.-]{0,10}(==|>=|~=|@|;|/|:)?[ a-zA-Z0-9_.:/\\[\\]\"'<>=-]{0,20}",
        prop::sample::select(NAMES).prop_map(str::to_owned),
    ]
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|float| Number::from_f64(float).map_or(Value::Null, Value::Number)),
        (0.0..1e12_f64).prop_map(Value::from),
    ]
}

/// Any JSON value, up to a few levels deep.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            prop::sample::select(NAMES).prop_map(str::to_owned),
            string()
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key, inner), 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// The example with the value at `pointer` replaced (its last segment
/// escaped as JSON pointers escape: `~0` for `~`, `~1` for `/`).
fn replaced(pointer: &str, value: Value) -> Vec<u8> {
    let mut document: Value = serde_json::from_str(EXAMPLE).unwrap_or_default();
    let (parent, name) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(Value::Object(object)) = document.pointer_mut(parent) {
        object.insert(name.replace("~1", "/").replace("~0", "~"), value);
    }
    serde_json::to_vec(&document).unwrap_or_default()
}

fn within(duration: Option<Duration>) -> bool {
    duration.is_none_or(|duration| duration <= MAX_DURATION)
}

/// Parse under both policies; whatever is accepted must be bounded.
fn parse_and_check(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let mut accepted = false;
    for policy in [Policy::default(), Policy { allow_urls: true }] {
        let Ok(request) = Request::parse_with(bytes, &policy) else {
            continue;
        };
        accepted = true;
        let experiment = &request.experiment;
        prop_assert!(within(experiment.max_duration()));
        prop_assert!(within(request.config.experiment_lifetime()));
        prop_assert!(within(request.config.save_workspace_frequency()));
        for (label, artifact) in &experiment.artifacts {
            prop_assert!(is_plain_label(label), "label {label:?}");
            prop_assert!(within(artifact.save_frequency()));
        }
        prop_assert!(experiment.artifacts.len() <= MAX_ARTIFACTS);
        prop_assert!(experiment.artifacts.contains_key("workspace"));
        if let Some(added) = experiment.time_added() {
            prop_assert!(added <= SystemTime::now() + MAX_DURATION);
        }
        prop_assert!(!experiment.key.trim().is_empty() && experiment.key.len() <= MAX_KEY_BYTES);
        prop_assert!(!experiment.key.chars().any(char::is_control));
        let filename = &experiment.filename;
        prop_assert!(filename.len() <= MAX_FILENAME_BYTES && !filename.starts_with(['/', '-']));
        prop_assert!(!filename.split('/').any(|component| component == ".."));
        prop_assert!(experiment.args.len() <= MAX_ARGS);
        prop_assert!(
            experiment
                .args
                .iter()
                .all(|arg| arg.len() <= MAX_ARG_BYTES && !arg.contains('\0'))
        );
        prop_assert!(
            experiment.args.iter().map(String::len).sum::<usize>() <= MAX_ARGS_TOTAL_BYTES
        );
        prop_assert!(request.config.env.len() <= MAX_ENV_VARIABLES);
        prop_assert!(request.config.env.keys().all(|name| is_variable_name(name)));
        prop_assert!(experiment.pythonenv.len() + request.config.pip.len() <= MAX_PACKAGES);
        for entry in experiment.pythonenv.iter().chain(&request.config.pip) {
            let entry = entry.trim();
            prop_assert!(!entry.starts_with(['-', '.', '/', '~']), "entry {entry:?}");
            if policy == Policy::default() {
                prop_assert!(!entry.contains("://"), "entry {entry:?}");
            }
        }
        prop_assert!(experiment.resources_needed.cpus <= MAX_CPUS);
        prop_assert!(experiment.resources_needed.gpus <= MAX_GPUS);
        prop_assert!(runner_request::parse_size(&experiment.resources_needed.ram).is_some());
        prop_assert!(runner_request::parse_size(&experiment.resources_needed.hdd).is_some());
        let _ = (request.hdd(), experiment.resources_needed.gpu_memory());
    }
    Ok(accepted)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        parse_and_check(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in json()) {
        parse_and_check(&serde_json::to_vec(&value).unwrap_or_default())?;
    }

    #[test]
    fn arbitrary_json_under_request_names_never_panics(
        config in json(), experiment in json(),
    ) {
        let value = serde_json::json!({"config": config, "experiment": experiment});
        parse_and_check(&serde_json::to_vec(&value).unwrap_or_default())?;
    }

    #[test]
    fn the_example_with_one_field_replaced_never_panics(
        pointer in prop::sample::select(POINTERS), value in json(),
    ) {
        parse_and_check(&replaced(pointer, value))?;
    }

    #[test]
    fn the_example_with_a_generated_duration_is_bounded(
        pointer in prop::sample::select(&[
            "/experiment/max_duration",
            "/config/experimentLifetime",
            "/config/saveWorkspaceFrequency",
            "/experiment/artifacts/output/saveFrequency",
            "/experiment/time_added",
        ][..]),
        value in prop_oneof![string().prop_map(Value::String), number()],
    ) {
        parse_and_check(&replaced(pointer, value))?;
    }
}

/// Labels, variable names and requirement entries shaped to pass most
/// checks but one.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        string(),
        "[a-zA-Z0-9_./~ -]{0,6}",
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        "[a-z]{120,140}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn an_extra_artifact_under_any_label_is_bounded(label in name(), mutable in any::<bool>()) {
        let pointer = format!("/experiment/artifacts/{}", label.replace('~', "~0").replace('/', "~1"));
        let accepted = parse_and_check(&replaced(&pointer, serde_json::json!({"mutable": mutable})))?;
        prop_assert_eq!(accepted, is_plain_label(&label), "label {:?}", label);
    }

    #[test]
    fn an_extra_variable_under_any_name_is_bounded(variable in name(), value in string()) {
        let pointer = format!("/config/env/{}", variable.replace('~', "~0").replace('/', "~1"));
        let accepted = parse_and_check(&replaced(&pointer, Value::String(value.clone())))?;
        prop_assert_eq!(accepted, is_variable_name(&variable) && !value.contains('\0'));
    }

    #[test]
    fn any_requirement_entry_is_checked(entry in name()) {
        parse_and_check(&replaced("/experiment/pythonenv", serde_json::json!(["numpy==1.0", entry])))?;
    }
}

/// The example is accepted, so the replacement properties above do
/// exercise the checks on accepted requests (not only rejections).
#[test]
fn the_example_is_accepted() -> Result<(), TestCaseError> {
    prop_assert!(parse_and_check(EXAMPLE.as_bytes())?);
    Ok(())
}
