//! Running one experiment: its directory, artifacts, a Python virtual
//! environment (cached by its package list), the script with its output in
//! `output/output`, the deadline (the whole process tree is killed), and
//! the mutable artifacts written back.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::cache::Cache;
use crate::digest::{hex, sha256_hex};
use crate::failure::{Class, Classify};
use crate::request::{Artifact, Request};
use crate::resources::Allocation;
use crate::storage::{self, StorageError};

/// How often a running experiment is looked at.
const POLL: Duration = Duration::from_millis(100);
/// Between SIGTERM and SIGKILL at the deadline.
const GRACE: Duration = Duration::from_secs(5);

/// Runner-wide settings for experiments.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Where experiment directories are made.
    pub work_dir: PathBuf,
    /// Where virtual environments are kept for reuse.
    pub venv_cache: PathBuf,
    /// The Pythons experiments may use (chosen by `pythonver`).
    pub python: std::sync::Arc<crate::python::Interpreters>,
    /// The longest any experiment may run.
    pub max_runtime: Duration,
    /// The artifact download cache, when there is one.
    pub cache: Option<std::sync::Arc<Cache>>,
    /// Set when the runner is asked to stop (SIGTERM): running experiments
    /// get `drain_timeout` to finish, then are killed and requeued.
    pub stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// How long a running experiment may go on after a stop request.
    pub drain_timeout: Duration,
    /// How many times an experiment that exits non-zero is requeued before
    /// its failure is final.
    pub retry_failed: u32,
    /// Failed attempts so far, by experiment key (this runner's).
    pub failures: std::sync::Arc<std::sync::Mutex<BTreeMap<String, u32>>>,
    /// Variables of the runner's own environment passed to experiments
    /// (`--pass-env`); nothing else of it is.
    pub pass_env: Vec<String>,
}

impl Settings {
    /// Count a failed attempt of `key`: `Some(attempt)` when it should be
    /// tried again, `None` when the failure is final (and forgotten).
    #[must_use]
    pub fn retry(&self, key: &str) -> Option<u32> {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = failures.entry(key.to_owned()).or_insert(0);
        *count += 1;
        if *count <= self.retry_failed {
            return Some(*count);
        }
        failures.remove(key);
        None
    }

