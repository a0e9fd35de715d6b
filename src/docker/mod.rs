//! The Docker Engine, through bollard: connection with API negotiation
//! (Debian's engine speaks 1.41), and image builds from a context streamed
//! as tar while it is read from disk, with BuildKit where the engine offers it
//! (`buildkit`, its progress decoded by `trace`) and the classic builder otherwise.

mod buildkit;
#[cfg(test)]
mod fake_engine_tests;
pub mod trace;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, TagImageOptionsBuilder,
};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Serialize;
use thiserror::Error;
use tokio::sync::mpsc;

use crate::build::context::{self, ContextError, ContextSummary, DOCKERFILE_NAME};
use crate::build::dockerignore::DockerIgnore;
use crate::build::labels::append_label_instruction;

/// How long connecting and negotiating may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of build output kept to explain a failure.
const KEPT_LINES: usize = 15;
/// Size of the chunks the context is sent in.
const CHUNK: usize = 256 * 1024;

/// Engine failures.
#[derive(Debug, Error)]
pub enum DockerError {
    /// The engine cannot be reached.
    #[error("cannot reach the Docker engine at {host}")]
    Unreachable {
        /// `DOCKER_HOST` or the default socket.
        host: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The context could not be read.
    #[error(transparent)]
    Context(#[from] ContextError),
    /// A build step failed.
    #[error("building {image} failed: {message}{}", if .last_lines.is_empty() { String::new() } else { format!("\n{}", .last_lines.join("\n")) })]
    BuildFailed {
        /// The image being built.
        image: String,
        /// The engine's error.
        message: String,
        /// The last lines of build output before it.
        last_lines: Vec<String>,
    },
    /// BuildKit was demanded (`--builder buildkit`, `DOCKER_BUILDKIT=1`) where it cannot be used.
    #[error(
        "cannot build {image} with BuildKit, which --builder buildkit or DOCKER_BUILDKIT=1 demands: {reason} (--builder auto would use the classic builder)"
    )]
    BuildKitUnavailable {
        /// The image.
        image: String,
        /// Why not.
        reason: String,
    },
    /// Another engine call failed.
    #[error("Docker engine: {action} failed")]
    Api {
        /// What was being done.
        action: String,
        /// The engine's answer.
        #[source]
        source: bollard::errors::Error,
    },
}

/// How a push failed, which decides what sgr does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PushFailureKind {
    /// The registry refused the credentials: fetch new ones and try again once.
    Auth,
    /// 5xx, 429, a dropped connection: try again after a pause.
    Transient,
    /// Anything else: give up on this image.
    Fatal,
}

/// A failed push, as the engine reported it.
#[derive(Debug, Error)]
#[error("pushing {target} failed: {message}")]
pub struct PushError {
    /// `registry/repository:tag`.
    pub target: String,
    /// The engine's message (registry errors are relayed in it).
    pub message: String,
    /// What kind of failure it is.
    pub kind: PushFailureKind,
}

/// Sort an engine push error into auth, transient or fatal.
#[must_use]
pub fn classify_push_error(message: &str) -> PushFailureKind {
    let text = message.to_ascii_lowercase();
    if [
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "invalid credentials",
        "denied",
    ]
    .iter()
    .any(|needle| text.contains(needle))
    {
        return PushFailureKind::Auth;
    }
    // Docker relays registry answers as "received unexpected HTTP status: 503 Service Unavailable".
    let status = text
        .split("status: ")
        .skip(1)
        .find_map(|rest| rest.get(..3)?.parse::<u16>().ok());
    if status.is_some_and(|code| code >= 500 || code == 429) {
        return PushFailureKind::Transient;
    }
    if [
        "500 internal server error",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway",
        "status 500",
        "status 502",
        "status 503",
        "429",
        "toomanyrequests",
        "too many requests",
        "connection reset",
        "connection refused",
        "broken pipe",
        "unexpected eof",
        ": eof",
        "i/o timeout",
        "tls handshake timeout",
        "timeout exceeded",
    ]
    .iter()
    .any(|needle| text.contains(needle))
    {
        return PushFailureKind::Transient;
    }
    PushFailureKind::Fatal
}

