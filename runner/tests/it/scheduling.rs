//! Resources and scheduling with the local directory queue and real Python:
//! GPUs from a stub NVML (one card with ECC errors), several experiments at
//! once, requests that do not fit now or ever, retries of failed runs,
//! checkpoints during a run, and a runner killed with SIGKILL.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use predicates::str::contains;

use crate::cli::{Setup, TestResult};

/// Writes `<key>.start`/`<key>.end` times to $MARKS, prints the GPUs it got.
const TIMED: &str = r#"
import os, time
marks, key = os.environ["MARKS"], os.environ["KEY"]
with open(os.path.join(marks, key + ".start"), "w") as handle:
    handle.write(repr(time.time()))
print("cuda", os.environ["CUDA_VISIBLE_DEVICES"], "threads", os.environ["OMP_NUM_THREADS"])
time.sleep(float(os.environ.get("NAP", "1.5")))
with open(os.path.join(marks, key + ".end"), "w") as handle:
    handle.write(repr(time.time()))
"#;

pub fn request(setup: &Setup, key: &str, needs: &str, env: &str) -> String {
    let store = setup.root.join("store");
    let marks = setup.root.join("marks");
    format!(
        r#"{{"config": {{"env": {{"MARKS": "{marks}", "KEY": "{key}"{env}}}}},
           "experiment": {{"key": "{key}", "filename": "main.py", "pythonver": "3",
             "resources_needed": {{{needs}}},
             "artifacts": {{
               "workspace": {{"qualified": "file://{store}/workspace.tar", "mutable": false, "unpack": true}},
               "output": {{"qualified": "file://{store}/{key}-output.tar", "mutable": true, "unpack": true, "saveFrequency": 1}}}}}}}}"#,
        store = store.display(),
        marks = marks.display(),
    )
}

pub fn prepare(script: &str) -> Result<Setup, Box<dyn std::error::Error>> {
    let setup = Setup::new()?;
    setup.workspace(script)?;
    fs::create_dir_all(setup.root.join("marks"))?;
    Ok(setup)
}

fn mark(setup: &Setup, name: &str) -> Result<f64, Box<dyn std::error::Error>> {
    Ok(fs::read_to_string(setup.root.join("marks").join(name))?.parse()?)
}

fn output_of(setup: &Setup, key: &str) -> Result<String, Box<dyn std::error::Error>> {
    let directory = setup.unpacked(&format!("{key}-output.tar"))?;
    Ok(fs::read_to_string(directory.join("output"))?)
}

/// The stub NVML (tests/nvml-stub) built into a temporary directory.
fn nvml_stub(directory: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nvml-stub/nvml_stub.c");
    let library = directory.join("libnvidia-ml.so.1");
    let built = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(&source)
        .output()?;
    if !built.status.success() {
        return Err(format!("cc: {}", String::from_utf8_lossy(&built.stderr)).into());
    }
    Ok(library)
}

/// Reference scenario A4 and more: two 2-slot cards and one with ECC
/// errors; two experiments asking for 2 slots each run at the same time on
/// one healthy card each; one asking for 6 slots can never run here and is
/// left in the queue. Logs are JSON (stdout is not a terminal).
#[test]
fn gpus_are_given_whole_to_concurrent_experiments_and_ecc_cards_never() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = prepare(TIMED)?;
    let library = nvml_stub(&setup.root)?;
    for key in ["gpu-a", "gpu-b"] {
        setup.publish(
            &format!("{key}.json"),
            &request(
                &setup,
                key,
                r#""cpus": 1, "gpus": 2, "hdd": "10mb", "ram": "100mb""#,
                "",
            ),
        )?;
    }
    setup.publish(
        "gpu-c.json",
        &request(
            &setup,
            "gpu-c",
            r#""cpus": 1, "gpus": 6, "hdd": "10mb", "ram": "100mb""#,
            "",
        ),
    )?;
    let output = setup
        .runner()
        .env_remove("RUNNER_LOG_FORMAT")
        .arg("--nvml-lib")
        .arg(&library)
        .env(
            "NVML_STUB_CARDS",
            "GPU-bad,Tesla K80,12000000000,3;GPU-one,Tesla K80,12000000000,0;GPU-two,Tesla K80,12000000000,0",
        )
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut messages = Vec::new();
    for line in stderr.lines() {
        let record: serde_json::Value = serde_json::from_str(line)
            .map_err(|error| format!("not a JSON log line ({error}): {line}"))?;
        assert!(
            record["ts"].is_string() && record["level"].is_string(),
            "{line}"
        );
        messages.push(record["msg"].as_str().unwrap_or_default().to_owned());
    }
    let said = |text: &str| messages.iter().any(|message| message.contains(text));
    assert!(
        said("GPU GPU-bad (Tesla K80) reports uncorrected ECC errors"),
        "{stderr}"
    );
    assert!(said("offering") && said("2 GPU(s)"), "{stderr}");
    assert!(
        said("6 GPU slot(s) asked, this runner's 2 usable card(s) cannot give that"),
        "{stderr}"
    );
    assert!(
        said("experiment gpu-a: Succeeded") && said("experiment gpu-b: Succeeded"),
        "{stderr}"
    );
    let mut cards = Vec::new();
    for key in ["gpu-a", "gpu-b"] {
        let text = output_of(&setup, key)?;
        let card = text
            .lines()
            .find(|line| line.starts_with("cuda "))
            .and_then(|line| line.split_whitespace().nth(1))
            .ok_or("no cuda line")?
            .to_owned();
        assert!(text.contains("threads 1"), "{text}");
        cards.push(card);
    }
    cards.sort();
    assert_eq!(cards, ["GPU-one", "GPU-two"]);
    // They ran at the same time.
    assert!(mark(&setup, "gpu-a.start")? < mark(&setup, "gpu-b.end")?);
    assert!(mark(&setup, "gpu-b.start")? < mark(&setup, "gpu-a.end")?);
    // The one that can never fit here is still queued for another runner.
    assert_eq!(setup.queue_files(""), ["gpu-c.json"]);
    assert!(!setup.root.join("marks/gpu-c.start").exists());
    Ok(())
}

