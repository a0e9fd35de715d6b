//! Credentials the user already gave Docker: `~/.docker/config.json`
//! (`DOCKER_CONFIG` honoured) with its `auths`, `credHelpers` and
//! `credsStore`. sgr only reads it; it never writes there.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;
use thiserror::Error;

use super::Credentials;

/// Why the Docker configuration gave no usable answer.
#[derive(Debug, Error)]
pub enum DockerConfigError {
    /// The file exists but cannot be read or parsed.
    #[error("cannot read {}", .path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A credential helper failed.
    #[error("credential helper docker-credential-{helper} failed for {host}: {message}")]
    Helper {
        /// The helper's name.
        helper: String,
        /// The registry.
        host: String,
        /// What it said (its stderr), or why it could not run.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: HashMap<String, String>,
    #[serde(rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username")]
    username: String,
    #[serde(rename = "Secret")]
    secret: String,
}

/// Found credentials and where they came from.
#[derive(Debug)]
pub struct Found {
    /// The credentials.
    pub credentials: Credentials,
    /// `docker config` or `credential helper docker-credential-NAME`.
    pub origin: String,
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
#[must_use]
pub fn config_path() -> Option<PathBuf> {
    std::env::var_os(crate::env::DOCKER_CONFIG)
        .map(PathBuf::from)
        .or_else(|| std::env::var_os(crate::env::HOME).map(|home| Path::new(&home).join(".docker")))
        .map(|directory| directory.join("config.json"))
}

/// `https://host/v1/` → `host`.
fn normalise(key: &str) -> &str {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    key.split('/').next().unwrap_or(key)
}

/// The credentials for `host` in the Docker configuration at `path`, if any.
///
/// # Errors
/// An unreadable file or a failing helper.
pub fn lookup(path: &Path, host: &str) -> Result<Option<Found>, DockerConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(DockerConfigError::Unreadable {
                path: path.to_path_buf(),
                source: Box::new(error),
            });
        }
    };
    let config: ConfigFile =
        serde_json::from_str(&text).map_err(|error| DockerConfigError::Unreadable {
            path: path.to_path_buf(),
            source: Box::new(error),
        })?;
    if let Some(helper) = config
        .cred_helpers
        .iter()
        .find(|(key, _)| normalise(key) == host)
        .map(|(_, helper)| helper)
    {
        return run_helper(helper, host);
    }
    if let Some(entry) = config
        .auths
        .iter()
        .find(|(key, _)| normalise(key) == host)
        .map(|(_, entry)| entry)
    {
        if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
            return Ok(Some(Found {
                credentials: Credentials::new(username.clone(), password.clone()),
                origin: format!("docker config {}", path.display()),
            }));
        }
        if let Some(auth) = &entry.auth {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some((username, password)) =
                decoded.as_deref().and_then(|text| text.split_once(':'))
            else {
                return Err(DockerConfigError::Unreadable {
                    path: path.to_path_buf(),
                    source: format!("the auth entry for {host} is not base64 of user:password")
                        .into(),
                });
            };
            return Ok(Some(Found {
                credentials: Credentials::new(username, password),
                origin: format!("docker config {}", path.display()),
            }));
        }
    }
    match &config.creds_store {
        Some(store) if !store.is_empty() => run_helper(store, host),
        _ => Ok(None),
    }
}

/// `docker-credential-<helper> get` with the host on stdin.
fn run_helper(helper: &str, host: &str) -> Result<Option<Found>, DockerConfigError> {
    let failure = |message: String| DockerConfigError::Helper {
        helper: helper.to_owned(),
        host: host.to_owned(),
        message,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| failure(format!("cannot run it: {error}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(host.as_bytes())
            .map_err(|error| failure(format!("cannot write to it: {error}")))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| failure(error.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if said.contains("credentials not found") {
            return Ok(None);
        }
        let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(failure(if stderr.is_empty() { said } else { stderr }));
    }
    let answer: HelperAnswer = serde_json::from_slice(&output.stdout)
        .map_err(|error| failure(format!("unreadable answer: {error}")))?;
    Ok(Some(Found {
        credentials: Credentials::new(answer.username, answer.secret),
        origin: format!("credential helper docker-credential-{helper}"),
    }))
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn write(directory: &Path, text: &str) -> PathBuf {
        let path = directory.join("config.json");
        std::fs::write(&path, text).unwrap_or_else(|error| panic!("{error}"));
        path
    }

    #[test]
    fn auths_entries_are_decoded_and_matched_by_host() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let encoded = base64::engine::general_purpose::STANDARD.encode("robot:s3cret:with-colon");
        let path = write(
            directory.path(),
            &format!(
                r#"{{"auths": {{"https://registry.example:5000/v1/": {{"auth": "{encoded}"}}}}}}"#
            ),
        );
        let found = lookup(&path, "registry.example:5000")
            .unwrap_or_else(|error| panic!("{error}"))
            .unwrap_or_else(|| panic!("no credentials found"));
        assert_eq!(found.credentials.username, "robot");
        assert_eq!(
            found.credentials.password.expose_secret(),
            "s3cret:with-colon"
        );
        assert!(
            lookup(&path, "other.example")
                .unwrap_or_else(|error| panic!("{error}"))
                .is_none()
        );
    }

    #[test]
    fn a_missing_file_is_no_credentials_and_a_broken_one_an_error() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        assert!(
            lookup(&directory.path().join("absent.json"), "h")
                .unwrap_or_else(|error| panic!("{error}"))
                .is_none()
        );
        let path = write(directory.path(), "{not json");
        let error = lookup(&path, "h")
            .err()
            .unwrap_or_else(|| panic!("accepted broken JSON"));
        assert!(error.to_string().contains("config.json"), "{error}");
    }

    #[test]
    fn a_missing_helper_is_a_named_error() {
        let directory = tempfile::tempdir().unwrap_or_else(|error| panic!("{error}"));
        let path = write(
            directory.path(),
            r#"{"credHelpers": {"r.example": "sgr-no-such-helper"}}"#,
        );
        let error = lookup(&path, "r.example")
            .err()
            .unwrap_or_else(|| panic!("no error"));
        assert!(
            error
                .to_string()
                .contains("docker-credential-sgr-no-such-helper"),
            "{error}"
        );
    }
}