    /// Forget the failures of `key` (it succeeded).
    pub fn forget(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// How an experiment ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit code 0.
    Succeeded,
    /// Another exit code (or a signal: -1).
    Failed(i32),
    /// Killed at its deadline.
    TimedOut,
    /// Killed because the runner stopped and the drain timeout passed; the
    /// message should be requeued, nothing was stored.
    Interrupted,
    /// Not run, or stopped, for the experiment's own fault (its artifacts
    /// exceed its disk request); the reason is in its stored output.
    Aborted,
}

/// Why an experiment could not be run.
#[derive(Debug, Error)]
pub enum ExecuteError {
    /// An artifact could not be fetched or stored.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The virtual environment could not be made.
    #[error("cannot make the Python environment: {0}")]
    Environment(String),
    /// The runner was asked to stop while the experiment was being set
    /// up (pip), and the drain timeout passed: the message goes back.
    #[error("the runner is stopping")]
    Stopped,
    /// Local files or processes.
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Classify for ExecuteError {
    /// Storage says for itself; a Python environment that cannot be made
    /// (an index unreachable, or a package that does not exist: pip cannot
    /// tell us which) and local I/O are transient, bounded by `--max-attempts`;
    /// an argument list the kernel refuses, or an output artifact whose
    /// `output` is not a file, is the request's fault; a name the
    /// experiment made too long (or a link loop) is its own.
    fn class(&self) -> Class {
        match self {
            Self::Storage(error) => error.class(),
            Self::Io { source, .. } => match source
                .raw_os_error()
                .map(rustix::io::Errno::from_raw_os_error)
            {
                Some(
                    rustix::io::Errno::TOOBIG
                    | rustix::io::Errno::ISDIR
                    | rustix::io::Errno::NOTDIR,
                ) => Class::Rejected,
                Some(rustix::io::Errno::NAMETOOLONG | rustix::io::Errno::LOOP) => {
                    Class::ExperimentFailed
                }
                _ => Class::Transient,
            },
            Self::Environment(_) | Self::Stopped => Class::Transient,
        }
    }
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ExecuteError {
    let path = path.to_path_buf();
    move |source| ExecuteError::Io {
        action,
        path,
        source,
    }
}

/// A directory name for the experiment key: readable, and unique by its hash.
fn directory_name(key: &str) -> String {
    let readable: String = key
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.') {
                character
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{readable}-{}", &sha256_hex(key)[..8])
}

/// `%VAR%` replaced by the value `lookup` gives (empty when unset).
fn expand(value: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut output = String::new();
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let Some(end) = rest[start + 1..].find('%') else {
            break;
        };
        output.push_str(&rest[..start]);
        let name = &rest[start + 1..start + 1 + end];
        output.push_str(&lookup(name).unwrap_or_default());
        rest = &rest[start + end + 2..];
    }
    output.push_str(rest);
    output
}

/// The deadline of one attempt: the smallest of `max_duration`, what is left
/// of the lifetime counted from `time_added`, and the runner's cap. Every
/// step is checked: no value of a request can overflow it.
#[must_use]
pub fn time_limit(request: &Request, cap: Duration, now: SystemTime) -> Duration {
    let mut limit = cap;
    if let Some(duration) = request.experiment.max_duration() {
        limit = limit.min(duration);
    }
    if let (Some(lifetime), Some(added)) = (
        request.config.experiment_lifetime(),
        request.experiment.time_added(),
    ) {
        let left = added.checked_add(lifetime).map_or(limit, |end| {
            end.duration_since(now).unwrap_or(Duration::ZERO)
        });
        limit = limit.min(left);
    }
    limit
}

/// One delivery of an experiment on disk, laid out as StudioML code
/// expects it: `root` is the experiment's `STUDIOML_HOME`
/// (`<work>/runs/<id>/`, also holding its HOME, TMPDIR and process record),
/// and its artifacts are `<root>/experiments/<id>/<label>/`, where
/// `fs_tracker.get_artifact_cache(label)` resolves with `STUDIOML_EXPERIMENT=<id>`.
/// `<id>` is the key (readable, and unique by its hash) plus an instance
/// number, so two deliveries with the same key never share files.
#[derive(Debug)]
pub struct Delivery {
    /// `STUDIOML_HOME`: everything the experiment writes is under it.
    pub root: PathBuf,
    /// `STUDIOML_EXPERIMENT`.
    pub id: String,
    /// The artifacts' parent directory.
    pub directory: PathBuf,
}

fn experiment_directory(work_dir: &Path, key: &str) -> Result<Delivery, ExecuteError> {
    let runs = work_dir.join(RUNS);
    fs::create_dir_all(&runs).map_err(io_error("create", &runs))?;
    let name = directory_name(key);
    for instance in 0_u32.. {
        let id = format!("{name}.{instance}");
        let root = runs.join(&id);
        match fs::create_dir(&root) {
            Ok(()) => {
                let directory = root.join(EXPERIMENTS).join(&id);
                fs::create_dir_all(&directory).map_err(io_error("create", &directory))?;
                return Ok(Delivery {
                    root,
                    id,
                    directory,
                });
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create", &root)(error)),
        }
    }
    Err(io_error("create a directory in", &runs)(io::Error::other(
        "no free instance number",
    )))
}

/// Where deliveries live under the work directory.
pub const RUNS: &str = "runs";
/// Where a delivery's experiment directory is under its root.
pub const EXPERIMENTS: &str = "experiments";
/// `PATH` after the environment's own `bin`.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The experiment's environment, built rather than inherited: PATH (the
/// Python environment first), HOME and TMPDIR inside the experiment
/// directory, a UTF-8 locale, the variables `--pass-env` names, the
/// request's `config.env` (`%VAR%` expanded from what is built so far, never
/// from the runner's own environment), and last the allocation (GPUs,
/// threads), which a request cannot override.
fn experiment_environment(
    request: &Request,
    settings: &Settings,
    allocation: &Allocation,
    venv: &Path,
    delivery: &Delivery,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    environment.insert(
        "PATH".to_owned(),
        format!("{}:{SYSTEM_PATH}", venv.join("bin").display()),
    );
    environment.insert("LANG".to_owned(), "C.UTF-8".to_owned());
    environment.insert("LC_ALL".to_owned(), "C.UTF-8".to_owned());
    environment.insert("PYTHONUNBUFFERED".to_owned(), "1".to_owned());
    for name in &settings.pass_env {
        if let Some(value) = lookup(name) {
            environment.insert(name.clone(), value);
        }
    }
    for (name, value) in &request.config.env {
        let expanded = expand(value, &|name: &str| environment.get(name).cloned());
        environment.insert(name.clone(), expanded);
    }
    let cpus = allocation.cores().to_string();
    let gpus = allocation.gpus();
    let visible = if gpus.is_empty() {
        "-1".to_owned()
    } else {
        gpus.join(",")
    };
    let fixed = [
        ("HOME", delivery.root.join(HOME).display().to_string()),
        ("TMPDIR", delivery.root.join(TMP).display().to_string()),
        ("STUDIOML_HOME", delivery.root.display().to_string()),
        (MARKER, delivery.root.display().to_string()),
        ("STUDIOML_EXPERIMENT", delivery.id.clone()),
        ("VIRTUAL_ENV", venv.display().to_string()),
        ("CUDA_VISIBLE_DEVICES", visible.clone()),
        ("NVIDIA_VISIBLE_DEVICES", visible),
        ("OMP_NUM_THREADS", cpus.clone()),
        ("MKL_NUM_THREADS", cpus.clone()),
        ("OPENBLAS_NUM_THREADS", cpus),
    ];
    for (name, value) in fixed {
        environment.insert(name.to_owned(), value);
    }
    environment
}

/// The experiment's home and temporary directories, under its root.
const HOME: &str = "home";
const TMP: &str = "tmp";

/// The package list as the original runner groomed it: `pkg-resources`
/// (an artefact of `pip freeze` on Debian) dropped; `studioml` taken from
/// the workspace's `dist/studioml-*.tar.gz` when it carries one (the
/// client's own build); `config.pip` added; blanks and duplicates gone.
/// Returns the list and its cache key (a carried tarball counts by its
/// content, not its path).
fn groom(request: &Request, workspace: &Path) -> Result<(Vec<String>, Vec<String>), ExecuteError> {
    let carried = studioml_tarball(workspace);
    let mut packages: Vec<String> = request
        .experiment
        .pythonenv
        .iter()
        .chain(&request.config.pip)
        .map(|package| package.trim().to_owned())
        .filter(|package| !package.is_empty())
        .filter(|package| {
            let name = package.to_ascii_lowercase().replace('_', "-");
            let carried_instead = carried.is_some() && requirement_name(&name) == "studioml";
            !(name.starts_with("pkg-resources") || carried_instead)
        })
        .collect();
    packages.sort();
    packages.dedup();
    let mut key = packages.clone();
    if let Some(tarball) = carried {
        let bytes = fs::read(&tarball).map_err(io_error("read", &tarball))?;
        key.push(format!("studioml-sdist:{}", sha256_hex(&bytes)));
        packages.push(tarball.display().to_string());
    }
    Ok((packages, key))
}

/// The distribution name of a requirement (`Name[extra]>=1; marker` → `name`).
fn requirement_name(requirement: &str) -> &str {
    let end = requirement
        .find(|character: char| {
            !(character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.'))
        })
        .unwrap_or(requirement.len());
    &requirement[..end]
}

/// The newest `dist/studioml-*.tar.gz` of the workspace (a regular file, not a link).
fn studioml_tarball(workspace: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(workspace.join("dist"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(std::ffi::OsStr::to_str)
                .is_some_and(|name| name.starts_with("studioml-") && name.ends_with(".tar.gz"))
        })
        .collect();
    found.sort();
    found.pop()
}

/// pip tries this often (a package index may fail for a moment).
const PIP_TRIES: u32 = 3;
/// The wait before pip's second try; doubled for the third.
const PIP_RETRY: Duration = Duration::from_secs(2);

/// The environment for the request's (groomed) packages on `interpreter`,
/// made once and reused; pip's output goes to the experiment's log.
fn environment(
    settings: &Settings,
    request: &Request,
    interpreter: &Path,
    workspace: &Path,
    log: &fs::File,
    setup: &Setup<'_>,
) -> Result<PathBuf, ExecuteError> {
    let (packages, key) = groom(request, workspace)?;
    let mut hasher = Sha256::new();
    hasher.update(interpreter.as_os_str().as_encoded_bytes());
    for entry in &key {
        hasher.update(b"\n");
        hasher.update(entry.as_bytes());
    }
    let name = hex(&hasher.finalize())[..16].to_owned();
    let target = settings.venv_cache.join(name);
    if target.join("bin/python").exists() {
        return Ok(target);
    }
    fs::create_dir_all(&settings.venv_cache).map_err(io_error("create", &settings.venv_cache))?;
    // Each experiment builds in its own directory (several may want the
    // same environment at once); the first to finish renames its into place.
    let staging = tempfile::Builder::new()
        .prefix(".staging-")
        .tempdir_in(&settings.venv_cache)
        .map_err(io_error("create a directory in", &settings.venv_cache))?;
    let made = Command::new(interpreter)
        .args(["-m", "venv"])
        .arg(staging.path())
        .env_clear()
        .envs(pip_environment(settings, staging.path(), setup.root))
        .stdin(Stdio::null())
        .output()
        .map_err(|error| {
            ExecuteError::Environment(format!("{}: {error}", interpreter.display()))
        })?;
    if !made.status.success() {
        return Err(ExecuteError::Environment(format!(
            "{} -m venv: {}",
            interpreter.display(),
            String::from_utf8_lossy(&made.stderr).trim()
        )));
    }
    if !packages.is_empty() {
        install(settings, staging.path(), &packages, log, setup)?;
    }
    let staging = staging.keep();
    match fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        // Made meanwhile by another experiment: use that one.
        Err(_) if target.join("bin/python").exists() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(target)
        }
        Err(error) => {
            let _ = fs::remove_dir_all(&staging);
            Err(io_error("keep", &target)(error))
        }
    }
}

/// The environment pip and the packages' build code run in: built like
/// the experiment's (a package's `setup.py` is code from outside, so it never
/// sees the runner's credentials), with HOME and pip's cache in the venv
/// cache (the runner's own HOME is never written), the variables
/// `--pass-env` names (a proxy) and the operator's `PIP_*` settings.
fn pip_environment(settings: &Settings, venv: &Path, run: &Path) -> BTreeMap<String, String> {
    let mut environment = BTreeMap::new();
    environment.insert(MARKER.to_owned(), run.display().to_string());
    environment.insert(
        "PATH".to_owned(),
        format!("{}:{SYSTEM_PATH}", venv.join("bin").display()),
    );
    for (name, value) in [("LANG", "C.UTF-8"), ("LC_ALL", "C.UTF-8")] {
        environment.insert(name.to_owned(), value.to_owned());
    }
    for (name, value) in std::env::vars() {
        if name.starts_with("PIP_") || settings.pass_env.contains(&name) {
            environment.insert(name, value);
        }
    }
    environment.insert(
        "HOME".to_owned(),
        settings.venv_cache.join(".home").display().to_string(),
    );
    environment.insert(
        "PIP_CACHE_DIR".to_owned(),
        settings.venv_cache.join(".pip-cache").display().to_string(),
    );
    environment
}

/// `pip install` every package in one call, with retries; pip's output
/// (its errors above all) goes to the experiment's log. pip runs in its
/// own process group, recorded like the experiment's, within the
/// experiment's deadline, and is ended when the runner stops and the drain
/// timeout passes.
fn install(
    settings: &Settings,
    venv: &Path,
    packages: &[String],
    log: &fs::File,
    setup: &Setup<'_>,
) -> Result<(), ExecuteError> {
    let pip = venv.join("bin/pip");
    let environment = pip_environment(settings, venv, setup.root);
    let mut wait = PIP_RETRY;
    for attempt in 1..=PIP_TRIES {
        let mut out = log
            .try_clone()
            .map_err(io_error("write to the log of", venv))?;
        let _ = writeln!(
            out,
            "runner: pip install ({} package(s)), try {attempt} of {PIP_TRIES}",
            packages.len()
        );
        let mut command = Command::new(&pip);
        command
            .args([
                "install",
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            // Requirement specifiers only (checked when the request was
            // read): `--` keeps any from being read as an option.
            .arg("--")
            .args(packages)
            // Nothing relative resolves against the runner's own directory.
            .current_dir(venv)
            .env_clear()
            .envs(&environment)
            .stdin(Stdio::null())
            .stdout(
                out.try_clone()
                    .map_err(io_error("write to the log of", venv))?,
            )
            .stderr(out);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let child = command
            .spawn()
            .map_err(|error| ExecuteError::Environment(format!("{}: {error}", pip.display())))?;
        let mut group = Group::new(child, setup.root);
        record_group(setup.root, group.id());
        let status = loop {
            if let Some(status) = group.exited().map_err(io_error("wait for pip in", venv))? {
                break status;
            }
            if setup.stopped(settings) {
                return Err(ExecuteError::Stopped);
            }
            if Instant::now() >= setup.deadline {
                return Err(ExecuteError::Environment(
                    "pip install did not finish within the experiment's time limit".to_owned(),
                ));
            }
            std::thread::sleep(POLL);
        };
        drop(group);
        if status.success() {
            return Ok(());
        }
        if attempt < PIP_TRIES {
            let until = Instant::now() + wait;
            while Instant::now() < until {
                if settings.stop.load(std::sync::atomic::Ordering::SeqCst) {
                    return Err(ExecuteError::Stopped);
                }
                std::thread::sleep(POLL);
            }
            wait *= 2;
        }
    }
    Err(ExecuteError::Environment(format!(
        "pip install failed {PIP_TRIES} times (its output is in output/output): {}",
        packages.join(" ")
    )))
}

/// What setting up an experiment (its Python environment) is bounded by.
struct Setup<'run> {
    /// The delivery's root (the marker of its processes).
    root: &'run Path,
    /// The experiment's deadline.
    deadline: Instant,
    /// When a stop was first seen.
    stop_seen: std::cell::Cell<Option<Instant>>,
}

impl Setup<'_> {
    /// Whether the runner is stopping and the drain timeout has passed.
    fn stopped(&self, settings: &Settings) -> bool {
        if !settings.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let seen = self.stop_seen.get().unwrap_or_else(Instant::now);
        self.stop_seen.set(Some(seen));
        seen.elapsed() >= settings.drain_timeout
    }
}

/// Run one experiment to its end (or deadline) and store its mutable artifacts.
///
/// # Errors
/// Artifacts, environment or process failures; the outcome of a script that
/// ran is not an error.
pub fn run(
    request: &Request,
    settings: &Settings,
    allocation: &Allocation,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Outcome, ExecuteError> {
    let delivery = experiment_directory(&settings.work_dir, &request.experiment.key)?;
    let result = run_in(request, settings, allocation, lookup, &delivery);
    let _ = fs::remove_dir_all(&delivery.root);
    result
}

fn run_in(
    request: &Request,
    settings: &Settings,
    allocation: &Allocation,
    lookup: &dyn Fn(&str) -> Option<String>,
    delivery: &Delivery,
) -> Result<Outcome, ExecuteError> {
    let directory = delivery.directory.as_path();
    let interpreter = settings
        .python
        .choose(&request.experiment.pythonver)
        .map_err(ExecuteError::Environment)?;
    // Every artifact's unpacked bytes count against the request's disk.
    let budget = crate::unpack::Budget::new(request.hdd());
    for (label, artifact) in &request.experiment.artifacts {
        let fetched = storage::fetch(
            label,
            artifact,
            &request.config.env,
            &directory.join(label),
            settings.cache.as_deref(),
            &budget,
        );
        match fetched {
            Ok(unpacked) if unpacked.skipped > 0 => crate::log::warn(&format!(
                "experiment {}: artifact {label}: {} special file(s) (devices, FIFOs) left out",
                request.experiment.key, unpacked.skipped
            )),
            Ok(_) => {}
            // The experiment's own fault (more bytes than it asked for):
            // say so in its output, store what it has, and settle it.
            Err(error) if error.class() == Class::ExperimentFailed => {
                let (mut log, _) = output_log(directory)?;
                let _ = writeln!(log, "runner: {}", crate::error_text(&error));
                drop(log);
                store_mutable(request, directory)?;
                return Ok(Outcome::Aborted);
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (mut log, log_err) = output_log(directory)?;
    for private in [HOME, TMP] {
        let path = delivery.root.join(private);
        fs::create_dir_all(&path).map_err(io_error("create", &path))?;
    }
    let workspace = directory.join("workspace");
    let setup = Setup {
        root: &delivery.root,
        deadline: Instant::now() + time_limit(request, settings.max_runtime, SystemTime::now()),
        stop_seen: std::cell::Cell::new(None),
    };
    let venv = match environment(settings, request, &interpreter, &workspace, &log, &setup) {
        Ok(venv) => venv,
        Err(ExecuteError::Stopped) => return Ok(Outcome::Interrupted),
        Err(error) => {
            // pip's own output is already in the log; say what it meant,
            // and store the log so the submitter can read why.
            let _ = writeln!(log, "runner: {}", crate::error_text(&error));
            let _ = store_mutable(request, directory);
            return Err(error);
        }
    };
    let environment =
        experiment_environment(request, settings, allocation, &venv, delivery, lookup);
    metadata_lines(&mut log, request, &[("start_time", now_text())]);
    let mut command = Command::new(venv.join("bin/python"));
    command
        .arg(&request.experiment.filename)
        .args(&request.experiment.args)
        .current_dir(&workspace)
        .env_clear()
        .envs(&environment)
        .stdin(Stdio::null())
        .stdout(
            log.try_clone()
                .map_err(io_error("open", &directory.join("output/output")))?,
        )
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .spawn()
        .map_err(io_error("start the experiment in", &workspace))?;
    let mut child = Group::new(child, &delivery.root);
    // Where a runner that dies leaves its experiment's process group, for
    // the next runner to end (see `reap`).
    record_group(&delivery.root, child.id());
    let outcome = supervise(request, settings, &mut child, directory)?;
    drop(child);
    if outcome == Outcome::Interrupted {
        return Ok(Outcome::Interrupted);
    }
    let _ = writeln!(
        log,
        "{}",
        serde_json::json!({"studioml": {"stop_time": now_text()}})
    );
    drop(log);
    store_mutable(request, directory)?;
    Ok(outcome)
}

/// The time now, RFC 3339 in UTC.
fn now_text() -> String {
    jiff::Timestamp::now().to_string()
}

/// The JSON lines the original runner's script wrote before the
/// experiment (`_metadata` scrapers and people read them): the experiment,
/// one line per artifact (its location, never its credentials), `extra`,
/// and the host.
fn metadata_lines(log: &mut fs::File, request: &Request, extra: &[(&str, String)]) {
    let experiment = serde_json::json!({"studioml": {"experiment": {
        "key": request.experiment.key,
        "project": request.config.database.project_id,
    }}});
    let _ = writeln!(log, "{experiment}");
    for (label, artifact) in &request.experiment.artifacts {
        let line = serde_json::json!({"studioml": {"artifacts": {label: artifact.qualified}}});
        let _ = writeln!(log, "{line}");
    }
    for (name, value) in extra {
        let _ = writeln!(log, "{}", serde_json::json!({"studioml": {*name: value}}));
    }
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let _ = writeln!(log, "{}", serde_json::json!({"studioml": {"host": host}}));
}

/// `output/output`, where the experiment's stdout and stderr go (created
/// without following links the artifacts may have planted).
fn output_log(directory: &Path) -> Result<(fs::File, fs::File), ExecuteError> {
    let output_directory = directory.join("output");
    crate::unpack::ensure_directory(&output_directory)
        .map_err(io_error("create", &output_directory))?;
    let log_path = output_directory.join("output");
    let log =
        crate::unpack::create_file_no_follow(&log_path).map_err(io_error("create", &log_path))?;
    let log_err = log.try_clone().map_err(io_error("open", &log_path))?;
    Ok((log, log_err))
}

/// Store every mutable artifact, even after one fails; the first failure
/// is reported.
fn store_mutable(request: &Request, directory: &Path) -> Result<(), ExecuteError> {
    let mut failure = None;
    for (label, artifact) in &request.experiment.artifacts {
        if artifact.mutable
            && let Err(error) =
                storage::store(label, artifact, &request.config.env, &directory.join(label))
        {
            failure.get_or_insert(error);
        }
    }
    failure.map_or(Ok(()), |error| Err(error.into()))
}

/// The experiment's process, as the leader of its own process group: the
/// whole group is killed when the leader exits (no daemon it started
/// outlives it), and when this is dropped — on an error, and when the
/// runner's own code panics while the experiment runs.
struct Group {
    child: std::process::Child,
    status: Option<std::process::ExitStatus>,
    /// `RUNNER_RUN=<root>`: found in the environment of every process the
    /// experiment started, even one that left its process group (`setsid`).
    marker: Vec<u8>,
}

impl Group {
    fn new(child: std::process::Child, root: &Path) -> Self {
        Self {
            child,
            status: None,
            marker: marker_of(root),
        }
    }

    fn id(&self) -> u32 {
        self.child.id()
    }

    fn group(&self) -> Option<rustix::process::Pid> {
        rustix::process::Pid::from_raw(i32::try_from(self.child.id()).ok()?)
    }

    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(group) = self.group() {
            let _ = rustix::process::kill_process_group(group, signal);
        }
    }

    /// The leader's exit status once it has exited. The rest of its group
    /// is killed first, while the exited (unreaped) leader still holds the
    /// group's number, so no other process can be reached by it.
    fn exited(&mut self) -> io::Result<Option<std::process::ExitStatus>> {
        if self.status.is_some() {
            return Ok(self.status);
        }
        let Some(pid) = self.group() else {
            return self.child.try_wait();
        };
        let options = rustix::process::WaitIdOptions::EXITED
            | rustix::process::WaitIdOptions::NOHANG
            | rustix::process::WaitIdOptions::NOWAIT;
        if rustix::process::waitid(rustix::process::WaitId::Pid(pid), options)?.is_none() {
            return Ok(None);
        }
        self.signal(rustix::process::Signal::KILL);
        kill_marked(&|environment| has_entry(environment, &self.marker));
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(self.status)
    }

    /// Kill the whole group now and reap the leader.
    fn kill(&mut self) {
        if self.status.is_none() {
            self.signal(rustix::process::Signal::KILL);
            kill_marked(&|environment| has_entry(environment, &self.marker));
            self.status = self.child.wait().ok();
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Wait for the experiment to end, kill it at its deadline or when the
/// drain timeout passes, and upload checkpoints while it runs.
fn supervise(
    request: &Request,
    settings: &Settings,
    child: &mut Group,
    directory: &Path,
) -> Result<Outcome, ExecuteError> {
    let workspace = directory.join("workspace");
    let limit = time_limit(request, settings.max_runtime, SystemTime::now());
    let started = Instant::now();
    let mut checkpoints = Checkpoints::new(request, started);
    std::thread::scope(|scope| -> Result<Outcome, ExecuteError> {
        let mut stop_asked: Option<Instant> = None;
        let mut upload: Option<std::thread::ScopedJoinHandle<'_, ()>> = None;
        let outcome = loop {
            if let Some(status) = child
                .exited()
                .map_err(io_error("wait for the experiment in", &workspace))?
            {
                break if status.success() {
                    Outcome::Succeeded
                } else {
                    Outcome::Failed(status.code().unwrap_or(-1))
                };
            }
            if started.elapsed() >= limit {
                kill_tree(child, &workspace)?;
                break Outcome::TimedOut;
            }
            if stop_asked.is_none() && settings.stop.load(std::sync::atomic::Ordering::SeqCst) {
                stop_asked = Some(Instant::now());
            }
            if stop_asked.is_some_and(|asked| asked.elapsed() >= settings.drain_timeout) {
                kill_tree(child, &workspace)?;
                break Outcome::Interrupted;
            }
            if upload
                .as_ref()
                .is_none_or(std::thread::ScopedJoinHandle::is_finished)
            {
                let due = checkpoints.due(Instant::now());
                if !due.is_empty() {
                    upload = Some(scope.spawn(move || {
                        for (label, artifact) in due {
                            // A failed checkpoint is not fatal: the final
                            // upload (or the next checkpoint) tries again.
                            if let Err(error) = storage::store(
                                label,
                                artifact,
                                &request.config.env,
                                &directory.join(label),
                            ) {
                                crate::log::warn(&format!(
                                    "experiment {}: checkpoint failed: {}",
                                    request.experiment.key,
                                    crate::error_text(&error)
                                ));
                            }
                        }
                    }));
                }
            }
            std::thread::sleep(POLL);
        };
        Ok(outcome)
    })
}

/// The checkpoint schedule: each mutable artifact every `saveFrequency`
/// seconds (its own), else every `config.saveWorkspaceFrequency` when that
/// is between 1 s and 12 h (as the original runner), else never.
struct Checkpoints<'request> {
    schedule: Vec<(&'request str, &'request Artifact, Duration, Instant)>,
}

impl<'request> Checkpoints<'request> {
    fn new(request: &'request Request, started: Instant) -> Self {
        let workspace = request
            .config
            .save_workspace_frequency()
            .filter(|every| *every > Duration::from_secs(1) && *every < Duration::from_hours(12));
        let schedule = request
            .experiment
            .artifacts
            .iter()
            .filter(|(_, artifact)| artifact.mutable)
            .filter_map(|(label, artifact)| {
                artifact.save_frequency().or(workspace).and_then(|every| {
                    Some((label.as_str(), artifact, every, started.checked_add(every)?))
                })
            })
            .collect();
        Self { schedule }
    }

    /// The artifacts due at `now`; each is scheduled again.
    fn due(&mut self, now: Instant) -> Vec<(&'request str, &'request Artifact)> {
        let mut due = Vec::new();
        for (label, artifact, every, next) in &mut self.schedule {
            if *next <= now {
                due.push((*label, *artifact));
                // Intervals are at most a year (the request's bound).
                *next = now.checked_add(*every).unwrap_or(now);
            }
        }
        due
    }
}

/// The variable every process of an experiment (and of its pip) carries:
/// the delivery's root. Processes that left the experiment's process group
/// (`setsid` daemons) are found by it and ended with the experiment.
pub const MARKER: &str = "RUNNER_RUN";

fn marker_of(root: &Path) -> Vec<u8> {
    let mut marker = format!("{MARKER}=").into_bytes();
    marker.extend_from_slice(root.as_os_str().as_encoded_bytes());
    marker
}

/// Whether an environment block (`/proc/<pid>/environ`) holds exactly `entry`.
fn has_entry(environment: &[u8], entry: &[u8]) -> bool {
    environment
        .split(|byte| *byte == 0)
        .any(|item| item == entry)
}

/// SIGKILL every process (but this one) whose environment block `matches`,
/// looking again while a look finds some (a daemon may be forking while
/// /proc is read), a few times at most; returns how many. Processes of
/// other users cannot be read and are left.
fn kill_marked(matches: &dyn Fn(&[u8]) -> bool) -> usize {
    let mut killed = 0;
    for _ in 0..10 {
        let now = kill_marked_once(matches);
        if now == 0 {
            break;
        }
        killed += now;
        std::thread::sleep(Duration::from_millis(50));
    }
    killed
}

fn kill_marked_once(matches: &dyn Fn(&[u8]) -> bool) -> usize {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let own = std::process::id();
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
            .filter(|pid| *pid != own)
        else {
            continue;
        };
        let Ok(environment) = fs::read(entry.path().join("environ")) else {
            continue;
        };
        if matches(&environment)
            && let Some(pid) = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw)
            && rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
        {
            killed += 1;
        }
    }
    killed
}

/// The file in an experiment directory naming its process group and the
/// group leader's start time (`/proc/<pid>/stat` field 22), so a restarted
/// runner ends exactly the processes of its predecessor's experiments,
/// wherever they moved to, and nothing that reused the number.
const GROUP_FILE: &str = ".runner-process";

/// A process's start time in clock ticks after boot, from `/proc/<pid>/stat`.
fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count
    // from the last ')'. Field 22 is the 20th after it.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Write the experiment's process group record (replaced atomically).
fn record_group(directory: &Path, pid: u32) {
    let Some(started) = start_time(pid) else {
        return;
    };
    let path = directory.join(GROUP_FILE);
    let temporary = directory.join(format!("{GROUP_FILE}.partial"));
    if fs::write(&temporary, format!("{pid} {started}\n")).is_ok() {
        let _ = fs::rename(&temporary, &path);
    }
}

/// Hold `work_dir` for this runner alone: a second runner on the same
/// directory would run the same experiments' files. The lock lasts as long
/// as the returned file is open.
///
/// # Errors
/// Another runner holds it, or the directory cannot be used.
pub fn lock_work_dir(work_dir: &Path) -> Result<fs::File, ExecuteError> {
    fs::create_dir_all(work_dir).map_err(io_error("create", work_dir))?;
    let path = work_dir.join(".runner.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_error("open", &path))?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive).map_err(
        |error| ExecuteError::Io {
            action: "lock (is another runner using this --work-dir?)",
            path: path.clone(),
            source: error.into(),
        },
    )?;
    Ok(file)
}

/// End what a runner that died left behind in `work_dir`: the process
/// groups of its experiments and their directories. A group is killed when
/// its leader still runs with the recorded start time, or has exited while
/// members of its group live on (its number cannot have been reused then);
/// never when the number now belongs to another process. Call with the work
/// directory locked. Returns how many process groups were signalled.
#[must_use]
pub fn reap(work_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(work_dir.join(RUNS)) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let directory = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        let record = fs::read_to_string(directory.join(GROUP_FILE)).unwrap_or_default();
        let mut fields = record.split_whitespace();
        let pid = fields.next().and_then(|text| text.parse::<u32>().ok());
        let started = fields.next().and_then(|text| text.parse::<u64>().ok());
        if let (Some(pid), Some(started)) = (pid, started) {
            let ours = start_time(pid).is_none_or(|now| now == started);
            let group = i32::try_from(pid)
                .ok()
                .and_then(rustix::process::Pid::from_raw);
            if ours
                && let Some(group) = group
                && rustix::process::kill_process_group(group, rustix::process::Signal::KILL).is_ok()
            {
                killed += 1;
            }
        }
        let _ = fs::remove_dir_all(&directory);
    }
    // Processes of those experiments that left their process group.
    let mut prefix = marker_of(&work_dir.join(RUNS));
    prefix.push(b'/');
    let strays = kill_marked(&|environment| {
        environment
            .split(|byte| *byte == 0)
            .any(|item| item.starts_with(&prefix))
    });
    if strays > 0 {
        crate::log::warn(&format!(
            "killed {strays} process(es) a previous runner's experiments had detached"
        ));
    }
    killed
}

/// SIGTERM the experiment's process group, SIGKILL it after the grace period.
fn kill_tree(child: &mut Group, workspace: &Path) -> Result<(), ExecuteError> {
    child.signal(rustix::process::Signal::TERM);
    let asked = Instant::now();
    while asked.elapsed() < GRACE {
        if child
            .exited()
            .map_err(io_error("wait for the experiment in", workspace))?
            .is_some()
        {
            return Ok(());
        }
        std::thread::sleep(POLL);
    }
    child.kill();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_expansion() {
        assert!(directory_name("1538073289_3c9acb9b/x y").starts_with("1538073289_3c9acb9b_x_y-"));
        assert_ne!(directory_name("a/b"), directory_name("a_b"));
        // The names of existing work directories: the first 4 bytes of the key's SHA-256.
        assert_eq!(directory_name("a/b"), "a_b-c14cddc0");
        let lookup = |name: &str| (name == "PATH").then(|| "/usr/bin".to_owned());
        assert_eq!(expand("%PATH%:./bin", &lookup), "/usr/bin:./bin");
        assert_eq!(expand("%NOPE%x", &lookup), "x");
        assert_eq!(expand("100%", &lookup), "100%");
    }

    fn request(pythonenv: &str, pip: &str) -> Request {
        let text = format!(
            r#"{{"config": {{"pip": {pip}}}, "experiment": {{"key": "k", "filename": "main.py",
                 "pythonenv": {pythonenv}, "resources_needed": {{"hdd": "1gb", "ram": "1gb"}},
                 "artifacts": {{"workspace": {{"qualified": "file:///w.tar"}}}}}}}}"#
        );
        Request::parse(text.as_bytes()).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn packages_are_groomed_as_the_original_did() -> Result<(), Box<dyn std::error::Error>> {
        let workspace = tempfile::tempdir()?;
        let freeze = r#"["numpy==1.26.4", "pkg-resources==0.0.0", "pkg_resources==0.0.0", "studioml==0.0.49", "numpy==1.26.4", " "]"#;
        let (packages, key) = groom(
            &request(freeze, r#"["requests==2.31.0"]"#),
            workspace.path(),
        )?;
        assert_eq!(
            packages,
            ["numpy==1.26.4", "requests==2.31.0", "studioml==0.0.49"]
        );
        assert_eq!(key, packages);
        // The workspace carries the client's own build: it replaces the pinned one.
        fs::create_dir_all(workspace.path().join("dist"))?;
        fs::write(
            workspace.path().join("dist/studioml-0.0.48.tar.gz"),
            b"older",
        )?;
        fs::write(
            workspace.path().join("dist/studioml-0.0.50.tar.gz"),
            b"newer",
        )?;
        let (packages, key) = groom(&request(freeze, "null"), workspace.path())?;
        let tarball = workspace.path().join("dist/studioml-0.0.50.tar.gz");
        assert_eq!(
            packages,
            ["numpy==1.26.4".to_owned(), tarball.display().to_string()]
        );
        assert_eq!(key[0], "numpy==1.26.4");
        assert!(
            key[1].starts_with("studioml-sdist:"),
            "keyed by content: {key:?}"
        );
        let (_, same) = groom(&request(freeze, "null"), workspace.path())?;
        assert_eq!(same, key);
        fs::write(&tarball, b"rebuilt")?;
        let (_, changed) = groom(&request(freeze, "null"), workspace.path())?;
        assert_ne!(changed, key, "a rebuilt tarball is another environment");
        Ok(())
    }
}
