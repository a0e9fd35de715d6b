//! StudioML experiment requests (reference runner.md §3): the JSON the
//! queues carry, read tolerantly (unknown fields ignored, `pythonver` as a
//! number or a string) but checked strictly where the original failed late:
//! a request without `ram`, `hdd`, a file name or a workspace is rejected at
//! once with a reason, so it goes to the dead-letter destination instead of
//! being requeued for ever.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use thiserror::Error;

/// Why a message is not a runnable request (the dead-letter reason).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RequestError {
    /// Not JSON, or the wrong shape.
    #[error("the message is not a StudioML request: {0}")]
    Json(String),
    /// A mandatory field is missing or empty.
    #[error("the request has no {0}")]
    Missing(&'static str),
    /// A size or duration field cannot be read.
    #[error("experiment.{field} '{value}' is not a valid {kind}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// `size` or `duration`.
        kind: &'static str,
    },
}

/// A whole request.
#[derive(Clone, Debug, Deserialize)]
pub struct Request {
    /// Runner and storage settings.
    #[serde(default)]
    pub config: Config,
    /// The experiment.
    pub experiment: Experiment,
}

/// `config`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    /// Environment for the experiment, `%VAR%` expanded from the runner's.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Extra pip packages.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pip: Vec<String>,
    /// Absolute deadline from `time_added` (Go duration).
    #[serde(default, rename = "experimentLifetime")]
    pub experiment_lifetime: String,
    /// Checkpoint upload interval (Go duration).
    #[serde(default, rename = "saveWorkspaceFrequency")]
    pub save_workspace_frequency: String,
    /// Only `projectId` is used (metrics label).
    #[serde(default)]
    pub database: Database,
}

/// `config.database`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Database {
    /// The project, a metrics label.
    #[serde(default, rename = "projectId")]
    pub project_id: String,
}

/// `experiment`.
#[derive(Clone, Debug, Deserialize)]
pub struct Experiment {
    /// The experiment's unique key.
    #[serde(default)]
    pub key: String,
    /// The Python file run from the workspace.
    #[serde(default)]
    pub filename: String,
    /// Its arguments.
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Python version: `2`, `3` (older clients) or `"3.8"`.
    #[serde(default, deserialize_with = "number_or_string")]
    pub pythonver: String,
    /// pip requirement lines.
    #[serde(default, deserialize_with = "null_as_default")]
    pub pythonenv: Vec<String>,
    /// What it needs.
    #[serde(default)]
    pub resources_needed: Resources,
    /// Cap on one attempt (Go duration).
    #[serde(default)]
    pub max_duration: String,
    /// When it was queued (Unix seconds).
    #[serde(default)]
    pub time_added: f64,
    /// Artifacts by label (`workspace`, `output`, …).
    #[serde(default)]
    pub artifacts: BTreeMap<String, Artifact>,
}

/// `experiment.resources_needed`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Resources {
    /// CPU cores.
    #[serde(default)]
    pub cpus: u32,
    /// Whole GPUs.
    #[serde(default)]
    pub gpus: u32,
    /// Disk (`3gb`).
    #[serde(default)]
    pub hdd: String,
    /// Memory (`2gb`).
    #[serde(default)]
    pub ram: String,
    /// GPU memory per card (`2gb`), optional.
    #[serde(default, rename = "gpuMem")]
    pub gpu_mem: String,
}

/// One artifact.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Artifact {
    /// Bucket (preferred over `qualified`).
    #[serde(default)]
    pub bucket: String,
    /// Object key (preferred over `qualified`).
    #[serde(default)]
    pub key: String,
    /// `s3://host/bucket/key` or `file:///path`.
    #[serde(default)]
    pub qualified: String,
    /// Uploaded back during and after the run.
    #[serde(default)]
    pub mutable: bool,
    /// Unpacked (tar, tar.gz, tar.bz2) after download.
    #[serde(default)]
    pub unpack: bool,
    /// Per-artifact credentials.
    #[serde(default)]
    pub credentials: Option<Credentials>,
    /// Seconds between checkpoint uploads of this (mutable) artifact; it
    /// replaces `config.saveWorkspaceFrequency` (the 2022 format).
    #[serde(
        default,
        rename = "saveFrequency",
        deserialize_with = "number_or_string"
    )]
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
    #[serde(default)]
    pub access_key: String,
    /// Secret key.
    #[serde(default)]
    pub secret_access_key: String,
    /// Region.
    #[serde(default)]
    pub region: String,
}

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

fn number_or_string<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::Number(number) => number.to_string(),
        serde_json::Value::String(text) => text,
        _ => String::new(),
    })
}

/// `3gb`, `2GiB`, `512mb`, `100b`: decimal and binary units, case-insensitive;
/// `None` when it is not a size.
#[must_use]
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
    let split = if split == 0 { return None } else { split };
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let bytes = number * factor;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (bytes.is_finite() && bytes >= 0.0).then_some(bytes as u64)
}

/// Go durations: `20m`, `1h30m`, `90s`, `500ms`, `1.5h`.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0_f64;
    while !rest.is_empty() {
        let number_end =
            rest.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        let after = &rest[number_end..];
        let unit_end = after
            .find(|character: char| character.is_ascii_digit() || character == '.')
            .unwrap_or(after.len());
        let seconds = match &after[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * seconds;
        rest = &after[unit_end..];
    }
    Some(Duration::from_secs_f64(total))
}

