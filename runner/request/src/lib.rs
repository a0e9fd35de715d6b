//! StudioML experiment requests (reference runner.md §3): the JSON the
//! queues carry. A request comes from whoever can write to a queue, so it
//! is untrusted input: it is read tolerantly (unknown fields ignored,
//! `null` wherever a value is optional, `pythonver` as a number or a
//! string, as the StudioML client writes them) and then checked strictly,
//! so that a bad request is refused at once with a reason naming the field
//! (and goes to the dead-letter destination) instead of panicking the
//! runner, escaping the experiment's directory or reaching pip as an
//! option. Every [`RequestError`] is such a rejection.
//!
//! This crate is on its own, with no I/O and no cloud SDKs, so that the
//! fuzz target and the property tests build in seconds.
//!
//! # Limits
//!
//! | what | limit | constant |
//! |---|---|---|
//! | message body | 4 MiB | [`MAX_BODY`] |
//! | `experiment.max_duration`, `config.experimentLifetime`, `config.saveWorkspaceFrequency`, `artifacts.*.saveFrequency` | one year (365 days); Go durations (`20m`, `1h30m`), `saveFrequency` in seconds | [`MAX_DURATION`] |
//! | `experiment.time_added` | finite, ≥ 0, at most one year after now | [`MAX_DURATION`] |
//! | `experiment.key` | 1 to 256 bytes, no control characters, no Unicode format characters that reorder or hide text (U+061C, U+200B–U+200F, U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF) | [`MAX_KEY_BYTES`] |
//! | `experiment.filename` | a relative path inside the workspace: not absolute, no `..` component, no control characters nor the format characters refused in `key`, not starting with `-`, at most 1024 bytes | [`MAX_FILENAME_BYTES`] |
//! | `experiment.pythonver` | blank, or `MAJOR`, `MAJOR.MINOR` or `MAJOR.MINOR.PATCH` in ASCII digits, at most 4 digits each (a number as the client sends it, `3` or `3.8`, is its text) | [`is_python_version`] |
//! | `experiment.args` | at most 4096 entries, each at most 128 KiB, together at most 1 MiB, no NUL | [`MAX_ARGS`], [`MAX_ARG_BYTES`], [`MAX_ARGS_TOTAL_BYTES`] |
//! | `config.env` | at most 1024 variables, names `[A-Za-z_][A-Za-z0-9_]*`, values without NUL, names and values together at most 1 MiB | [`MAX_ENV_VARIABLES`], [`MAX_ENV_TOTAL_BYTES`] |
//! | `experiment.pythonenv` + `config.pip` | at most 4096 entries, each at most 2048 bytes, each a PEP 508 requirement specifier (no pip option, path, wheel or archive file name, or URL unless [`Policy::allow_urls`]; blank entries ignored) | [`MAX_PACKAGES`], [`MAX_PACKAGE_BYTES`] |
//! | `experiment.artifacts` | at most 64; labels `[A-Za-z0-9_.-]+`, not `.` or `..`, at most 128 bytes (a label becomes a directory name) | [`MAX_ARTIFACTS`], [`MAX_LABEL_BYTES`] |
//! | `resources_needed.ram`, `hdd`, `gpuMem` | sizes (`2gb`, `512MiB`) that fit in 64 bits; `ram` and `hdd` required | — |
//! | `resources_needed.cpus`, `gpus` | at most 1024 each | [`MAX_CPUS`], [`MAX_GPUS`] |
//!
//! The typed accessors ([`Experiment::max_duration`],
//! [`Config::experiment_lifetime`], [`Config::save_workspace_frequency`],
//! [`Artifact::save_frequency`], [`Experiment::time_added`]) return values
//! within these bounds whatever the fields hold, so callers never convert
//! raw values themselves.

mod requirement;
mod tolerant;
mod units;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use thiserror::Error;

pub use requirement::Policy;
pub use units::{parse_duration, parse_seconds, parse_size};

