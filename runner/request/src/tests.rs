use super::*;

/// runner.md §3.1, with an unknown field added and some of the client's
/// nulls.
const EXAMPLE: &str = include_str!("../tests/fixtures/example.json");

fn example() -> serde_json::Value {
    serde_json::from_str(EXAMPLE).unwrap_or_default()
}

/// The example with the value at `pointer` replaced (created in its parent
/// object when absent).
fn with(pointer: &str, value: serde_json::Value) -> Vec<u8> {
    let mut document = example();
    let (parent, name) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    if let Some(serde_json::Value::Object(object)) = document.pointer_mut(parent) {
        object.insert(name.replace("~1", "/").replace("~0", "~"), value);
    } else {
        panic!("no object at {parent}");
    }
    serde_json::to_vec(&document).unwrap_or_default()
}

#[test]
fn the_reference_example_parses() -> Result<(), RequestError> {
    let request = Request::parse(EXAMPLE.as_bytes())?;
    assert_eq!(request.experiment.pythonver, "2");
    assert_eq!(request.experiment.resources_needed.gpus, 2);
    assert_eq!(request.ram(), 2_000_000_000);
    assert_eq!(request.hdd(), 3_000_000_000);
    assert_eq!(
        request.experiment.resources_needed.gpu_memory(),
        2_000_000_000
    );
    assert!(request.config.pip.is_empty());
    assert_eq!(request.config.database.project_id, "moonshot");
    assert!(request.experiment.artifacts["output"].mutable);
    assert_eq!(
        request.experiment.max_duration(),
        Some(Duration::from_mins(20))
    );
    assert_eq!(
        request.config.experiment_lifetime(),
        Some(Duration::from_mins(30))
    );
    assert_eq!(
        request.config.save_workspace_frequency(),
        Some(Duration::from_mins(3))
    );
    assert_eq!(
        request.experiment.artifacts["output"].save_frequency(),
        None
    );
    assert_eq!(
        request.experiment.time_added(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(1_538_073_290.258_281))
    );
    let shown = format!("{:?}", request.experiment.artifacts["workspace"]);
    assert!(
        !shown.contains("s3cr3t-canary") && !shown.contains("AKIA-canary"),
        "{shown}"
    );
    Ok(())
}

#[test]
fn pythonver_is_a_number_or_a_string() -> Result<(), RequestError> {
    let text = EXAMPLE.replace("\"pythonver\": 2", "\"pythonver\": \"3.8\"");
    assert_eq!(Request::parse(text.as_bytes())?.experiment.pythonver, "3.8");
    let text = EXAMPLE.replace("\"pythonver\": 2", "\"pythonver\": 3.11");
    assert_eq!(
        Request::parse(text.as_bytes())?.experiment.pythonver,
        "3.11"
    );
    Ok(())
}

/// Versions as clients send them stay accepted (the refusals are in
/// the validation table).
#[test]
fn pythonver_versions_are_accepted() -> Result<(), RequestError> {
    use serde_json::json;
    for (value, text) in [
        (json!(2), "2"),
        (json!(3), "3"),
        (json!(3.8), "3.8"),
        (json!("3.11"), "3.11"),
        (json!("3.11.4"), "3.11.4"),
        (json!("2.7"), "2.7"),
        (json!(" 3.8 "), " 3.8 "),
        (json!(""), ""),
        (json!(null), ""),
        (json!("9999.9999.9999"), "9999.9999.9999"),
    ] {
        let request = Request::parse(&with("/experiment/pythonver", value))?;
        assert_eq!(request.experiment.pythonver, text);
    }
    Ok(())
}

/// Names that merely look like file endings, and visible Unicode, pass.
#[test]
fn near_misses_are_accepted() -> Result<(), RequestError> {
    use serde_json::json;
    let request = Request::parse(&with(
        "/experiment/pythonenv",
        json!([
            "zipp",
            "wheel>=0.40",
            "tarfile-helper",
            "egg-timer",
            "wheel.whl-tools"
        ]),
    ))?;
    assert_eq!(request.experiment.pythonenv.len(), 5);
    let request = Request::parse(&with("/experiment/key", json!("実験-ü_1")))?;
    assert_eq!(request.experiment.key, "実験-ü_1");
    let request = Request::parse(&with("/experiment/filename", json!("src/модель.py")))?;
    assert_eq!(request.experiment.filename, "src/модель.py");
    Ok(())
}

