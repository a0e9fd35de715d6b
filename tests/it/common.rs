//! Helpers: scratch git repositories made with the git CLI (tests only; sgr
//! itself never runs git) and an `sgr` command with a clean environment.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use assert_cmd::cargo::cargo_bin_cmd;
use sgr::env::CI_BRANCH_VARIABLES;

pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// A scratch git repository in a temporary directory.
pub struct Repo {
    // Kept so that the directory lives as long as the repository.
    _directory: tempfile::TempDir,
    /// `<temp>/project`: a name that is a valid module and image name.
    root: PathBuf,
}

impl Repo {
    /// `git init` on `branch`, with a committer identity.
    pub fn new(branch: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let root = directory.path().join("project");
        fs::create_dir(&root)?;
        let repo = Self {
            _directory: directory,
            root,
        };
        repo.git(&["init", "-q", "-b", branch])?;
        repo.git(&["config", "user.email", "test@example.invalid"])?;
        repo.git(&["config", "user.name", "Test"])?;
        repo.git(&["config", "commit.gpgsign", "false"])?;
        repo.git(&["config", "tag.gpgsign", "false"])?;
        Ok(repo)
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path().join(name)
    }

    pub fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> Result<(), std::io::Error> {
        let path = self.file(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(path, contents)
    }

    pub fn read(&self, name: &str) -> Result<Vec<u8>, std::io::Error> {
        fs::read(self.file(name))
    }

    /// Run git in the repository; fails the test when git fails.
    pub fn git(&self, args: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
        let output = Command::new("git")
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("HOME", self.path())
            .output()?;
        if !output.status.success() {
            return Err(
                format!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into(),
            );
        }
        Ok(String::from_utf8(output.stdout)?.trim().to_owned())
    }

    /// Commit everything with the given message.
    pub fn commit(&self, message: &str) -> Result<(), Box<dyn std::error::Error>> {
        self.git(&["add", "-A"])?;
        self.git(&["commit", "-q", "--allow-empty", "-m", message])?;
        Ok(())
    }

    /// `sgr` run in this repository with no CI branch variables and no colour.
    pub fn sgr(&self) -> assert_cmd::Command {
        let mut command = sgr_command();
        command.current_dir(self.path());
        command
    }
}

/// `sgr` with a clean environment: no CI branch variables, no SGR_* overrides, no
/// `DOCKER_BUILDKIT`.
pub fn sgr_command() -> assert_cmd::Command {
    let mut command = cargo_bin_cmd!("sgr");
    for variable in CI_BRANCH_VARIABLES {
        command.env_remove(variable);
    }
    for (name, _) in std::env::vars() {
        if name.starts_with("SGR_") && !name.starts_with("SGR_TEST_") {
            command.env_remove(name);
        }
    }
    command
        .env_remove("SOURCE_DATE_EPOCH")
        .env_remove("DOCKER_BUILDKIT")
        .env("NO_COLOR", "1");
    command
}

/// A repository like studio-go-runner's: README version, feature branch, its GitHub remote.
pub fn studio_checkout() -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write(
        "README.md",
        "# Runner\n\nVersion: <repo-version>0.9.9</repo-version>\n",
    )?;
    repo.commit("initial")?;
    repo.git(&[
        "remote",
        "add",
        "origin",
        "git@github.com:leaf-ai/studio-go-runner.git",
    ])?;
    Ok(repo)
}
