//! The transfer engine behind `sgr push` and `sgr release --images`: push
//! images to several registries at once, each image checked against the
//! remote manifest first so that re-runs upload nothing; the first registry
//! gets an image through the engine, the others a registry-to-registry copy
//! of its compressed blobs; `atomic` applies version tags only once every
//! push succeeded. Driven by [`TransferSettings`], not by clap's arguments,
//! so every command that delivers images shares one engine.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use backon::Retryable as _;
use futures_util::StreamExt as _;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::OnceCell;

use crate::docker::{DockerError, Engine, LocalImage, PushError, PushFailureKind};
use crate::env;
use crate::output::Printer;
use crate::output::progress::{BuildProgress, ImageProgress, human_bytes};
use crate::registry::client::{ClientError, RegistryClient, RemoteManifest, Timeouts, backoff};
use crate::registry::is_immutable_tag;
use crate::registry::provider::{Kind, ProviderError, Registry};

/// Attempts of one push when the registry fails transiently.
const PUSH_ATTEMPTS: usize = 4;
/// First pause between attempts; doubled each time.
const PUSH_BACKOFF: Duration = Duration::from_millis(500);
/// Attempts of one blob copy.
const COPY_ATTEMPTS: usize = 3;

/// What to deliver where.
#[derive(Clone, Debug)]
pub struct TransferSettings {
    /// The registries, in order (the order of the summary's columns).
    pub registries: Vec<RegistrySelection>,
    /// The images and their tags.
    pub images: Vec<TransferImage>,
    /// Version tags only after every image was pushed everywhere.
    pub atomic: bool,
    /// Create missing ECR repositories.
    pub create_repositories: bool,
    /// The engine address (default: `DOCKER_HOST`, else the default socket).
    pub docker_host: Option<String>,
    /// Time limits of the registry calls sgr makes itself.
    pub timeouts: Timeouts,
}

/// Failures that stop a transfer before any row exists.
#[derive(Debug, Error)]
pub enum TransferError {
    /// The engine cannot be reached.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Every selected registry was skipped.
    #[error("none of the registries could be used: {}", .skipped.join("; "))]
    NothingUsable {
        /// Why each was skipped.
        skipped: Vec<String>,
    },
}

/// One image to push: where it is locally and what it becomes remotely.
#[derive(Clone, Debug, Serialize)]
pub struct TransferImage {
    /// The plan's name, or the `--image` reference.
    pub image: String,
    /// The local reference pushed from.
    pub source: String,
    /// The repository in every registry.
    pub repository: String,
    /// The tags it gets.
    pub tags: Vec<String>,
}

/// A registry chosen by flags or environment, not yet resolved.
#[derive(Clone, Debug, Serialize)]
pub struct RegistrySelection {
    pub kind: Kind,
    /// Known before resolving for ACR and `--registry`.
    pub host: Option<String>,
    /// Asked for by flag (an error when unusable) or implied (skipped with a warning).
    pub explicit: bool,
}

/// The outcome of one tag in one registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Outcome {
    /// Uploaded or copied.
    #[serde(rename = "pushed")]
    Pushed,
    /// The tag already held the image.
    #[serde(rename = "up to date")]
    UpToDate,
    /// It failed.
    #[serde(rename = "failed")]
    Failed,
    /// Not applied (`atomic`, after another failure).
    #[serde(rename = "skipped")]
    Skipped,
}

