//! What a template is rendered with, as one value: where its variables
//! come from ([`ContextSettings`]) and how strictly it renders
//! ([`RenderSettings`]).
//!
//! `sgr render` and `sgr stencil` resolve their flags into these; `sgr build`
//! (Dockerfiles), `sgr k8s-build` (the manifest) and the `images` variable
//! start from [`Default`], which is the one place the defaults live: the
//! flags' defaults are these constants too, and a test holds them equal.

use std::path::PathBuf;

/// The module directory when none is named: the working directory.
pub const DEFAULT_MODULE: &str = ".";
/// Where git discovery starts when no directory is named.
pub const DEFAULT_GIT_DIR: &str = ".";
/// Version file candidates, relative to the git top, first existing wins.
pub const DEFAULT_VERSION_FILES: [&str; 2] = ["README.md", "README.adoc"];
/// The most bytes a rendered result may hold: 256 MiB.
pub const DEFAULT_MAX_OUTPUT: u64 = 256 * 1024 * 1024;
/// [`DEFAULT_MAX_OUTPUT`] as the `--max-output` flag spells it.
pub const DEFAULT_MAX_OUTPUT_TEXT: &str = "256MiB";

/// Where a template's variables come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContextSettings {
    /// duat's `K=V,...` lists, as top-level variables.
    pub values: Vec<String>,
    /// `K=V` values (dots nest), applied after `values`.
    pub set: Vec<String>,
    /// YAML or JSON mappings, applied first, later files winning.
    pub values_files: Vec<PathBuf>,
    /// Directory whose name is `module` / `duat.module`.
    pub module: PathBuf,
    /// Version file candidates, relative to the git top.
    pub version_files: Vec<PathBuf>,
    /// Where git discovery starts.
    pub git_dir: PathBuf,
    /// Gather every variable, not only those the template mentions
    /// (`--print-context` shows them all).
    pub all_variables: bool,
}

impl Default for ContextSettings {
    fn default() -> Self {
        Self {
            values: Vec::new(),
            set: Vec::new(),
            values_files: Vec::new(),
            module: PathBuf::from(DEFAULT_MODULE),
            version_files: DEFAULT_VERSION_FILES.iter().map(PathBuf::from).collect(),
            git_dir: PathBuf::from(DEFAULT_GIT_DIR),
            all_variables: false,
        }
    }
}

/// How a template is rendered, whatever its dialect.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RenderSettings {
    /// Go dialect: a missing key is an error instead of `<no value>`.
    pub strict: bool,
    /// tera: undefined top-level variables render as empty strings.
    pub allow_missing: bool,
    /// The most bytes the result may hold.
    pub max_output: u64,
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            strict: false,
            allow_missing: false,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_max_output_text_is_the_max_output() {
        assert_eq!(
            crate::cli::template::parse_size(super::DEFAULT_MAX_OUTPUT_TEXT),
            Ok(super::DEFAULT_MAX_OUTPUT)
        );
    }
}
