//! Flags shared by `sgr render` and `sgr stencil`.

use std::path::PathBuf;

use clap::Args;

use crate::env;

/// Where values come from, the module, the version file and strictness.
#[derive(Debug, Args)]
pub struct TemplateArgs {
    /// Write here (atomically) instead of stdout.
    #[arg(short = 'o', long = "out", value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// duat's values: KEY=VALUE pairs separated by commas, as top-level variables.
    #[arg(long, value_name = "K=V,...")]
    pub values: Vec<String>,

    /// One value, KEY=VALUE (dots nest: image.tag=1.0); repeatable, wins over --values.
    #[arg(long = "set", value_name = "K=V")]
    pub set: Vec<String>,

    /// Values from a YAML or JSON mapping; repeatable, later files win.
    #[arg(long = "values-file", value_name = "FILE")]
    pub values_files: Vec<PathBuf>,

    /// Directory whose name (made docker-safe) is `duat.module` / `module`.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub module: PathBuf,

    /// Version file candidates, relative to the git top directory; the first that exists is used.
    #[arg(short = 'f', long = "file", value_name = "FILES", value_delimiter = ',', default_values = ["README.md", "README.adoc"], env = env::VERSION_FILES)]
    pub version_files: Vec<PathBuf>,

    /// Directory where the search for the git repository starts.
    #[arg(long = "git", value_name = "DIR", default_value = ".", env = env::GIT_DIR)]
    pub git_dir: PathBuf,

    /// Print the variables (as JSON; secrets in Env masked) instead of rendering.
    #[arg(long)]
    pub print_context: bool,

    /// Do not print warnings (AWS lookup failures, missing git or version file).
    #[arg(long, alias = "supress-warnings")]
    pub suppress_warnings: bool,

    /// Fail (exit 2, nothing written) when any warning occurred.
    #[arg(long)]
    pub error_warnings: bool,
}
