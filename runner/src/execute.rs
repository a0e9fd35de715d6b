//! Running one experiment: its directory, artifacts, a Python virtual
//! environment (cached by its package list), the script with its output in
//! `output/output`, the deadline (the whole process tree is killed), and
//! the mutable artifacts written back.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};
use thiserror::Error;

use crate::cache::Cache;
use crate::request::{Artifact, Request, parse_duration};
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
    /// The Python used to make environments.
    pub python: String,
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

impl ExecuteError {
    /// Whether a later attempt could succeed (the message should be requeued).
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Storage(error) => error.is_transient(),
            Self::Environment(_) | Self::Io { .. } => true,
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
    let hash = Sha256::digest(key.as_bytes());
    format!(
        "{readable}-{:02x}{:02x}{:02x}{:02x}",
        hash[0], hash[1], hash[2], hash[3]
    )
}

/// `%VAR%` replaced by the runner's environment value (empty when unset).
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
/// of the lifetime counted from `time_added`, and the runner's cap.
#[must_use]
pub fn time_limit(request: &Request, cap: Duration, now: SystemTime) -> Duration {
    let mut limit = cap;
    if let Some(duration) = parse_duration(&request.experiment.max_duration) {
        limit = limit.min(duration);
    }
    if let Some(lifetime) = parse_duration(&request.config.experiment_lifetime)
        && request.experiment.time_added > 10.0
    {
        let added = SystemTime::UNIX_EPOCH + Duration::from_secs_f64(request.experiment.time_added);
        let end = added + lifetime;
        limit = limit.min(end.duration_since(now).unwrap_or(Duration::ZERO));
    }
    limit
}

/// The environment for `packages`, made once and reused.
fn environment(settings: &Settings, request: &Request) -> Result<PathBuf, ExecuteError> {
    let mut packages: Vec<String> = request
        .experiment
        .pythonenv
        .iter()
        .chain(&request.config.pip)
        .map(|package| package.trim().to_owned())
        .filter(|package| !package.is_empty())
        .collect();
    packages.sort();
    packages.dedup();
    let mut hasher = Sha256::new();
    hasher.update(settings.python.as_bytes());
    for package in &packages {
        hasher.update(b"\n");
        hasher.update(package.as_bytes());
    }
    let hash = hasher.finalize();
    let name = hash.iter().take(8).fold(String::new(), |mut text, byte| {
        use std::fmt::Write as _;
        let _ = write!(text, "{byte:02x}");
        text
    });
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
        .map_err(io_error("create a directory in", &settings.venv_cache))?
        .keep();
    let made = Command::new(&settings.python)
        .args(["-m", "venv"])
        .arg(&staging)
        .output()
        .map_err(|error| {
            let _ = fs::remove_dir_all(&staging);
            ExecuteError::Environment(format!("{}: {error}", settings.python))
        })?;
    if !made.status.success() {
        let _ = fs::remove_dir_all(&staging);
        return Err(ExecuteError::Environment(
            String::from_utf8_lossy(&made.stderr).trim().to_owned(),
        ));
    }
    if !packages.is_empty() {
        let installed = Command::new(staging.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "-q"])
            .args(&packages)
            .output()
            .map_err(|error| ExecuteError::Environment(error.to_string()))?;
        if !installed.status.success() {
            let _ = fs::remove_dir_all(&staging);
            return Err(ExecuteError::Environment(format!(
                "pip install {}: {}",
                packages.join(" "),
                String::from_utf8_lossy(&installed.stderr).trim()
            )));
        }
    }
    match fs::rename(&staging, &target) {
        Ok(()) => Ok(target),
        // Made meanwhile by another experiment: use that one.
        Err(_) if target.join("bin/python").exists() => {
            let _ = fs::remove_dir_all(&staging);
            Ok(target)
        }
        Err(error) => Err(io_error("keep", &target)(error)),
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
    let directory = settings
        .work_dir
        .join(directory_name(&request.experiment.key));
    let _ = fs::remove_dir_all(&directory);
    fs::create_dir_all(&directory).map_err(io_error("create", &directory))?;
    let budget = crate::unpack::Budget::new(request.hdd());
    for (label, artifact) in &request.experiment.artifacts {
        storage::fetch(
            label,
            artifact,
            &request.config.env,
            &directory.join(label),
            settings.cache.as_deref(),
            &budget,
        )?;
    }
    let output_directory = directory.join("output");
    fs::create_dir_all(&output_directory).map_err(io_error("create", &output_directory))?;
    let log_path = output_directory.join("output");
    let log = fs::File::create(&log_path).map_err(io_error("create", &log_path))?;
    let log_err = log.try_clone().map_err(io_error("open", &log_path))?;
    let venv = environment(settings, request)?;
    let mut environment: BTreeMap<String, String> = request
        .config
        .env
        .iter()
        .map(|(key, value)| (key.clone(), expand(value, lookup)))
        .collect();
    let cpus = allocation.cores().to_string();
    let gpus = allocation.gpus();
    let visible = if gpus.is_empty() {
        "-1".to_owned()
    } else {
        gpus.join(",")
    };
    environment.insert("CUDA_VISIBLE_DEVICES".to_owned(), visible.clone());
    environment.insert("NVIDIA_VISIBLE_DEVICES".to_owned(), visible);
    for name in ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] {
        environment.insert(name.to_owned(), cpus.clone());
    }
    environment.insert(
        "PATH".to_owned(),
        format!(
            "{}:{}",
            venv.join("bin").display(),
            environment
                .get("PATH")
                .cloned()
                .or_else(|| lookup("PATH"))
                .unwrap_or_default()
        ),
    );
    environment.insert("VIRTUAL_ENV".to_owned(), venv.display().to_string());
    let workspace = directory.join("workspace");
    let mut command = Command::new(venv.join("bin/python"));
    command
        .arg(&request.experiment.filename)
        .args(&request.experiment.args)
        .current_dir(&workspace)
        .envs(&environment)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let mut child = command
        .spawn()
        .map_err(io_error("start the experiment in", &workspace))?;
    // Where a runner that dies leaves its experiment's process group, for
    // the next runner to end (see `reap`).
    let _ = fs::write(directory.join(GROUP_FILE), child.id().to_string());
    let outcome = supervise(request, settings, &mut child, &directory)?;
    if outcome == Outcome::Interrupted {
        let _ = fs::remove_dir_all(&directory);
        return Ok(Outcome::Interrupted);
    }
    // Every mutable artifact is tried, even after one fails; the first
    // failure is reported.
    let mut failure = None;
    for (label, artifact) in &request.experiment.artifacts {
        if artifact.mutable
            && let Err(error) =
                storage::store(label, artifact, &request.config.env, &directory.join(label))
        {
            failure.get_or_insert(error);
        }
    }
    let _ = fs::remove_dir_all(&directory);
    match failure {
        Some(error) => Err(error.into()),
        None => Ok(outcome),
    }
}

