//! The build Job's command: `Dockerfile_standalone`'s CMD runs `scripts/test.sh`
//! with the settings `build.yaml`'s `ConfigMap` gives (the namespace's RabbitMQ and
//! S3, `SGR_TEST_NO_DOCKER=1`). The issue asks for that command in a plain
//! container on the test engine; no image holding Rust can be built here (no
//! base image can be pulled), so the test runs the same command on the host,
//! with the environment the container would have: the shared RabbitMQ and S3
//! given by their variables, nothing else of the script's services given but
//! the venvs and the Go reference (which the image would make with pip and go,
//! minutes this test cannot spend), and no Docker.
//!
//! The inner run selects only the services smoke tests (`--test it --
//! services::`), skips the lints, and builds in the outer run's target
//! directory: under scripts/test.sh its test binaries are the ones already
//! built, so cargo only checks that they are fresh (run alone with other
//! cargo arguments, the first run may build the workspace's `it` binaries).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use sgr_test_support::{Service, service};

use crate::common::TestResult;

/// Longer than a fresh inner run takes (about 30 s); reached only when it hangs.
const INNER_RUN_LIMIT: Duration = Duration::from_mins(5);

#[test]
fn the_build_jobs_command_uses_the_given_rabbitmq_and_s3_and_names_the_tests_it_skips() -> TestResult
{
    let (Some(amqp), Some(management), Some(s3)) = (
        service(Service::Amqp),
        service(Service::AmqpManagement),
        service(Service::S3),
    ) else {
        return Ok(());
    };
    let (Some(venv), Some(studioml), Some(stencil)) = (
        service(Service::PythonVenv),
        service(Service::StudioMl),
        service(Service::StencilReference),
    ) else {
        return Ok(());
    };
    let s3_access_key = std::env::var("SGR_TEST_S3_ACCESS_KEY")?;
    let s3_secret_key = std::env::var("SGR_TEST_S3_SECRET_KEY")?;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let scratch = tempfile::tempdir()?;
    let stdout_path = scratch.path().join("stdout");
    let stderr_path = scratch.path().join("stderr");

    let mut command = job_command(
        root,
        scratch.path(),
        &[
            // What build.yaml's ConfigMap gives the Job.
            ("SGR_TEST_AMQP_URL", &amqp),
            ("SGR_TEST_AMQP_MANAGEMENT", &management),
            ("SGR_TEST_S3_ENDPOINT", &s3),
            ("SGR_TEST_S3_ACCESS_KEY", &s3_access_key),
            ("SGR_TEST_S3_SECRET_KEY", &s3_secret_key),
            ("SGR_TEST_NO_DOCKER", "1"),
            // What the image would make itself, given to save minutes.
            ("SGR_TEST_VENV_BIN", &venv),
            ("SGR_TEST_STUDIOML_BIN", &studioml),
            ("SGR_TEST_STENCIL_REFERENCE", &stencil),
        ],
    )?;
    command
        .stdout(fs::File::create(&stdout_path)?)
        .stderr(fs::File::create(&stderr_path)?);
    let started = Instant::now();
    let status = run_with_limit(&mut command)?;
    let stdout = fs::read_to_string(&stdout_path)?;
    let stderr = fs::read_to_string(&stderr_path)?;
    let report = format!(
        "after {:?}: {status}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    assert!(status.success(), "{report}");

    // It used the given RabbitMQ and S3, started neither, and started what the
    // Job's environment does not give (the registries, moto).
    assert!(
        stderr.contains("using the given RabbitMQ: SGR_TEST_AMQP_URL="),
        "{report}"
    );
    assert!(
        stderr.contains(&format!("using the given S3: SGR_TEST_S3_ENDPOINT={s3}")),
        "{report}"
    );
    assert!(!stderr.contains("rabbitmq is up"), "{report}");
    assert!(!stderr.contains("seaweedfs is up"), "{report}");
    let work = work_directory(scratch.path())?;
    // Each service the script starts logs to <work>/<name>.log.
    for started_here in ["registry", "token-registry", "moto"] {
        let log = work.join(format!("{started_here}.log"));
        assert!(log.exists(), "{} missing\n{report}", log.display());
    }
    for given_or_without in ["rabbitmq", "epmd", "seaweedfs", "dockerd"] {
        let log = work.join(format!("{given_or_without}.log"));
        assert!(!log.exists(), "{} exists\n{report}", log.display());
    }
    assert!(!stderr.contains(&s3_secret_key), "{report}");

    // The services smoke tests ran against them: RabbitMQ and S3 (the runner's)
    // and the registry started here (sgr's).
    for test in [
        "test services::rabbitmq_accepts_an_amqp_connection ... ok",
        "test services::seaweedfs_round_trips_an_s3_object ... ok",
        "test services::htpasswd_registry_answers_v2 ... ok",
    ] {
        assert!(stdout.contains(test), "{test}\n{report}");
    }

    // Without Docker, the test that needs it passed as skipped, by name, and
    // the summary lists it.
    assert!(
        stderr.contains("running without Docker (SGR_TEST_NO_DOCKER=1)"),
        "{report}"
    );
    // (The test's own `SKIPPED` line on stderr is captured by libtest, as a
    // passing test's output is; the summary is what the log always shows.)
    let summary = stderr
        .split("skipped (no docker here)")
        .nth(1)
        .ok_or_else(|| format!("no summary of the skipped tests\n{report}"))?;
    assert!(
        summary.contains("  sgr services::dockerd_answers_version: needs Docker Engine (dockerd)"),
        "{report}"
    );
    Ok(())
}

/// The target directory this test binary was built in (`<target>/debug/deps/it-…`).
fn target_directory() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let executable = std::env::current_exe()?;
    executable
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no target directory above {}", executable.display()).into())
}