/// One progress message of a push.
#[derive(Debug, Default)]
pub struct PushUpdate {
    /// The engine's status text (`Pushing`, `Layer already exists`, …).
    pub status: String,
    /// Bytes of the current layer sent so far.
    pub current: Option<u64>,
    /// Size of the current layer.
    pub total: Option<u64>,
}

/// A local image.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// `sha256:…`: the config digest, which a registry manifest names too.
    pub id: String,
    /// `registry/repository@sha256:…` of earlier pushes and pulls.
    pub repo_digests: Vec<String>,
}

/// The engine sgr talks to.
pub struct Engine {
    docker: Docker,
    host: String,
    /// What decides between the builders, asked once.
    facts: tokio::sync::OnceCell<Facts>,
    /// How long the engine may take to answer the BuildKit request (not to build).
    response_timeout: Duration,
}

/// bollard's default request timeout, which bounds the classic build's answer the same way.
const RESPONSE_TIMEOUT: Duration = Duration::from_mins(2);

/// Which builder builds the images.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BuilderChoice {
    /// BuildKit where the engine and the build allow it, else the classic builder.
    #[default]
    Auto,
    /// BuildKit, or an error saying why it cannot be used.
    BuildKit,
    /// The classic builder (`DOCKER_BUILDKIT=0`).
    Classic,
}

impl BuilderChoice {
    /// `DOCKER_BUILDKIT` as the docker CLI reads it: a boolean (`1`, `true`, `0`, `false`, …).
    ///
    /// # Errors
    /// A value that is not a boolean.
    pub fn from_docker_buildkit(value: &str) -> Result<Self, String> {
        match value.trim().to_ascii_lowercase().as_str() {
            "1" | "t" | "true" => Ok(Self::BuildKit),
            "0" | "f" | "false" => Ok(Self::Classic),
            _ => Err(format!(
                "DOCKER_BUILDKIT={value:?} is not a boolean (1, true, 0 or false)"
            )),
        }
    }
}

/// What the engine offers, as far as the choice of builder goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Facts {
    /// A Linux engine (BuildKit builds Linux images only); `None`: its version could not be read.
    linux: Option<bool>,
    /// The negotiated API version, (major, minor).
    api: (usize, usize),
    /// It has a network named `bridge`, the one BuildKit's RUN steps use by default.
    bridge: bool,
}

/// The builder an image is built with, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Decision {
    buildkit: bool,
    reason: String,
}

/// The network modes BuildKit accepts.
const BUILDKIT_NETWORKS: [&str; 3] = ["default", "host", "none"];

/// Choose the builder for one build. `transport` says whether sgr can send the
/// BuildKit request to this engine address; `runs` whether the Dockerfile has a RUN step.
fn decide(
    choice: BuilderChoice,
    transport: bool,
    facts: Facts,
    network: Option<&str>,
    runs: bool,
) -> Result<Decision, String> {
    let classic = |reason: String| Decision {
        buildkit: false,
        reason,
    };
    if choice == BuilderChoice::Classic {
        return Ok(classic("chosen".to_owned()));
    }
    let obstacle = if !transport {
        Some("BuildKit is used over unix:// and tcp:// engine addresses only".to_owned())
    } else if facts.linux.is_none() {
        Some("the engine did not say what it runs on (GET /version failed)".to_owned())
    } else if facts.linux == Some(false) || facts.api < (1, 39) {
        Some(format!(
            "the engine (API {}.{}{}) has no BuildKit",
            facts.api.0,
            facts.api.1,
            if facts.linux == Some(true) {
                ""
            } else {
                ", not Linux"
            }
        ))
    } else {
        network
            .filter(|mode| !BUILDKIT_NETWORKS.contains(mode))
            .map(|mode| format!("BuildKit accepts the networks default, host and none, not {mode}"))
    };
    if let Some(obstacle) = obstacle {
        return if choice == BuilderChoice::BuildKit {
            Err(obstacle)
        } else {
            Ok(classic(obstacle))
        };
    }
    let default_network = network.is_none_or(|mode| mode == "default");
    if choice == BuilderChoice::Auto && runs && default_network && !facts.bridge {
        return Ok(classic(
            "the engine has no bridge network, which RUN steps need under BuildKit \
             (--network none or host would allow it)"
                .to_owned(),
        ));
    }
    Ok(Decision {
        buildkit: true,
        reason: if choice == BuilderChoice::BuildKit {
            "chosen".to_owned()
        } else {
            format!("the engine offers it (API {}.{})", facts.api.0, facts.api.1)
        },
    })
}

