//! Container registries: where images are pushed, under which names, and
//! the credentials to do it with, one adapter per kind (ACR, ECR, any OCI
//! registry). Credentials only ever live in [`Credentials`], whose `Debug`
//! hides the password, and reach the engine at the moment of a push.

pub mod azure;
pub mod client;
pub mod docker_config;
pub mod ecr;
pub mod provider;
pub mod transfer;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A user name and a password (or token) for one registry.
#[derive(Clone)]
pub struct Credentials {
    /// The user (`AWS`, the null GUID for ACR tokens, a registry user).
    pub username: String,
    /// The password or token; never printed.
    pub password: SecretString,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl Credentials {
    /// Credentials from a user and a password.
    #[must_use]
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            password: SecretString::from(password.into()),
        }
    }

    /// What the engine takes for a push to `server`.
    #[must_use]
    pub fn to_docker(&self, server: &str) -> bollard::auth::DockerCredentials {
        bollard::auth::DockerCredentials {
            username: Some(self.username.clone()),
            password: Some(self.password.expose_secret().to_owned()),
            serveraddress: Some(server.to_owned()),
            ..Default::default()
        }
    }
}

/// Whether `host` (with or without a port) is this machine: Docker talks
/// plain HTTP to such registries, and so does sgr.
#[must_use]
pub fn is_loopback(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        host.rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name)
    };
    name == "localhost"
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// `https://host`, or `http://host` for a loopback registry.
#[must_use]
pub fn base_url(host: &str) -> String {
    if is_loopback(host) {
        format!("http://{host}")
    } else {
        format!("https://{host}")
    }
}

/// The repository an image gets in a remote registry: studio-go-runner's
/// `<org>/<module>/<component>` layout. `leafai/sgr-build` (module `sgr`)
/// becomes `leafai/sgr/build`; names already in that layout, or not
/// starting with `<org>/<module>`, are kept.
#[must_use]
pub fn remote_repository(local: &str, org: &str, module: &str) -> String {
    // A registry host in the local name (`localhost:5000/…`, `r.example/…`) is not part of the
    // repository in other registries.
    let local = match local.split_once('/') {
        Some((host, rest)) if host.contains('.') || host.contains(':') || host == "localhost" => {
            rest
        }
        _ => local,
    };
    let Some(rest) = local
        .strip_prefix(org)
        .and_then(|rest| rest.strip_prefix('/'))
    else {
        return local.to_owned();
    };
    match rest.strip_prefix(module) {
        Some(component) if component.starts_with('-') && component.len() > 1 => {
            format!("{org}/{module}/{}", &component[1..])
        }
        _ => local.to_owned(),
    }
}

/// A tag that names a version (`1.2.3`, `v1.2.3`, `1.2.3-main-aaa`) is
/// immutable: a registry must never hold two different images under it.
/// Branch tags (`main`, `feature-x`) and `latest` move.
#[must_use]
pub fn is_immutable_tag(tag: &str) -> bool {
    semver::Version::parse(tag.strip_prefix('v').unwrap_or(tag)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_password() {
        let credentials = Credentials::new("AWS", "canary-3f1c");
        let shown = format!("{credentials:?}");
        assert!(shown.contains("AWS"));
        assert!(!shown.contains("canary-3f1c"), "{shown}");
        assert_eq!(
            credentials.to_docker("r.example").password.as_deref(),
            Some("canary-3f1c")
        );
    }

    #[test]
    fn loopback_hosts_speak_http() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "[::1]:443",
            "127.1.2.3",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "leafai.azurecr.io",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
        assert_eq!(base_url("127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(base_url("leafai.azurecr.io"), "https://leafai.azurecr.io");
    }

    #[test]
    fn remote_names_follow_org_module_component() {
        let name = |local| remote_repository(local, "leafai", "studio-go-runner");
        assert_eq!(
            name("leafai/studio-go-runner-standalone-build"),
            "leafai/studio-go-runner/standalone-build"
        );
        assert_eq!(
            name("leafai/studio-go-runner-build"),
            "leafai/studio-go-runner/build"
        );
        assert_eq!(
            name("leafai/studio-go-runner/runner"),
            "leafai/studio-go-runner/runner"
        );
        assert_eq!(name("leafai/studio-go-runner"), "leafai/studio-go-runner");
        assert_eq!(name("other/thing"), "other/thing");
        assert_eq!(name("leafai/studio-go-runnerx"), "leafai/studio-go-runnerx");
        // A registry host in the local name is left out.
        assert_eq!(
            name("localhost:5000/leafai/studio-go-runner-build"),
            "leafai/studio-go-runner/build"
        );
        assert_eq!(name("r.example/other/thing"), "other/thing");
        assert_eq!(name("localhost/x"), "x");
    }

    #[test]
    fn version_tags_are_immutable_branch_tags_are_not() {
        for tag in ["1.2.3", "v0.9.9", "0.9.9-main-1abc2"] {
            assert!(is_immutable_tag(tag), "{tag}");
        }
        for tag in ["main", "feature-197-hybrid", "latest", "1.2"] {
            assert!(!is_immutable_tag(tag), "{tag}");
        }
    }
}
