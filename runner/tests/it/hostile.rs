//! The runner against hostile requests and failing surroundings (issue 13),
//! each with a good request queued behind the bad one that must still run:
//! the runner's secrets stay out of experiments, duplicate keys never share
//! files, a request that can never run here does not hide the ones behind
//! it from `--once`, transient failures back off and end in a dead letter
//! with their history, poison values are dead-lettered, never a panic.

use std::fs;
use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;

use crate::cli::{Setup, TestResult};
use crate::scheduling::alive;

/// Prints its environment (sorted), its arguments, and writes a file into
/// its output artifact named after `KEY`, checking it stays its own.
const PRINTING: &str = r#"
import os, sys, time
for name in sorted(os.environ):
    print("env", name + "=" + os.environ[name])
print("args", sys.argv[1:])
key = os.environ.get("KEY", "none")
mine = os.path.join("..", "output", "owner")
with open(mine, "w") as handle:
    handle.write(key)
time.sleep(float(os.environ.get("NAP", "0")))
print("owner", open(mine).read())
"#;

/// A request in the directory queue's format with `artifacts` (JSON
/// members) and `extra` experiment fields (JSON members, leading comma).
fn request(setup: &Setup, key: &str, env: &str, extra: &str, artifacts: &str) -> String {
    let store = setup.root.join("store").display().to_string();
    format!(
        r#"{{"config": {{"env": {{"KEY": "{key}"{env}}}}},
           "experiment": {{"key": "{key}", "filename": "main.py", "pythonver": "3"{extra},
             "resources_needed": {{"cpus": 1, "hdd": "50mb", "ram": "100mb"}},
             "artifacts": {{
               "workspace": {{"qualified": "file://{store}/workspace.tar", "mutable": false, "unpack": true}}{artifacts}}}}}}}"#
    )
}

/// The usual output artifact, stored at `store/<name>.tar`.
fn output_to(setup: &Setup, name: &str) -> String {
    format!(
        r#", "output": {{"qualified": "file://{}/{name}.tar", "mutable": true, "unpack": true}}"#,
        setup.root.join("store").display()
    )
}

fn good(setup: &Setup) -> String {
    request(setup, "good", "", "", &output_to(setup, "good-output"))
}

fn output_text(setup: &Setup, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    let directory = setup.unpacked(&format!("{name}.tar"))?;
    Ok(fs::read_to_string(directory.join("output"))?)
}

fn dead_reasons(setup: &Setup) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let directory = setup.root.join("queues/local_experiments/.dead");
    let mut reasons = Vec::new();
    for entry in fs::read_dir(directory)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "reason")
        {
            reasons.push(fs::read_to_string(path)?);
        }
    }
    Ok(reasons)
}

/// The runner's AWS, GitHub and Azure secrets never reach the experiment
/// (not even through `%VAR%` in `config.env`); what `--pass-env` names
/// does; HOME and TMPDIR are inside the experiment directory.
#[test]
fn the_runners_secrets_stay_out_of_the_experiment() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    setup.publish(
        "a.json",
        &request(
            &setup,
            "secrets",
            r#", "FROM_RUNNER": "%GITHUB_TOKEN%|%AWS_SECRET_ACCESS_KEY%", "PATH": "%PATH%:/opt/extra""#,
            "",
            &output_to(&setup, "secrets-output"),
        ),
    )?;
    setup
        .runner()
        .env("AWS_SECRET_ACCESS_KEY", "canary-aws-secret")
        .env("GITHUB_TOKEN", "canary-github-token")
        .env("AZURE_CLIENT_SECRET", "canary-azure-secret")
        .env("LICENSE_SERVER", "licence.example:27000")
        .env("RUNNER_PASS_ENV", "USER_LABEL,LICENSE_SERVER")
        .assert()
        .success()
        .stderr(contains("experiment secrets: Succeeded"));
    let output = output_text(&setup, "secrets-output")?;
    for line in [
        r#"{"studioml":{"experiment":{"key":"secrets","project":""}}}"#,
        r#"{"studioml":{"start_time":"#,
        r#"{"studioml":{"host":"#,
        r#"{"studioml":{"stop_time":"#,
    ] {
        assert!(output.contains(line), "no {line} in:\n{output}");
    }
    for canary in [
        "canary-aws-secret",
        "canary-github-token",
        "canary-azure-secret",
    ] {
        assert!(!output.contains(canary), "{canary} leaked:\n{output}");
    }
    assert!(output.contains("env FROM_RUNNER=|\n"), "{output}");
    assert!(
        output.contains("env LICENSE_SERVER=licence.example:27000\n"),
        "{output}"
    );
    let work = setup.root.join("work/runs").display().to_string();
    for name in ["HOME", "TMPDIR", "STUDIOML_HOME"] {
        let line = output
            .lines()
            .find(|line| line.starts_with(&format!("env {name}=")))
            .ok_or(format!("no {name}:\n{output}"))?;
        assert!(line.contains(&work), "{line}");
    }
    let path = output
        .lines()
        .find(|line| line.starts_with("env PATH="))
        .ok_or("no PATH")?;
    assert!(path.ends_with(":/usr/bin:/sbin:/bin:/opt/extra"), "{path}");
    assert!(
        !output.lines().any(|line| line.starts_with("env SGR_TEST_")),
        "the test's own environment leaked:\n{output}"
    );
    Ok(())
}