/// Whether a Dockerfile has a RUN instruction (any line starting with `RUN`,
/// continuation lines included: a false yes only costs the faster builder).
fn has_run_step(dockerfile: &[u8]) -> bool {
    String::from_utf8_lossy(dockerfile).lines().any(|line| {
        let line = line.trim_start();
        line.get(..3)
            .is_some_and(|word| word.eq_ignore_ascii_case("RUN"))
            && line[3..]
                .chars()
                .next()
                .is_none_or(|next| next.is_whitespace() || next == '[')
    })
}

/// The image of a `# syntax=` parser directive at the top of a Dockerfile (BuildKit pulls
/// that frontend image).
fn syntax_directive(dockerfile: &[u8]) -> Option<String> {
    String::from_utf8_lossy(dockerfile)
        .lines()
        .map(str::trim)
        .take_while(|line| line.starts_with('#'))
        .find_map(|line| {
            let directive = line[1..].trim_start();
            let word = directive.get(..6)?;
            let value = directive[6..].trim_start().strip_prefix('=')?.trim();
            (word.eq_ignore_ascii_case("syntax") && !value.is_empty()).then(|| value.to_owned())
        })
}

/// What to do about a failed BuildKit build, where it is known.
fn buildkit_hint(ran_buildkit: bool, message: &str, dockerfile: &[u8]) -> Option<&'static str> {
    if !ran_buildkit {
        return None;
    }
    if message.contains("network bridge not found") {
        return Some(
            "this engine has no bridge network: build with --network none or host, or with --builder classic",
        );
    }
    // The failure names the frontend image ("docker/dockerfile" of docker/dockerfile:1).
    let frontend = syntax_directive(dockerfile).is_some_and(|image| {
        let name = image.split(['@', ':']).next().unwrap_or_default();
        let name = name.strip_prefix("docker.io/").unwrap_or(name);
        !name.is_empty() && message.contains(name)
    });
    frontend.then_some(
        "the Dockerfile's `# syntax=` directive makes BuildKit pull that frontend image; where the engine cannot, build with --builder classic (which ignores it)",
    )
}

/// The longest build output line kept to explain a failure.
const MAX_KEPT_LINE: usize = 4096;

/// What a build's output said: each line shown and the last ones kept, the image id, the
/// first error.
struct BuildLog<F> {
    on_line: F,
    kept: VecDeque<String>,
    id: Option<String>,
    failure: Option<String>,
    progress: trace::Progress,
    unreadable_traces: u64,
}

impl<F: FnMut(&str)> BuildLog<F> {
    fn new(on_line: F) -> Self {
        Self {
            on_line,
            kept: VecDeque::with_capacity(KEPT_LINES),
            id: None,
            failure: None,
            progress: trace::Progress::default(),
            unreadable_traces: 0,
        }
    }

    fn line(&mut self, line: &str) {
        (self.on_line)(line);
        if self.kept.len() == KEPT_LINES {
            self.kept.pop_front();
        }
        let mut end = line.len().min(MAX_KEPT_LINE);
        while !line.is_char_boundary(end) {
            end -= 1;
        }
        let kept = if end < line.len() {
            format!("{}…", &line[..end])
        } else {
            line.to_owned()
        };
        self.kept.push_back(kept);
    }

