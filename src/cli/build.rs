//! `sgr build`.

use std::path::PathBuf;

use clap::Args;

use super::shared::{EngineArgs, GitArgs, PlanArgs};

pub(crate) const LONG_ABOUT: &str = "\
Render each Dockerfile template and build the images through the Docker Engine API.

Images come from sgr.toml at the git top (see docs/config.md) or, without it,
studio-go-runner's conventions, each only if its Dockerfile exists:
  <org>/<module>-build:<branch>             Dockerfile (build args USER, USER_ID, USER_GROUP_ID)
  <org>/<module>-standalone-build:<branch>  Dockerfile_standalone
  <org>/<module>-workstation:<branch>       Dockerfile_workstation (same build args)
  <org>/<module>/runner:<version>           runner/Dockerfile, context runner/
<branch> is the branch with '_' and '/' replaced by '-'; <org> defaults to leafai.

Images build concurrently (--jobs), except that an image waits for the images its
depends_on names; when one of those fails, the images waiting for it are skipped.
--only NAME builds NAME and everything it depends on; IMAGE arguments build just
those images (their dependencies are expected to exist already).

Dockerfiles are templates: tera (sgr render) or duat's Go dialect (sgr stencil),
detected from their syntax. The context is streamed as tar (never held in memory)
with .dockerignore applied by Docker's rules and .git left out; the rendered
Dockerfile travels under a private name. Images get OCI labels (version, revision,
branch, created): on the image config under BuildKit (no step), as one LABEL
instruction appended to the stage being built (or joined to its own final LABEL)
under the classic builder. A build arg named like a secret, or holding a
secret variable's value, is refused: build args stay in the image history.

Images build with BuildKit where the engine offers it (a Linux engine, API 1.39 or
later, reached over unix:// or tcp://), else with the classic builder; also classic
when a Dockerfile has RUN steps and the engine has no bridge network for them, or
--network names a network BuildKit does not take. An engine that refuses BuildKit
gets the classic build instead. --builder (or DOCKER_BUILDKIT) forces either.

The engine is DOCKER_HOST (or --docker-host), else /var/run/docker.sock.
Exit codes: 0 all built; 1 a build failed; 2 bad configuration, template or
unreachable engine (nothing built).";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr build                              every default image that has a Dockerfile
  sgr build leafai/sgr-build --no-cache  one image
  sgr build --only leafai/x-standalone   one image and the images it depends on
  sgr build --dry-run                    the plan; no engine is contacted
  sgr build --out-dir rendered/          also keep the rendered Dockerfiles
  DOCKER_HOST=unix:///tmp/d.sock sgr build --jobs 4 --output json";

/// `--builder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BuilderFlag {
    /// BuildKit where possible, else the classic builder.
    Auto,
    /// BuildKit only.
    Buildkit,
    /// The classic builder only.
    Classic,
}

impl From<BuilderFlag> for crate::docker::BuilderChoice {
    fn from(flag: BuilderFlag) -> Self {
        match flag {
            BuilderFlag::Auto => Self::Auto,
            BuilderFlag::Buildkit => Self::BuildKit,
            BuilderFlag::Classic => Self::Classic,
        }
    }
}

/// `sgr build [OPTIONS] [IMAGE]...`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Build only these images (names as in the plan, without tag), not what they depend on.
    #[arg(value_name = "IMAGE")]
    pub images: Vec<String>,

    /// Build this image and every image it depends on (`depends_on` in sgr.toml); repeatable.
    #[arg(long = "only", value_name = "NAME")]
    pub only: Vec<String>,

    /// Images built at the same time.
    #[arg(short = 'j', long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Always pull newer versions of base images.
    #[arg(long)]
    pub pull: bool,

    /// Build this stage of multi-stage Dockerfiles.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// The builder: auto (BuildKit where the engine offers it and the build allows it,
    /// else the classic builder; the first output line says which and why), buildkit,
    /// or classic. Without this flag, `DOCKER_BUILDKIT` (1 or 0) chooses, read as the docker
    /// CLI reads it.
    #[arg(long, value_name = "BUILDER", value_enum)]
    pub builder: Option<BuilderFlag>,

    /// Network mode for RUN steps (e.g. none, host).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,

    /// Extra build arg, KEY=VALUE, or KEY to take the value from the environment; repeatable.
    #[arg(long = "build-arg", value_name = "KEY[=VALUE]")]
    pub build_args: Vec<String>,

    /// Send the .git directory with the context.
    #[arg(long)]
    pub include_git: bool,

    /// Also write the rendered Dockerfiles to this directory.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// The Dockerfiles' dialect: auto (sgr.toml's `dialect`, else detected from
    /// each file's constructs; -v says which and why), tera, or go.
    #[arg(long, value_name = "DIALECT", value_enum)]
    pub dialect: Option<crate::cli::template::DialectFlag>,

    /// `sgr.toml` and the organisation.
    #[command(flatten)]
    pub plan: PlanArgs,

    /// The git repository.
    #[command(flatten)]
    pub git: GitArgs,

    /// The engine.
    #[command(flatten)]
    pub engine: EngineArgs,
}
