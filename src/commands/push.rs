//! `sgr push`: plan which image goes to which registry under which tags,
//! then push them, registries at the same time, each image checked against
//! the remote manifest first so that re-runs upload nothing.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::OnceCell;

use super::build::{BuildCommandError, PlanSelection, Prepared, prepare};
use crate::build::plan::{self, Naming};
use crate::cli::GlobalArgs;
use crate::cli::push::PushArgs;
use crate::docker::{DockerError, Engine, LocalImage, PushError, PushFailureKind};
use crate::env;
use crate::error::{ExitStatus, Failure};
use crate::output::progress::{BuildProgress, ImageProgress, human_bytes};
use crate::output::{OutputFormat, Printer};
use crate::registry::client::{ClientError, RegistryClient, RemoteManifest};
use crate::registry::provider::{Kind, ProviderError, Registry};
use crate::registry::{azure, is_immutable_tag, remote_repository};
use crate::version::branch;

/// Attempts of one push when the registry fails transiently.
const PUSH_ATTEMPTS: u32 = 4;
/// First pause between attempts; doubled each time.
const PUSH_BACKOFF: Duration = Duration::from_millis(500);

/// Failures that stop `sgr push` before anything is pushed.
#[derive(Debug, Error)]
pub enum PushCommandError {
    /// Reading git, `sgr.toml` or planning failed.
    #[error(transparent)]
    Plan(#[from] BuildCommandError),
    /// A tag pattern or `--image` reference is invalid.
    #[error(transparent)]
    Reference(#[from] plan::PlanError),
    /// No registry was selected.
    #[error("no registry to push to")]
    NoRegistry,
    /// `--azure` without a registry name.
    #[error(
        "--azure needs the registry: --azure-registry NAME or {}",
        env::AZURE_REGISTRY_NAME
    )]
    NoAzureRegistry,
    /// Every selected registry was skipped.
    #[error("none of the registries could be used: {}", .skipped.join("; "))]
    NothingUsable {
        /// Why each was skipped.
        skipped: Vec<String>,
    },
    /// The engine cannot be reached.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Some pushes failed.
    #[error("{failed} of {total} push(es) failed")]
    Failed {
        /// Failed rows.
        failed: usize,
        /// All rows.
        total: usize,
    },
    /// stdout cannot be written.
    #[error("cannot write the results")]
    Output(#[source] std::io::Error),
}

impl From<PushCommandError> for Failure {
    fn from(error: PushCommandError) -> Self {
        let (status, hint) = match &error {
            PushCommandError::Plan(_) => return Self::from(unwrap_plan(error)),
            PushCommandError::NoRegistry => (
                ExitStatus::Usage,
                Some(format!(
                    "name one: --registry HOST, --aws, or --azure with --azure-registry NAME (or set {})",
                    env::AZURE_REGISTRY_NAME
                )),
            ),
            PushCommandError::NoAzureRegistry => (
                ExitStatus::Usage,
                Some("e.g. --azure-registry leafai for leafai.azurecr.io".to_owned()),
            ),
            PushCommandError::Docker(DockerError::Unreachable { .. }) => (
                ExitStatus::Usage,
                Some("start the engine, or point DOCKER_HOST (or --docker-host) at it".to_owned()),
            ),
            PushCommandError::Reference(_) => (ExitStatus::Usage, None),
            PushCommandError::NothingUsable { .. } => (
                ExitStatus::Failed,
                Some(
                    "give credentials for one of them, or name a registry with --registry"
                        .to_owned(),
                ),
            ),
            _ => (ExitStatus::Failed, None),
        };
        Self::new(error, status, hint)
    }
}

fn unwrap_plan(error: PushCommandError) -> BuildCommandError {
    match error {
        PushCommandError::Plan(inner) => inner,
        other => BuildCommandError::Config {
            path: PathBuf::new(),
            message: other.to_string(),
        },
    }
}

/// One image to push: where it is locally and what it becomes remotely.
#[derive(Clone, Debug, Serialize)]
struct PushItem {
    /// The plan's name, or the `--image` reference.
    image: String,
    /// The local reference pushed from.
    source: String,
    /// The repository in every registry.
    repository: String,
    /// The tags it gets.
    tags: Vec<String>,
}

/// A registry chosen by flags or environment, not yet resolved.
#[derive(Clone, Debug, Serialize)]
struct Selection {
    kind: Kind,
    /// Known before resolving for ACR and `--registry`.
    host: Option<String>,
    /// Asked for by flag (an error when unusable) or implied (skipped with a warning).
    explicit: bool,
}

/// The outcome of one tag in one registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
enum Outcome {
    #[serde(rename = "pushed")]
    Pushed,
    #[serde(rename = "up to date")]
    UpToDate,
    #[serde(rename = "failed")]
    Failed,
    #[serde(rename = "skipped")]
    Skipped,
}

impl Outcome {
    const fn text(self) -> &'static str {
        match self {
            Self::Pushed => "pushed",
            Self::UpToDate => "up to date",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }
}

/// One row of the summary.
#[derive(Clone, Debug, Serialize)]
struct PushRow {
    image: String,
    registry: String,
    kind: Kind,
    target: String,
    digest: Option<String>,
    result: Outcome,
    error: Option<String>,
    seconds: f64,
}

/// What a dry run prints.
#[derive(Debug, Serialize)]
struct PushPlan {
    registries: Vec<Selection>,
    images: Vec<PushItem>,
    targets: Vec<String>,
    atomic: bool,
}

/// Why one push failed.
#[derive(Debug, Error)]
enum StepError {
    #[error("no local image {reference} (it has not been built)")]
    NotBuilt { reference: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Push(#[from] PushError),
    #[error(transparent)]
    Docker(#[from] DockerError),
    #[error(
        "{target} already holds another image (remote manifest {remote}, image {}); the local image is {local}. A version tag is never overwritten",
        .remote_image.as_deref().unwrap_or("unknown")
    )]
    Conflict {
        target: String,
        remote: String,
        remote_image: Option<String>,
        local: String,
    },
    #[error("not tagged: --atomic, and another push failed")]
    AtomicAborted,
}

impl StepError {
    fn hint(&self, registry: &Registry) -> Option<String> {
        match self {
            Self::NotBuilt { .. } => {
                Some("run sgr build first, or name an existing image with --image".to_owned())
            }
            Self::Client(ClientError::Unauthorized { .. }) => Some(format!(
                "check the credentials for {} (from {})",
                registry.host, registry.origin
            )),
            Self::Push(error) if error.kind == PushFailureKind::Auth => Some(format!(
                "check the credentials for {} (from {})",
                registry.host, registry.origin
            )),
            Self::Conflict { .. } => Some(
                "bump the version (sgr semver patch) or push a pre-release (sgr semver pre)"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// Run `sgr push`.
///
/// # Errors
/// Bad configuration (2), unreachable engine (2), failed pushes (1).
pub fn run(
    args: &PushArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    run_inner(args, global, printer, runtime).map_err(Failure::from)
}

/// The images to push, from the plan or `--image`.
fn items(
    args: &PushArgs,
    prepared: Option<&Prepared>,
    naming: &Naming,
) -> Result<Vec<PushItem>, PushCommandError> {
    let own_tags = |tags: Vec<String>| -> Result<Vec<String>, PushCommandError> {
        if args.tags.is_empty() {
            return Ok(tags);
        }
        let mut expanded = Vec::with_capacity(args.tags.len());
        for pattern in &args.tags {
            let tag = branch::docker_tag(&plan::expand(pattern, naming)?);
            if tag.is_empty() {
                return Err(plan::PlanError::InvalidReference {
                    reference: format!("--tag {pattern}"),
                    reason: "the pattern is empty here ({version} needs a version file, {branch} a branch)".to_owned(),
                }
                .into());
            }
            expanded.push(tag);
        }
        Ok(expanded)
    };
    let mut items = Vec::new();
    if args.image.is_empty() {
        for image in prepared
            .map(|prepared| prepared.planned.as_slice())
            .unwrap_or_default()
        {
            let tags = image
                .tags
                .iter()
                .map(|reference| crate::docker::split_tag(reference).1.to_owned())
                .collect();
            items.push(PushItem {
                image: image.name.clone(),
                source: image
                    .tags
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.name.clone()),
                repository: image.remote.clone(),
                tags: own_tags(tags)?,
            });
        }
    } else {
        for reference in &args.image {
            plan::validate_reference(reference)?;
            let (name, tag) = crate::docker::split_tag(reference);
            items.push(PushItem {
                image: reference.clone(),
                source: format!("{name}:{tag}"),
                repository: remote_repository(name, &naming.org, &naming.module),
                tags: own_tags(vec![tag.to_owned()])?,
            });
        }
    }
    for item in &items {
        for tag in &item.tags {
            plan::validate_reference(&format!("{}:{tag}", item.repository))?;
        }
    }
    Ok(items)
}

/// The registries the flags and environment select.
fn selections(args: &PushArgs) -> Result<Vec<Selection>, PushCommandError> {
    let explicit = args.targets.azure || args.targets.aws || !args.targets.registries.is_empty();
    let azure_name = args
        .targets
        .azure_registry
        .clone()
        .filter(|name| !name.trim().is_empty());
    let mut selected = Vec::new();
    if args.targets.azure || (!explicit && azure_name.is_some()) {
        let name = azure_name.ok_or(PushCommandError::NoAzureRegistry)?;
        selected.push(Selection {
            kind: Kind::Azure,
            host: Some(azure::registry_host(name.trim())),
            explicit,
        });
    }
    if args.targets.aws || !explicit {
        selected.push(Selection {
            kind: Kind::Aws,
            host: env::process(env::ECR_REGISTRY_OVERRIDE).filter(|host| !host.is_empty()),
            explicit,
        });
    }
    for host in &args.targets.registries {
        let host = host.trim().trim_end_matches('/');
        if host.is_empty() {
            continue;
        }
        let host = host
            .strip_prefix("https://")
            .or_else(|| host.strip_prefix("http://"))
            .unwrap_or(host);
        if !selected
            .iter()
            .any(|existing| existing.host.as_deref() == Some(host))
        {
            selected.push(Selection {
                kind: Kind::Registry,
                host: Some(host.to_owned()),
                explicit: true,
            });
        }
    }
    if selected.is_empty() {
        return Err(PushCommandError::NoRegistry);
    }
    Ok(selected)
}

fn host_label(selection: &Selection) -> String {
    selection.host.clone().unwrap_or_else(|| {
        let region = env::process("AWS_REGION")
            .or_else(|| env::process("AWS_DEFAULT_REGION"))
            .unwrap_or_else(|| "<region>".to_owned());
        format!("<account>.dkr.ecr.{region}.amazonaws.com")
    })
}

/// `sgr push` as a library call (used by `sgr release --images`).
///
/// # Errors
/// As [`run`].
#[allow(clippy::too_many_lines)]
pub(crate) fn run_inner(
    args: &PushArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), PushCommandError> {
    let prepared = prepare(&PlanSelection {
        git_dir: &args.git_dir,
        config: args.config.as_deref(),
        org: args.org.as_deref(),
        images: &args.images,
        extra_args: BTreeMap::new(),
    });
    // `--image` needs no plan: a repository without Dockerfiles can still push.
    let prepared = match prepared {
        Ok(prepared) => Some(prepared),
        Err(BuildCommandError::Plan(plan::PlanError::NothingToBuild { .. }))
            if !args.image.is_empty() =>
        {
            None
        }
        Err(error) => return Err(error.into()),
    };
    let naming = match &prepared {
        Some(prepared) => prepared.naming.clone(),
        None => fallback_naming(args)?,
    };
    let items = items(args, prepared.as_ref(), &naming)?;
    let selected = selections(args)?;
    if global.dry_run {
        let targets: Vec<String> = selected
            .iter()
            .flat_map(|selection| {
                let host = host_label(selection);
                items.iter().flat_map(move |item| {
                    let host = host.clone();
                    item.tags.iter().map(move |tag| {
                        format!("{} -> {host}/{}:{tag}", item.source, item.repository)
                    })
                })
            })
            .collect();
        let human = targets.join("\n");
        let plan = PushPlan {
            registries: selected,
            images: items,
            targets,
            atomic: args.atomic,
        };
        return printer
            .result(&human, &plan)
            .map_err(PushCommandError::Output);
    }
    let create_repositories = !args.targets.no_create_repos;
    let interactive = printer.interactive() && printer.format() == OutputFormat::Human;
    let progress = BuildProgress::new(printer, interactive);
    let rows = runtime.block_on(async {
        let engine = Engine::connect(args.docker_host.as_deref()).await?;
        printer.detail(&format!("engine {}", engine.host()));
        let mut locals: HashMap<String, Option<LocalImage>> = HashMap::new();
        for item in &items {
            if !locals.contains_key(&item.source) {
                let found = engine.inspect(&item.source).await?;
                locals.insert(item.source.clone(), found);
            }
        }
        let resolved = futures_util::future::join_all(selected.iter().map(resolve)).await;
        let mut rows = Vec::new();
        let mut registries = Vec::new();
        let mut skipped = Vec::new();
        for (selection, outcome) in selected.iter().zip(resolved) {
            match outcome {
                Ok(registry) => {
                    printer.note(&format!(
                        "{}: credentials from {}",
                        registry.host, registry.origin
                    ));
                    registries.push(registry);
                }
                Err(error) => {
                    let label = host_label(selection);
                    let message = error_text(&error);
                    if selection.explicit {
                        printer.error(&message, Some(&provider_hint(selection.kind)));
                        for item in &items {
                            for tag in &item.tags {
                                rows.push(PushRow {
                                    image: item.image.clone(),
                                    registry: label.clone(),
                                    kind: selection.kind,
                                    target: format!("{label}/{}:{tag}", item.repository),
                                    digest: None,
                                    result: Outcome::Failed,
                                    error: Some(message.clone()),
                                    seconds: 0.0,
                                });
                            }
                        }
                    } else {
                        printer.warn(&format!(
                            "skipping {}: {message}",
                            selection.kind.flag().trim_start_matches('-')
                        ));
                        skipped.push(message);
                    }
                }
            }
        }
        if registries.is_empty() && rows.is_empty() {
            return Err(PushCommandError::NothingUsable { skipped });
        }
        let context = Context {
            mirror: Mirror::default(),
            engine: &engine,
            locals: &locals,
            printer,
            progress: &progress,
            create_repositories,
        };
        let context = &context;
        let items = &items;
        if args.atomic {
            let first = futures_util::future::join_all(
                registries
                    .iter()
                    .map(|registry| push_registry(context, registry, items, Phase::Carriers)),
            )
            .await;
            let ok = first
                .iter()
                .flatten()
                .all(|row| matches!(row.result, Outcome::Pushed | Outcome::UpToDate))
                && rows.is_empty();
            let phase = if ok { Phase::VersionTags } else { Phase::Abort };
            let second = futures_util::future::join_all(
                registries
                    .iter()
                    .map(|registry| push_registry(context, registry, items, phase)),
            )
            .await;
            rows.extend(
                first
                    .into_iter()
                    .flatten()
                    .filter(|row| !row.target.contains(":sgr-staging-")),
            );
            rows.extend(second.into_iter().flatten());
        } else {
            let all = futures_util::future::join_all(
                registries
                    .iter()
                    .map(|registry| push_registry(context, registry, items, Phase::All)),
            )
            .await;
            rows.extend(all.into_iter().flatten());
        }
        Ok::<_, PushCommandError>(rows)
    })?;
    let mut rows = rows;
    rows.sort_by(|left, right| {
        (&left.image, &left.registry, &left.target).cmp(&(
            &right.image,
            &right.registry,
            &right.target,
        ))
    });
    printer
        .result(&summary_table(&rows), &rows)
        .map_err(PushCommandError::Output)?;
    let failed = rows
        .iter()
        .filter(|row| matches!(row.result, Outcome::Failed | Outcome::Skipped))
        .count();
    if failed > 0 {
        return Err(PushCommandError::Failed {
            failed,
            total: rows.len(),
        });
    }
    Ok(())
}

/// Names for `--image` pushes outside a buildable repository.
fn fallback_naming(args: &PushArgs) -> Result<Naming, PushCommandError> {
    let repository =
        crate::git::GitRepository::discover(&args.git_dir).map_err(BuildCommandError::from)?;
    let metadata = repository
        .metadata(&env::process)
        .map_err(BuildCommandError::from)?;
    let module = crate::template::context::scrub_module(
        &repository
            .top_dir()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Ok(Naming {
        org: args.org.clone().unwrap_or_else(|| "leafai".to_owned()),
        module,
        branch: metadata.branch_slug.unwrap_or_default(),
        short_hash: metadata.short_commit.unwrap_or_default(),
        user: metadata.user.name,
        uid: metadata.user.uid.to_string(),
        gid: metadata.user.gid.to_string(),
        ..Naming::default()
    })
}

fn provider_hint(kind: Kind) -> String {
    match kind {
        Kind::Azure => format!(
            "set {}/{}, AZURE_CLIENT_ID/AZURE_CLIENT_SECRET/AZURE_TENANT_ID, use a workload or managed identity, or run az login",
            env::ACR_USERNAME,
            env::ACR_PASSWORD
        ),
        Kind::Aws => {
            "set AWS_PROFILE (or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY) and AWS_REGION".to_owned()
        }
        Kind::Registry => format!(
            "set {}/{}, or add the registry to Docker's config",
            env::REGISTRY_USERNAME,
            env::REGISTRY_PASSWORD
        ),
    }
}

async fn resolve(selection: &Selection) -> Result<Registry, ProviderError> {
    match (selection.kind, &selection.host) {
        (Kind::Azure, Some(host)) => Registry::azure(host).await,
        (Kind::Registry, Some(host)) => Registry::generic(host).await,
        _ => Registry::aws().await,
    }
}

/// Where an image already is in some registry, for the others to copy from.
#[derive(Clone)]
struct MirrorSource<'a> {
    registry: &'a Registry,
    repository: String,
    tag: String,
}

/// Per local image, the first registry push (and its outcome) that the
/// other registries wait for.
#[derive(Default)]
struct Mirror<'a> {
    cells: std::sync::Mutex<HashMap<String, Arc<OnceCell<Option<MirrorSource<'a>>>>>>,
}

impl<'a> Mirror<'a> {
    fn cell(&self, image_id: &str) -> Arc<OnceCell<Option<MirrorSource<'a>>>> {
        let mut cells = self
            .cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(cells.entry(image_id.to_owned()).or_default())
    }
}

/// What every push shares.
struct Context<'a> {
    mirror: Mirror<'a>,
    engine: &'a Engine,
    locals: &'a HashMap<String, Option<LocalImage>>,
    printer: &'a Printer,
    progress: &'a BuildProgress<'a>,
    create_repositories: bool,
}

/// Which tags a pass handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Every tag (no `--atomic`).
    All,
    /// `--atomic`, first pass: the moving tags, or a staging tag; version tags checked only.
    Carriers,
    /// `--atomic`, second pass: version tags copied from the carrier.
    VersionTags,
    /// `--atomic` after a failure: version tags are reported as not applied.
    Abort,
}

/// The tag that carries an image's layers under `--atomic`.
fn carrier_tags(item: &PushItem, local: &LocalImage) -> Vec<String> {
    let moving: Vec<String> = item
        .tags
        .iter()
        .filter(|tag| !is_immutable_tag(tag))
        .cloned()
        .collect();
    if moving.is_empty() {
        let hex = local.id.trim_start_matches("sha256:");
        vec![format!("sgr-staging-{}", &hex[..hex.len().min(12)])]
    } else {
        moving
    }
}

#[allow(clippy::too_many_lines)]
/// Push every item to one registry, one image after the other (the engine
/// uploads layers in parallel, and shared layers go up once).
async fn push_registry<'a>(
    context: &Context<'a>,
    registry: &'a Registry,
    items: &[PushItem],
    phase: Phase,
) -> Vec<PushRow> {
    let mut rows = Vec::new();
    for item in items {
        let local = context.locals.get(&item.source).cloned().flatten();
        let row =
            |tag: &str, started: Instant, outcome: Result<(Outcome, Option<String>), StepError>| {
                let target = format!("{}/{}:{tag}", registry.host, item.repository);
                match outcome {
                    Ok((result, digest)) => PushRow {
                        image: item.image.clone(),
                        registry: registry.host.clone(),
                        kind: registry.kind,
                        target,
                        digest,
                        result,
                        error: None,
                        seconds: started.elapsed().as_secs_f64(),
                    },
                    Err(error) => {
                        let message = error_text(&error);
                        let hint = error.hint(registry);
                        let result = if matches!(error, StepError::AtomicAborted) {
                            Outcome::Skipped
                        } else {
                            context.printer.error(&message, hint.as_deref());
                            Outcome::Failed
                        };
                        PushRow {
                            image: item.image.clone(),
                            registry: registry.host.clone(),
                            kind: registry.kind,
                            target,
                            digest: None,
                            result,
                            error: Some(message),
                            seconds: started.elapsed().as_secs_f64(),
                        }
                    }
                }
            };
        let Some(local) = local else {
            if phase != Phase::VersionTags && phase != Phase::Abort {
                for tag in &item.tags {
                    rows.push(row(
                        tag,
                        Instant::now(),
                        Err(StepError::NotBuilt {
                            reference: item.source.clone(),
                        }),
                    ));
                }
            }
            continue;
        };
        let tags: Vec<String> = match phase {
            Phase::All => item.tags.clone(),
            Phase::Carriers => carrier_tags(item, &local),
            Phase::VersionTags | Phase::Abort => item
                .tags
                .iter()
                .filter(|tag| is_immutable_tag(tag))
                .cloned()
                .collect(),
        };
        if phase == Phase::Abort {
            for tag in &tags {
                rows.push(row(tag, Instant::now(), Err(StepError::AtomicAborted)));
            }
            continue;
        }
        if matches!(phase, Phase::All | Phase::Carriers) && context.create_repositories {
            match registry.prepare(&item.repository).await {
                Ok(true) => context.printer.note(&format!(
                    "{}: created repository {} (scan on push)",
                    registry.host, item.repository
                )),
                Ok(false) => {}
                Err(error) => {
                    let error = StepError::from(error);
                    let message = error_text(&error);
                    for tag in &tags {
                        rows.push(row(
                            tag,
                            Instant::now(),
                            Err(StepError::Provider(ProviderError::Internal {
                                host: registry.host.clone(),
                                message: message.clone(),
                            })),
                        ));
                    }
                    continue;
                }
            }
        }
        if phase == Phase::Carriers {
            // Refuse before anything is uploaded when a version tag already holds another image.
            let mut conflict = false;
            for tag in item.tags.iter().filter(|tag| is_immutable_tag(tag)) {
                let started = Instant::now();
                match remote_state(registry, &item.repository, tag).await {
                    Ok(Some(remote))
                        if remote.config_digest.as_deref() != Some(local.id.as_str()) =>
                    {
                        conflict = true;
                        rows.push(row(
                            tag,
                            started,
                            Err(conflict_error(registry, item, tag, &remote, &local)),
                        ));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        conflict = true;
                        rows.push(row(tag, started, Err(error)));
                    }
                }
            }
            if conflict {
                continue;
            }
        }
        for tag in &tags {
            let started = Instant::now();
            let outcome = if phase == Phase::VersionTags {
                let carrier = carrier_tags(item, &local).remove(0);
                copy_tag(registry, item, &carrier, tag, &local).await
            } else {
                push_tag(context, registry, item, tag, &local).await
            };
            let pushed = row(tag, started, outcome);
            if pushed.result != Outcome::Failed {
                context.printer.note(&format!(
                    "{} {} -> {}{}",
                    pushed.result.text(),
                    item.source,
                    pushed.target,
                    pushed
                        .digest
                        .as_deref()
                        .map(|digest| format!(" ({digest})"))
                        .unwrap_or_default()
                ));
            }
            rows.push(pushed);
        }
    }
    rows
}