/// The largest message accepted, in bytes.
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// The longest duration a request may ask for, and how far in the future
/// `time_added` may be: one year.
pub const MAX_DURATION: Duration = Duration::from_hours(365 * 24);
/// The longest `experiment.key`, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// The longest `experiment.filename`, in bytes.
pub const MAX_FILENAME_BYTES: usize = 1024;
/// The most `experiment.args`.
pub const MAX_ARGS: usize = 4096;
/// The longest single argument, in bytes.
pub const MAX_ARG_BYTES: usize = 128 * 1024;
/// The most bytes of all arguments together.
pub const MAX_ARGS_TOTAL_BYTES: usize = 1024 * 1024;
/// The most `config.env` variables.
pub const MAX_ENV_VARIABLES: usize = 1024;
/// The most bytes of `config.env` names and values together.
pub const MAX_ENV_TOTAL_BYTES: usize = 1024 * 1024;
/// The most `experiment.pythonenv` and `config.pip` entries together.
pub const MAX_PACKAGES: usize = 4096;
/// The longest requirement entry, in bytes.
pub const MAX_PACKAGE_BYTES: usize = 2048;
/// The most artifacts.
pub const MAX_ARTIFACTS: usize = 64;
/// The longest artifact label, in bytes.
pub const MAX_LABEL_BYTES: usize = 128;
/// The most CPU cores a request may ask for.
pub const MAX_CPUS: u32 = 1024;
/// The most GPUs a request may ask for.
pub const MAX_GPUS: u32 = 1024;

/// How much of a refused value a reason quotes, in characters.
const QUOTED_CHARACTERS: usize = 64;

/// Why a message is not a runnable request (the dead-letter reason). Every
/// variant is a rejection: the request can never run anywhere.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// The body is over [`MAX_BODY`].
    #[error("the message is {size} bytes, more than the {limit} bytes a request may have")]
    TooLarge {
        /// Its size.
        size: usize,
        /// [`MAX_BODY`].
        limit: usize,
    },
    /// Not JSON, or the wrong shape.
    #[error("the message is not a StudioML request: {0}")]
    Json(String),
    /// A mandatory field is missing or empty.
    #[error("the request has no {0}")]
    Missing(&'static str),
    /// A size or duration field cannot be read.
    #[error("{field} {value} is not a valid {kind}")]
    Invalid {
        /// The field (`experiment.max_duration`).
        field: String,
        /// Its value, quoted and shortened.
        value: String,
        /// `size`, `duration`, `number of seconds` or `time`.
        kind: &'static str,
    },
    /// A field breaks a rule or a limit.
    #[error("{field}: {reason}")]
    Refused {
        /// The field (`experiment.args[3]`, `config.env`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl RequestError {
    fn refused(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Refused {
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn invalid(field: impl Into<String>, value: &str, kind: &'static str) -> Self {
        Self::Invalid {
            field: field.into(),
            value: quoted(value),
            kind,
        }
    }
}

/// `value` for a reason: quoted, escaped (no control characters reach a
/// log line) and shortened.
fn quoted(value: &str) -> String {
    let mut shown: String = value.chars().take(QUOTED_CHARACTERS).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

/// `value` as JSON writes it (`1e300`, not three hundred digits).
fn number(value: f64) -> String {
    serde_json::Number::from_f64(value)
        .map_or_else(|| value.to_string(), |number| number.to_string())
}

/// A whole request.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Request {
    /// Runner and storage settings.
    #[serde(default, deserialize_with = "tolerant::null_as_default")]
    pub config: Config,
    /// The experiment.
    #[serde(default, deserialize_with = "tolerant::null_as_default")]
    pub experiment: Experiment,
}

/// `config`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    /// Environment for the experiment, `%VAR%` expanded from the runner's.
    #[serde(default, deserialize_with = "tolerant::text_map")]
    pub env: BTreeMap<String, String>,
    /// Extra pip packages.
    #[serde(default, deserialize_with = "tolerant::texts")]
    pub pip: Vec<String>,
    /// Absolute deadline from `time_added` (Go duration); see
    /// [`Config::experiment_lifetime`].
    #[serde(
        default,
        rename = "experimentLifetime",
        deserialize_with = "tolerant::text"
    )]
    pub experiment_lifetime: String,
    /// Checkpoint upload interval (Go duration); see
    /// [`Config::save_workspace_frequency`].
    #[serde(
        default,
        rename = "saveWorkspaceFrequency",
        deserialize_with = "tolerant::text"
    )]
    pub save_workspace_frequency: String,
    /// Only `projectId` is used (metrics label).
    #[serde(default, deserialize_with = "tolerant::null_as_default")]
    pub database: Database,
    /// The client's storage section; its credentials are those of every
    /// artifact that carries none (see [`Request::parse_with`]).
    #[serde(default, deserialize_with = "tolerant::null_as_default")]
    pub storage: Storage,
}