#[test]
fn bad_requests_say_why() {
    assert!(matches!(
        Request::parse(b"{not json"),
        Err(RequestError::Json(_))
    ));
    let no_ram = EXAMPLE.replace("\"ram\": \"2gb\", ", "");
    assert_eq!(
        Request::parse(no_ram.as_bytes()).err(),
        Some(RequestError::Missing("experiment.resources_needed.ram"))
    );
    let empty_hdd = EXAMPLE.replace("\"hdd\": \"3gb\"", "\"hdd\": \"\"");
    assert_eq!(
        Request::parse(empty_hdd.as_bytes()).err(),
        Some(RequestError::Missing("experiment.resources_needed.hdd"))
    );
    let no_workspace = EXAMPLE.replace("\"workspace\":", "\"elsewhere\":");
    assert_eq!(
        Request::parse(no_workspace.as_bytes()).err(),
        Some(RequestError::Missing("workspace artifact"))
    );
}

#[test]
fn sizes_and_durations() {
    assert_eq!(parse_size("2GiB"), Some(2 * 1024 * 1024 * 1024));
    assert_eq!(parse_size("512mb"), Some(512_000_000));
    assert_eq!(parse_size("1.5gb"), Some(1_500_000_000));
    assert_eq!(parse_size("gb"), None);
    assert_eq!(parse_size("12 parsecs"), None);
    assert_eq!(parse_size("99999999999999999999tb"), None);
    assert_eq!(parse_size("16ei"), None);
    assert_eq!(parse_duration("1h30m"), Some(Duration::from_mins(90)));
    assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
    assert_eq!(parse_duration("3m"), Some(Duration::from_mins(3)));
    assert_eq!(parse_duration("1.5h"), Some(Duration::from_mins(90)));
    assert_eq!(parse_duration("0"), Some(Duration::ZERO));
    assert_eq!(parse_duration("forever"), None);
    assert_eq!(parse_duration(""), None);
    assert_eq!(parse_duration("99999999999999999999h"), None);
    assert_eq!(parse_duration(&"9".repeat(400)), None);
    assert_eq!(parse_seconds("60"), Some(Duration::from_mins(1)));
    assert_eq!(parse_seconds("-1"), None);
    assert_eq!(parse_seconds("inf"), None);
    assert_eq!(parse_seconds("1e300"), None);
}

/// The client sends `null` for every optional value it has none for.
#[test]
fn nulls_are_accepted_wherever_a_value_is_optional() -> Result<(), RequestError> {
    let null = serde_json::Value::Null;
    for pointer in [
        "/config",
        "/config/env",
        "/config/pip",
        "/config/experimentLifetime",
        "/config/saveWorkspaceFrequency",
        "/config/database",
        "/config/database/projectId",
        "/experiment/args",
        "/experiment/pythonver",
        "/experiment/pythonenv",
        "/experiment/max_duration",
        "/experiment/time_added",
        "/experiment/time_started",
        "/experiment/time_finished",
        "/experiment/time_last_checkpoint",
        "/experiment/git",
        "/experiment/metric",
        "/experiment/project",
        "/experiment/info",
        "/experiment/owner",
        "/experiment/resources_needed/gpuMem",
        "/experiment/resources_needed/cpus",
        "/experiment/resources_needed/gpus",
        "/experiment/artifacts/output",
        "/experiment/artifacts/workspace/credentials",
        "/experiment/artifacts/workspace/credentials/aws",
        "/experiment/artifacts/workspace/credentials/aws/region",
        "/experiment/artifacts/workspace/bucket",
        "/experiment/artifacts/workspace/key",
        "/experiment/artifacts/workspace/qualified",
        "/experiment/artifacts/workspace/mutable",
        "/experiment/artifacts/workspace/unpack",
        "/experiment/artifacts/workspace/local",
        "/experiment/artifacts/workspace/saveFrequency",
    ] {
        let request = Request::parse(&with(pointer, null.clone()))
            .map_err(|error| RequestError::Json(format!("{pointer}: {error}")))?;
        assert_eq!(request.experiment.key, "1538073289_3c9acb9b", "{pointer}");
    }
    let request = Request::parse(&with("/experiment/artifacts/output", null.clone()))?;
    assert!(!request.experiment.artifacts.contains_key("output"));
    let request = Request::parse(&with("/experiment/time_added", null.clone()))?;
    assert_eq!(request.experiment.time_added(), None);
    let request = Request::parse(&with("/experiment/max_duration", null))?;
    assert_eq!(request.experiment.max_duration(), None);
    Ok(())
}

