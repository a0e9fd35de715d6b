//! Names of the environment variables sgr reads, in one place.
//!
//! Only `SGR_`-prefixed names, the standard ones (`NO_COLOR`,
//! `SOURCE_DATE_EPOCH`) and the CI branch variables are read: duat's habit of
//! mapping every flag to a bare variable (`F`, `T`, `V`) silently changed
//! behaviour and is not kept.

/// Comma list of version files (`-f`).
pub const VERSION_FILES: &str = "SGR_VERSION_FILES";
/// Comma list of `apply` targets (`-t`).
pub const APPLY_TARGETS: &str = "SGR_APPLY_TARGETS";
/// Directory where git discovery starts (`--git`).
pub const GIT_DIR: &str = "SGR_GIT_DIR";
/// Overrides the branch read from git.
pub const GIT_BRANCH: &str = "SGR_GIT_BRANCH";
/// Organisation in default image names (`--org`).
pub const ORG: &str = "SGR_ORG";
/// The build configuration file (`--config`).
pub const CONFIG: &str = "SGR_CONFIG";
/// Output format (`--output`).
pub const OUTPUT: &str = "SGR_OUTPUT";
/// Colour choice (`--color`).
pub const COLOR: &str = "SGR_COLOR";
/// Log filter for diagnostics (falls back to `RUST_LOG`).
pub const LOG: &str = "SGR_LOG";
/// Any value turns colour off (<https://no-color.org>).
pub const NO_COLOR: &str = "NO_COLOR";
/// Unix seconds to use instead of the clock (<https://reproducible-builds.org>).
pub const SOURCE_DATE_EPOCH: &str = "SOURCE_DATE_EPOCH";

/// The docker CLI's builder switch: 1 for BuildKit, 0 for the classic builder (`--builder`).
pub const DOCKER_BUILDKIT: &str = "DOCKER_BUILDKIT";

/// Variables that name the branch when HEAD is detached, in the order they
/// are tried: GitHub pull requests, GitHub, GitLab, Buildkite, Travis, Jenkins.
pub const CI_BRANCH_VARIABLES: [&str; 6] = [
    "GITHUB_HEAD_REF",
    "GITHUB_REF_NAME",
    "CI_COMMIT_REF_NAME",
    "BUILDKITE_BRANCH",
    "TRAVIS_BRANCH",
    "BRANCH_NAME",
];

/// ACR user (admin user or scope-map token) instead of the Entra chain.
pub const ACR_USERNAME: &str = "SGR_ACR_USERNAME";
/// Its password.
pub const ACR_PASSWORD: &str = "SGR_ACR_PASSWORD";
/// User for `--registry` hosts, instead of Docker's configuration.
pub const REGISTRY_USERNAME: &str = "SGR_REGISTRY_USERNAME";
/// Its password.
pub const REGISTRY_PASSWORD: &str = "SGR_REGISTRY_PASSWORD";
/// The ACR registry name or host, as build.sh read it.
pub const AZURE_REGISTRY_NAME: &str = "azure_registry_name";
/// Test hook: push ECR images to this host instead of the account's ECR
/// endpoint (moto's `proxyEndpoint` is fake). Never needed against AWS.
pub const ECR_REGISTRY_OVERRIDE: &str = "SGR_ECR_REGISTRY_OVERRIDE";
/// Generic registries to push to (comma list), as `--registry`.
pub const REGISTRIES: &str = "SGR_REGISTRIES";
/// The GitHub token (as the GitHub CLI and Actions name it).
pub const GITHUB_TOKEN: &str = "GITHUB_TOKEN";
/// A file holding the GitHub token (`--token-file`).
pub const GITHUB_TOKEN_FILE: &str = "SGR_GITHUB_TOKEN_FILE";
/// The GitHub API URL (`--api-url`), for GitHub Enterprise.
pub const GITHUB_API_URL: &str = "SGR_GITHUB_API_URL";
/// `owner/name` of the GitHub repository (`--repo`).
pub const GITHUB_REPOSITORY: &str = "SGR_GITHUB_REPO";
/// Seconds a small registry request (manifest, token, HEAD) may take in all,
/// and the wait for the answer's headers around a blob transfer (default 60).
pub const REGISTRY_REQUEST_TIMEOUT: &str = "SGR_REGISTRY_REQUEST_TIMEOUT";
/// Seconds a blob transfer may go without moving a byte before it fails
/// (default 60); a transfer that keeps moving has no deadline.
pub const REGISTRY_IDLE_TIMEOUT: &str = "SGR_REGISTRY_IDLE_TIMEOUT";
/// The build namespace of `sgr k8s-build` (`--namespace`).
pub const NAMESPACE: &str = "SGR_NAMESPACE";
/// The kubeconfig context of `sgr k8s-build` (`--context`).
pub const KUBE_CONTEXT: &str = "SGR_KUBE_CONTEXT";
/// Log filter read when `SGR_LOG` is not set.
pub const RUST_LOG: &str = "RUST_LOG";
/// The Docker Engine address (`--docker-host`), as Docker's own tools read it.
pub const DOCKER_HOST: &str = "DOCKER_HOST";
/// Docker's configuration directory (default `~/.docker`).
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// The home directory.
pub const HOME: &str = "HOME";
/// The login name, when the user database has none for the uid.
pub const USER: &str = "USER";
/// Directories searched for programs.
pub const PATH: &str = "PATH";
/// The AWS region (the SDK reads it too; sgr only names it in dry runs).
pub const AWS_REGION: &str = "AWS_REGION";
/// The AWS region when `AWS_REGION` is not set.
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// Azure workload identity: the federated token file.
pub const AZURE_FEDERATED_TOKEN_FILE: &str = "AZURE_FEDERATED_TOKEN_FILE";
/// Azure service principal: the tenant.
pub const AZURE_TENANT_ID: &str = "AZURE_TENANT_ID";
/// Azure service principal: the client (application) id.
pub const AZURE_CLIENT_ID: &str = "AZURE_CLIENT_ID";
/// Azure service principal: the client secret.
pub const AZURE_CLIENT_SECRET: &str = "AZURE_CLIENT_SECRET";
/// Azure managed identity endpoints (App Service, Arc, VMs).
pub const AZURE_MANAGED_IDENTITY_ENDPOINTS: [&str; 3] =
    ["IDENTITY_ENDPOINT", "MSI_ENDPOINT", "IMDS_ENDPOINT"];

/// The process environment as a lookup function, for code that takes one.
#[must_use]
pub fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}