/// An error and its causes on one line.
fn error_text(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain(error)
}

fn conflict_error(
    registry: &Registry,
    item: &PushItem,
    tag: &str,
    remote: &RemoteManifest,
    local: &LocalImage,
) -> StepError {
    StepError::Conflict {
        target: format!("{}/{}:{tag}", registry.host, item.repository),
        remote: remote.digest.clone(),
        remote_image: remote.config_digest.clone(),
        local: local.id.clone(),
    }
}

/// A registry client with current credentials (`refresh`: new ones).
async fn client(registry: &Registry, refresh: bool) -> Result<Arc<RegistryClient>, StepError> {
    Ok(registry.client(refresh).await?)
}

/// The manifest under `repository:tag`, fetching new credentials once if refused.
async fn remote_state(
    registry: &Registry,
    repository: &str,
    tag: &str,
) -> Result<Option<RemoteManifest>, StepError> {
    match client(registry, false)
        .await?
        .manifest(repository, tag)
        .await
    {
        Err(error) if error.is_auth() => Ok(client(registry, true)
            .await?
            .manifest(repository, tag)
            .await?),
        other => Ok(other?),
    }
}

/// Push one tag: nothing when the registry already holds the image under it,
/// an error when a version tag holds another image, else through the engine
/// with retries.
async fn push_tag<'a>(
    context: &Context<'a>,
    registry: &'a Registry,
    item: &PushItem,
    tag: &str,
    local: &LocalImage,
) -> Result<(Outcome, Option<String>), StepError> {
    let target = format!("{}/{}:{tag}", registry.host, item.repository);
    if let Some(remote) = remote_state(registry, &item.repository, tag).await? {
        if remote.config_digest.as_deref() == Some(local.id.as_str()) {
            return Ok((Outcome::UpToDate, Some(remote.digest)));
        }
        if is_immutable_tag(tag) {
            return Err(conflict_error(registry, item, tag, &remote, local));
        }
    }
    // The first registry to need this image gets it from the engine; the
    // others copy the compressed blobs from there instead of having the
    // engine compress and upload every layer again.
    let cell = context.mirror.cell(&local.id);
    let mut own: Option<Result<Option<String>, StepError>> = None;
    let source = cell
        .get_or_init(|| async {
            let pushed = engine_push(context, registry, item, tag, local).await;
            let source = pushed.is_ok().then(|| MirrorSource {
                registry,
                repository: item.repository.clone(),
                tag: tag.to_owned(),
            });
            own = Some(pushed);
            source
        })
        .await
        .clone();
    if let Some(pushed) = own {
        return pushed.map(|digest| (Outcome::Pushed, digest));
    }
    if let Some(source) = source {
        match mirror_copy(&source, registry, item, tag).await {
            Ok(digest) => return Ok((Outcome::Pushed, Some(digest))),
            Err(error) => context.printer.detail(&format!(
                "{target}: copying from {} failed ({}); pushing through the engine",
                source.registry.host,
                error_text(&error)
            )),
        }
    }
    engine_push(context, registry, item, tag, local)
        .await
        .map(|digest| (Outcome::Pushed, digest))
}