    /// Output text: its non-blank lines.
    fn text(&mut self, text: &str) {
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            self.line(line);
        }
    }

    /// The first error ends the build.
    fn fail(&mut self, message: String) {
        if self.failure.is_none() {
            self.failure = Some(message);
        }
    }

    /// A `moby.buildkit.trace` aux: base64 of a protobuf `StatusResponse`. One that cannot be
    /// read is said once and otherwise skipped: progress is not the build's result.
    fn trace(&mut self, encoded: &str) {
        use base64::Engine as _;
        let status = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|error| error.to_string())
            .and_then(|bytes| trace::decode(&bytes).map_err(|error| error.to_string()));
        match status {
            Ok(status) => {
                let mut progress = std::mem::take(&mut self.progress);
                progress.render(&status, &mut |line: &str| self.line(line));
                self.progress = progress;
            }
            Err(error) => {
                self.unreadable_traces += 1;
                if self.unreadable_traces == 1 {
                    self.line(&format!(
                        "sgr: a BuildKit progress message could not be read ({error}); skipping such messages"
                    ));
                }
            }
        }
    }
}

/// One image to build.
#[derive(Debug)]
pub struct BuildRequest {
    /// Name used in messages (the first tag).
    pub image: String,
    /// The context directory.
    pub context: PathBuf,
    /// Its `.dockerignore` rules.
    pub ignore: DockerIgnore,
    /// Send `.git` too.
    pub include_git: bool,
    /// The rendered Dockerfile.
    pub dockerfile: Vec<u8>,
    /// Every tag (`name:tag`).
    pub tags: Vec<String>,
    /// Build args.
    pub build_args: BTreeMap<String, String>,
    /// The image's labels. BuildKit sets them on the image config (the `labels` option):
    /// no step, and the Dockerfile and context stay byte for byte the same from build to
    /// build, so the engine reuses an unchanged context. The classic builder would run one
    /// step per label from that option, so they join the Dockerfile as one `LABEL`
    /// instruction there (`build::labels`), through the option only where that is not possible.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: bool,
    /// `--target`.
    pub target: Option<String>,
    /// `--network`.
    pub network: Option<String>,
    /// BuildKit or the classic builder.
    pub builder: BuilderChoice,
    /// Counts the context bytes sent, for progress.
    pub sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// A built image.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// `sha256:…`.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// What the context held.
    pub context: ContextSummary,
}