/// Reference scenario A3: memory above --max-mem is refused with the reason
/// and the message stays in its queue; nothing runs. And with one core, two
/// one-core experiments run one after the other.
#[test]
fn what_does_not_fit_waits_or_stays_queued() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = prepare(TIMED)?;
    setup.publish(
        "big.json",
        &request(
            &setup,
            "big",
            r#""cpus": 1, "hdd": "10mb", "ram": "2gb""#,
            "",
        ),
    )?;
    setup
        .runner()
        .args(["--max-mem", "1GiB"])
        .assert()
        .success()
        .stderr(contains("refused, this runner can never run it"))
        .stderr(contains(
            "1.9 GiB memory asked, this runner offers 1 GiB (--max-mem)",
        ));
    assert_eq!(setup.queue_files(""), ["big.json"]);
    assert!(setup.queue_files(".inflight").is_empty());
    assert!(!setup.root.join("store/big-output.tar").exists());
    fs::remove_file(setup.root.join("queues/local_experiments/big.json"))?;

    for key in ["one", "two"] {
        setup.publish(
            &format!("{key}.json"),
            &request(
                &setup,
                key,
                r#""cpus": 1, "hdd": "10mb", "ram": "100mb""#,
                r#", "NAP": "0.5""#,
            ),
        )?;
    }
    setup
        .runner()
        .args(["--max-cores", "1"])
        .assert()
        .success()
        .stderr(contains("waiting for resources"))
        .stderr(contains("experiment one: Succeeded"))
        .stderr(contains("experiment two: Succeeded"));
    let (first, second) = if mark(&setup, "one.start")? < mark(&setup, "two.start")? {
        ("one", "two")
    } else {
        ("two", "one")
    };
    assert!(mark(&setup, &format!("{first}.end"))? <= mark(&setup, &format!("{second}.start"))?);
    Ok(())
}

#[test]
fn limits_above_what_the_machine_has_are_usage_errors() {
    let setup = Setup::new().unwrap_or_else(|error| panic!("{error}"));
    setup
        .runner()
        .args(["--max-cores", "100000"])
        .assert()
        .code(2)
        .stderr(contains("--max-cores 100000 is more than"))
        .stderr(contains("hint:"));
    setup
        .runner()
        .args(["--max-mem", "1000TiB"])
        .assert()
        .code(2)
        .stderr(contains("--max-mem 1000 TiB is more than"));
    setup
        .runner()
        .args(["--max-mem", "lots"])
        .assert()
        .code(2)
        .stderr(contains("'lots' is not a size"));
    setup
        .runner()
        .arg("--cache-dir")
        .arg(setup.root.join("cache"))
        .assert()
        .code(2)
        .stderr(contains("--cache-size"));
}

/// Reference scenario A2's retry: a run that fails is requeued (here once)
/// and its second pass succeeds and is the one stored.
#[test]
fn a_failed_experiment_is_retried_when_asked() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let script = r#"
import os, sys
path = os.path.join(os.environ["MARKS"], "attempts")
with open(path, "a") as handle:
    handle.write("x\n")
