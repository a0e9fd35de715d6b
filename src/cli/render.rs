//! `sgr render`.

use std::path::PathBuf;

use clap::Args;

use super::template::TemplateArgs;

pub(crate) const LONG_ABOUT: &str = "\
Render a tera 2 template (Jinja-like: {{ var }}, {% if %}, {% for %}, filters
with |) with the git, version, user and environment variables.

Variables: git.branch git.branch_slug git.branch_dns git.hash git.short_hash
git.tag git.url git.https_url git.host git.owner git.repository git.dir
git.dirty; version.full version.original version.major version.minor
version.patch version.pre version.build; user.name user.uid user.gid; module;
Env.NAME; duat.* (as in sgr stencil); every --values/--set/--values-file key
at the top level. --print-context shows them all.

Functions: env(name=, default=), now(format=rfc3339|unix|stamp), uuidv4().
Filters: expandenv, b64enc, b64dec, slug(kind=dns|tag|label|semver), quote,
to_json(pretty=), to_yaml, and tera's own (default(value=), replace(from=,
to=), upper, lower, trim, indent, join, length, ...).

Strict: an undefined variable is an error naming file, line and column;
--allow-missing renders undefined top-level variables as empty.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr render templates/runner-deployment.yaml --set image=registry/runner:1.0
  sgr render Dockerfile -o Dockerfile.rendered
  echo '{{ git.branch | slug }}' | sgr render -";

/// `sgr render [OPTIONS] [FILE]`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The template; `-` or nothing reads stdin.
    #[arg(value_name = "FILE")]
    pub template: Option<PathBuf>,

    /// Render undefined top-level variables as empty strings instead of failing.
    #[arg(long)]
    pub allow_missing: bool,

    /// Shared template flags.
    #[command(flatten)]
    pub template_args: TemplateArgs,
}