/// An `io::Write` that hands full chunks to the async side, blocking when it is behind.
struct ChannelWriter {
    sender: mpsc::Sender<Bytes>,
    buffer: Vec<u8>,
    sent: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        let length = chunk.len() as u64;
        self.sender.blocking_send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })?;
        // Counted once handed over: a chunk the engine never took is not "sent".
        self.sent
            .fetch_add(length, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

impl Engine {
    /// Connect to `host` (else `DOCKER_HOST`, else the default socket) and negotiate the API version.
    ///
    /// # Errors
    /// The engine does not answer.
    pub async fn connect(host: Option<&str>) -> Result<Self, DockerError> {
        let host = host
            .map(str::to_owned)
            .or_else(|| crate::env::process(crate::env::DOCKER_HOST))
            .unwrap_or_else(|| "unix:///var/run/docker.sock".to_owned());
        let unreachable =
            |source: Box<dyn std::error::Error + Send + Sync>| DockerError::Unreachable {
                host: host.clone(),
                source,
            };
        let docker =
            Docker::connect_with_host(&host).map_err(|error| unreachable(Box::new(error)))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| {
                unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()).into())
            })?
            .map_err(|error| unreachable(Box::new(error)))?;
        Ok(Self {
            docker,
            host,
            facts: tokio::sync::OnceCell::new(),
            response_timeout: RESPONSE_TIMEOUT,
        })
    }

    /// The same engine, waiting at most `timeout` for the answer to a BuildKit request.
    #[cfg(test)]
    fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// What the engine offers for the choice of builder. Questions it does not answer
    /// count as "no" (the classic builder works everywhere).
    async fn facts(&self) -> Facts {
        *self
            .facts
            .get_or_init(|| async {
                let version = self.docker.client_version();
                let linux = tokio::time::timeout(CONNECT_TIMEOUT, self.docker.version())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .and_then(|answer| answer.os)
                    .map(|os| os.eq_ignore_ascii_case("linux"));
                let bridge = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    self.docker.inspect_network(
                        "bridge",
                        None::<bollard::query_parameters::InspectNetworkOptions>,
                    ),
                )
                .await
                .is_ok_and(|answer| answer.is_ok());
                Facts {
                    linux,
                    api: (version.major_version, version.minor_version),
                    bridge,
                }
            })
            .await
    }

    /// Give image `id` every one of `tags`.
    async fn tag_all(
        &self,
        id: &str,
        tags: impl Iterator<Item = &String>,
    ) -> Result<(), DockerError> {
        for tag in tags {
            let (repository, tag_name) = split_tag(tag);
            let options = TagImageOptionsBuilder::default()
                .repo(repository)
                .tag(tag_name)
                .build();
            self.docker
                .tag_image(id, Some(options))
                .await
                .map_err(|source| DockerError::Api {
                    action: format!("tagging {id} as {tag}"),
                    source,
                })?;
        }
        Ok(())
    }

    /// The local image `reference` (name:tag or id), or `None` when there is none.
    ///
    /// # Errors
    /// The engine fails.
    pub async fn inspect(&self, reference: &str) -> Result<Option<LocalImage>, DockerError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => Ok(image.id.map(|id| LocalImage {
                id,
                repo_digests: image.repo_digests.unwrap_or_default(),
            })),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(None),
            Err(source) => Err(DockerError::Api {
                action: format!("inspecting {reference}"),
                source,
            }),
        }
    }

    /// Give the image `source` the name `target` (`registry/repository:tag`).
    ///
    /// # Errors
    /// The engine fails.
    pub async fn tag(&self, source: &str, target: &str) -> Result<(), DockerError> {
        self.tag_all(source, std::iter::once(&target.to_owned()))
            .await
    }

    /// Push `target` (`registry/repository:tag`, already tagged locally) with
    /// `credentials`; `on_update` sees each progress message. Returns the
    /// manifest digest the registry stored, when the engine reports it.
    ///
    /// # Errors
    /// Any error item of the stream (the engine reports registry refusals as
    /// items of a successful response), classified for retrying.
    pub async fn push(
        &self,
        target: &str,
        credentials: Option<DockerCredentials>,
        mut on_update: impl FnMut(&PushUpdate) + Send,
    ) -> Result<Option<String>, PushError> {
        let (repository, tag) = split_tag(target);
        let options = PushImageOptionsBuilder::default().tag(tag).build();
        let mut stream = self
            .docker
            .push_image(repository, Some(options), credentials);
        let mut digest = None;
        let failure = |message: String| PushError {
            target: target.to_owned(),
            kind: classify_push_error(&message),
            message,
        };
        while let Some(item) = stream.next().await {
            let info = item.map_err(|error| failure(error.to_string()))?;
            if let Some(detail) = info.error_detail {
                return Err(failure(
                    detail
                        .message
                        .unwrap_or_else(|| "the engine reported an error".to_owned()),
                ));
            }
            let status = info.status.unwrap_or_default();
            if let Some(found) = status
                .split_whitespace()
                .skip_while(|word| *word != "digest:")
                .nth(1)
            {
                digest = Some(found.to_owned());
            }
            let (current, total) = info.progress_detail.map_or((None, None), |detail| {
                (
                    detail.current.and_then(|value| u64::try_from(value).ok()),
                    detail.total.and_then(|value| u64::try_from(value).ok()),
                )
            });
            on_update(&PushUpdate {
                status,
                current,
                total,
            });
        }
        Ok(digest)
    }

    /// The address in use.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Build one image; `on_line` receives each line of build output, the
    /// first one saying which builder builds it and why.
    ///
    /// # Errors
    /// A failing step, an unreadable context, an engine error, or BuildKit
    /// demanded where it cannot be used. Errors inside the build stream are fatal.
    pub async fn build(
        &self,
        request: BuildRequest,
        on_line: impl FnMut(&str) + Send,
    ) -> Result<BuiltImage, DockerError> {
        let transport = buildkit::Transport::from_host(&self.host);
        let decision = self.choose(&request, transport.is_some()).await?;
        let mut log = BuildLog::new(on_line);
        log.line(&format!(
            "sgr: building with {} ({})",
            if decision.buildkit {
                "BuildKit"
            } else {
                "the classic builder"
            },
            decision.reason
        ));
        let mut ran_buildkit = decision.buildkit;
        let written = match transport.filter(|_| decision.buildkit) {
            None => self.build_classic(&request, &mut log).await,
            Some(transport) => match self.build_buildkit(&transport, &request, &mut log).await {
                Ok(written) => written,
                // Before any output: the classic build may still work (an engine that
                // refuses BuildKit may also close the connection while the context is sent).
                Err(failure) if request.builder == BuilderChoice::Auto => {
                    log.line(&match failure {
                        buildkit::Failure::Refused { status, message } => format!(
                            "sgr: the engine refused the BuildKit build ({status}: {message}); building with the classic builder"
                        ),
                        buildkit::Failure::Connection(message) => format!(
                            "sgr: the BuildKit request failed before the build started ({message}); building with the classic builder"
                        ),
                    });
                    request.sent.store(0, std::sync::atomic::Ordering::Relaxed);
                    ran_buildkit = false;
                    self.build_classic(&request, &mut log).await
                }
                // BuildKit was demanded: the failure is the answer, with the way out.
                Err(failure) => {
                    return Err(self.demanded_buildkit_failed(request.image, failure, log.kept));
                }
            },
        };
        let summary = match written {
            Ok(summary) => summary,
            // The engine stopped reading because the build failed: its reason explains more.
            Err(DockerError::Context(ContextError::Io { source, .. }))
                if source.kind() == io::ErrorKind::BrokenPipe && log.failure.is_some() =>
            {
                ContextSummary::default()
            }
            Err(error) => return Err(error),
        };
        let BuildLog {
            kept, id, failure, ..
        } = log;
        if let Some(message) = failure {
            let mut last_lines: Vec<String> = kept.into();
            if let Some(hint) = buildkit_hint(ran_buildkit, &message, &request.dockerfile) {
                last_lines.push(format!("hint: {hint}"));
            }
            return Err(DockerError::BuildFailed {
                image: request.image,
                message,
                last_lines,
            });
        }
        let Some(id) = id else {
            return Err(DockerError::BuildFailed {
                image: request.image,
                message: "the engine did not report an image id".to_owned(),
                last_lines: kept.into(),
            });
        };
        self.tag_all(&id, request.tags.iter().skip(1)).await?;
        let inspected =
            self.docker
                .inspect_image(&id)
                .await
                .map_err(|source| DockerError::Api {
                    action: format!("inspecting {id}"),
                    source,
                })?;
        Ok(BuiltImage {
            id,
            size: inspected
                .size
                .and_then(|size| u64::try_from(size).ok())
                .unwrap_or(0),
            context: summary,
        })
    }

    /// The error of a demanded BuildKit build that failed before it started.
    fn demanded_buildkit_failed(
        &self,
        image: String,
        failure: buildkit::Failure,
        kept: VecDeque<String>,
    ) -> DockerError {
        let message = match failure {
            buildkit::Failure::Refused { status, message } => {
                format!("the engine refused the BuildKit build ({status}): {message}")
            }
            buildkit::Failure::Connection(message) => format!(
                "the BuildKit request to {} failed before the build started ({message}); the engine may have refused it",
                self.host
            ),
        };
        let mut last_lines: Vec<String> = kept.into();
        last_lines.push(
            "hint: --builder auto builds with the classic builder when the BuildKit request fails before the build starts".to_owned(),
        );
        DockerError::BuildFailed {
            image,
            message,
            last_lines,
        }
    }

    /// Why BuildKit cannot be used with this engine address and `network`, when that is
    /// known before asking the engine anything.
    #[must_use]
    pub fn buildkit_obstacle(&self, network: Option<&str>) -> Option<String> {
        let facts = Facts {
            linux: Some(true),
            api: (1, 41),
            bridge: true,
        };
        let transport = buildkit::Transport::from_host(&self.host).is_some();
        decide(BuilderChoice::BuildKit, transport, facts, network, false).err()
    }

    /// The builder for `request`; `transport`: sgr can send the BuildKit request to this engine.
    async fn choose(
        &self,
        request: &BuildRequest,
        transport: bool,
    ) -> Result<Decision, DockerError> {
        if request.builder == BuilderChoice::Classic {
            return Ok(Decision {
                buildkit: false,
                reason: "chosen".to_owned(),
            });
        }
        decide(
            request.builder,
            transport,
            self.facts().await,
            request.network.as_deref(),
            has_run_step(&request.dockerfile),
        )
        .map_err(|reason| DockerError::BuildKitUnavailable {
            image: request.image.clone(),
            reason,
        })
    }

    /// Build with the classic builder, through bollard; the output goes to `log`.
    async fn build_classic(
        &self,
        request: &BuildRequest,
        log: &mut BuildLog<impl FnMut(&str)>,
    ) -> Result<ContextSummary, DockerError> {
        // One LABEL step instead of one per label (see build::labels).
        let (dockerfile, labels) =
            match std::str::from_utf8(&request.dockerfile)
                .ok()
                .and_then(|text| {
                    append_label_instruction(text, &request.labels, request.target.as_deref())
                }) {
                Some(with_labels) => (with_labels.into_bytes(), HashMap::new()),
                None => (
                    request.dockerfile.clone(),
                    request.labels.clone().into_iter().collect(),
                ),
            };
        let (writer, body) = send_context(request, dockerfile);
        let build_args: HashMap<String, String> = request.build_args.clone().into_iter().collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(DOCKERFILE_NAME)
            .t(first_tag(request))
            .buildargs(&build_args)
            .nocache(request.no_cache)
            .rm(true)
            .forcerm(true);
        if !labels.is_empty() {
            options = options.labels(&labels);
        }
        if request.pull {
            options = options.pull("true");
        }
        if let Some(target) = &request.target {
            options = options.target(target);
        }
        if let Some(network) = &request.network {
            options = options.networkmode(network);
        }
        let mut stream =
            self.docker
                .build_image(options.build(), None, Some(bollard::body_stream(body)));
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = &info.stream {
                        log.text(text);
                    }
                    if let Some(detail) = info.error_detail {
                        log.fail(
                            detail
                                .message
                                .unwrap_or_else(|| "the engine reported an error".to_owned()),
                        );
                        break;
                    }
                    if let Some(value) = info.aux.and_then(|image_id| image_id.id) {
                        log.id = Some(value);
                    }
                }
                Err(error) => {
                    log.fail(error.to_string());
                    break;
                }
            }
        }
        drop(stream);
        finish_context(request, writer).await
    }

    /// Build with BuildKit (`buildkit`); the output goes to `log`. A refusal before
    /// the build started is returned for the caller to decide on the classic builder.
    async fn build_buildkit(
        &self,
        transport: &buildkit::Transport,
        request: &BuildRequest,
        log: &mut BuildLog<impl FnMut(&str)>,
    ) -> Result<Result<ContextSummary, DockerError>, buildkit::Failure> {
        let (writer, body) = send_context(request, request.dockerfile.clone());
        let version = self.docker.client_version();
        let options = buildkit::Options {
            tag: first_tag(request),
            dockerfile: DOCKERFILE_NAME,
            build_args: &request.build_args,
            labels: &request.labels,
            no_cache: request.no_cache,
            pull: request.pull,
            target: request.target.as_deref(),
            network: request.network.as_deref(),
        };
        let api = format!("{}.{}", version.major_version, version.minor_version);
        let started = buildkit::start(transport, &api, &options, body, self.response_timeout).await;
        match started {
            Ok(output) => {
                buildkit::follow(output, log).await;
                Ok(finish_context(request, writer).await)
            }
            Err(failure) => {
                // The connection is gone, and with it the body's receiver: the writer ends
                // (with a broken pipe) and adds nothing more to the `sent` count.
                let _ = writer.await;
                Err(failure)
            }
        }
    }
}

