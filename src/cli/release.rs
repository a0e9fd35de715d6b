//! `sgr release`.

use std::path::PathBuf;

use clap::Args;

use super::shared::{EngineArgs, GitArgs, PlanArgs, RegistryArgs};
use crate::env;

pub(crate) const LONG_ABOUT: &str = "\
Publish the version in README.md as a GitHub release, with the given files as
assets and a SHA256SUMS file, safely re-runnable.

The tag is the version (with --tag-prefix, e.g. v); the release is created at
HEAD's commit (not a branch name), marked pre-release when the version has a
pre-release part, with notes from --notes-file or the commit subjects since the
previous version tag. Owner and repository come from the git remote (https or
scp form) unless --repo is given.

Re-running is safe: the release is found again (drafts too), an asset with the
same name and SHA-256 is skipped, a different one is refused unless --replace,
and a run that failed part-way is finished by running it again. With --draft
the release is created as a draft and published only after every asset is
uploaded. Files are streamed from disk: memory does not grow with their size.

--images does what duat's image-release did, safely: the images built with the
pre-release version (tag {version}) are tagged with the release version (the
pre-release part dropped) and pushed like sgr push (digests checked first: a
release tag holding another image is refused); the GitHub release is made for
the release version; the version file is rewritten last, only if all succeeded.

Token: GITHUB_TOKEN, else --token-file, else `gh auth token`. Rate limits are
waited out; 5xx answers and dropped connections are retried.
GitHub Enterprise: --api-url https://HOST/api/v3.

Exit codes: 0 published (or nothing to do); 1 GitHub refused or failed, or an
asset differs; 2 usage: no token, no version, a remote that is not GitHub-shaped,
a file pattern that matches nothing.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr release 'bin/runner-linux-*'              assets by glob (quoted: sgr expands it)
  sgr release --draft --notes-file NOTES.md dist/*.tar.gz
  sgr release --replace bin/runner-linux-amd64  overwrite an asset that differs
  sgr release --dry-run dist/*                  the release, assets, sizes and checksums; no GitHub call
  sgr release --images --aws --azure --azure-registry leafai   promote the pre-release images too";

/// `sgr release [OPTIONS] [FILE]...`.
#[derive(Debug, Args)]
#[command(
    mut_arg("org", |arg| arg.help("Organisation in default image names (`--images`)")),
    mut_arg("config", |arg| arg.help("The build configuration file (`--images`; default: sgr.toml at the git top)")),
    mut_arg("docker_host", |arg| arg.help("The engine address (`--images`; default: `DOCKER_HOST`, else the default socket)")),
)]
pub struct ReleaseArgs {
    /// Files or glob patterns to attach as assets (under their base names).
    #[arg(value_name = "FILE")]
    pub files: Vec<String>,

    /// `owner/name` of the GitHub repository (default: from the git remote `origin`).
    #[arg(long, value_name = "OWNER/NAME", env = env::GITHUB_REPOSITORY)]
    pub repo: Option<String>,

    /// Text put before the version in the tag (e.g. `v`).
    #[arg(long, value_name = "PREFIX", default_value = "")]
    pub tag_prefix: String,

    /// Release notes from this file (default: commit subjects since the previous version tag).
    #[arg(long, value_name = "FILE")]
    pub notes_file: Option<PathBuf>,

    /// Create the release as a draft and publish it once every asset is uploaded.
    #[arg(long)]
    pub draft: bool,

    /// Replace assets whose content differs (default: refuse).
    #[arg(long)]
    pub replace: bool,

    /// Read the token from this file (when `GITHUB_TOKEN` is not set).
    #[arg(long, value_name = "FILE", env = env::GITHUB_TOKEN_FILE)]
    pub token_file: Option<PathBuf>,

    /// The GitHub API (GitHub Enterprise: `https://HOST/api/v3`).
    #[arg(long, value_name = "URL", env = env::GITHUB_API_URL, default_value = "https://api.github.com")]
    pub api_url: String,

    /// The version file.
    #[arg(
        short = 'f',
        long = "version-file",
        value_name = "FILE",
        default_value = "README.md"
    )]
    pub version_file: PathBuf,

    /// The git repository.
    #[command(flatten)]
    pub git: GitArgs,

    /// Also release the images: retag the images built for the pre-release
    /// version with the release version, push them (as `sgr push`), and write
    /// the release version to the version file once everything succeeded.
    #[arg(long)]
    pub images: bool,

    /// Registries for `--images`.
    #[command(flatten)]
    pub targets: RegistryArgs,

    /// `sgr.toml` and the organisation (`--images`).
    #[command(flatten)]
    pub plan: PlanArgs,

    /// The engine (`--images`).
    #[command(flatten)]
    pub engine: EngineArgs,
}