/// `config.storage`, as the `StudioML` client sends its `config.yaml`'s.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Storage {
    /// Its credentials (secrets, never printed).
    #[serde(default)]
    pub credentials: Option<Credentials>,
}

/// `config.database`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Database {
    /// The project, a metrics label.
    #[serde(default, rename = "projectId", deserialize_with = "tolerant::text")]
    pub project_id: String,
}

/// `experiment`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Experiment {
    /// The experiment's unique key.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub key: String,
    /// The Python file run from the workspace.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub filename: String,
    /// Its arguments.
    #[serde(default, deserialize_with = "tolerant::texts")]
    pub args: Vec<String>,
    /// Python version: `2`, `3` (older clients) or `"3.8"`.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub pythonver: String,
    /// pip requirement lines.
    #[serde(default, deserialize_with = "tolerant::texts")]
    pub pythonenv: Vec<String>,
    /// What it needs.
    #[serde(default, deserialize_with = "tolerant::null_as_default")]
    pub resources_needed: Resources,
    /// Cap on one attempt (Go duration); see [`Experiment::max_duration`].
    #[serde(default, deserialize_with = "tolerant::text")]
    pub max_duration: String,
    /// When it was queued (Unix seconds); see [`Experiment::time_added`].
    #[serde(default, deserialize_with = "tolerant::seconds")]
    pub time_added: f64,
    /// Artifacts by label (`workspace`, `output`, …); a `null` entry is absent.
    #[serde(default, deserialize_with = "tolerant::object_map")]
    pub artifacts: BTreeMap<String, Artifact>,
}

/// `experiment.resources_needed`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    /// CPU cores.
    #[serde(default, deserialize_with = "tolerant::count")]
    pub cpus: u32,
    /// Whole GPUs.
    #[serde(default, deserialize_with = "tolerant::count")]
    pub gpus: u32,
    /// Disk (`3gb`).
    #[serde(default, deserialize_with = "tolerant::text")]
    pub hdd: String,
    /// Memory (`2gb`).
    #[serde(default, deserialize_with = "tolerant::text")]
    pub ram: String,
    /// GPU memory per card (`2gb`), optional.
    #[serde(default, rename = "gpuMem", deserialize_with = "tolerant::text")]
    pub gpu_mem: String,
}

/// One artifact.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Artifact {
    /// Bucket (preferred over `qualified`).
    #[serde(default, deserialize_with = "tolerant::text")]
    pub bucket: String,
    /// Object key (preferred over `qualified`).
    #[serde(default, deserialize_with = "tolerant::text")]
    pub key: String,
    /// `s3://host/bucket/key` or `file:///path`.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub qualified: String,
    /// Uploaded back during and after the run.
    #[serde(default, deserialize_with = "tolerant::flag")]
    pub mutable: bool,
    /// Unpacked (tar, tar.gz, tar.bz2) after download; `null` (the
    /// `StudioML` client's "not said") is true, absent is false.
    #[serde(default, deserialize_with = "tolerant::unpack_flag")]
    pub unpack: bool,
    /// Per-artifact credentials.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Seconds between checkpoint uploads of this (mutable) artifact; it
    /// replaces `config.saveWorkspaceFrequency` (the 2022 format). See
    /// [`Artifact::save_frequency`].
    #[serde(default, rename = "saveFrequency", deserialize_with = "tolerant::text")]
    pub save_frequency: String,
}