/// Push through the engine, fetching new credentials once when refused and
/// retrying transient failures with backoff.
async fn engine_push(
    context: &Context<'_>,
    registry: &Registry,
    item: &PushItem,
    tag: &str,
    local: &LocalImage,
) -> Result<Option<String>, StepError> {
    let target = format!("{}/{}:{tag}", registry.host, item.repository);
    context.engine.tag(&local.id, &target).await?;
    let tracker = context
        .progress
        .image(&format!("{} -> {}", item.source, registry.host));
    let mut refresh = false;
    let mut refreshed = false;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let credentials = registry.credentials(refresh).await?;
        refresh = false;
        let outcome = context
            .engine
            .push(
                &target,
                credentials.map(|credentials| credentials.to_docker(&registry.host)),
                |update| show(&tracker, update),
            )
            .await;
        match outcome {
            Ok(digest) => {
                tracker.done("pushed");
                return Ok(digest);
            }
            Err(error) if error.kind == PushFailureKind::Auth && !refreshed => {
                tracing::debug!(%target, "push refused; fetching new credentials");
                refresh = true;
                refreshed = true;
            }
            Err(error) if error.kind == PushFailureKind::Transient && attempt < PUSH_ATTEMPTS => {
                let pause = PUSH_BACKOFF * 2u32.pow(attempt - 1);
                context.printer.detail(&format!(
                    "{target}: {}; retrying in {} ms",
                    error.message,
                    pause.as_millis()
                ));
                tokio::time::sleep(pause).await;
            }
            Err(error) => {
                tracker.done("failed");
                return Err(error.into());
            }
        }
    }
}