/// Numbers where strings are expected and the reverse, as clients and YAML
/// configs write them.
#[test]
fn numbers_and_strings_are_tolerated() -> Result<(), RequestError> {
    let request = Request::parse(&with("/experiment/resources_needed/cpus", "4".into()))?;
    assert_eq!(request.experiment.resources_needed.cpus, 4);
    let request = Request::parse(&with("/experiment/time_added", "1538073290".into()))?;
    assert!(request.experiment.time_added().is_some());
    let request = Request::parse(&with(
        "/experiment/artifacts/output/saveFrequency",
        60.into(),
    ))?;
    assert_eq!(
        request.experiment.artifacts["output"].save_frequency(),
        Some(Duration::from_mins(1))
    );
    let request = Request::parse(&with(
        "/experiment/args",
        serde_json::json!(["--epochs", 3, 0.5]),
    ))?;
    assert_eq!(request.experiment.args, ["--epochs", "3", "0.5"]);
    Ok(())
}

/// The reason for a `pythonver` that is not a version, quoting `value` as
/// the request carries it (a number as its JSON text).
fn pythonver_reason(value: impl Into<serde_json::Value>) -> String {
    let text = match value.into() {
        serde_json::Value::String(text) => text,
        other => other.to_string(),
    };
    format!(
        "experiment.pythonver {text:?} is not a valid Python version (MAJOR, MAJOR.MINOR or MAJOR.MINOR.PATCH)"
    )
}