/// `artifacts.<label>.credentials`; the values are secrets and never printed.
#[derive(Clone, Default, Deserialize)]
pub struct Credentials {
    /// S3 keys.
    #[serde(default)]
    pub aws: Option<AwsCredentials>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("aws", &self.aws.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

/// `credentials.aws`.
#[derive(Clone, Default, Deserialize)]
pub struct AwsCredentials {
    /// Access key id.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub access_key: String,
    /// Secret key.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub secret_access_key: String,
    /// Region.
    #[serde(default, deserialize_with = "tolerant::text")]
    pub region: String,
}

/// A duration field's value within [`MAX_DURATION`]; `None` when blank,
/// unreadable or too long.
fn bounded(duration: Option<Duration>) -> Option<Duration> {
    duration.filter(|duration| *duration <= MAX_DURATION)
}

/// The latest `time_added` accepted at `now`.
fn latest_time_added(now: SystemTime) -> SystemTime {
    now.checked_add(MAX_DURATION).unwrap_or(now)
}

impl Experiment {
    /// The cap on one attempt (`max_duration`), at most [`MAX_DURATION`];
    /// `None` when the request sets none.
    #[must_use]
    pub fn max_duration(&self) -> Option<Duration> {
        bounded(parse_duration(&self.max_duration))
    }

    /// When the experiment was queued; `None` when absent or 0 (then there
    /// is no lifetime to count), and never more than [`MAX_DURATION`] after
    /// now.
    #[must_use]
    pub fn time_added(&self) -> Option<SystemTime> {
        self.time_added_at(SystemTime::now())
    }

    fn time_added_at(&self, now: SystemTime) -> Option<SystemTime> {
        if !(self.time_added.is_finite() && self.time_added > 0.0) {
            return None;
        }
        let since_epoch = Duration::try_from_secs_f64(self.time_added).ok()?;
        SystemTime::UNIX_EPOCH
            .checked_add(since_epoch)
            .filter(|added| *added <= latest_time_added(now))
    }
}

impl Config {
    /// The experiment's lifetime counted from `time_added`
    /// (`experimentLifetime`), at most [`MAX_DURATION`]; `None` when unset.
    #[must_use]
    pub fn experiment_lifetime(&self) -> Option<Duration> {
        bounded(parse_duration(&self.experiment_lifetime))
    }

    /// The checkpoint interval (`saveWorkspaceFrequency`), at most
    /// [`MAX_DURATION`]; `None` when unset.
    #[must_use]
    pub fn save_workspace_frequency(&self) -> Option<Duration> {
        bounded(parse_duration(&self.save_workspace_frequency))
    }
}

impl Artifact {
    /// This artifact's own checkpoint interval (`saveFrequency` seconds),
    /// more than zero and at most [`MAX_DURATION`]; `None` when unset or 0.
    #[must_use]
    pub fn save_frequency(&self) -> Option<Duration> {
        bounded(parse_seconds(&self.save_frequency)).filter(|every| !every.is_zero())
    }
}

impl Resources {
    /// GPU memory per card in bytes; 0 when not asked for.
    #[must_use]
    pub fn gpu_memory(&self) -> u64 {
        parse_size(&self.gpu_mem).unwrap_or(0)
    }
}

/// Whether `label` is a plain name an artifact directory may have:
/// `[A-Za-z0-9_.-]+`, not `.` or `..`, at most [`MAX_LABEL_BYTES`].
#[must_use]
pub fn is_plain_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_LABEL_BYTES
        && label != "."
        && label != ".."
        && label
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte))
}

/// Whether `name` is an environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
#[must_use]
pub fn is_variable_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