/// Two deliveries with the same experiment key run at once in directories
/// of their own: each sees only its own files.
#[test]
fn duplicate_keys_never_share_files() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    for (file, owner) in [("a.json", "first"), ("b.json", "second")] {
        setup.publish(
            file,
            &request(
                &setup,
                "twin",
                &format!(r#", "KEY": "{owner}", "NAP": "2""#),
                "",
                &output_to(&setup, &format!("{owner}-output")),
            ),
        )?;
    }
    setup
        .runner()
        .args(["--max-cores", "2"])
        .assert()
        .success()
        .stderr(contains("experiment twin: Succeeded").count(2));
    for owner in ["first", "second"] {
        let output = output_text(&setup, &format!("{owner}-output"))?;
        assert!(output.contains(&format!("owner {owner}\n")), "{output}");
        let stored = setup.unpacked(&format!("{owner}-output.tar"))?;
        assert_eq!(fs::read_to_string(stored.join("owner"))?, owner);
    }
    Ok(())
}

/// Requests that can never run here (more memory than the machine has, a
/// Python it does not have) queued before a good one: `--once` runs the good one, leaves the other
/// queued for another runner, says so, and exits 0.
#[test]
fn once_runs_what_it_can_and_says_what_it_left() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    let huge =
        request(&setup, "huge", "", "", "").replace(r#""ram": "100mb""#, r#""ram": "900tb""#);
    setup.publish("a.json", &huge)?;
    let ancient = request(&setup, "ancient", "", "", "")
        .replace(r#""pythonver": "3""#, r#""pythonver": "2.5""#);
    setup.publish("a2.json", &ancient)?;
    setup.publish("b.json", &good(&setup))?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment good: Succeeded"))
        .stderr(contains("left queued for other runners"))
        .stderr(contains("experiment huge"))
        .stderr(contains("experiment ancient: no Python 2.5 here"));
    let mut left = setup.queue_files("");
    left.sort();
    assert_eq!(left, vec!["a.json".to_owned(), "a2.json".to_owned()]);
    assert!(output_text(&setup, "good-output")?.contains("owner good"));
    Ok(())
}

/// A workspace on an S3 endpoint that refuses connections, and a package
/// pip cannot install: each attempt fails for the environment's sake; the message waits between attempts
/// (the good one behind it runs meanwhile) and is dead-lettered after
/// `--max-attempts` with the reason of every attempt. Never a hot loop.
#[test]
fn transient_failures_back_off_then_dead_letter_with_their_history() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let unreachable = request(&setup, "unreachable", "", "", "").replace(
        &format!(
            r#""qualified": "file://{}/workspace.tar""#,
            setup.root.join("store").display()
        ),
        &format!(r#""qualified": "s3://{closed}/bucket/workspace.tar""#),
    );
    assert!(unreachable.contains("s3://"), "{unreachable}");
    setup.publish("a.json", &unreachable)?;
    // A package no index has: pip fails each time, for whatever reason.
    setup.publish(
        "a2.json",
        &request(
            &setup,
            "uninstallable",
            "",
            r#", "pythonenv": ["sgr-test-no-such-package-xq7==0.0.1"]"#,
            "",
        ),
    )?;
    setup.publish("b.json", &good(&setup))?;
    let started = std::time::Instant::now();
    let output = setup
        .runner()
        .args(["--max-attempts", "2"])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("experiment good: Succeeded"), "{stderr}");
    assert_eq!(
        stderr.matches("requeued:").count(),
        2,
        "one retry each, then the dead letters:\n{stderr}"
    );
    assert!(
        started.elapsed() >= worker_backoff(),
        "the second attempt waited for its back-off"
    );
    let reasons = dead_reasons(&setup)?;
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    for reason in &reasons {
        assert!(
            reason.contains("gave up after 2 attempt(s): attempt 1: ")
                && reason.contains("; attempt 2: "),
            "{reason}"
        );
    }
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("sgr-test-no-such-package-xq7")),
        "{reasons:?}"
    );
    assert!(setup.queue_files("").is_empty());
    Ok(())
}