/// Every rejection, with the exact reason a dead letter carries.
#[test]
#[allow(clippy::too_many_lines)] // One table.
fn validation_table() {
    use serde_json::json;
    let year_and_a_day = "8785h";
    let cases: Vec<(&str, serde_json::Value, String)> = vec![
        ("/experiment/max_duration", json!("99999999999999999999h"),
            r#"experiment.max_duration "99999999999999999999h" is not a valid duration"#.into()),
        ("/experiment/max_duration", json!(year_and_a_day),
            r#"experiment.max_duration: "8785h" is longer than the limit of one year"#.into()),
        ("/experiment/max_duration", json!("twenty minutes"),
            r#"experiment.max_duration "twenty minutes" is not a valid duration"#.into()),
        ("/config/experimentLifetime", json!(year_and_a_day),
            r#"config.experimentLifetime: "8785h" is longer than the limit of one year"#.into()),
        ("/config/saveWorkspaceFrequency", json!("1e9h"),
            r#"config.saveWorkspaceFrequency "1e9h" is not a valid duration"#.into()),
        ("/config/saveWorkspaceFrequency", json!("9000000000h"),
            r#"config.saveWorkspaceFrequency: "9000000000h" is longer than the limit of one year"#.into()),
        ("/experiment/artifacts/output/saveFrequency", json!(1e9),
            r#"experiment.artifacts.output.saveFrequency: "1000000000.0" is longer than the limit of one year"#.into()),
        ("/experiment/artifacts/output/saveFrequency", json!(1e300),
            r#"experiment.artifacts.output.saveFrequency "1e+300" is not a valid number of seconds"#.into()),
        ("/experiment/artifacts/output/saveFrequency", json!(-5),
            r#"experiment.artifacts.output.saveFrequency "-5" is not a valid number of seconds"#.into()),
        ("/experiment/time_added", json!(1e300),
            "experiment.time_added: 1e+300 is more than a year in the future".into()),
        ("/experiment/time_added", json!(-1.5),
            r#"experiment.time_added "-1.5" is not a valid time"#.into()),
        ("/experiment/time_added", json!("inf"),
            r#"experiment.time_added "inf" is not a valid time"#.into()),
        ("/experiment/artifacts/..", json!({"mutable": true}),
            r#"experiment.artifacts: the label ".." is not a plain name ([A-Za-z0-9_.-]+, not '.' or '..', at most 128 bytes)"#.into()),
        ("/experiment/artifacts/.", json!({}),
            r#"experiment.artifacts: the label "." is not a plain name ([A-Za-z0-9_.-]+, not '.' or '..', at most 128 bytes)"#.into()),
        ("/experiment/artifacts/~1etc~1cron.d", json!({}),
            r#"experiment.artifacts: the label "/etc/cron.d" is not a plain name ([A-Za-z0-9_.-]+, not '.' or '..', at most 128 bytes)"#.into()),
        ("/experiment/artifacts/", json!({}),
            r#"experiment.artifacts: the label "" is not a plain name ([A-Za-z0-9_.-]+, not '.' or '..', at most 128 bytes)"#.into()),
        ("/experiment/pythonenv", json!(["--requirement=/etc/shadow"]),
            r#"experiment.pythonenv[0]: "--requirement=/etc/shadow" is not a requirement specifier: it is a pip option"#.into()),
        ("/experiment/pythonenv", json!(["numpy", "-e git+https://x/y"]),
            r#"experiment.pythonenv[1]: "-e git+https://x/y" is not a requirement specifier: it is a pip option"#.into()),
        ("/config/pip", json!(["./local"]),
            r#"config.pip[0]: "./local" is not a requirement specifier: it is a path"#.into()),
        ("/config/pip", json!(["~/wheel.whl"]),
            r#"config.pip[0]: "~/wheel.whl" is not a requirement specifier: it is a path"#.into()),
        ("/config/pip", json!(["dir/sub"]),
            r#"config.pip[0]: "dir/sub" is not a requirement specifier: it is a path"#.into()),
        ("/config/pip", json!(["evil @ https://example.com/evil.whl"]),
            r#"config.pip[0]: "evil @ https://example.com/evil.whl" is not a requirement specifier: it is a URL (URLs are refused unless the runner allows them)"#.into()),
        ("/config/pip", json!(["git+https://github.com/x/y"]),
            r#"config.pip[0]: "git+https://github.com/x/y" is not a requirement specifier: it is a URL (URLs are refused unless the runner allows them)"#.into()),
        ("/config/pip", json!(["file:/etc/passwd"]),
            r#"config.pip[0]: "file:/etc/passwd" is not a requirement specifier: it is a URL (URLs are refused unless the runner allows them)"#.into()),
        ("/config/pip", json!(["numpy=1.0"]),
            r#"config.pip[0]: "numpy=1.0" is not a requirement specifier: it is not a name followed by version specifiers (such as ==1.2)"#.into()),
        ("/config/pip", json!(["# comment"]),
            r##"config.pip[0]: "# comment" is not a requirement specifier: it is a comment"##.into()),
        ("/experiment/key", json!("a\nb"),
            r#"experiment.key: "a\nb" holds a control character"#.into()),
        ("/experiment/key", json!("k".repeat(257)),
            "experiment.key: 257 bytes, more than 256".into()),
        ("/experiment/key", json!("  "), "the request has no experiment.key".into()),
        ("/experiment/filename", json!("/etc/passwd"),
            r#"experiment.filename: "/etc/passwd" is absolute, not a path inside the workspace"#.into()),
        ("/experiment/filename", json!("../../outside.py"),
            r#"experiment.filename: "../../outside.py" has a '..' component, it must stay inside the workspace"#.into()),
        ("/experiment/filename", json!("-c"),
            r#"experiment.filename: "-c" starts with '-' (an option, not a file)"#.into()),
        ("/experiment/filename", json!("a\u{0}b.py"), "experiment.filename: it holds a NUL byte".into()),
        ("/experiment/filename", json!("f".repeat(1025)),
            "experiment.filename: 1025 bytes, more than 1024".into()),
        ("/experiment/args", json!(["ok", "a\u{0}b"]), "experiment.args[1]: it holds a NUL byte".into()),
        ("/experiment/args", json!(vec![""; 4097]), "experiment.args: 4097 arguments, more than 4096".into()),
        ("/experiment/args", json!(["a".repeat(128 * 1024 + 1)]),
            "experiment.args[0]: 131073 bytes, more than 131072".into()),
        ("/experiment/args", json!(vec!["a".repeat(128 * 1024); 9]),
            "experiment.args: 1179648 bytes together, more than 1048576".into()),
        ("/config/env", json!({"BAD NAME": "x"}),
            r#"config.env: "BAD NAME" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"#.into()),
        ("/config/env", json!({"1X": "x"}),
            r#"config.env: "1X" is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"#.into()),
        ("/config/env", json!({"SECRET": "s3cr3t\u{0}"}), "config.env.SECRET: its value holds a NUL byte".into()),
        ("/config/env", json!((0..1025).map(|index| (format!("V{index}"), json!("x"))).collect::<serde_json::Map<_, _>>()),
            "config.env: 1025 variables, more than 1024".into()),
        ("/config/env", json!({"BIG": "x".repeat(1024 * 1024)}),
            "config.env: 1048579 bytes together, more than 1048576".into()),
        ("/config/pip", json!(vec!["numpy"; 4096]),
            "experiment.pythonenv and config.pip: 4097 entries, more than 4096".into()),
        ("/config/pip", json!(["a".repeat(2049)]),
            "config.pip[0]: 2049 bytes, more than 2048".into()),
        ("/experiment/artifacts", json!((0..65).map(|index| (format!("a{index}"), json!({}))).chain([("workspace".to_owned(), json!({}))]).collect::<serde_json::Map<_, _>>()),
            "experiment.artifacts: 66 artifacts, more than 64".into()),
        ("/experiment/resources_needed/ram", json!("lots"),
            r#"experiment.resources_needed.ram "lots" is not a valid size"#.into()),
        ("/experiment/resources_needed/hdd", json!("99999999999999999999tb"),
            r#"experiment.resources_needed.hdd "99999999999999999999tb" is not a valid size"#.into()),
        ("/experiment/resources_needed/gpuMem", json!("huge"),
            r#"experiment.resources_needed.gpuMem "huge" is not a valid size"#.into()),
        ("/experiment/resources_needed/cpus", json!(1025), "experiment.resources_needed.cpus: 1025, more than 1024".into()),
        ("/experiment/resources_needed/gpus", json!(1e12),
            "experiment.resources_needed.gpus: 4294967295, more than 1024".into()),
        ("/experiment/pythonver", json!("abc"), pythonver_reason("abc")),
        ("/experiment/pythonver", json!("-1"), pythonver_reason("-1")),
        ("/experiment/pythonver", json!("3.11junk"), pythonver_reason("3.11junk")),
        ("/experiment/pythonver", json!("\u{663}.\u{661}\u{661}"), pythonver_reason("\u{663}.\u{661}\u{661}")),
        ("/experiment/pythonver", json!("+3"), pythonver_reason("+3")),
        ("/experiment/pythonver", json!("3.11.x"), pythonver_reason("3.11.x")),
        ("/experiment/pythonver", json!("3.11.0.1"), pythonver_reason("3.11.0.1")),
        ("/experiment/pythonver", json!("3..1"), pythonver_reason("3..1")),
        ("/experiment/pythonver", json!("3."), pythonver_reason("3.")),
        ("/experiment/pythonver", json!(".3"), pythonver_reason(".3")),
        ("/experiment/pythonver", json!("12345"), pythonver_reason("12345")),
        ("/experiment/pythonver", json!("3 .8"), pythonver_reason("3 .8")),
        ("/experiment/pythonver", json!(-1), pythonver_reason(-1)),
        ("/experiment/pythonver", json!(3.5e10), pythonver_reason(3.5e10)),
        ("/experiment/pythonenv", json!(["x-1.0-py3-none-any.whl"]),
            r#"experiment.pythonenv[0]: "x-1.0-py3-none-any.whl" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x-1.0.tar.gz"]),
            r#"config.pip[0]: "x-1.0.tar.gz" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["X-1.0.TGZ"]),
            r#"config.pip[0]: "X-1.0.TGZ" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.tar.bz2"]),
            r#"config.pip[0]: "x.tar.bz2" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.tbz2"]),
            r#"config.pip[0]: "x.tbz2" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.Zip"]),
            r#"config.pip[0]: "x.Zip" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.tar"]),
            r#"config.pip[0]: "x.tar" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x-1.0-py2.7.egg"]),
            r#"config.pip[0]: "x-1.0-py2.7.egg" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.whl==1.0"]),
            r#"config.pip[0]: "x.whl==1.0" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/config/pip", json!(["x.whl[extra]"]),
            r#"config.pip[0]: "x.whl[extra]" is not a requirement specifier: it is a wheel or archive file name (requirement specifiers only)"#.into()),
        ("/experiment/key", json!("run\u{202E}gnp.exe"),
            format!("experiment.key: {:?} holds U+202E, a character that reorders or hides text", "run\u{202E}gnp.exe")),
        ("/experiment/filename", json!("main\u{202E}.py"),
            format!("experiment.filename: {:?} holds U+202E, a character that reorders or hides text", "main\u{202E}.py")),
        ("/experiment/key", json!("run\u{200B}gnp.exe"),
            format!("experiment.key: {:?} holds U+200B, a character that reorders or hides text", "run\u{200B}gnp.exe")),
        ("/experiment/filename", json!("main\u{200B}.py"),
            format!("experiment.filename: {:?} holds U+200B, a character that reorders or hides text", "main\u{200B}.py")),
        ("/experiment/key", json!("run\u{200F}gnp.exe"),
            format!("experiment.key: {:?} holds U+200F, a character that reorders or hides text", "run\u{200F}gnp.exe")),
        ("/experiment/filename", json!("main\u{200F}.py"),
            format!("experiment.filename: {:?} holds U+200F, a character that reorders or hides text", "main\u{200F}.py")),
        ("/experiment/key", json!("run\u{061C}gnp.exe"),
            format!("experiment.key: {:?} holds U+061C, a character that reorders or hides text", "run\u{061C}gnp.exe")),
        ("/experiment/filename", json!("main\u{061C}.py"),
            format!("experiment.filename: {:?} holds U+061C, a character that reorders or hides text", "main\u{061C}.py")),
        ("/experiment/key", json!("run\u{2060}gnp.exe"),
            format!("experiment.key: {:?} holds U+2060, a character that reorders or hides text", "run\u{2060}gnp.exe")),
        ("/experiment/filename", json!("main\u{2060}.py"),
            format!("experiment.filename: {:?} holds U+2060, a character that reorders or hides text", "main\u{2060}.py")),
        ("/experiment/key", json!("run\u{2064}gnp.exe"),
            format!("experiment.key: {:?} holds U+2064, a character that reorders or hides text", "run\u{2064}gnp.exe")),
        ("/experiment/filename", json!("main\u{2064}.py"),
            format!("experiment.filename: {:?} holds U+2064, a character that reorders or hides text", "main\u{2064}.py")),
        ("/experiment/key", json!("run\u{2066}gnp.exe"),
            format!("experiment.key: {:?} holds U+2066, a character that reorders or hides text", "run\u{2066}gnp.exe")),
        ("/experiment/filename", json!("main\u{2066}.py"),
            format!("experiment.filename: {:?} holds U+2066, a character that reorders or hides text", "main\u{2066}.py")),
        ("/experiment/key", json!("run\u{2069}gnp.exe"),
            format!("experiment.key: {:?} holds U+2069, a character that reorders or hides text", "run\u{2069}gnp.exe")),
        ("/experiment/filename", json!("main\u{2069}.py"),
            format!("experiment.filename: {:?} holds U+2069, a character that reorders or hides text", "main\u{2069}.py")),
        ("/experiment/key", json!("run\u{202A}gnp.exe"),
            format!("experiment.key: {:?} holds U+202A, a character that reorders or hides text", "run\u{202A}gnp.exe")),
        ("/experiment/filename", json!("main\u{202A}.py"),
            format!("experiment.filename: {:?} holds U+202A, a character that reorders or hides text", "main\u{202A}.py")),
        ("/experiment/key", json!("run\u{FEFF}gnp.exe"),
            format!("experiment.key: {:?} holds U+FEFF, a character that reorders or hides text", "run\u{FEFF}gnp.exe")),
        ("/experiment/filename", json!("main\u{FEFF}.py"),
            format!("experiment.filename: {:?} holds U+FEFF, a character that reorders or hides text", "main\u{FEFF}.py")),
        ("/experiment/key", json!("a\u{85}b"),
            r#"experiment.key: "a\u{85}b" holds a control character"#.into()),
        ("/experiment/filename", json!("main.py\n"),
            r#"experiment.filename: "main.py\n" holds a control character"#.into()),
        ("/experiment/filename", json!("ma\u{1b}[2Kin.py"),
            r#"experiment.filename: "ma\u{1b}[2Kin.py" holds a control character"#.into()),
        ("/experiment/max_duration", json!("x".repeat(100)),
            format!("experiment.max_duration \"{}…\" is not a valid duration", "x".repeat(64))),
    ];
    let mut failures = Vec::new();
    for (pointer, value, reason) in cases {
        let outcome = Request::parse(&with(pointer, value))
            .map(|_| ())
            .map_err(|error| error.to_string());
        if outcome.as_ref().err() != Some(&reason) {
            failures.push(format!(
                "{pointer}: expected {reason:?}\n      got {outcome:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn oversized_bodies_are_refused_before_parsing() {
    let body = vec![b' '; MAX_BODY + 1];
    assert_eq!(
        Request::parse(&body)
            .map(|_| ())
            .map_err(|error| error.to_string()),
        Err(
            "the message is 4194305 bytes, more than the 4194304 bytes a request may have"
                .to_owned()
        )
    );
}

#[test]
fn time_added_may_be_at_most_a_year_ahead() -> Result<(), RequestError> {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ahead = |seconds: f64| -> Result<(), RequestError> {
        let mut request = Request::parse(EXAMPLE.as_bytes())?;
        request.experiment.time_added = 1_700_000_000.0 + seconds;
        request.check(&Policy::default(), now)
    };
    ahead(MAX_DURATION.as_secs_f64() - 60.0)?;
    assert!(matches!(
        ahead(MAX_DURATION.as_secs_f64() + 60.0),
        Err(RequestError::Refused { field, .. }) if field == "experiment.time_added"
    ));
    Ok(())
}

#[test]
fn requirement_specifiers() {
    let plain = Policy::default();
    let urls = Policy { allow_urls: true };
    for entry in [
        "numpy",
        "pkg-resources==0.0.0",
        "Keras==2.0.9",
        "tensorflow-gpu>=1.9,<2",
        "requests[security,socks]>=2.8.1,==2.8.*",
        "name (>=1.0)",
        "zope.interface~=5.0",
        "torch==2.1.0+cu118",
        "pywin32==306; sys_platform == \"win32\"",
        "importlib-metadata; python_version < '3.8'",
        "",
        "   ",
    ] {
        assert_eq!(requirement::check(entry, plain), Ok(()), "{entry}");
    }
    for entry in [
        "studioml @ https://example.com/studioml-0.0.49.tar.gz",
        "studioml @ git+https://github.com/studioml/studio@master ; python_version >= \"3\"",
        "git+ssh://git@github.com/x/y.git#egg=y",
        "https://example.com/x.whl",
    ] {
        assert!(requirement::check(entry, plain).is_err(), "{entry}");
        assert_eq!(requirement::check(entry, urls), Ok(()), "{entry}");
    }
    for entry in [
        "file:///etc/passwd",
        "x @ file:///etc/passwd",
        "ftp://example.com/x.whl",
        "--index-url=https://evil",
        "-r requirements.txt",
        "x @ https://example.com/x.whl extra",
        "C:\\wheels\\x.whl",
        "x[../..]",
        "x==1.0 --hash=sha256:abc",
    ] {
        assert!(requirement::check(entry, urls).is_err(), "{entry}");
    }
}

#[test]
fn the_url_policy_is_honoured_by_parse_with() {
    let body = with(
        "/config/pip",
        serde_json::json!(["x @ https://example.com/x.whl"]),
    );
    assert!(Request::parse(&body).is_err());
    assert!(Request::parse_with(&body, &Policy { allow_urls: true }).is_ok());
}

#[test]
fn labels_and_variable_names() {
    for label in ["workspace", "_metrics", "model.v1", "a-b", "..."] {
        assert!(is_plain_label(label), "{label}");
    }
    for label in ["", ".", "..", "a/b", "/abs", "a b", "ünï", &"x".repeat(129)] {
        assert!(!is_plain_label(label), "{label}");
    }
    assert!(is_variable_name("_X1") && is_variable_name("PATH"));
    assert!(!is_variable_name("") && !is_variable_name("1A") && !is_variable_name("A-B"));
}

/// The demo's request (examples/runner) stays valid once examples/demo.sh
/// has filled in its placeholders; the template itself is not a request
/// (`@PYTHONVER@` is not a Python version).
#[test]
fn the_demo_request_is_valid() -> Result<(), RequestError> {
    let template = include_str!("../../../examples/runner/request.json");
    assert!(matches!(
        Request::parse(template.as_bytes()),
        Err(RequestError::Invalid { field, .. }) if field == "experiment.pythonver"
    ));
    let demo = template
        .replace("@STORE@", "/tmp/store")
        .replace("@PYTHONVER@", "3.11");
    let request = Request::parse(demo.as_bytes())?;
    assert_eq!(
        request.experiment.key,
        "1796017734_0d3c6a4e-demo-4c1b-9d5e-7a1f2b3c4d5e"
    );
    assert_eq!(
        request.experiment.max_duration(),
        Some(Duration::from_mins(5))
    );
    Ok(())
}