impl Request {
    /// Parse and check a message under the default [`Policy`] (URLs in
    /// requirements refused).
    ///
    /// # Errors
    /// The dead-letter reason.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        Self::parse_with(bytes, &Policy::default())
    }

    /// Parse and check a message under `policy`.
    ///
    /// # Errors
    /// The dead-letter reason.
    pub fn parse_with(bytes: &[u8], policy: &Policy) -> Result<Self, RequestError> {
        if bytes.len() > MAX_BODY {
            return Err(RequestError::TooLarge {
                size: bytes.len(),
                limit: MAX_BODY,
            });
        }
        let mut request: Self =
            serde_json::from_slice(bytes).map_err(|error| RequestError::Json(error.to_string()))?;
        request.inherit_storage_credentials();
        request.check(policy, SystemTime::now())?;
        Ok(request)
    }

    /// Give `config.storage.credentials` to every artifact that has no AWS
    /// credentials of its own. The `StudioML` client copies them into each
    /// artifact itself, except for the per-experiment workspace of a
    /// `--hyperparam` search (0.0.49), which would otherwise be fetched with
    /// the runner's own keys.
    fn inherit_storage_credentials(&mut self) {
        let Some(inherited) = self
            .config
            .storage
            .credentials
            .as_ref()
            .filter(|credentials| credentials.aws.is_some())
        else {
            return;
        };
        for artifact in self.experiment.artifacts.values_mut() {
            let has_own = artifact
                .credentials
                .as_ref()
                .is_some_and(|credentials| credentials.aws.is_some());
            if !has_own {
                artifact.credentials = Some(inherited.clone());
            }
        }
    }

    /// Check every rule and limit (see the crate documentation), with `now`
    /// as the present for `time_added`.
    ///
    /// # Errors
    /// The first rule broken, naming its field.
    pub fn check(&self, policy: &Policy, now: SystemTime) -> Result<(), RequestError> {
        self.check_identity()?;
        self.check_resources()?;
        self.check_times(now)?;
        self.check_artifacts()?;
        self.check_args()?;
        self.check_env()?;
        self.check_packages(*policy)
    }

    fn check_identity(&self) -> Result<(), RequestError> {
        let experiment = &self.experiment;
        let key = &experiment.key;
        if key.trim().is_empty() {
            return Err(RequestError::Missing("experiment.key"));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(RequestError::refused(
                "experiment.key",
                format!("{} bytes, more than {MAX_KEY_BYTES}", key.len()),
            ));
        }
        check_visible("experiment.key", key)?;
        let filename = &experiment.filename;
        if filename.trim().is_empty() {
            return Err(RequestError::Missing("experiment.filename"));
        }
        let field = "experiment.filename";
        if filename.len() > MAX_FILENAME_BYTES {
            return Err(RequestError::refused(
                field,
                format!("{} bytes, more than {MAX_FILENAME_BYTES}", filename.len()),
            ));
        }
        if filename.contains('\0') {
            return Err(RequestError::refused(field, "it holds a NUL byte"));
        }
        check_visible(field, filename)?;
        if filename.trim_start().starts_with('-') {
            return Err(RequestError::refused(
                field,
                format!(
                    "{} starts with '-' (an option, not a file)",
                    quoted(filename)
                ),
            ));
        }
        if filename.starts_with('/') {
            return Err(RequestError::refused(
                field,
                format!(
                    "{} is absolute, not a path inside the workspace",
                    quoted(filename)
                ),
            ));
        }
        if filename
            .split(['/', '\\'])
            .any(|component| component == "..")
        {
            return Err(RequestError::refused(
                field,
                format!(
                    "{} has a '..' component, it must stay inside the workspace",
                    quoted(filename)
                ),
            ));
        }
        if !experiment.artifacts.contains_key("workspace") {
            return Err(RequestError::Missing("workspace artifact"));
        }
        if !is_python_version(&experiment.pythonver) {
            return Err(RequestError::invalid(
                "experiment.pythonver",
                &experiment.pythonver,
                "Python version (MAJOR, MAJOR.MINOR or MAJOR.MINOR.PATCH)",
            ));
        }
        Ok(())
    }

    fn check_resources(&self) -> Result<(), RequestError> {
        let needed = &self.experiment.resources_needed;
        for (field, value) in [
            ("experiment.resources_needed.ram", &needed.ram),
            ("experiment.resources_needed.hdd", &needed.hdd),
        ] {
            if value.trim().is_empty() {
                return Err(RequestError::Missing(field));
            }
            if parse_size(value).is_none() {
                return Err(RequestError::invalid(field, value, "size"));
            }
        }
        if !needed.gpu_mem.trim().is_empty() && parse_size(&needed.gpu_mem).is_none() {
            return Err(RequestError::invalid(
                "experiment.resources_needed.gpuMem",
                &needed.gpu_mem,
                "size",
            ));
        }
        for (field, value, limit) in [
            ("experiment.resources_needed.cpus", needed.cpus, MAX_CPUS),
            ("experiment.resources_needed.gpus", needed.gpus, MAX_GPUS),
        ] {
            if value > limit {
                return Err(RequestError::refused(
                    field,
                    format!("{value}, more than {limit}"),
                ));
            }
        }
        Ok(())
    }

    fn check_times(&self, now: SystemTime) -> Result<(), RequestError> {
        for (field, value) in [
            ("experiment.max_duration", &self.experiment.max_duration),
            (
                "config.experimentLifetime",
                &self.config.experiment_lifetime,
            ),
            (
                "config.saveWorkspaceFrequency",
                &self.config.save_workspace_frequency,
            ),
        ] {
            check_duration(field, value, parse_duration, "duration")?;
        }
        let added = self.experiment.time_added;
        let field = "experiment.time_added";
        if !added.is_finite() || added < 0.0 {
            return Err(RequestError::invalid(field, &number(added), "time"));
        }
        if added > 0.0 && self.experiment.time_added_at(now).is_none() {
            return Err(RequestError::refused(
                field,
                format!("{} is more than a year in the future", number(added)),
            ));
        }
        Ok(())
    }

    fn check_artifacts(&self) -> Result<(), RequestError> {
        let artifacts = &self.experiment.artifacts;
        if artifacts.len() > MAX_ARTIFACTS {
            return Err(RequestError::refused(
                "experiment.artifacts",
                format!("{} artifacts, more than {MAX_ARTIFACTS}", artifacts.len()),
            ));
        }
        for (label, artifact) in artifacts {
            if !is_plain_label(label) {
                return Err(RequestError::refused(
                    "experiment.artifacts",
                    format!(
                        "the label {} is not a plain name ([A-Za-z0-9_.-]+, not '.' or '..', at most {MAX_LABEL_BYTES} bytes)",
                        quoted(label)
                    ),
                ));
            }
            check_duration(
                &format!("experiment.artifacts.{label}.saveFrequency"),
                &artifact.save_frequency,
                parse_seconds,
                "number of seconds",
            )?;
        }
        Ok(())
    }

    fn check_args(&self) -> Result<(), RequestError> {
        let args = &self.experiment.args;
        if args.len() > MAX_ARGS {
            return Err(RequestError::refused(
                "experiment.args",
                format!("{} arguments, more than {MAX_ARGS}", args.len()),
            ));
        }
        let mut total = 0_usize;
        for (index, arg) in args.iter().enumerate() {
            let field = || format!("experiment.args[{index}]");
            if arg.len() > MAX_ARG_BYTES {
                return Err(RequestError::refused(
                    field(),
                    format!("{} bytes, more than {MAX_ARG_BYTES}", arg.len()),
                ));
            }
            if arg.contains('\0') {
                return Err(RequestError::refused(field(), "it holds a NUL byte"));
            }
            total = total.saturating_add(arg.len());
        }
        if total > MAX_ARGS_TOTAL_BYTES {
            return Err(RequestError::refused(
                "experiment.args",
                format!("{total} bytes together, more than {MAX_ARGS_TOTAL_BYTES}"),
            ));
        }
        Ok(())
    }

    /// Values are never quoted in reasons: they may be secrets.
    fn check_env(&self) -> Result<(), RequestError> {
        let env = &self.config.env;
        if env.len() > MAX_ENV_VARIABLES {
            return Err(RequestError::refused(
                "config.env",
                format!("{} variables, more than {MAX_ENV_VARIABLES}", env.len()),
            ));
        }
        let mut total = 0_usize;
        for (name, value) in env {
            if !is_variable_name(name) {
                return Err(RequestError::refused(
                    "config.env",
                    format!(
                        "{} is not a variable name ([A-Za-z_][A-Za-z0-9_]*)",
                        quoted(name)
                    ),
                ));
            }
            if value.contains('\0') {
                return Err(RequestError::refused(
                    format!("config.env.{name}"),
                    "its value holds a NUL byte",
                ));
            }
            total = total.saturating_add(name.len()).saturating_add(value.len());
        }
        if total > MAX_ENV_TOTAL_BYTES {
            return Err(RequestError::refused(
                "config.env",
                format!("{total} bytes together, more than {MAX_ENV_TOTAL_BYTES}"),
            ));
        }
        Ok(())
    }

    fn check_packages(&self, policy: Policy) -> Result<(), RequestError> {
        let count = self
            .experiment
            .pythonenv
            .len()
            .saturating_add(self.config.pip.len());
        if count > MAX_PACKAGES {
            return Err(RequestError::refused(
                "experiment.pythonenv and config.pip",
                format!("{count} entries, more than {MAX_PACKAGES}"),
            ));
        }
        let entries = self
            .experiment
            .pythonenv
            .iter()
            .enumerate()
            .map(|(index, entry)| ("experiment.pythonenv", index, entry))
            .chain(
                self.config
                    .pip
                    .iter()
                    .enumerate()
                    .map(|(index, entry)| ("config.pip", index, entry)),
            );
        for (list, index, entry) in entries {
            let field = || format!("{list}[{index}]");
            if entry.len() > MAX_PACKAGE_BYTES {
                return Err(RequestError::refused(
                    field(),
                    format!("{} bytes, more than {MAX_PACKAGE_BYTES}", entry.len()),
                ));
            }
            if let Err(reason) = requirement::check(entry, policy) {
                return Err(RequestError::refused(
                    field(),
                    format!("{} is not a requirement specifier: {reason}", quoted(entry)),
                ));
            }
        }
        Ok(())
    }

    /// Memory needed, in bytes.
    #[must_use]
    pub fn ram(&self) -> u64 {
        parse_size(&self.experiment.resources_needed.ram).unwrap_or(0)
    }

    /// Disk needed, in bytes.
    #[must_use]
    pub fn hdd(&self) -> u64 {
        parse_size(&self.experiment.resources_needed.hdd).unwrap_or(0)
    }
}

