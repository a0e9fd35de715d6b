//! Queue services that fail under a running runner (issue 13): the runner
//! stays up, /healthz turns 503 only after `--unhealthy-after` of failing
//! intake, and `--once` gives up with exit 1 after that long instead of
//! spinning or waiting for ever.

use std::io::BufRead as _;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::cli::{Setup, TestResult};

/// A port nothing listens on.
fn closed_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `GET path` on `address`: the status code and the body.
fn get(address: &str, path: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let (status, body) = crate::cli::http_get(address, path)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((code, body))
}

/// The runner's stderr lines as they come.
fn lines_of(child: &mut Child) -> Result<mpsc::Receiver<String>, Box<dyn std::error::Error>> {
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    Ok(receiver)
}

/// Wait for a line containing `needle`; every line seen is kept in `seen`.
fn wait_for_line(
    lines: &mpsc::Receiver<String>,
    needle: &str,
    seen: &mut Vec<String>,
) -> Result<String, Box<dyn std::error::Error>> {
    let deadline = Instant::now() + Duration::from_mins(1);
    while Instant::now() < deadline {
        if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
            seen.push(line.clone());
            if line.contains(needle) {
                return Ok(line);
            }
        }
    }
    Err(format!("no line with '{needle}' in:\n{}", seen.join("\n")).into())
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// RabbitMQ answers but its management API does not: the runner keeps
/// running, says why once, answers 200 on /healthz during the first
/// `--unhealthy-after`, then 503 naming the reason.
#[test]
fn health_turns_503_only_after_intake_failed_for_the_configured_time() -> TestResult {
    let Some(url) = sgr_test_support::service(sgr_test_support::Service::Amqp) else {
        return Ok(());
    };
    let setup = Setup::new()?;
    let management = format!("http://127.0.0.1:{}", closed_port()?);
    let mut command = setup.without_queues();
    command
        .args(["--amqp-url", &url, "--amqp-mgt-url", &management])
        .args(["--http-addr", "127.0.0.1:0", "--unhealthy-after", "3s"])
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut runner = Killed(command.spawn()?);
    let lines = lines_of(&mut runner.0)?;
    let mut seen = Vec::new();
    let serving = wait_for_line(&lines, "serving /healthz and /metrics on ", &mut seen)?;
    let address = serving.rsplit(' ').next().ok_or("no address")?.to_owned();
    wait_for_line(&lines, "the queues fail: ", &mut seen)?;
    let (code, body) = get(&address, "/healthz")?;
    if started.elapsed() < Duration::from_secs(3) {
        assert_eq!(code, 200, "unhealthy before --unhealthy-after: {body}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (code, body) = loop {
        let (code, body) = get(&address, "/healthz")?;
        if code == 503 || Instant::now() > deadline {
            break (code, body);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code, 503, "{body}");
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(body.contains("RabbitMQ management API"), "{body}");
    assert!(
        runner.0.try_wait()?.is_none(),
        "the runner exited on a queue failure"
    );
    while let Ok(line) = lines.try_recv() {
        seen.push(line);
    }
    let failures = seen
        .iter()
        .filter(|line| line.contains("the queues fail"))
        .count();
    assert!(
        failures <= 2,
        "the same failure was logged {failures} times:\n{}",
        seen.join("\n")
    );
    Ok(())
}

/// `--once` on queues that keep failing gives up with exit 1 once
/// `--unhealthy-after` has passed, naming the failure.
#[test]
fn once_gives_up_on_queues_that_keep_failing() -> TestResult {
    let Some(url) = sgr_test_support::service(sgr_test_support::Service::Amqp) else {
        return Ok(());
    };
    let setup = Setup::new()?;
    let management = format!("http://127.0.0.1:{}", closed_port()?);
    let started = Instant::now();
    let output = setup
        .without_queues()
        .args(["--once", "--amqp-url", &url, "--amqp-mgt-url", &management])
        .args(["--unhealthy-after", "2s"])
        .output()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the queues failed for "), "{stderr}");
    assert!(started.elapsed() >= Duration::from_secs(2));
    Ok(())
}

/// The queue directory of a running experiment is deleted: the result is
/// stored, the runner warns and goes on, and takes the next request from a
/// queue made afterwards.
#[test]
fn a_queue_deleted_under_a_running_experiment_is_weather() -> TestResult {
    if sgr_test_support::require_python().is_none() {
        return Ok(());
    }
    let setup = Setup::new()?;
    setup.workspace(
        "import time, sys\nprint('ran', sys.argv[1:])\ntime.sleep(float(sys.argv[1]))\n",
    )?;
    let store = setup.root.join("store").display().to_string();
    let body = |key: &str, nap: &str| {
        format!(
            r#"{{"experiment": {{"key": "{key}", "filename": "main.py", "args": ["{nap}"],
                 "resources_needed": {{"cpus": 1, "hdd": "10mb", "ram": "50mb"}},
                 "artifacts": {{"workspace": {{"qualified": "file://{store}/workspace.tar", "unpack": true}},
                   "output": {{"qualified": "file://{store}/{key}.tar", "mutable": true, "unpack": true}}}}}}}}"#
        )
    };
    setup.publish("first.json", &body("first", "3"))?;
    let mut command = setup.command();
    command.stderr(Stdio::piped());
    let mut runner = Killed(command.spawn()?);
    let lines = lines_of(&mut runner.0)?;
    let mut seen = Vec::new();
    wait_for_line(&lines, "experiment first started", &mut seen)?;
    let queue = setup.root.join("queues/local_experiments");
    std::fs::remove_dir_all(&queue)?;
    wait_for_line(&lines, "experiment first: Succeeded", &mut seen)?;
    assert!(
        setup.root.join("store/first.tar").exists(),
        "the result was not stored"
    );
    std::fs::create_dir_all(&queue)?;
    setup.publish("second.json", &body("second", "0"))?;
    wait_for_line(&lines, "experiment second: Succeeded", &mut seen)?;
    assert!(
        runner.0.try_wait()?.is_none(),
        "the runner exited:\n{}",
        seen.join("\n")
    );
    Ok(())
}