impl Request {
    /// Parse and check a message.
    ///
    /// # Errors
    /// The dead-letter reason.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        let request: Self =
            serde_json::from_slice(bytes).map_err(|error| RequestError::Json(error.to_string()))?;
        let experiment = &request.experiment;
        if experiment.key.trim().is_empty() {
            return Err(RequestError::Missing("experiment.key"));
        }
        if experiment.filename.trim().is_empty() {
            return Err(RequestError::Missing("experiment.filename"));
        }
        if !experiment.artifacts.contains_key("workspace") {
            return Err(RequestError::Missing("workspace artifact"));
        }
        for (field, value) in [
            ("resources_needed.ram", &experiment.resources_needed.ram),
            ("resources_needed.hdd", &experiment.resources_needed.hdd),
        ] {
            if value.trim().is_empty() {
                return Err(RequestError::Missing(if field.ends_with("ram") {
                    "experiment.resources_needed.ram"
                } else {
                    "experiment.resources_needed.hdd"
                }));
            }
            if parse_size(value).is_none() {
                return Err(RequestError::Invalid {
                    field,
                    value: value.clone(),
                    kind: "size",
                });
            }
        }
        if !experiment.resources_needed.gpu_mem.is_empty()
            && parse_size(&experiment.resources_needed.gpu_mem).is_none()
        {
            return Err(RequestError::Invalid {
                field: "resources_needed.gpuMem",
                value: experiment.resources_needed.gpu_mem.clone(),
                kind: "size",
            });
        }
        if !experiment.max_duration.is_empty() && parse_duration(&experiment.max_duration).is_none()
        {
            return Err(RequestError::Invalid {
                field: "max_duration",
                value: experiment.max_duration.clone(),
                kind: "duration",
            });
        }
        Ok(request)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// runner.md §3.1, with an unknown field added.
    const EXAMPLE: &str = r#"{
      "config": {"cloud": {"queue": {"rmq": "amqp://x"}}, "database": {"projectId": "moonshot", "type": "s3"},
        "saveWorkspaceFrequency": "3m", "experimentLifetime": "30m", "verbose": "debug",
        "env": {"AWS_DEFAULT_REGION": "us-west-2", "PATH": "%PATH%:./bin"}, "pip": null, "runner": {"slack_destination": ""}},
      "experiment": {"key": "1538073289_3c9acb9b", "project": "moonshot", "filename": "train_mnist_keras.py", "args": [],
        "pythonver": 2, "pythonenv": ["Keras==2.0.9"],
        "resources_needed": {"cpus": 1, "gpus": 2, "hdd": "3gb", "ram": "2gb", "gpuMem": "2gb"},
        "max_duration": "20m", "time_added": 1538073290.258281, "status": "waiting", "git": null, "info": {},
        "a_field_from_the_future": [1, 2, 3],
        "artifacts": {
          "workspace": {"bucket": "bkt1", "key": "workspace.tar", "mutable": false, "unpack": true, "qualified": "s3://127.0.0.1:9000/bkt1/workspace.tar",
                        "credentials": {"aws": {"access_key": "AKIA-canary", "secret_access_key": "s3cr3t-canary", "region": "us-west-2"}}},
          "output": {"bucket": "bkt1", "key": "output.tar", "mutable": true, "unpack": true, "qualified": "s3://127.0.0.1:9000/bkt1/output.tar"}}}
    }"#;

    #[test]
    fn the_reference_example_parses() -> Result<(), RequestError> {
        let request = Request::parse(EXAMPLE.as_bytes())?;
        assert_eq!(request.experiment.pythonver, "2");
        assert_eq!(request.experiment.resources_needed.gpus, 2);
        assert_eq!(request.ram(), 2_000_000_000);
        assert_eq!(request.hdd(), 3_000_000_000);
        assert!(request.config.pip.is_empty());
        assert_eq!(request.config.database.project_id, "moonshot");
        assert!(request.experiment.artifacts["output"].mutable);
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
        let bad_size = EXAMPLE.replace("\"ram\": \"2gb\"", "\"ram\": \"lots\"");
        assert!(matches!(
            Request::parse(bad_size.as_bytes()),
            Err(RequestError::Invalid {
                field: "resources_needed.ram",
                ..
            })
        ));
        let no_workspace = EXAMPLE.replace("\"workspace\":", "\"elsewhere\":");
        assert_eq!(
            Request::parse(no_workspace.as_bytes()).err(),
            Some(RequestError::Missing("workspace artifact"))
        );
        let bad_duration = EXAMPLE.replace("\"20m\"", "\"twenty minutes\"");
        assert!(matches!(
            Request::parse(bad_duration.as_bytes()),
            Err(RequestError::Invalid {
                field: "max_duration",
                ..
            })
        ));
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("2GiB"), Some(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("512mb"), Some(512_000_000));
        assert_eq!(parse_size("1.5gb"), Some(1_500_000_000));
        assert_eq!(parse_size("gb"), None);
        assert_eq!(parse_size("12 parsecs"), None);
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_mins(90)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("3m"), Some(Duration::from_mins(3)));
        assert_eq!(parse_duration("forever"), None);
        assert_eq!(parse_duration(""), None);
    }
}

// TEMPORARY until the request crate lands.
/// Which request fields are allowed.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    /// pip requirements may be URLs.
    pub allow_urls: bool,
}

impl Request {
    /// Parse with a policy.
    ///
    /// # Errors
    /// The dead-letter reason.
    pub fn parse_with(bytes: &[u8], _policy: &Policy) -> Result<Self, RequestError> {
        Self::parse(bytes)
    }
}
