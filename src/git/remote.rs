//! Git remote URLs, https and scp-style alike, parsed without I/O.
//!
//! duat panicked on repositories without a remote and could not parse
//! `git@host:owner/repo.git` for hosts other than github.com; every later
//! command (release, image names) needs owner and repository from here.

use std::fmt;

/// A parsed remote URL.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RemoteUrl {
    /// The URL as configured, with any password replaced by `***`.
    pub raw: String,
    /// Host name without user or port (`github.com`); empty for local paths.
    pub host: String,
    /// Path without the leading `/` and the `.git` suffix (`leaf-ai/studio-go-runner`).
    pub path: String,
}

impl RemoteUrl {
    /// Parse `https://host/owner/repo.git`, `ssh://git@host:22/owner/repo`,
    /// `git@host:owner/repo.git`, `file:///path` or a plain path.
    #[must_use]
    pub fn parse(raw: &str) -> Self {
        let trimmed = raw.trim();
        let (host, path) = if let Some((_, rest)) = trimmed.split_once("://") {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            (host_of(authority), path)
        } else if let Some((authority, path)) = scp_like(trimmed) {
            (host_of(authority), path)
        } else {
            ("", trimmed)
        };
        let path = path.trim_matches('/');
        let path = path
            .strip_suffix(".git")
            .unwrap_or(path)
            .trim_end_matches('/');
        Self {
            raw: redact_password(trimmed),
            host: host.to_owned(),
            path: path.to_owned(),
        }
    }

    /// The owner (every path segment but the last: `group/subgroup` on GitLab).
    #[must_use]
    pub fn owner(&self) -> Option<&str> {
        self.path
            .rsplit_once('/')
            .map(|(owner, _)| owner)
            .filter(|owner| !owner.is_empty())
    }

    /// The repository name (the last path segment, without `.git`).
    #[must_use]
    pub fn repository(&self) -> Option<&str> {
        let name = self.path.rsplit('/').next().unwrap_or_default();
        (!name.is_empty()).then_some(name)
    }

    /// `https://host/path`, the form a browser or GitHub API client wants.
    #[must_use]
    pub fn https(&self) -> Option<String> {
        (!self.host.is_empty()).then(|| format!("https://{}/{}", self.host, self.path))
    }
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.raw)
    }
}

/// The URL with the password of `scheme://user:password@host` replaced by `***`,
/// so that a token embedded in a remote never reaches output or logs.
fn redact_password(url: &str) -> String {
    crate::secrets::mask_urls(url)
}

/// `user@host:path`, where the part before `:` has no `/` (otherwise it is a local path).
fn scp_like(text: &str) -> Option<(&str, &str)> {
    let (authority, path) = text.split_once(':')?;
    (!authority.is_empty() && !authority.contains('/') && !path.starts_with("//"))
        .then_some((authority, path))
}

/// The host of `user@host:port`.
fn host_of(authority: &str) -> &str {
    let without_user = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if without_user.starts_with('[') {
        return without_user
            .split_once(']')
            .map_or(without_user, |(host, _)| host.trim_start_matches('['));
    }
    without_user
        .split_once(':')
        .map_or(without_user, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        for (raw, host, path, owner, repository) in [
            (
                "https://github.com/leaf-ai/studio-go-runner.git",
                "github.com",
                "leaf-ai/studio-go-runner",
                Some("leaf-ai"),
                Some("studio-go-runner"),
            ),
            (
                "https://user:secret@github.com/leaf-ai/sgr",
                "github.com",
                "leaf-ai/sgr",
                Some("leaf-ai"),
                Some("sgr"),
            ),
            (
                "git@github.com:karlmutch/duat.git",
                "github.com",
                "karlmutch/duat",
                Some("karlmutch"),
                Some("duat"),
            ),
            (
                "git@gitlab.example.com:group/sub/project.git",
                "gitlab.example.com",
                "group/sub/project",
                Some("group/sub"),
                Some("project"),
            ),
            (
                "ssh://git@host.example:2222/o/r.git/",
                "host.example",
                "o/r",
                Some("o"),
                Some("r"),
            ),
            (
                "http://127.0.0.1:8080/o/r",
                "127.0.0.1",
                "o/r",
                Some("o"),
                Some("r"),
            ),
            (
                "file:///srv/git/repo.git",
                "",
                "srv/git/repo",
                Some("srv/git"),
                Some("repo"),
            ),
            (
                "/srv/git/repo.git",
                "",
                "srv/git/repo",
                Some("srv/git"),
                Some("repo"),
            ),
            (
                "../relative/repo",
                "",
                "../relative/repo",
                Some("../relative"),
                Some("repo"),
            ),
            ("repo", "", "repo", None, Some("repo")),
        ] {
            let url = RemoteUrl::parse(raw);
            assert_eq!(url.host, host, "{raw}");
            assert_eq!(url.path, path, "{raw}");
            assert_eq!(url.owner(), owner, "{raw}");
            assert_eq!(url.repository(), repository, "{raw}");
        }
    }

    #[test]
    fn https_form_drops_credentials() {
        let url = RemoteUrl::parse("https://user:secret@github.com/leaf-ai/sgr.git");
        assert_eq!(
            url.https().as_deref(),
            Some("https://github.com/leaf-ai/sgr")
        );
        assert_eq!(url.raw, "https://user:***@github.com/leaf-ai/sgr.git");
        assert_eq!(
            url.to_string(),
            "https://user:***@github.com/leaf-ai/sgr.git"
        );
        assert_eq!(
            RemoteUrl::parse("https://ghp_token@github.com/o/r").raw,
            "https://***@github.com/o/r"
        );
        assert_eq!(
            RemoteUrl::parse("git@github.com:o/r.git")
                .https()
                .as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(RemoteUrl::parse("/local/path").https(), None);
    }
}
