//! Which Python runs an experiment: the newest installed `python3.X` that
//! matches the request's `pythonver` (`3` or empty: the newest 3.x;
//! `3.11` or `3.11.4`: 3.11), as the original runner chose it, unless the
//! operator forces one with `--python`. A request no interpreter here can
//! serve is left for another runner, with the reason.
//!
//! The interpreters are found once, at start-up, on `PATH`: files named
//! `pythonX.Y` and `python3`/`python2`, each asked for its version (and
//! its `venv` module), so a name that lies — a pyenv shim for a version
//! that is not activated — is not used.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

/// One interpreter found on `PATH`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interpreter {
    /// Major and minor version.
    pub version: (u32, u32),
    /// Where it is.
    pub path: PathBuf,
}

/// The interpreters experiments may use.
#[derive(Clone, Debug, Default)]
pub struct Interpreters {
    found: Vec<Interpreter>,
    forced: Option<PathBuf>,
}

/// `X.Y` from a file name `pythonX.Y`.
fn version_of_name(name: &str) -> Option<(u32, u32)> {
    let (major, minor) = name.strip_prefix("python")?.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `X.Y` and the real executable (`sys.executable`, so a shim or a link is
/// resolved while the runner's environment is still there) asked of the
/// program at `path`; `None` when it does not answer, or has no `venv`
/// module.
fn ask(path: &Path) -> Option<((u32, u32), PathBuf)> {
    let output = std::process::Command::new(path)
        .args([
            "-c",
            "import sys, venv; print('%d.%d' % sys.version_info[:2]); print(sys.executable)",
        ])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let mut lines = text.lines();
    let (major, minor) = lines.next()?.trim().split_once('.')?;
    let executable = lines
        .next()
        .map(str::trim)
        .filter(|executable| !executable.is_empty())
        .map_or_else(|| path.to_path_buf(), PathBuf::from);
    Some(((major.parse().ok()?, minor.parse().ok()?), executable))
}

impl Interpreters {
    /// Every `pythonX.Y` (and `python3`, `python2`) in the directories of
    /// `path` (a `PATH` value), the first of each version winning; or only
    /// `forced` (`--python`), whatever the requests ask.
    #[must_use]
    pub fn discover(forced: Option<&str>, path: Option<&OsStr>) -> Self {
        if let Some(forced) = forced {
            return Self {
                found: Vec::new(),
                forced: Some(PathBuf::from(forced)),
            };
        }
        let directories: Vec<PathBuf> =
            path.map_or_else(Vec::new, |path| std::env::split_paths(path).collect());
        // Candidates by name first; each is then asked, since a name can
        // lie (a pyenv shim for a version that is not activated fails).
        let mut candidates: Vec<((u32, u32), PathBuf)> = Vec::new();
        for directory in &directories {
            let Ok(entries) = std::fs::read_dir(directory) else {
                continue;
            };
            let mut names: Vec<String> = entries
                .filter_map(Result::ok)
                .filter_map(|entry| entry.file_name().into_string().ok())
                .filter(|name| version_of_name(name).is_some())
                .collect();
            names.sort();
            for name in names {
                let candidate = directory.join(&name);
                if is_executable(&candidate)
                    && let Some(version) = version_of_name(&name)
                {
                    candidates.push((version, candidate));
                }
            }
        }
        let mut found: Vec<Interpreter> = Vec::new();
        for (version, candidate) in candidates {
            if found.iter().any(|known| known.version == version) {
                continue;
            }
            if let Some((answered, executable)) = ask(&candidate)
                && answered == version
            {
                found.push(Interpreter {
                    version,
                    path: executable,
                });
            }
        }
        for generic in ["python3", "python2"] {
            for candidate in directories.iter().map(|directory| directory.join(generic)) {
                if !is_executable(&candidate) {
                    continue;
                }
                if let Some((version, executable)) = ask(&candidate)
                    && !found.iter().any(|known| known.version == version)
                {
                    found.push(Interpreter {
                        version,
                        path: executable,
                    });
                }
                break;
            }
        }
        found.sort_by_key(|interpreter| std::cmp::Reverse(interpreter.version));
        Self {
            found,
            forced: None,
        }
    }

    /// Exactly these interpreters (tests).
    #[must_use]
    pub fn of(found: Vec<Interpreter>) -> Self {
        let mut found = found;
        found.sort_by_key(|interpreter| std::cmp::Reverse(interpreter.version));
        Self {
            found,
            forced: None,
        }
    }

    /// What was found, newest first (for the start-up log).
    #[must_use]
    pub fn found(&self) -> &[Interpreter] {
        &self.found
    }

    /// The interpreter for `pythonver`.
    ///
    /// # Errors
    /// The reason none here matches (the request is left for another runner).
    pub fn choose(&self, pythonver: &str) -> Result<PathBuf, String> {
        if let Some(forced) = &self.forced {
            return Ok(forced.clone());
        }
        let wanted = pythonver.trim();
        let mut parts = wanted.split('.');
        let major = match parts.next().filter(|part| !part.is_empty()) {
            None => 3,
            Some(major) => major
                .parse::<u32>()
                .map_err(|_| format!("pythonver '{wanted}' is not a Python version"))?,
        };
        let minor = match parts.next() {
            None => None,
            Some(minor) => Some(
                minor
                    .parse::<u32>()
                    .map_err(|_| format!("pythonver '{wanted}' is not a Python version"))?,
            ),
        };
        self.found
            .iter()
            .find(|interpreter| {
                interpreter.version.0 == major
                    && minor.is_none_or(|minor| interpreter.version.1 == minor)
            })
            .map(|interpreter| interpreter.path.clone())
            .ok_or_else(|| {
                let have: Vec<String> = self
                    .found
                    .iter()
                    .map(|interpreter| {
                        format!("{}.{}", interpreter.version.0, interpreter.version.1)
                    })
                    .collect();
                format!(
                    "no Python {wanted} here (this runner has {})",
                    if have.is_empty() {
                        "none".to_owned()
                    } else {
                        have.join(", ")
                    }
                )
            })
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .is_ok_and(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interpreter(major: u32, minor: u32) -> Interpreter {
        Interpreter {
            version: (major, minor),
            path: PathBuf::from(format!("/usr/bin/python{major}.{minor}")),
        }
    }

    #[test]
    fn the_newest_matching_interpreter_is_chosen() {
        let interpreters = Interpreters::of(vec![
            interpreter(3, 9),
            interpreter(3, 11),
            interpreter(2, 7),
        ]);
        let chosen = |wanted: &str| {
            interpreters
                .choose(wanted)
                .map(|path| path.display().to_string())
        };
        assert_eq!(chosen("3.11").as_deref(), Ok("/usr/bin/python3.11"));
        assert_eq!(chosen("3.11.4").as_deref(), Ok("/usr/bin/python3.11"));
        assert_eq!(chosen("3").as_deref(), Ok("/usr/bin/python3.11"));
        assert_eq!(chosen("").as_deref(), Ok("/usr/bin/python3.11"));
        assert_eq!(chosen("3.9").as_deref(), Ok("/usr/bin/python3.9"));
        assert_eq!(chosen("2").as_deref(), Ok("/usr/bin/python2.7"));
        assert_eq!(
            chosen("3.12"),
            Err("no Python 3.12 here (this runner has 3.11, 3.9, 2.7)".to_owned())
        );
        assert!(chosen("three").is_err_and(|reason| reason.contains("not a Python version")));
        let forced = Interpreters::discover(Some("/opt/python"), None);
        assert_eq!(forced.choose("2.6"), Ok(PathBuf::from("/opt/python")));
    }

    #[test]
    fn interpreters_are_found_on_the_path() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let directory = tempfile::tempdir()?;
        // Each answers the version its name promises, but for 3.11, which
        // fails like a pyenv shim of a version that is not activated.
        for (name, answer) in [
            ("python3.10", "echo 3.10; echo /opt/real/python3.10"),
            (
                "python3.11",
                "echo 'pyenv: python3.11: command not found' >&2; exit 127",
            ),
            ("python3.12", "echo 3.12"),
            ("python3.12-config", "echo 3.12"),
            ("pythonfoo", "echo 9.9"),
        ] {
            let path = directory.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{answer}\n"))?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        std::fs::write(directory.path().join("python3.13"), "not executable")?;
        let found = Interpreters::discover(None, Some(directory.path().as_os_str()));
        let versions: Vec<(u32, u32)> = found
            .found()
            .iter()
            .map(|interpreter| interpreter.version)
            .collect();
        assert_eq!(versions, vec![(3, 12), (3, 10)]);
        // The real executable, as the interpreter says, is what is used.
        assert_eq!(found.found()[1].path, PathBuf::from("/opt/real/python3.10"));
        Ok(())
    }
}
