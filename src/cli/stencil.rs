//! `sgr stencil`.

use std::path::PathBuf;

use clap::Args;

use super::template::TemplateArgs;

pub(crate) const LONG_ABOUT: &str = "\
Render a template written in duat's dialect: Go's text/template syntax with
sprig's functions, byte for byte as duat's stencil rendered it.

Variables: .duat.version .duat.module .duat.gitTag .duat.gitHash .duat.gitBranch
.duat.gitURL .duat.gitDir .duat.userName .duat.userID .duat.userGroupID
.duat.awsecr (looked up through AWS only when the template mentions it), .Env.NAME,
each -values/--set key at the top level, and sgr's own names (.git.branch,
.git.branch_slug, .git.short_hash, .version.major, .version.pre, ...; see
docs/templates.md or --print-context).

A missing key prints <no value> as in Go (an error with --strict). Text outside
{{ }} (${VAR}, $1) is copied untouched.

Functions: and or not len index print printf println eq ne lt le gt ge env
expandenv default empty ternary replace b64enc b64dec now uuidv4 quote squote
upper lower trim trimSuffix trimPrefix contains hasPrefix hasSuffix indent
nindent toJson toYaml RaiseError.

duat's spellings are accepted: -input, -output, -values, -module, -f,
-supress-warnings, -error-warnings.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr stencil Dockerfile > Dockerfile.rendered
  sgr stencil -input build.yaml -values Namespace=ci,Image=x -output build.rendered.yaml
  echo '{{.duat.gitBranch}}' | sgr stencil -
  sgr stencil --print-context";

/// `sgr stencil [OPTIONS] [INPUT]`.
#[derive(Debug, Args)]
pub struct StencilArgs {
    /// The template; `-` or nothing reads stdin.
    #[arg(value_name = "INPUT", conflicts_with = "input")]
    pub template: Option<PathBuf>,

    /// The template (duat's -input).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,

    /// A missing key is an error instead of <no value>.
    #[arg(long)]
    pub strict: bool,

    /// Shared template flags.
    #[command(flatten)]
    pub template_args: TemplateArgs,
}