/// Whether `character` reorders or hides text in a terminal or a log
/// viewer: a control character, or one of the Unicode format characters
/// for bidirectional text (U+061C, U+200E/F, U+202A–U+202E, U+2066–U+2069)
/// or of zero width (U+200B–U+200D, U+2060–U+2064, U+FEFF). A key or file
/// name holding one could show in the runner's log as another.
fn is_spoofing(character: char) -> bool {
    character.is_control()
        || matches!(
            character,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Refuses `value` when it holds a character that [`is_spoofing`]; the
/// reason quotes it escaped.
fn check_visible(field: &str, value: &str) -> Result<(), RequestError> {
    match value.chars().find(|character| is_spoofing(*character)) {
        None => Ok(()),
        Some(character) if character.is_control() => Err(RequestError::refused(
            field,
            format!("{} holds a control character", quoted(value)),
        )),
        Some(character) => Err(RequestError::refused(
            field,
            format!(
                "{} holds U+{:04X}, a character that reorders or hides text",
                quoted(value),
                u32::from(character)
            ),
        )),
    }
}

/// Whether `pythonver` names a Python version the runner can look for:
/// blank (any Python 3), or ASCII `MAJOR`, `MAJOR.MINOR` or
/// `MAJOR.MINOR.PATCH`, each part 1 to 4 digits. Anything else would wait
/// in the queue for ever for a Python no runner has.
#[must_use]
pub fn is_python_version(pythonver: &str) -> bool {
    let text = pythonver.trim();
    text.is_empty()
        || (text.split('.').count() <= 3
            && text.split('.').all(|part| {
                (1..=4).contains(&part.len()) && part.bytes().all(|byte| byte.is_ascii_digit())
            }))
}

/// A blank duration is unset; otherwise it must read and be at most
/// [`MAX_DURATION`].
fn check_duration(
    field: &str,
    value: &str,
    parse: fn(&str) -> Option<Duration>,
    kind: &'static str,
) -> Result<(), RequestError> {
    if value.trim().is_empty() {
        return Ok(());
    }
    let Some(duration) = parse(value) else {
        return Err(RequestError::invalid(field, value, kind));
    };
    if duration > MAX_DURATION {
        return Err(RequestError::refused(
            field,
            format!("{} is longer than the limit of one year", quoted(value)),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