/// The tag the engine gives the image (the others are added after).
fn first_tag(request: &BuildRequest) -> &str {
    request
        .tags
        .first()
        .map_or(request.image.as_str(), String::as_str)
}

/// Start writing the context of `request`, with `dockerfile`, as tar: the writer's task,
/// and the stream of its chunks (the request body).
fn send_context(
    request: &BuildRequest,
    dockerfile: Vec<u8>,
) -> (
    tokio::task::JoinHandle<Result<ContextSummary, ContextError>>,
    impl futures_util::Stream<Item = Bytes> + Send + 'static,
) {
    let (sender, mut receiver) = mpsc::channel::<Bytes>(8);
    let directory = request.context.clone();
    let ignore = request.ignore.clone();
    let include_git = request.include_git;
    let sent = std::sync::Arc::clone(&request.sent);
    let writer = tokio::task::spawn_blocking(move || {
        let sink = ChannelWriter {
            sender,
            buffer: Vec::with_capacity(CHUNK),
            sent,
        };
        context::write_context(&directory, &ignore, include_git, &dockerfile, sink)
    });
    let body = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
    (writer, body)
}

/// Wait for the context writer: what the context held, or why it could not be read.
async fn finish_context(
    request: &BuildRequest,
    writer: tokio::task::JoinHandle<Result<ContextSummary, ContextError>>,
) -> Result<ContextSummary, DockerError> {
    writer
        .await
        .map_err(|error| DockerError::BuildFailed {
            image: request.image.clone(),
            message: format!("the context writer stopped: {error}"),
            last_lines: Vec::new(),
        })?
        .map_err(DockerError::from)
}