/// Copy the image at `source` to `registry` under `item.repository:tag`:
/// every blob the target lacks, streamed (constant memory), then the same
/// manifest bytes, so the digest is the same in both registries.
async fn mirror_copy(
    source: &MirrorSource<'_>,
    registry: &Registry,
    item: &PushItem,
    tag: &str,
) -> Result<String, StepError> {
    let from = client(source.registry, false).await?;
    let manifest = from
        .manifest(&source.repository, &source.tag)
        .await?
        .ok_or_else(|| ClientError::Status {
            host: source.registry.host.clone(),
            action: format!("GET {}:{}", source.repository, source.tag),
            status: reqwest::StatusCode::NOT_FOUND,
            detail: "the image pushed moments ago is gone".to_owned(),
        })?;
    let blobs = manifest.blobs();
    if blobs.is_empty() {
        return Err(ClientError::Status {
            host: source.registry.host.clone(),
            action: format!("GET {}:{}", source.repository, source.tag),
            status: reqwest::StatusCode::OK,
            detail: "not a single-image manifest".to_owned(),
        }
        .into());
    }
    let to = client(registry, false).await?;
    let from = &from;
    let to = &to;
    let copies = blobs.into_iter().map(|(digest, size)| async move {
        copy_blob(
            from,
            &source.repository,
            to,
            &item.repository,
            &digest,
            size,
        )
        .await
    });
    let outcomes: Vec<Result<(), ClientError>> = futures_util::stream::iter(copies)
        .buffer_unordered(4)
        .collect()
        .await;
    for result in outcomes {
        result?;
    }
    to.put_manifest(&item.repository, tag, &manifest).await?;
    Ok(manifest.digest)
}

