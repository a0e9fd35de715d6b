//! Encrypted and signed requests at the runner binary, with the envelope
//! the real `StudioML` client made once (`tests/fixtures/envelope`, test-only
//! keys): what must never run is dead-lettered with its reason, and
//! neither the private key nor its passphrase nor a decrypted request
//! appears in anything the runner writes or serves (its log, dead letters
//! and their reasons, /metrics, its work directory).

use std::fs;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::cli::{Setup, TestResult};

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/envelope")
        .join(name)
}

/// The client's envelope with `field` of its `message` set to `value`.
pub fn envelope_with(
    field: &str,
    value: serde_json::Value,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut envelope: serde_json::Value =
        serde_json::from_slice(&fs::read(fixture("envelope.json"))?)?;
    envelope["message"][field] = value;
    Ok(serde_json::to_string(&envelope)?)
}

/// The client's envelope with one character of its payload changed.
pub fn tampered(envelope: &str) -> Result<String, Box<dyn std::error::Error>> {
    let mut json: serde_json::Value = serde_json::from_str(envelope)?;
    let payload = json["message"]["payload"].as_str().ok_or("no payload")?;
    let (head, tail) = payload.split_at(20);
    let changed = if tail.starts_with('A') { 'B' } else { 'A' };
    json["message"]["payload"] = format!("{head}{changed}{}", &tail[1..]).into();
    Ok(serde_json::to_string(&json)?)
}

/// Every file under `root`, as text.
fn all_text(root: &Path, into: &mut String) {
    let Ok(entries) = fs::read_dir(root) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            all_text(&path, into);
        } else if let Ok(bytes) = fs::read(&path) {
            into.push_str(&path.display().to_string());
            into.push('\n');
            into.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
}

/// The canary: `served` and no file under `root` holds the private key,
/// its passphrase or anything of the decrypted request.
fn assert_no_secret(root: &Path, served: &str) -> TestResult {
    let mut written = served.to_owned();
    all_text(root, &mut written);
    let passphrase = fs::read_to_string(fixture("encrypt/passphrase/ssh-passphrase"))?;
    let private_key = fs::read_to_string(fixture("encrypt/encryption/ssh-privatekey"))?;
    let request = fs::read_to_string(fixture("request.json"))?;
    assert!(!passphrase.is_empty() && request.contains("FAKE-secret-access-key"));
    let mut secrets = vec![
        passphrase.trim(),
        "FAKE-secret-access-key",
        "16146dc8-d23d-4432",
    ];
    secrets.extend(
        private_key
            .lines()
            .filter(|line| !line.starts_with("-----")),
    );
    for secret in secrets {
        assert!(!written.contains(secret), "{secret:?} leaked:\n{written}");
    }
    Ok(())
}

/// Run the runner (not `--once`) with the fixture's keys, `signatures`,
/// `--clear-text-messages=false` and /metrics until `done` (or a minute);
/// its log and its last /metrics.
fn serve_until(
    setup: &Setup,
    signatures: &Path,
    done: impl Fn() -> bool,
) -> Result<(String, String), Box<dyn std::error::Error>> {
    let mut child = setup
        .command()
        .arg("--encrypt-dir")
        .arg(fixture("encrypt"))
        .arg("--request-signatures-dir")
        .arg(signatures)
        .args(["--clear-text-messages=false", "--http-addr", "127.0.0.1:0"])
        .args(["--log-level", "debug", "--queue-match", "^local_"])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let mut lines = std::io::BufReader::new(child.stderr.take().ok_or("no stderr")?).lines();
    let mut log = String::new();
    let address = loop {
        let line = lines.next().ok_or("no serving line")??;
        log.push_str(&line);
        log.push('\n');
        if line.contains("serving /healthz") {
            break line.rsplit(' ').next().ok_or("no address")?.to_owned();
        }
    };
    let deadline = Instant::now() + Duration::from_mins(1);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, metrics) = crate::cli::http_get(&address, "/metrics")?;
    let pid = rustix::process::Pid::from_raw(i32::try_from(child.id())?).ok_or("no pid")?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)?;
    for line in lines {
        log.push_str(&line?);
        log.push('\n');
    }
    assert!(child.wait()?.success(), "{log}");
    Ok((log, metrics))
}