/// Wait for the experiment to end, kill it at its deadline or when the
/// drain timeout passes, and upload checkpoints while it runs.
fn supervise(
    request: &Request,
    settings: &Settings,
    child: &mut std::process::Child,
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
                .try_wait()
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
        let workspace = parse_duration(&request.config.save_workspace_frequency)
            .filter(|every| *every > Duration::from_secs(1) && *every < Duration::from_hours(12));
        let schedule = request
            .experiment
            .artifacts
            .iter()
            .filter(|(_, artifact)| artifact.mutable)
            .filter_map(|(label, artifact)| {
                let own = artifact
                    .save_frequency
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|seconds| *seconds > 0.0 && seconds.is_finite())
                    .map(Duration::from_secs_f64);
                own.or(workspace)
                    .map(|every| (label.as_str(), artifact, every, started + every))
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
                *next = now + *every;
            }
        }
        due
    }
}

/// The file in an experiment directory naming its process group.
const GROUP_FILE: &str = ".runner-pgid";

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
/// groups of its experiments (when they still run there) and their
/// directories. Call with the work directory locked. Returns how many
/// process groups were killed.
#[must_use]
pub fn reap(work_dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(work_dir) else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.filter_map(Result::ok) {
        let directory = entry.path();
        if !entry.file_type().is_ok_and(|kind| kind.is_dir()) {
            continue;
        }
        if let Some(group) = fs::read_to_string(directory.join(GROUP_FILE))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            // Only a process still working in this directory is ours: the
            // number may have been reused since.
            let cwd = fs::read_link(format!("/proc/{}/cwd", group.as_raw_nonzero()));
            if cwd.is_ok_and(|cwd| cwd.starts_with(&directory))
                && rustix::process::kill_process_group(group, rustix::process::Signal::KILL).is_ok()
            {
                killed += 1;
            }
        }
        let _ = fs::remove_dir_all(&directory);
    }
    killed
}

/// SIGTERM the experiment's process group, SIGKILL it after the grace period.
fn kill_tree(child: &mut std::process::Child, workspace: &Path) -> Result<(), ExecuteError> {
    let Some(group) = rustix::process::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX))
    else {
        return Ok(());
    };
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    let asked = Instant::now();
    while asked.elapsed() < GRACE {
        if child
            .try_wait()
            .map_err(io_error("wait for the experiment in", workspace))?
            .is_some()
        {
            break;
        }
        std::thread::sleep(POLL);
    }
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    let _ = child.wait();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_expansion() {
        assert!(directory_name("1538073289_3c9acb9b/x y").starts_with("1538073289_3c9acb9b_x_y-"));
        assert_ne!(directory_name("a/b"), directory_name("a_b"));
        let lookup = |name: &str| (name == "PATH").then(|| "/usr/bin".to_owned());
        assert_eq!(expand("%PATH%:./bin", &lookup), "/usr/bin:./bin");
        assert_eq!(expand("%NOPE%x", &lookup), "x");
        assert_eq!(expand("100%", &lookup), "100%");
    }
}
