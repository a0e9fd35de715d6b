//! Flag groups that several commands take, declared once and flattened
//! (`#[command(flatten)]`) where used, so that a flag keeps one name, one
//! environment variable and one help text everywhere.

use std::path::PathBuf;

use clap::Args;

use crate::env;

/// Where the git repository is.
#[derive(Clone, Debug, Args)]
pub struct GitArgs {
    /// Directory where the search for the git repository starts.
    #[arg(long = "git", value_name = "DIR", default_value = crate::template::settings::DEFAULT_GIT_DIR, env = env::GIT_DIR, global = true)]
    pub git_dir: PathBuf,
}

/// What the image plan is made from besides git: `sgr.toml` and the organisation.
#[derive(Clone, Debug, Default, Args)]
pub struct PlanArgs {
    /// Organisation in default image names.
    #[arg(long, value_name = "ORG", env = env::ORG)]
    pub org: Option<String>,

    /// The configuration file (default: sgr.toml at the git top, if present).
    #[arg(long, value_name = "FILE", env = env::CONFIG)]
    pub config: Option<PathBuf>,
}

/// The Docker Engine.
#[derive(Clone, Debug, Default, Args)]
pub struct EngineArgs {
    /// The engine address (default: `DOCKER_HOST`, else the default socket).
    #[arg(long, value_name = "HOST")]
    pub docker_host: Option<String>,
}

/// Which registries to push to; shared by `sgr push` and `sgr release --images`.
#[derive(Clone, Debug, Default, Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct RegistryArgs {
    /// Push to Azure Container Registry.
    #[arg(long)]
    pub azure: bool,

    /// The ACR name (`leafai`) or host.
    #[arg(long, value_name = "NAME", env = env::AZURE_REGISTRY_NAME)]
    pub azure_registry: Option<String>,

    /// Push to AWS ECR.
    #[arg(long)]
    pub aws: bool,

    /// Create missing ECR repositories (the default).
    #[arg(long, overrides_with = "no_create_repos")]
    pub create_repos: bool,

    /// Do not create missing ECR repositories.
    #[arg(long)]
    pub no_create_repos: bool,

    /// Push to this OCI registry host (`host[:port]`); repeatable or comma-separated.
    #[arg(long = "registry", value_name = "HOST", env = env::REGISTRIES, value_delimiter = ',')]
    pub registries: Vec<String>,
}
