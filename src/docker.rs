//! The Docker Engine, through bollard: connection with API negotiation
//! (Debian's engine speaks 1.41), and image builds from a context streamed
//! as tar while it is read from disk.

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
    /// Labels given to the builder as the `labels` option. Each becomes a step of its own in
    /// the classic builder, so sgr puts its labels into the Dockerfile instead
    /// (`build::labels`) and leaves this empty unless that was not possible.
    pub labels: BTreeMap<String, String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`.
    pub pull: bool,
    /// `--target`.
    pub target: Option<String>,
    /// `--network`.
    pub network: Option<String>,
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
        self.sent
            .fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed);
        self.sender.blocking_send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the engine stopped reading the build context",
            )
        })
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
        Ok(Self { docker, host })
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

    /// Build one image; `on_line` receives each line of build output.
    ///
    /// # Errors
    /// A failing step, an unreadable context, or an engine error. Errors inside
    /// the build stream are fatal.
    pub async fn build(
        &self,
        request: BuildRequest,
        mut on_line: impl FnMut(&str) + Send,
    ) -> Result<BuiltImage, DockerError> {
        let BuildRequest {
            image,
            context: directory,
            ignore,
            include_git,
            dockerfile,
            tags,
            build_args,
            labels,
            no_cache,
            pull,
            target,
            network,
            sent,
        } = request;
        let (sender, mut receiver) = mpsc::channel::<Bytes>(8);
        let writer = tokio::task::spawn_blocking(move || {
            let sink = ChannelWriter {
                sender,
                buffer: Vec::with_capacity(CHUNK),
                sent,
            };
            context::write_context(&directory, &ignore, include_git, &dockerfile, sink)
        });
        let body = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
        let build_args: HashMap<String, String> = build_args.into_iter().collect();
        let labels: HashMap<String, String> = labels.into_iter().collect();
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile(DOCKERFILE_NAME)
            .t(tags.first().map_or(image.as_str(), String::as_str))
            .buildargs(&build_args)
            .nocache(no_cache)
            .rm(true)
            .forcerm(true);
        if !labels.is_empty() {
            options = options.labels(&labels);
        }
        if pull {
            options = options.pull("true");
        }
        if let Some(target) = &target {
            options = options.target(target);
        }
        if let Some(network) = &network {
            options = options.networkmode(network);
        }
        let mut stream =
            self.docker
                .build_image(options.build(), None, Some(bollard::body_stream(body)));
        let (id, failure, last_lines) = drain(&mut stream, &mut on_line).await;
        drop(stream);
        let written = writer.await.map_err(|error| DockerError::BuildFailed {
            image: image.clone(),
            message: format!("the context writer stopped: {error}"),
            last_lines: Vec::new(),
        })?;
        // A context that could not be read explains a failed build better than the engine does.
        let summary = written?;
        if let Some(message) = failure {
            return Err(DockerError::BuildFailed {
                image,
                message,
                last_lines,
            });
        }
        let Some(id) = id else {
            return Err(DockerError::BuildFailed {
                image,
                message: "the engine did not report an image id".to_owned(),
                last_lines,
            });
        };
        self.tag_all(&id, tags.iter().skip(1)).await?;
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
}

/// Follow a build stream to its end: the image id, the first error, and the
/// last lines of output. Any error item ends the build (it is fatal).
async fn drain(
    stream: &mut (
             impl futures_util::Stream<Item = Result<bollard::models::BuildInfo, bollard::errors::Error>>
             + Unpin
         ),
    on_line: &mut (impl FnMut(&str) + Send),
) -> (Option<String>, Option<String>, Vec<String>) {
    let mut last_lines: VecDeque<String> = VecDeque::with_capacity(KEPT_LINES);
    let mut id: Option<String> = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(info) => {
                if let Some(text) = &info.stream {
                    for line in text.lines().filter(|line| !line.trim().is_empty()) {
                        on_line(line);
                        if last_lines.len() == KEPT_LINES {
                            last_lines.pop_front();
                        }
                        last_lines.push_back(line.to_owned());
                    }
                }
                if let Some(detail) = info.error_detail {
                    let message = detail
                        .message
                        .unwrap_or_else(|| "the engine reported an error".to_owned());
                    return (id, Some(message), last_lines.into());
                }
                if let Some(image_id) = info.aux
                    && let Some(value) = image_id.id
                {
                    id = Some(value);
                }
            }
            Err(error) => return (id, Some(error.to_string()), last_lines.into()),
        }
    }
    (id, None, last_lines.into())
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