async fn copy_blob(
    from: &RegistryClient,
    from_repository: &str,
    to: &RegistryClient,
    to_repository: &str,
    digest: &str,
    size: u64,
) -> Result<(), ClientError> {
    if to.has_blob(to_repository, digest).await? {
        return Ok(());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let response = from.blob(from_repository, digest).await?;
        let body = reqwest::Body::wrap_stream(response.bytes_stream());
        match to.upload_blob(to_repository, digest, size, body).await {
            Ok(()) => return Ok(()),
            Err(error) if attempt < 3 && !error.is_auth() => {
                tracing::debug!(digest, attempt, "blob copy failed; retrying");
                tokio::time::sleep(PUSH_BACKOFF * attempt).await;
            }
            Err(error) => return Err(error),
        }
    }
}

fn show(tracker: &ImageProgress<'_>, update: &crate::docker::PushUpdate) {
    let text = match (update.current, update.total) {
        (Some(current), Some(total)) if total > 0 => format!(
            "{} {} / {}",
            update.status,
            human_bytes(current),
            human_bytes(total)
        ),
        _ => update.status.clone(),
    };
    tracker.status(&text);
}

/// `--atomic`: give the version tag the manifest the carrier tag got, with
/// no upload.
async fn copy_tag(
    registry: &Registry,
    item: &PushItem,
    carrier: &str,
    tag: &str,
    local: &LocalImage,
) -> Result<(Outcome, Option<String>), StepError> {
    if let Some(existing) = remote_state(registry, &item.repository, tag).await?
        && existing.config_digest.as_deref() == Some(local.id.as_str())
    {
        return Ok((Outcome::UpToDate, Some(existing.digest)));
    }
    let Some(manifest) = remote_state(registry, &item.repository, carrier).await? else {
        return Err(StepError::Client(ClientError::Status {
            host: registry.host.clone(),
            action: format!("GET {}:{carrier}", item.repository),
            status: reqwest::StatusCode::NOT_FOUND,
            detail: "the image pushed moments ago is gone".to_owned(),
        }));
    };
    let result = client(registry, false)
        .await?
        .put_manifest(&item.repository, tag, &manifest)
        .await;
    match result {
        Err(error) if error.is_auth() => {
            client(registry, true)
                .await?
                .put_manifest(&item.repository, tag, &manifest)
                .await?;
        }
        other => other?,
    }
    Ok((Outcome::Pushed, Some(manifest.digest)))
}