const fn worker_backoff() -> std::time::Duration {
    runner::worker::MESSAGE_BACKOFF
}

/// Values that once panicked the runner or are refused by the request's
/// limits: each is dead-lettered with a reason naming the field, and the
/// good request behind them runs.
#[test]
fn poison_requests_are_dead_lettered_and_the_runner_lives_on() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    let store = setup.root.join("store").display().to_string();
    let outside = setup.root.join("outside");
    let cases = poison_cases(&setup, &store, &outside);
    for (index, (_, body)) in cases.iter().enumerate() {
        setup.publish(&format!("a{index}.json"), body)?;
    }
    setup.publish("z.json", &good(&setup))?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment good: Succeeded"))
        .stderr(contains("panicked").not());
    let reasons = dead_reasons(&setup)?;
    assert_eq!(reasons.len(), cases.len(), "{reasons:#?}");
    for (field, _) in &cases {
        assert!(
            reasons.iter().any(|reason| reason.contains(field)),
            "no reason names {field}: {reasons:#?}"
        );
    }
    assert!(!outside.exists(), "a label reached outside the experiment");
    assert!(!Path::new(&store).join("p6.tar").exists());
    Ok(())
}

/// Each poison request with the field its dead-letter reason must name.
fn poison_cases(setup: &Setup, store: &str, outside: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "max_duration",
            request(
                setup,
                "p1",
                "",
                r#", "max_duration": "99999999999999999999h""#,
                "",
            ),
        ),
        (
            "time_added",
            request(setup, "p2", "", r#", "time_added": 1e300"#, ""),
        ),
        (
            "experimentLifetime",
            request(setup, "p3", "", "", "").replace(
                r#""config": {"#,
                r#""config": {"experimentLifetime": "99999999999999h", "#,
            ),
        ),
        (
            "saveWorkspaceFrequency",
            request(setup, "p3b", "", "", "").replace(
                r#""config": {"#,
                r#""config": {"saveWorkspaceFrequency": "99999999999999h", "#,
            ),
        ),
        (
            "saveFrequency",
            request(
                setup,
                "p4",
                "",
                "",
                &format!(
                    r#", "output": {{"qualified": "file://{store}/p4.tar", "mutable": true, "saveFrequency": 1e300}}"#
                ),
            ),
        ),
        (
            "label",
            request(
                setup,
                "p5",
                "",
                "",
                &format!(
                    r#", "{}": {{"qualified": "file://{store}/p5.tar", "mutable": true}}"#,
                    outside.display()
                ),
            ),
        ),
        (
            "label",
            request(
                setup,
                "p6",
                "",
                "",
                &format!(r#", "..": {{"qualified": "file://{store}/p6.tar", "mutable": true}}"#),
            ),
        ),
        (
            "pythonenv",
            request(
                setup,
                "p7",
                "",
                r#", "pythonenv": ["--requirement=/etc/shadow"]"#,
                "",
            ),
        ),
        (
            "env",
            request(setup, "p8", r#", "BAD\u0000NAME": "x""#, "", ""),
        ),
        (
            "args",
            request(
                setup,
                "p9",
                "",
                &format!(r#", "args": ["{}"]"#, "a".repeat(200 * 1024)),
                "",
            ),
        ),
    ]
}

/// A tar at `path` built by `build`.
fn archive(
    path: &Path,
    build: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> std::io::Result<()>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = tar::Builder::new(Vec::new());
    build(&mut builder)?;
    fs::write(path, builder.into_inner()?)?;
    Ok(())
}

fn entry(kind: tar::EntryType, path: &str, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    // set_path refuses some names a hostile archive may hold: write the bytes.
    let name = &mut header.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    header.set_cksum();
    header
}

/// Hostile artifacts through the real binary, each before a good request:
/// an `output` artifact whose tar holds `output` as a link to a file
/// outside (refused; the file is unchanged), a corrupt and a truncated
/// workspace (dead-lettered, never retried), a compressed bomb larger than the request's `hdd`
/// (aborted, the reason stored in its output, acked), and a setuid file
/// (unpacked without the bit).
#[test]
fn hostile_artifacts_stay_inside_and_within_budget() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    let store = setup.root.join("store");
    let victim = setup.root.join("victim.txt");
    hostile_archives(&store, &victim)?;
    let file = |name: &str| format!("file://{}", store.join(name).display());
    setup.publish(
        "a.json",
        &request(
            &setup,
            "planted",
            "",
            "",
            &format!(
                r#", "output": {{"qualified": "{}", "mutable": true, "unpack": true}}"#,
                file("planted.tar")
            ),
        ),
    )?;
    setup.publish(
        "b.json",
        &request(&setup, "corrupt", "", "", "")
            .replace(&file("workspace.tar"), &file("corrupt.tar")),
    )?;
    setup.publish(
        "c.json",
        &request(
            &setup,
            "bomb",
            "",
            "",
            &format!(
                r#", "data": {{"qualified": "{}", "mutable": false, "unpack": true}}{}"#,
                file("bomb.tar.gz"),
                output_to(&setup, "bomb-output")
            ),
        )
        .replace(r#""hdd": "50mb""#, r#""hdd": "20mb""#),
    )?;
    // The good workspace cut short in the middle of its second entry.
    let whole = fs::read(store.join("workspace.tar"))?;
    fs::write(store.join("truncated.tar"), &whole[..700])?;
    setup.publish(
        "c2.json",
        &request(&setup, "truncated", "", "", "")
            .replace(&file("workspace.tar"), &file("truncated.tar")),
    )?;
    setup.publish(
        "d.json",
        &request(&setup, "good", "", "", &output_to(&setup, "good-output")),
    )?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment good: Succeeded"))
        .stderr(contains("experiment bomb: Aborted"));
    assert_eq!(fs::read_to_string(&victim)?, "precious");
    let reasons = dead_reasons(&setup)?;
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(
        reasons
            .iter()
            .any(|reason| reason.contains("artifact output: the archive is hostile")),
        "{reasons:#?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|reason| reason.contains("artifact workspace: the archive is corrupt"))
            .count(),
        2,
        "the corrupt and the truncated workspace: {reasons:#?}"
    );
    let bomb_output = output_text(&setup, "bomb-output")?;
    assert!(
        bomb_output
            .contains("artifact data: unpacking needs more than the disk budget of 20000000 bytes"),
        "{bomb_output}"
    );
    assert!(output_text(&setup, "good-output")?.contains("setuid False setgid False"));
    assert!(setup.queue_files("").is_empty());
    Ok(())
}

/// The archives of [`hostile_artifacts_stay_inside_and_within_budget`] in
/// `store`, with `victim` as the planted link's target.
fn hostile_archives(store: &Path, victim: &Path) -> TestResult {
    let script = "import os, stat\nmode = os.stat('tool').st_mode\nprint('setuid', bool(mode & stat.S_ISUID), 'setgid', bool(mode & stat.S_ISGID))\n";
    fs::create_dir_all(store)?;
    archive(&store.join("workspace.tar"), |builder| {
        let header = entry(
            tar::EntryType::Regular,
            "main.py",
            script.len() as u64,
            0o644,
        );
        builder.append(&header, script.as_bytes())?;
        let header = entry(tar::EntryType::Regular, "tool", 2, 0o6755);
        builder.append(&header, &b"#!"[..])
    })?;
    fs::write(victim, "precious")?;
    archive(&store.join("planted.tar"), |builder| {
        let mut header = entry(tar::EntryType::Symlink, "output", 0, 0o777);
        header.set_link_name(victim)?;
        header.set_cksum();
        builder.append(&header, std::io::empty())
    })?;
    fs::write(store.join("corrupt.tar"), b"this is not a tar archive at all, only text that is long enough to fill a header block? no: it ends here")?;
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    {
        let mut builder = tar::Builder::new(&mut bomb);
        let zeros = vec![0_u8; 1 << 20];
        for index in 0..80 {
            let header = entry(
                tar::EntryType::Regular,
                &format!("zero{index}"),
                zeros.len() as u64,
                0o644,
            );
            builder.append(&header, zeros.as_slice())?;
        }
        builder.finish()?;
    }
    fs::write(store.join("bomb.tar.gz"), bomb.finish()?)?;
    Ok(())
}

/// A request file still being written is neither claimed nor
/// dead-lettered, and `--once` waits for it: finished while the runner
/// runs the good one, it runs too.
#[test]
fn a_file_being_written_is_left_to_its_writer_and_once_waits_for_it() -> TestResult {
    use std::io::BufRead as _;
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    setup.publish("a.json", &good(&setup))?;
    let late = request(&setup, "late", "", "", &output_to(&setup, "late-output"));
    let (start, _) = late.split_at(late.len() / 2);
    setup.publish("b.json", start)?;
    // A slow writer: the half-written file keeps changing until the good
    // request is done, whatever time the machine takes for it.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let writing = std::sync::Arc::clone(&writing);
        let path = setup.root.join("queues/local_experiments/b.json");
        let start = start.to_owned();
        std::thread::spawn(move || {
            while writing.load(std::sync::atomic::Ordering::SeqCst) {
                let _ = fs::write(&path, &start);
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        })
    };
    let mut child = setup
        .command()
        .arg("--once")
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let mut lines = std::io::BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line?;
        seen.push(line.clone());
        if line.contains("experiment good: Succeeded") {
            break;
        }
    }
    writing.store(false, std::sync::atomic::Ordering::SeqCst);
    writer.join().map_err(|_| "the writer thread panicked")?;
    setup.publish("b.json", &late)?;
    seen.extend(lines.map_while(Result::ok));
    let status = child.wait()?;
    let log = seen.join("\n");
    assert!(status.success(), "{log}");
    assert!(log.contains("experiment late: Succeeded"), "{log}");
    assert!(!log.contains("dead-lettered"), "{log}");
    Ok(())
}

/// pip failing for good: its own output and the runner's reason are in the
/// stored output, and the message is dead-lettered after its attempts.
#[test]
fn pip_errors_reach_the_stored_output() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(PRINTING)?;
    setup.publish(
        "a.json",
        &request(
            &setup,
            "pip",
            "",
            r#", "pythonenv": ["sgr-test-no-such-package-xq7==0.0.1"]"#,
            &output_to(&setup, "pip-output"),
        ),
    )?;
    setup
        .runner()
        .args(["--max-attempts", "1"])
        .assert()
        .success();
    let output = output_text(&setup, "pip-output")?;
    assert!(
        output.contains("runner: pip install (1 package(s)), try 3 of 3"),
        "{output}"
    );
    assert!(output.contains("sgr-test-no-such-package-xq7"), "{output}");
    assert!(
        output.contains("runner: cannot make the Python environment: pip install failed 3 times"),
        "{output}"
    );
    assert_eq!(dead_reasons(&setup)?.len(), 1);
    Ok(())
}