/// `registry:5000/a/b:tag` → (`registry:5000/a/b`, `tag`); no tag → `latest`.
#[must_use]
pub fn split_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_errors_are_classified() {
        assert_eq!(
            classify_push_error("unauthorized: authentication required"),
            PushFailureKind::Auth
        );
        assert_eq!(
            classify_push_error("denied: requested access to the resource is denied"),
            PushFailureKind::Auth
        );
        assert_eq!(
            classify_push_error("received unexpected HTTP status: 500 Internal Server Error"),
            PushFailureKind::Transient
        );
        assert_eq!(
            classify_push_error(
                "Put \"http://r/v2/x/blobs/uploads/1\": read tcp: connection reset by peer"
            ),
            PushFailureKind::Transient
        );
        assert_eq!(
            classify_push_error(
                "Docker stream error: received unexpected HTTP status: 502 Injected"
            ),
            PushFailureKind::Transient
        );
        assert_eq!(
            classify_push_error("received unexpected HTTP status: 404 Not Found"),
            PushFailureKind::Fatal
        );
        assert_eq!(
            classify_push_error("manifest invalid: manifest invalid"),
            PushFailureKind::Fatal
        );
    }

    #[test]
    fn tags_split_at_the_last_colon_after_the_last_slash() {
        assert_eq!(
            split_tag("leafai/sgr-build:main"),
            ("leafai/sgr-build", "main")
        );
        assert_eq!(
            split_tag("localhost:32000/leafai/x"),
            ("localhost:32000/leafai/x", "latest")
        );
        assert_eq!(
            split_tag("localhost:32000/leafai/x:1.0"),
            ("localhost:32000/leafai/x", "1.0")
        );
    }
}