impl Outcome {
    /// As the summary shows it.
    #[must_use]
    pub const fn text(self) -> &'static str {
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
pub struct TransferRow {
    pub image: String,
    pub registry: String,
    pub kind: Kind,
    pub target: String,
    pub digest: Option<String>,
    pub result: Outcome,
    pub error: Option<String>,
    pub seconds: f64,
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
    Copy(#[from] CopyError),
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

/// The host of a selection, or a placeholder for an ECR not resolved yet.
#[must_use]
pub fn host_label(selection: &RegistrySelection) -> String {
    selection.host.clone().unwrap_or_else(|| {
        let region = env::process(env::AWS_REGION)
            .or_else(|| env::process(env::AWS_DEFAULT_REGION))
            .unwrap_or_else(|| "<region>".to_owned());
        format!("<account>.dkr.ecr.{region}.amazonaws.com")
    })
}

/// Deliver `settings.images` to `settings.registries`: one row per image,
/// registry and tag. Progress and per-step notes go to `printer`'s stderr
/// channel; the summary is the caller's to print.
///
/// # Errors
/// The engine cannot be reached, or no registry can be used.
#[allow(clippy::too_many_lines)]
pub async fn transfer(
    settings: &TransferSettings,
    printer: &Printer,
    progress: &BuildProgress<'_>,
) -> Result<Vec<TransferRow>, TransferError> {
    let engine = Engine::connect(settings.docker_host.as_deref()).await?;
    printer.detail(&format!("engine {}", engine.host()));
    let mut locals: HashMap<String, Option<LocalImage>> = HashMap::new();
    for item in &settings.images {
        if !locals.contains_key(&item.source) {
            let found = engine.inspect(&item.source).await?;
            locals.insert(item.source.clone(), found);
        }
    }
    let resolved = futures_util::future::join_all(
        settings
            .registries
            .iter()
            .map(|selection| resolve(selection, settings.timeouts)),
    )
    .await;
    let mut rows = Vec::new();
    let mut registries = Vec::new();
    let mut skipped = Vec::new();
    for (selection, outcome) in settings.registries.iter().zip(resolved) {
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
                    for item in &settings.images {
                        for tag in &item.tags {
                            rows.push(TransferRow {
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
        return Err(TransferError::NothingUsable { skipped });
    }
    let context = Context {
        mirror: Mirror::default(),
        engine: &engine,
        locals: &locals,
        printer,
        progress,
        create_repositories: settings.create_repositories,
    };
    let context = &context;
    let items = &settings.images;
    if settings.atomic {
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
    Ok(rows)
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

async fn resolve(
    selection: &RegistrySelection,
    timeouts: Timeouts,
) -> Result<Registry, ProviderError> {
    let registry = match (selection.kind, &selection.host) {
        (Kind::Azure, Some(host)) => Registry::azure(host).await,
        (Kind::Registry, Some(host)) => Registry::generic(host).await,
        _ => Registry::aws().await,
    }?;
    Ok(registry.with_timeouts(timeouts))
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
fn carrier_tags(item: &TransferImage, local: &LocalImage) -> Vec<String> {
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
    items: &[TransferImage],
    phase: Phase,
) -> Vec<TransferRow> {
    let mut rows = Vec::new();
    for item in items {
        let local = context.locals.get(&item.source).cloned().flatten();
        let row =
            |tag: &str, started: Instant, outcome: Result<(Outcome, Option<String>), StepError>| {
                let target = format!("{}/{}:{tag}", registry.host, item.repository);
                match outcome {
                    Ok((result, digest)) => TransferRow {
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
                        TransferRow {
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
    item: &TransferImage,
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
    item: &TransferImage,
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
    item: &TransferImage,
    tag: &str,
    local: &LocalImage,
) -> Result<Option<String>, StepError> {
    let target = format!("{}/{}:{tag}", registry.host, item.repository);
    context.engine.tag(&local.id, &target).await?;
    let tracker = context
        .progress
        .image(&format!("{} -> {}", item.source, registry.host));
    // Refused credentials are fetched anew once; transient failures are
    // retried with backoff.
    let refresh = AtomicBool::new(false);
    let refreshed = AtomicBool::new(false);
    let once = || async {
        let credentials = registry
            .credentials(refresh.swap(false, Ordering::SeqCst))
            .await?;
        Ok::<_, StepError>(
            context
                .engine
                .push(
                    &target,
                    credentials.map(|credentials| credentials.to_docker(&registry.host)),
                    |update| show(&tracker, update),
                )
                .await?,
        )
    };
    let outcome = once
        .retry(backoff(PUSH_BACKOFF, PUSH_ATTEMPTS))
        .when(|error| match error {
            StepError::Push(error) if error.kind == PushFailureKind::Auth => {
                let first = !refreshed.swap(true, Ordering::SeqCst);
                if first {
                    tracing::debug!(%target, "push refused; fetching new credentials");
                    refresh.store(true, Ordering::SeqCst);
                }
                first
            }
            StepError::Push(error) => error.kind == PushFailureKind::Transient,
            _ => false,
        })
        .notify(|error, pause| {
            if let StepError::Push(error) = error
                && error.kind == PushFailureKind::Transient
            {
                context.printer.detail(&format!(
                    "{target}: {}; retrying in {} ms",
                    error.message,
                    pause.as_millis()
                ));
            }
        })
        .await;
    tracker.done(if outcome.is_ok() { "pushed" } else { "failed" });
    outcome
}

/// Copy the image at `source` to `registry` under `item.repository:tag`:
/// every blob the target lacks, streamed (constant memory), then the same
/// manifest bytes, so the digest is the same in both registries.
async fn mirror_copy(
    source: &MirrorSource<'_>,
    registry: &Registry,
    item: &TransferImage,
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
    let outcomes: Vec<Result<usize, CopyError>> = futures_util::stream::iter(copies)
        .buffer_unordered(4)
        .collect()
        .await;
    for result in outcomes {
        result?;
    }
    to.put_manifest(&item.repository, tag, &manifest).await?;
    Ok(manifest.digest)
}

/// Copy the blob `digest` of `size` bytes from one registry's repository to
/// another's, streamed (constant memory), unless the target holds it;
/// transient failures (a dropped or stalled connection, a busy registry) are
/// tried again up to three times in all. Gives the number of uploads made
/// (0 when the target already held the blob).
///
/// # Errors
/// Every attempt failed, or the credentials were refused.
pub async fn copy_blob(
    from: &RegistryClient,
    from_repository: &str,
    to: &RegistryClient,
    to_repository: &str,
    digest: &str,
    size: u64,
) -> Result<usize, CopyError> {
    let error = |attempts, source| CopyError {
        digest: digest.to_owned(),
        from: format!("{}/{from_repository}", from.host()),
        to: format!("{}/{to_repository}", to.host()),
        attempts,
        source,
    };
    if to
        .has_blob(to_repository, digest)
        .await
        .map_err(|source| error(0, source))?
    {
        return Ok(0);
    }
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    let once = || async {
        attempts.fetch_add(1, Ordering::SeqCst);
        let response = from.blob(from_repository, digest).await?;
        to.upload_blob(to_repository, digest, size, response.bytes_stream())
            .await
    };
    let copied = once
        .retry(backoff(PUSH_BACKOFF, COPY_ATTEMPTS))
        .when(|error: &ClientError| !error.is_auth())
        .notify(|error, pause| {
            tracing::debug!(
                digest,
                from = from.host(),
                to = to.host(),
                error = %error,
                pause_ms = pause.as_millis(),
                "blob copy failed; retrying"
            );
        })
        .await;
    let attempts = attempts.load(Ordering::SeqCst);
    match copied {
        Ok(()) => {
            tracing::debug!(digest, size, attempts, to = to.host(), "blob copied");
            Ok(attempts)
        }
        Err(source) => Err(error(attempts, source)),
    }
}

/// A blob that could not be copied, after every attempt.
#[derive(Debug, Error)]
#[error("copying blob {digest} from {from} to {to} failed after {attempts} attempt(s)")]
pub struct CopyError {
    /// The blob.
    pub digest: String,
    /// `host/repository` copied from.
    pub from: String,
    /// `host/repository` copied to.
    pub to: String,
    /// How many times it was tried.
    pub attempts: usize,
    /// The last failure.
    #[source]
    pub source: ClientError,
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
    item: &TransferImage,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_pushes_carry_layers_on_moving_tags_or_a_staging_tag() {
        let local = LocalImage {
            id: "sha256:0123456789abcdef0123".to_owned(),
            repo_digests: Vec::new(),
        };
        let item = |tags: &[&str]| TransferImage {
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