fn summary_table(rows: &[PushRow]) -> String {
    let mut lines = vec![[
        "IMAGE".to_owned(),
        "TARGET".to_owned(),
        "DIGEST".to_owned(),
        "RESULT".to_owned(),
    ]];
    for row in rows {
        lines.push([
            row.image.clone(),
            row.target.clone(),
            row.digest.as_deref().map_or_else(
                || "-".to_owned(),
                |digest| {
                    digest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect()
                },
            ),
            row.result.text().to_owned(),
        ]);
    }
    crate::output::table(&lines.iter().map(|line| line.to_vec()).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> PushArgs {
        use clap::Parser as _;
        let mut argv = vec!["sgr", "push"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Push(parsed),
                ..
            }) => parsed,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn explicit_flags_select_exactly_those_registries() -> Result<(), PushCommandError> {
        let chosen = selections(&args(&[
            "--registry",
            "localhost:5000",
            "--registry",
            "https://r.example/",
        ]))?;
        let hosts: Vec<_> = chosen
            .iter()
            .map(|selection| (selection.kind, selection.host.clone(), selection.explicit))
            .collect();
        assert_eq!(
            hosts,
            [
                (Kind::Registry, Some("localhost:5000".to_owned()), true),
                (Kind::Registry, Some("r.example".to_owned()), true)
            ]
        );
        let chosen = selections(&args(&["--azure", "--azure-registry", "leafai"]))?;
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].host.as_deref(), Some("leafai.azurecr.io"));
        Ok(())
    }

    #[test]
    fn azure_without_a_name_is_a_usage_error() {
        let mut parsed = args(&["--azure"]);
        parsed.targets.azure_registry = None;
        assert!(matches!(
            selections(&parsed),
            Err(PushCommandError::NoAzureRegistry)
        ));
    }

    #[test]
    fn without_flags_aws_is_implied_and_not_explicit() -> Result<(), PushCommandError> {
        let mut parsed = args(&[]);
        parsed.targets.azure_registry = None;
        parsed.targets.registries.clear();
        let chosen = selections(&parsed)?;
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].kind, Kind::Aws);
        assert!(!chosen[0].explicit);
        Ok(())
    }

    #[test]
    fn atomic_pushes_carry_layers_on_moving_tags_or_a_staging_tag() {
        let local = LocalImage {
            id: "sha256:0123456789abcdef0123".to_owned(),
            repo_digests: Vec::new(),
        };
        let item = |tags: &[&str]| PushItem {
            image: "i".into(),
            source: "i:x".into(),
            repository: "a/b".into(),
            tags: tags.iter().map(|tag| (*tag).to_owned()).collect(),
        };
        assert_eq!(carrier_tags(&item(&["main", "1.0.0"]), &local), ["main"]);
        assert_eq!(
            carrier_tags(&item(&["1.0.0"]), &local),
            ["sgr-staging-0123456789ab"]
        );
    }
}
