//! `sgr k8s-build`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::shared::GitArgs;
use crate::env;

pub(crate) const LONG_ABOUT: &str = "\
Run the GPU build/test Job on a Kubernetes cluster, follow its logs, and end
with its result: the seed's `stencil | kubectl create`, `kubectl logs -f` and
`kubectl delete` as one command.

The manifest (build.yaml, or --manifest) is rendered like sgr render (--set
K=V for its values; --namespace sets `namespace`), in its dialect as sgr build
decides it (a duat-era build.yaml is Go templates). Every object's apiVersion and
kind is checked against the cluster's discovery before anything is written (a
removed one, like extensions/v1beta1, is refused with its line and replacement,
exit 2); then every document is applied with server-side apply (field manager
sgr; Namespace first). GITHUB_TOKEN (from
the environment or --github-token-file) goes only into a Secret that sgr
creates in the build namespace, owned by the Job so it is deleted with it; it
is never rendered into YAML, a ConfigMap, argv, an annotation or the output.
The Secret's name and key are those the Job's GITHUB_TOKEN env refers to; a
manifest that declares that Secret fills it itself. Secret data is masked in
--dry-run output.

sgr then reports each pod's phase (Pending with its reason: ImagePullBackOff,
Unschedulable for lack of nvidia.com/gpu, ...), follows the build container's log
as it is written (resuming after dropped connections and log rotation without
losing or repeating a line; following the replacement pod after a restart;
prefixing lines with the container when there are several; lines over 1 MiB pass
through in pieces, never held whole) and keeps a copy in
--log-file (default <namespace>-<job>.log). Resources are kept afterwards unless
--cleanup; `sgr k8s-build delete` removes what the manifest created.

--attach --image IMAGE is the seed's \"hard way\": one GPU Job from an image, no
manifest, attached to its logs.

The cluster is KUBECONFIG, ~/.kube/config or the in-cluster service account;
--context picks a kubeconfig context.

Exit codes: 0 the Job completed; the failed container's exit code (or 1) when it
failed; 2 usage, configuration or API errors, an unknown or removed kind, an
unreachable API server; 124 --timeout expired.";

pub(crate) const EXAMPLES: &str = "\
Examples:
  sgr k8s-build                                   render build.yaml, apply, follow, exit with the result
  sgr k8s-build --gpus 2 --node-selector leafai.affinity=production --timeout 2h
  sgr k8s-build --dry-run                         the manifests, Secret data masked
  sgr k8s-build --output json                     events as JSON Lines (applied, phase, log, finished)
  sgr k8s-build --attach --image leafai/sgr-standalone-build:main
  sgr k8s-build delete                            remove what build.yaml created";

/// `sgr k8s-build [OPTIONS] [delete]`.
#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)]
pub struct K8sBuildArgs {
    /// Remove what the manifest created instead of running it.
    #[command(subcommand)]
    pub action: Option<K8sAction>,

    /// The manifest template.
    #[arg(long, value_name = "FILE", default_value = "build.yaml", global = true)]
    pub manifest: PathBuf,

    /// A value for the manifest template, K=V; repeatable.
    #[arg(long = "set", value_name = "K=V", global = true)]
    pub set: Vec<String>,

    /// The build namespace (the template's `namespace` value; with --attach, where the Job runs).
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        global = true,
        env = env::NAMESPACE
    )]
    pub namespace: Option<String>,

    /// The kubeconfig context.
    #[arg(long, value_name = "CONTEXT", global = true, env = env::KUBE_CONTEXT)]
    pub context: Option<String>,

    /// Read the GitHub token from this file instead of `GITHUB_TOKEN`.
    #[arg(long, value_name = "FILE", env = env::GITHUB_TOKEN_FILE)]
    pub github_token_file: Option<PathBuf>,

    /// Do not create the token Secret.
    #[arg(long)]
    pub no_github_token: bool,

    /// Where the log copy goes (default `<namespace>-<job>.log`).
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Give up after this long (`90s`, `30m`, `2h`, or seconds); exit 124.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,

    /// Delete what the manifest created once the logs are drained.
    #[arg(long)]
    pub cleanup: bool,

    /// Run one GPU Job from --image, without a manifest, attached to its logs.
    #[arg(long, requires = "image")]
    pub attach: bool,

    /// The image for --attach.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,

    /// The Job's name with --attach.
    #[arg(long, value_name = "NAME", default_value = "build")]
    pub name: String,

    /// GPUs requested and limited (`nvidia.com/gpu`; default 1 with --attach, else the manifest's).
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,

    /// Node selector label K=V (e.g. `leafai.affinity=production`); repeatable.
    #[arg(long = "node-selector", value_name = "K=V")]
    pub node_selector: Vec<String>,

    /// Memory request and limit (e.g. `10Gi`).
    #[arg(long, value_name = "QUANTITY")]
    pub memory: Option<String>,

    /// CPU request and limit (e.g. `2`).
    #[arg(long, value_name = "QUANTITY")]
    pub cpu: Option<String>,

    /// Image pull secret (default `studioml-go-docker-key` with --attach).
    #[arg(long, value_name = "SECRET")]
    pub image_pull_secret: Option<String>,

    /// The git repository.
    #[command(flatten)]
    pub git: GitArgs,

    /// The manifest's dialect: auto (detected from its constructs, as `sgr build`
    /// does; -v says which and why), tera, or go (duat's build.yaml).
    #[arg(long, value_name = "DIALECT", value_enum, default_value = "auto")]
    pub dialect: crate::cli::template::DialectFlag,
}

/// What else `sgr k8s-build` can do.
#[derive(Debug, Subcommand)]
pub enum K8sAction {
    /// Delete what the manifest created (background propagation: pods go too).
    Delete,
}