/// A daemon started with fork + setsid + fork leaves the experiment's
/// process group: it is ended all the same, when the experiment ends and at
/// its deadline.
#[test]
fn daemons_that_left_the_process_group_end_with_the_experiment() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    let marks = setup.root.join("marks");
    fs::create_dir_all(&marks)?;
    let script = format!(
        r#"
import os, sys, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        with open(os.path.join("{marks}", os.environ["KEY"]), "w") as handle:
            handle.write(str(os.getpid()))
        while True:
            time.sleep(1)
    os._exit(0)
time.sleep(float(os.environ.get("NAP", "0")))
"#,
        marks = marks.display()
    );
    setup.workspace(&script)?;
    setup.publish(
        "a.json",
        &request(&setup, "at-end", "", "", &output_to(&setup, "end")),
    )?;
    setup.publish(
        "b.json",
        &request(
            &setup,
            "at-deadline",
            r#", "NAP": "60""#,
            r#", "max_duration": "3s""#,
            "",
        ),
    )?;
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains("experiment at-end: Succeeded"))
        .stderr(contains("experiment at-deadline: TimedOut"));
    for key in ["at-end", "at-deadline"] {
        let pid = fs::read_to_string(marks.join(key))?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while alive(&pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        assert!(!alive(&pid), "{key}'s daemon {pid} outlived its experiment");
    }
    Ok(())
}