if open(path).read().count("x") == 1:
    print("first pass fails")
    sys.exit(3)
print("second pass ok")
"#;
    let setup = prepare(script)?;
    setup.publish(
        "retry.json",
        &request(
            &setup,
            "retry",
            r#""cpus": 1, "hdd": "10mb", "ram": "100mb""#,
            "",
        ),
    )?;
    setup
        .runner()
        .args(["--retry-failed", "1"])
        .assert()
        .success()
        .stderr(contains(
            "experiment retry exited with 3 (failure 1 of 1 allowed by --retry-failed)",
        ))
        .stderr(contains("experiment retry: Succeeded"));
    assert_eq!(
        fs::read_to_string(setup.root.join("marks/attempts"))?,
        "x\nx\n"
    );
    assert!(output_of(&setup, "retry")?.contains("second pass ok"));
    assert!(setup.queue_files("").is_empty() && setup.queue_files(".dead").is_empty());
    Ok(())
}

/// Mutable artifacts are uploaded every `saveFrequency` seconds while the
/// experiment runs, and once more at the end.
#[test]
fn checkpoints_are_stored_while_the_experiment_runs() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let script = r#"
import time
for step in range(5):
    print("step", step, flush=True)
    time.sleep(1)
"#;
    let setup = prepare(script)?;
    setup.publish(
        "ck.json",
        &request(
            &setup,
            "ck",
            r#""cpus": 1, "hdd": "10mb", "ram": "100mb""#,
            "",
        ),
    )?;
    let mut child = setup
        .command()
        .arg("--once")
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stored = setup.root.join("store/ck-output.tar");
    let deadline = Instant::now() + Duration::from_mins(2);
    let mut checkpoint = None;
    while child.try_wait()?.is_none() && Instant::now() < deadline {
        if stored.exists() {
            checkpoint = Some(output_of(&setup, "ck")?);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.wait()?;
    assert!(status.success());
    let checkpoint = checkpoint.ok_or("no checkpoint was stored while the experiment ran")?;
    assert!(
        checkpoint.contains("step 0") && !checkpoint.contains("step 4"),
        "{checkpoint}"
    );
    assert!(output_of(&setup, "ck")?.contains("step 4"));
    Ok(())
}

/// Whether process `pid` lives (a zombie does not count).
pub fn alive(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the parenthesised command name; Z is a zombie.
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}

/// A runner killed with SIGKILL mid-experiment: a second runner on the same
/// work directory is refused while the first lives; once it is dead the
/// next runner ends the orphaned experiment (found by its recorded process
/// group and start time, although it changed its working directory), takes
/// the message back and runs it: one completed result.
#[test]
fn a_runner_killed_mid_experiment_leaves_one_completed_result() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let script = r#"
import os, time
marks = os.environ["MARKS"]
with open(os.path.join(marks, "attempts"), "a") as handle:
    handle.write(str(os.getpid()) + "\n")
first = open(os.path.join(marks, "attempts")).read().count("\n") == 1
# Moving away from the experiment directory must not hide it from the next runner.
os.chdir("/")
time.sleep(60 if first else 0.2)
with open(os.path.join(marks, "completed"), "a") as handle:
    handle.write("done\n")
"#;
    let setup = prepare(script)?;
    setup.publish(
        "k.json",
        &request(
            &setup,
            "k",
            r#""cpus": 1, "hdd": "10mb", "ram": "100mb""#,
            "",
        ),
    )?;
    let mut first = setup
        .command()
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let attempts = setup.root.join("marks/attempts");
    let deadline = Instant::now() + Duration::from_mins(2);
    while !attempts.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let orphan = fs::read_to_string(&attempts)?.trim().to_owned();
    assert!(alive(&orphan));
    setup
        .runner()
        .assert()
        .code(2)
        .stderr(contains("is another runner using this --work-dir?"))
        .stderr(contains("hint: give each runner"));
    first.kill()?;
    first.wait()?;
    assert_eq!(setup.queue_files(".inflight").len(), 1);
    setup
        .runner()
        .assert()
        .success()
        .stderr(contains(
            "killed 1 experiment process group(s) a previous runner left running",
        ))
        .stderr(contains("put back 1 message(s)"))
        .stderr(contains("experiment k: Succeeded"));
    assert!(
        !alive(&orphan),
        "the orphaned experiment {orphan} still runs"
    );
    assert_eq!(
        fs::read_to_string(setup.root.join("marks/completed"))?,
        "done\n"
    );
    assert_eq!(fs::read_to_string(&attempts)?.lines().count(), 2);
    assert!(setup.queue_files("").is_empty() && setup.queue_files(".inflight").is_empty());
    Ok(())
}