#[test]
fn bad_envelopes_are_dead_lettered_and_no_secret_leaks() -> TestResult {
    let setup = Setup::new()?;
    let signatures = setup.root.join("signatures");
    fs::create_dir_all(&signatures)?;
    // The submitter's key for local_experiments; another key for local_other_.
    fs::copy(
        fixture("client-signing.pub"),
        signatures.join("local_experiments"),
    )?;
    fs::copy(
        fixture("other-signing.pub"),
        signatures.join("local_other_"),
    )?;
    let queues = setup.root.join("queues");
    for queue in ["local_other_q", "local_unregistered"] {
        fs::create_dir_all(queues.join(queue))?;
    }
    let envelope = fs::read_to_string(fixture("envelope.json"))?;
    let publish = |queue: &str, name: &str, body: &str| -> TestResult {
        let path = queues.join(queue).join(name);
        fs::write(&path, body)?;
        fs::File::options()
            .write(true)
            .open(&path)?
            .set_modified(std::time::SystemTime::now() - Duration::from_mins(1))?;
        Ok(())
    };
    let expected = [
        (
            "local_experiments",
            "tampered.json",
            tampered(&envelope)?,
            "does not verify",
        ),
        (
            "local_experiments",
            "clear.json",
            setup.request("exp-clear", "10m"),
            "not encrypted",
        ),
        (
            "local_experiments",
            "unsigned.json",
            envelope_with("signature", serde_json::Value::Null)?,
            "not signed",
        ),
        (
            "local_other_q",
            "other.json",
            envelope.clone(),
            "does not verify",
        ),
        (
            "local_unregistered",
            "unregistered.json",
            envelope.clone(),
            "no signing key is registered for queue local_unregistered",
        ),
    ];
    for (queue, name, body, _) in &expected {
        publish(queue, name, body)?;
    }
    // Fits nowhere here: left on its queue, never decrypted.
    publish(
        "local_experiments",
        "huge.json",
        &envelope_with("resources_needed", serde_json::json!({"cpus": 100_000}))?,
    )?;
    let reason = |queue: &str, name: &str| {
        fs::read_to_string(
            queues
                .join(queue)
                .join(".dead")
                .join(format!("{name}.reason")),
        )
        .ok()
    };
    let (log, metrics) = serve_until(&setup, &signatures, || {
        expected
            .iter()
            .all(|(queue, name, _, _)| reason(queue, name).is_some())
    })?;
    for (queue, name, _, text) in &expected {
        let found = reason(queue, name).unwrap_or_default();
        assert!(found.contains(text), "{queue}/{name}: {found:?}\n{log}");
    }
    assert!(queues.join("local_experiments/huge.json").exists(), "{log}");
    assert!(log.contains("100000 cores asked"), "{log}");

    assert_no_secret(&setup.root, &format!("{log}\n{metrics}\n"))
}

#[test]
fn unreadable_keys_and_a_useless_policy_exit_2_with_a_hint() -> TestResult {
    let setup = Setup::new()?;
    let signatures = setup.root.join("signatures");
    fs::create_dir_all(&signatures)?;
    let output = setup
        .runner()
        .arg("--encrypt-dir")
        .arg(setup.root.join("missing"))
        .arg("--request-signatures-dir")
        .arg(&signatures)
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("encryption/ssh-privatekey") && stderr.contains("hint:"),
        "{stderr}"
    );
    let output = setup.runner().arg("--clear-text-messages=false").output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--encrypt-dir"), "{stderr}");
    Ok(())
}
