//! Flags shared by `sgr render` and `sgr stencil`.

use std::path::PathBuf;

use clap::Args;

use super::shared::GitArgs;
use crate::env;
use crate::template::dialect::Dialect;
use crate::template::settings;

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
    #[arg(long, value_name = "DIR", default_value = settings::DEFAULT_MODULE)]
    pub module: PathBuf,

    /// Version file candidates, relative to the git top directory; the first that exists is used.
    #[arg(short = 'f', long = "file", value_name = "FILES", value_delimiter = ',', default_values = settings::DEFAULT_VERSION_FILES, env = env::VERSION_FILES)]
    pub version_files: Vec<PathBuf>,

    /// The git repository.
    #[command(flatten)]
    pub git: GitArgs,

    /// Print the variables (as JSON; secret-looking names and URL passwords masked) instead of rendering.
    #[arg(long)]
    pub print_context: bool,

    /// Do not print warnings (AWS lookup failures, missing git or version file).
    #[arg(long, alias = "supress-warnings")]
    pub suppress_warnings: bool,

    /// Fail (exit 2, nothing written) when any warning occurred.
    #[arg(long)]
    pub error_warnings: bool,

    /// The template's dialect: auto (detected from its constructs; -v says which),
    /// tera, or go. Default: the command's own (render: tera, stencil: go).
    #[arg(long, value_name = "DIALECT", value_enum)]
    pub dialect: Option<DialectFlag>,

    /// Refuse (exit 2, nothing written) a rendered result larger than SIZE
    /// (bytes, or with KiB, MiB, GiB).
    #[arg(long, value_name = "SIZE", default_value = settings::DEFAULT_MAX_OUTPUT_TEXT, value_parser = parse_size)]
    pub max_output: u64,
}

/// `--dialect`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DialectFlag {
    /// Detect from the template's constructs.
    Auto,
    /// tera 2.
    Tera,
    /// duat's Go templates.
    Go,
}

impl DialectFlag {
    /// The dialect forced, `None` for `auto`.
    #[must_use]
    pub const fn forced(self) -> Option<Dialect> {
        match self {
            Self::Auto => None,
            Self::Tera => Some(Dialect::Tera),
            Self::Go => Some(Dialect::Go),
        }
    }
}

/// `1048576`, `64KiB`, `256MiB`, `1GiB` (also `K`, `M`, `G`, `KB`, `MB`, `GB` as powers of 1024).
///
/// # Errors
/// Not a size, or zero.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let digits = trimmed
        .find(|character: char| !character.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(digits);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("'{text}' is not a size (e.g. 1048576, 64KiB, 256MiB)"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("'{text}': units are B, KiB, MiB, GiB")),
    };
    let size = number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("'{text}' is too large"))?;
    if size == 0 {
        return Err("the size must be above 0".to_owned());
    }
    Ok(size)
}
