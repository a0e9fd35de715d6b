//! `sgr semver`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::shared::GitArgs;
use crate::env;
use crate::version::stamp::Encoding;

pub(crate) const LONG_ABOUT: &str = "\
Read, bump and propagate the version kept in README.md.

The version lives in a <repo-version>1.2.3</repo-version> tag (every tag in the
file is rewritten and all must agree) or, in AsciiDoc files, a ':Revision: 1.2.3'
line. Parsing is lenient as in duat: an optional 'v' (kept on output) and
missing minor/patch numbers read as 0.

Files are rewritten atomically (temporary file + rename, permissions kept),
byte for byte except the version: line endings, a missing final newline and
very long lines survive.

Pre-release versions are MAJOR.MINOR.PATCH-<branch>-<stamp>: the branch with
every character other than [0-9A-Za-z] replaced by '-', and an 11-character
time stamp in duat's base-25 encoding, so versions sort in time order together
with the ones duat made. SOURCE_DATE_EPOCH sets the time. On a detached HEAD
the branch comes from SGR_GIT_BRANCH or the CI's variable (GITHUB_HEAD_REF,
GITHUB_REF_NAME, CI_COMMIT_REF_NAME, BUILDKITE_BRANCH, TRAVIS_BRANCH,
BRANCH_NAME).

duat's spellings are accepted: -f, -t, -p, -g, -git DIR and -rc, before or
after the command.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr semver                         print the version in README.md
  sgr semver patch                   0.9.9 -> 0.9.10, written back to README.md
  sgr semver pre                     0.9.9 -> 0.9.9-feature-197-hybrid-aaaagipajnu
  sgr semver rc                      next 0.9.9-rc.N from the repository's tags
  sgr semver -g extract              the highest version among the git tags
  sgr semver sort --rc               every version tag, lowest first
  sgr semver apply -t cmd/runner/Dockerfile --substitute
                                     put the version into the Dockerfile, tags removed
  sgr semver stamp --decode 0.9.9-main-aaaagipajnu
                                     2019-01-25T19:10:44Z
  sgr semver pre --output json       the result as JSON";

/// `sgr semver [OPTIONS] [COMMAND]`.
#[derive(Debug, Args)]
pub struct SemverArgs {
    /// What to do with the version (default: extract).
    #[command(subcommand)]
    pub command: Option<SemverCommand>,

    /// Version files to try, comma separated; the first that exists is used.
    #[arg(
        short = 'f',
        long = "file",
        value_name = "FILES",
        value_delimiter = ',',
        default_values = crate::template::settings::DEFAULT_VERSION_FILES,
        env = env::VERSION_FILES,
        global = true
    )]
    pub files: Vec<PathBuf>,

    /// Files `apply` writes the version into, comma separated.
    #[arg(short = 't', long = "target", value_name = "FILES", value_delimiter = ',', env = env::APPLY_TARGETS, global = true)]
    pub targets: Vec<String>,

    /// Prefix for the printed and written version; only `v` keeps it a version.
    #[arg(short = 'p', long = "prefix", value_name = "PREFIX", global = true)]
    pub prefix: Option<String>,

    /// Start from the highest version among the git tags instead of the file.
    #[arg(short = 'g', long = "git-tags", global = true)]
    pub from_git_tags: bool,

    /// The git repository.
    #[command(flatten)]
    pub git: GitArgs,

    /// With `sort`: include pre-release tags.
    #[arg(long = "rc", global = true)]
    pub include_prereleases: bool,

    /// With `apply`: replace each whole <repo-version> tag by the bare version.
    #[arg(long, global = true)]
    pub substitute: bool,
}

/// The version operations.
#[derive(Clone, Debug, Subcommand)]
pub enum SemverCommand {
    /// Print the current version (the default).
    Extract,
    /// Bump MAJOR: M+1.0.0, pre-release and metadata dropped.
    Major,
    /// Bump MINOR: M.m+1.0, pre-release and metadata dropped.
    Minor,
    /// Bump PATCH: M.m.p+1; a pre-release is released instead (1.2.3-x -> 1.2.3).
    Patch,
    /// Make a branch and time stamped pre-release: M.m.p-<branch>-<stamp>.
    #[command(alias = "prerelease")]
    Pre,
    /// Make the next release candidate M.m.p-rc.N from the local git tags.
    #[command(alias = "releasecandidate")]
    Rc,
    /// Write the current version into the -t files.
    Apply,
    /// List the git tags that are versions, lowest first (pre-releases with --rc).
    Sort,
    /// Print the stamp for now, or decode one to its UTC time.
    Stamp(StampArgs),
}

/// `sgr semver stamp`.
#[derive(Clone, Debug, Args)]
pub struct StampArgs {
    /// A stamp, or a whole pre-release version, to decode to UTC.
    #[arg(long, value_name = "STAMP")]
    pub decode: Option<String>,
    /// The encoding: duat's current base25, or its older base62 (default:
    /// base25 when encoding, detected when decoding).
    #[arg(long, value_enum, value_name = "ENCODING")]
    pub encoding: Option<Encoding>,
}
