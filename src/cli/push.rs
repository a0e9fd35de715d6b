//! `sgr push`.

use clap::Args;

pub use super::shared::RegistryArgs;
use super::shared::{EngineArgs, GitArgs, PlanArgs};

pub(crate) const LONG_ABOUT: &str = "\
Tag the images made by sgr build for each selected registry and push them
through the Docker Engine API, with native authentication: no az or aws CLI,
no docker login, nothing written to ~/.docker/config.json.

Registries:
  --azure     Azure Container Registry <name>.azurecr.io (--azure-registry or
              azure_registry_name). Credentials, first that works wins:
              SGR_ACR_USERNAME/SGR_ACR_PASSWORD; workload identity
              (AZURE_FEDERATED_TOKEN_FILE); service principal (AZURE_CLIENT_ID,
              AZURE_CLIENT_SECRET, AZURE_TENANT_ID); managed identity; Azure CLI.
              The Entra token is exchanged for an ACR refresh token.
  --aws       ECR of the default AWS account and region (AWS_PROFILE, AWS_REGION,
              AWS_ENDPOINT_URL honoured); repositories are created when missing,
              with scan on push.
  --registry  any OCI registry; credentials from SGR_REGISTRY_USERNAME and
              SGR_REGISTRY_PASSWORD, else Docker's config and credential helpers.
Without any of these flags, ACR is tried when azure_registry_name is set and ECR
when AWS credentials exist; a registry without credentials is then skipped with a
warning. A registry asked for by flag without usable credentials is an error.

Names: <registry>/<org>/<module>/<component>:<tag> (leafai/sgr-build:main goes
to <registry>/leafai/sgr/build:main); `remote` in sgr.toml overrides. Tags are
the image's own (the branch for build images, the version for the runner);
--tag overrides them.

Safe to re-run: a tag that already holds the local image is reported 'up to
date' without uploading; a version tag (1.2.3, 1.2.3-pre) holding a different
image is an error, never overwritten. Credentials are fetched right before each
push and fetched again when refused; 5xx, 429 and dropped connections are
retried with backoff. Pushes to different registries run at the same time; one
failing does not stop the others.

Exit codes: 0 every push done or up to date; 1 a push failed or an asked-for
registry has no credentials; 2 bad configuration or unreachable engine.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr push --registry localhost:5000              every built image of the plan
  sgr push --aws --azure --azure-registry leafai  both clouds at once
  sgr push --image leafai/x:main --tag '{branch}' --tag '{short_hash}' --registry r.example
  sgr push --aws --atomic                         version tags only once all pushes succeeded
  sgr push --dry-run --output json                the plan; no registry is contacted";

/// `sgr push [OPTIONS] [IMAGE]...`.
#[derive(Clone, Debug, Args)]
pub struct PushArgs {
    /// Push only these images of the plan (names as in `sgr build --dry-run`, without tag).
    #[arg(value_name = "IMAGE", conflicts_with = "image")]
    pub images: Vec<String>,

    /// Push this local image (`name:tag`) instead of the plan's; repeatable.
    #[arg(long = "image", value_name = "REF")]
    pub image: Vec<String>,

    /// The registries.
    #[command(flatten)]
    pub targets: RegistryArgs,

    /// Tag pattern replacing the images' own tags (`{branch}`, `{version}`, `{short_hash}`, …); repeatable.
    #[arg(long = "tag", value_name = "PATTERN")]
    pub tags: Vec<String>,

    /// Apply version tags only after every image was pushed everywhere.
    #[arg(long)]
    pub atomic: bool,

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