/// The script's kept `sgr-test.*` work directory under `scratch`.
fn work_directory(scratch: &Path) -> Result<PathBuf, Box<dyn std::error::Error>> {
    fs::read_dir(scratch)?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("sgr-test."))
        })
        .ok_or_else(|| format!("no sgr-test.* work directory in {}", scratch.display()).into())
}

/// `scripts/test.sh` in `root` with `given` and this test's own settings (no
/// lints, the work directory kept under `scratch` for inspection, the outer
/// run's target directory) and nothing else of the outer run's environment
/// that would change what it does.
fn job_command(
    root: &Path,
    scratch: &Path,
    given: &[(&str, &str)],
) -> Result<Command, Box<dyn std::error::Error>> {
    let mut command = Command::new(root.join("scripts/test.sh"));
    command.current_dir(root);
    // Nothing of the outer run's services leaks in (SGR_TEST_SERVE among them,
    // which would make the script serve instead of test), nor what cargo sets
    // for this test binary: build scripts (ring's) declare CARGO_PKG_NAME and
    // the like as inputs, and the inner cargo would rebuild them and all that
    // depends on them.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let cargo_set = name == "CARGO"
            || name == "OUT_DIR"
            || [
                "CARGO_PKG_",
                "CARGO_MANIFEST_",
                "CARGO_CRATE_",
                "CARGO_BIN_",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
            ]
            .iter()
            .any(|prefix| name.starts_with(prefix));
        if cargo_set
            || ["SGR_TEST_", "AWS_", "TOKEN_SERVICE_"]
                .iter()
                .any(|prefix| name.starts_with(prefix))
        {
            command.env_remove(name.as_ref());
        }
    }
    command.envs(given.iter().copied());
    command
        // This test's own needs: no lints, the work directory kept for inspection.
        .env("SGR_TEST_SKIP_LINT", "1")
        .env("SGR_TEST_KEEP", "1")
        .env("TMPDIR", scratch)
        .env("CARGO_TARGET_DIR", target_directory()?)
        // The outer run's setting, or the dev profile's default: either way the
        // inner cargo finds the outer run's artifacts instead of rebuilding.
        .env(
            "CARGO_INCREMENTAL",
            std::env::var("CARGO_INCREMENTAL").unwrap_or_else(|_| "1".to_owned()),
        )
        .args(["--test", "it", "--", "services::"])
        .stdin(Stdio::null());
    Ok(command)
}

/// Run `command` to its end, or TERM it after [`INNER_RUN_LIMIT`] (TERM, so the
/// script stops what it started before it exits).
fn run_with_limit(command: &mut Command) -> std::io::Result<ExitStatus> {
    let started = Instant::now();
    let mut child = command.spawn()?;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if started.elapsed() > INNER_RUN_LIMIT {
            Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()?;
            return child.wait();
        }
        std::thread::park_timeout(Duration::from_millis(200));
    }
}
