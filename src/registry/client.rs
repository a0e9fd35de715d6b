//! The few OCI distribution API calls sgr makes itself (the engine does the
//! first upload): read a manifest to learn whether a push is needed, copy a
//! manifest to a new tag, and stream blobs from one registry to another.
//! Handles Basic and Bearer challenges (token services such as ACR's and
//! docker-registry's) and retries what is transient (5xx, 429, dropped
//! connections) with backoff, through `backon` rather than loops of our own.
//!
//! Time limits differ by kind of request, because a whole-request deadline
//! cannot fit both: a manifest, a token or a HEAD is small and gets
//! [`Timeouts::request`] for all of it, while a blob of several GiB on an
//! ordinary link may take an hour and must still fail fast when it stops
//! moving. Blob transfers therefore have a connect timeout, the request
//! deadline for the answer's headers, and an idle limit
//! ([`Timeouts::idle`]): no byte moved for that long is a failure, and every
//! chunk moved resets it.
//!
//! Why not the `oci-client` crate: it speaks the protocol (token auth,
//! blob mounts, and, in recent versions, streamed blobs), but it is not in
//! Cargo.lock (adopting it changes the locked tree and, until its reqwest
//! 0.13 release, pulled a second reqwest), its time limits are per client
//! rather than per kind of request, so the idle-versus-deadline split above
//! would still be ours, and the parts sgr needs beyond the protocol (ACR's
//! refresh-token exchange, ECR's tokens, registry-to-registry copies with one
//! stream and a progress watchdog) would stay ours too. What it would replace
//! is the few hundred lines below, which the push tests run against real
//! registries.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable as _};
use bytes::Bytes;
use futures_util::{Stream, StreamExt as _};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, RETRY_AFTER, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Mutex;

use super::{Credentials, base_url};

/// Manifest media types sgr understands, in the Accept header.
const MANIFEST_TYPES: &str = "application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.index.v1+json";
/// Attempts for a request that keeps failing transiently.
const ATTEMPTS: usize = 4;
/// First backoff; doubled per attempt.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The backoff of every retried registry call: exponential from
/// [`BACKOFF`], with jitter, `attempts` tries in all.
#[must_use]
pub fn backoff(first: Duration, attempts: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(MAX_RETRY_AFTER)
        .with_max_times(attempts.saturating_sub(1))
        .with_jitter()
}

/// How long registry calls may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection (TCP and TLS).
    pub connect: Duration,
    /// All of a small request (manifest, token, HEAD, opening an upload),
    /// and the wait for the answer's headers around a blob transfer.
    pub request: Duration,
    /// A blob transfer that moves no byte for this long has failed.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            request: Duration::from_mins(1),
            idle: Duration::from_mins(1),
        }
    }
}

/// A bad time limit in the environment.
#[derive(Debug, Error)]
#[error("{name}={value:?} is not a number of seconds between 0.1 and 3600")]
pub struct TimeoutError {
    /// The variable.
    pub name: &'static str,
    /// What it held.
    pub value: String,
}

impl Timeouts {
    /// The defaults, with [`crate::env::REGISTRY_REQUEST_TIMEOUT`] and
    /// [`crate::env::REGISTRY_IDLE_TIMEOUT`] (seconds, fractions allowed)
    /// read through `lookup`.
    ///
    /// # Errors
    /// A value that is not a number of seconds in 0.1..=3600.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, TimeoutError> {
        let read = |name: &'static str, default: Duration| -> Result<Duration, TimeoutError> {
            let Some(value) = lookup(name).filter(|value| !value.trim().is_empty()) else {
                return Ok(default);
            };
            value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|seconds| (0.1..=3600.0).contains(seconds))
                .map(Duration::from_secs_f64)
                .ok_or(TimeoutError { name, value })
        };
        let defaults = Self::default();
        Ok(Self {
            connect: defaults.connect,
            request: read(crate::env::REGISTRY_REQUEST_TIMEOUT, defaults.request)?,
            idle: read(crate::env::REGISTRY_IDLE_TIMEOUT, defaults.idle)?,
        })
    }
}

/// A failed registry call. Messages name the registry and never carry credentials.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The credentials were refused.
    #[error("{host} refused the credentials{}", .username.as_ref().map(|user| format!(" of user {user}")).unwrap_or_default())]
    Unauthorized {
        /// The registry.
        host: String,
        /// Who tried, when known.
        username: Option<String>,
    },
    /// Authenticated, but not allowed.
    #[error("{host} denied access to {repository}")]
    Denied {
        /// The registry.
        host: String,
        /// The repository.
        repository: String,
    },
    /// An unexpected answer.
    #[error("{host} answered {status} to {action}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Status {
        /// The registry.
        host: String,
        /// What was asked.
        action: String,
        /// The status.
        status: StatusCode,
        /// The start of the body.
        detail: String,
    },
    /// The registry cannot be reached.
    #[error("cannot reach {host}")]
    Transport {
        /// The registry.
        host: String,
        /// Why.
        #[source]
        source: reqwest::Error,
    },
    /// The token service answered something unusable.
    #[error("the token service of {host} answered without a token")]
    NoToken {
        /// The registry.
        host: String,
    },
    /// No answer within the request deadline.
    #[error("{host} did not answer {action} within {} s", .limit.as_secs_f64())]
    Deadline {
        /// The registry.
        host: String,
        /// What was asked.
        action: String,
        /// The deadline.
        limit: Duration,
    },
    /// A blob transfer stopped moving.
    #[error("{action} to {host} made no progress for {} s (after {moved} of {size} bytes)", .idle.as_secs_f64())]
    Stalled {
        /// The registry uploaded to.
        host: String,
        /// The transfer (`upload <repository>@<digest>`).
        action: String,
        /// The idle limit.
        idle: Duration,
        /// Bytes sent before it stopped.
        moved: u64,
        /// The blob's size.
        size: u64,
    },
}

impl ClientError {
    /// Whether retrying with fresh credentials could help.
    #[must_use]
    pub const fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
    }

    /// Whether trying again could succeed (a dropped or stalled connection,
    /// a busy registry); refused credentials and denied access cannot.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Deadline { .. } | Self::Stalled { .. } => true,
            Self::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::TOO_MANY_REQUESTS
            }
            Self::Unauthorized { .. } | Self::Denied { .. } | Self::NoToken { .. } => false,
        }
    }
}

/// A manifest as the registry holds it.
#[derive(Clone, Debug)]
pub struct RemoteManifest {
    /// `sha256:…` of the manifest bytes.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// For a single-image manifest, the config digest: the engine's image id.
    pub config_digest: Option<String>,
    /// The bytes, to copy it under another tag.
    pub body: Bytes,
}

#[derive(Deserialize)]
struct ManifestConfig {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Descriptor {
    digest: String,
    #[serde(default)]
    size: u64,
}

impl RemoteManifest {
    /// The blobs a single-image manifest references (config first), as
    /// `(digest, size)`; empty for an index.
    #[must_use]
    pub fn blobs(&self) -> Vec<(String, u64)> {
        serde_json::from_slice::<ManifestConfig>(&self.body)
            .map(|manifest| {
                manifest
                    .config
                    .into_iter()
                    .chain(manifest.layers)
                    .map(|descriptor| (descriptor.digest, descriptor.size))
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Deserialize)]
struct TokenAnswer {
    token: Option<SecretString>,
    access_token: Option<SecretString>,
}

/// How the registry wants to be authenticated, learnt from its challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A client for one registry with one set of credentials (or none).
pub struct RegistryClient {
    http: reqwest::Client,
    host: String,
    base: String,
    timeouts: Timeouts,
    credentials: Option<Credentials>,
    challenge: Mutex<Option<Challenge>>,
    tokens: Mutex<HashMap<String, SecretString>>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RegistryClient")
            .field("host", &self.host)
            .field("credentials", &self.credentials)
            .finish_non_exhaustive()
    }
}

/// `Retry-After` in seconds, capped.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(|seconds| Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// Parse `WWW-Authenticate: Bearer realm="…",service="…"` or `Basic realm="…"`.
pub(crate) fn parse_challenge(value: &str) -> Option<Challenge> {
    let (scheme, parameters) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    let mut rest = parameters.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            after
                .split_once(',')
                .map_or((after, ""), |(value, remaining)| (value, remaining))
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        rest = remaining.trim_start_matches([',', ' ']);
    }
    Some(Challenge::Bearer {
        realm: fields.remove("realm")?,
        service: fields.remove("service"),
    })
}

fn sha256_digest(body: &[u8]) -> String {
    format!("sha256:{}", crate::digest::sha256_hex(body))
}

impl RegistryClient {
    /// A client for `host` with the default [`Timeouts`].
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(host: &str, credentials: Option<Credentials>) -> Result<Self, ClientError> {
        Self::with_timeouts(host, credentials, Timeouts::default())
    }

    /// A client for `host` with these time limits.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn with_timeouts(
        host: &str,
        credentials: Option<Credentials>,
        timeouts: Timeouts,
    ) -> Result<Self, ClientError> {
        // No whole-request timeout here: small requests set their own, blob
        // transfers are watched for progress instead.
        let http = reqwest::Client::builder()
            .connect_timeout(timeouts.connect)
            .user_agent(concat!("sgr/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| ClientError::Transport {
                host: host.to_owned(),
                source,
            })?;
        Ok(Self {
            http,
            host: host.to_owned(),
            base: base_url(host),
            timeouts,
            credentials,
            challenge: Mutex::new(None),
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The registry host.
    #[must_use]
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its time limits.
    #[must_use]
    pub const fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// The manifest of `repository:reference`, or `None` when there is none.
    ///
    /// # Errors
    /// Refused credentials, an unreachable registry, an unexpected answer.
    pub async fn manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<RemoteManifest>, ClientError> {
        let path = format!("/v2/{repository}/manifests/{reference}");
        let action = format!("GET {repository}:{reference}");
        let response = self
            .send(
                Method::GET,
                &path,
                repository,
                "pull",
                &action,
                None,
                None,
                false,
            )
            .await?;
        let status = response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&action, repository, response).await);
        }
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let header_digest = response
            .headers()
            .get("docker-content-digest")
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let body = response
            .bytes()
            .await
            .map_err(|source| ClientError::Transport {
                host: self.host.clone(),
                source,
            })?;
        let config_digest = serde_json::from_slice::<ManifestConfig>(&body)
            .ok()
            .and_then(|manifest| manifest.config)
            .map(|config| config.digest);
        Ok(Some(RemoteManifest {
            digest: header_digest.unwrap_or_else(|| sha256_digest(&body)),
            media_type,
            config_digest,
            body,
        }))
    }

    /// Store `manifest` under `repository:tag` (a tag copied without any upload).
    ///
    /// # Errors
    /// As [`Self::manifest`].
    pub async fn put_manifest(
        &self,
        repository: &str,
        tag: &str,
        manifest: &RemoteManifest,
    ) -> Result<(), ClientError> {
        let path = format!("/v2/{repository}/manifests/{tag}");
        let action = format!("PUT {repository}:{tag}");
        let response = self
            .send(
                Method::PUT,
                &path,
                repository,
                "pull,push",
                &action,
                Some(manifest.body.clone()),
                Some(&manifest.media_type),
                false,
            )
            .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&action, repository, response).await)
        }
    }

    /// Whether `repository` holds the blob `digest`.
    ///
    /// # Errors
    /// As [`Self::manifest`].
    pub async fn has_blob(&self, repository: &str, digest: &str) -> Result<bool, ClientError> {
        let action = format!("HEAD {repository}@{digest}");
        let response = self
            .send(
                Method::HEAD,
                &format!("/v2/{repository}/blobs/{digest}"),
                repository,
                "pull,push",
                &action,
                None,
                None,
                false,
            )
            .await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.status_error(&action, repository, response).await),
        }
    }

    /// The blob `digest` of `repository`, as a response to stream from.
    ///
    /// # Errors
    /// As [`Self::manifest`]; a missing blob is an error.
    pub async fn blob(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<reqwest::Response, ClientError> {
        let action = format!("GET {repository}@{digest}");
        let response = self
            .send(
                Method::GET,
                &format!("/v2/{repository}/blobs/{digest}"),
                repository,
                "pull",
                &action,
                None,
                None,
                true,
            )
            .await?;
        if response.status().is_success() {
            Ok(response)
        } else {
            Err(self.status_error(&action, repository, response).await)
        }
    }

    /// Upload a blob of `size` bytes from `body` (a stream: memory stays
    /// constant) in one monolithic PUT after opening an upload session.
    /// The transfer fails when no chunk moves for [`Timeouts::idle`] (a
    /// stalled source or a stalled upload alike) and, once every byte is
    /// handed to the connection, when the answer takes longer than
    /// [`Timeouts::request`] plus [`Timeouts::idle`] (what the socket
    /// buffers still hold drains at the link's speed, unseen).
    ///
    /// # Errors
    /// As [`Self::manifest`], and [`ClientError::Stalled`]. The body cannot
    /// be replayed, so the caller retries.
    pub async fn upload_blob<S, E>(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        body: S,
    ) -> Result<(), ClientError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let action = format!("upload {repository}@{digest}");
        let started = self
            .send(
                Method::POST,
                &format!("/v2/{repository}/blobs/uploads/"),
                repository,
                "pull,push",
                &action,
                None,
                None,
                false,
            )
            .await?;
        if started.status() != StatusCode::ACCEPTED {
            return Err(self.status_error(&action, repository, started).await);
        }
        let location = started
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Status {
                host: self.host.clone(),
                action: action.clone(),
                status: started.status(),
                detail: "no Location for the upload".to_owned(),
            })?;
        let mut url = if location.starts_with("http://") || location.starts_with("https://") {
            location
        } else {
            format!("{}{location}", self.base)
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("digest=");
        url.push_str(digest);
        let scope = format!("repository:{repository}:pull,push");
        let progress = Arc::new(Progress::new(size));
        let watched = Arc::clone(&progress);
        let body = body.map(move |chunk| {
            if let Ok(bytes) = &chunk {
                watched.moved(bytes.len() as u64);
            }
            chunk
        });
        let request = self
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(reqwest::Body::wrap_stream(body));
        let sent = self.authorize(request, &scope).await.send();
        let response = tokio::select! {
            sent = sent => sent.map_err(|source| ClientError::Transport {
                host: self.host.clone(),
                source,
            })?,
            // Once the last byte is handed to the socket, some of it may
            // still sit in buffers on a slow link: the answer gets the
            // request deadline plus one idle limit.
            (moved, limit) = progress.stalled(
                self.timeouts.idle,
                self.timeouts.request + self.timeouts.idle,
            ) => {
                return Err(if moved < size {
                    ClientError::Stalled {
                        host: self.host.clone(),
                        action,
                        idle: limit,
                        moved,
                        size,
                    }
                } else {
                    ClientError::Deadline {
                        host: self.host.clone(),
                        action,
                        limit,
                    }
                });
            }
        };
        if response.status().is_success() {
            Ok(())
        } else {
            Err(self.status_error(&action, repository, response).await)
        }
    }

    async fn status_error(
        &self,
        action: &str,
        repository: &str,
        response: reqwest::Response,
    ) -> ClientError {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            return ClientError::Unauthorized {
                host: self.host.clone(),
                username: self.credentials.as_ref().map(|c| c.username.clone()),
            };
        }
        if status == StatusCode::FORBIDDEN {
            return ClientError::Denied {
                host: self.host.clone(),
                repository: repository.to_owned(),
            };
        }
        let text = response.text().await.unwrap_or_default();
        ClientError::Status {
            host: self.host.clone(),
            action: action.to_owned(),
            status,
            detail: text.chars().take(200).collect::<String>().trim().to_owned(),
        }
    }

    /// Send with authentication and retries; the answer may still be an
    /// error status. `streamed`: the body of the answer is read by the
    /// caller for as long as it takes (a blob), so the deadline covers only
    /// the headers; otherwise it covers the whole request.
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        method: Method,
        path: &str,
        repository: &str,
        actions: &str,
        action: &str,
        body: Option<Bytes>,
        content_type: Option<&str>,
        streamed: bool,
    ) -> Result<reqwest::Response, ClientError> {
        let scope = format!("repository:{repository}:{actions}");
        let request = Request {
            method: &method,
            path,
            scope: &scope,
            action,
            body: body.as_ref(),
            content_type,
            streamed,
        };
        let response = self.send_retried(&request).await?;
        if response.status() == StatusCode::UNAUTHORIZED {
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|value| value.to_str().ok())
                .and_then(parse_challenge);
            if let Some(challenge) = challenge {
                self.learn(challenge, &scope).await?;
                return self.send_retried(&request).await;
            }
        }
        Ok(response)
    }

    /// One request with retries of what is transient.
    async fn send_retried(&self, request: &Request<'_>) -> Result<reqwest::Response, ClientError> {
        let url = if request.path.starts_with("http://") || request.path.starts_with("https://") {
            request.path.to_owned()
        } else {
            format!("{}{}", self.base, request.path)
        };
        let url = &url;
        let once = || async move {
            let mut builder = self
                .http
                .request(request.method.clone(), url)
                .header(ACCEPT, MANIFEST_TYPES);
            if let Some(content_type) = request.content_type {
                builder = builder.header(CONTENT_TYPE, content_type);
            }
            if let Some(body) = request.body {
                builder = builder.body(body.clone());
            }
            if !request.streamed {
                builder = builder.timeout(self.timeouts.request);
            }
            let builder = self.authorize(builder, request.scope).await;
            let sent = if request.streamed {
                tokio::time::timeout(self.timeouts.request, builder.send())
                    .await
                    .map_err(|_| Attempt::Deadline)?
            } else {
                builder.send().await
            };
            Attempt::of(sent)
        };
        self.with_retries(once, request.action).await
    }

    async fn authorize(
        &self,
        request: reqwest::RequestBuilder,
        scope: &str,
    ) -> reqwest::RequestBuilder {
        let challenge = self.challenge.lock().await.clone();
        match challenge {
            Some(Challenge::Basic) => match &self.credentials {
                Some(credentials) => request.basic_auth(
                    &credentials.username,
                    Some(credentials.password.expose_secret()),
                ),
                None => request,
            },
            Some(Challenge::Bearer { .. }) => match self.tokens.lock().await.get(scope) {
                Some(token) => request.bearer_auth(token.expose_secret()),
                None => request,
            },
            None => request,
        }
    }

    /// `once`, tried again on transient failures with backoff (a busy answer's `Retry-After`
    /// honoured), as one of this registry's `action`s; the last busy answer is returned as is.
    async fn with_retries<Once, Sending>(
        &self,
        once: Once,
        action: &str,
    ) -> Result<reqwest::Response, ClientError>
    where
        Once: FnMut() -> Sending,
        Sending: std::future::Future<Output = Result<reqwest::Response, Attempt>>,
    {
        let outcome = once
            .retry(backoff(BACKOFF, ATTEMPTS))
            .adjust(|attempt, delay| match attempt {
                Attempt::Busy(response) => {
                    delay.map(|delay| retry_after(response.headers()).unwrap_or(delay))
                }
                _ => delay,
            })
            .notify(|attempt, delay| {
                tracing::debug!(
                    host = %self.host,
                    %action,
                    why = %attempt,
                    delay_ms = delay.as_millis(),
                    "transient failure; retrying"
                );
            })
            .await;
        match outcome {
            Ok(response) => Ok(response),
            Err(Attempt::Busy(response)) => Ok(*response),
            Err(Attempt::Transport(source)) => Err(ClientError::Transport {
                host: self.host.clone(),
                source,
            }),
            Err(Attempt::Deadline) => Err(ClientError::Deadline {
                host: self.host.clone(),
                action: action.to_owned(),
                limit: self.timeouts.request,
            }),
        }
    }

    /// Remember how to authenticate; for Bearer, fetch a token for `scope`.
    async fn learn(&self, challenge: Challenge, scope: &str) -> Result<(), ClientError> {
        if let Challenge::Bearer { realm, service } = &challenge {
            let token = self.fetch_token(realm, service.as_deref(), scope).await?;
            self.tokens.lock().await.insert(scope.to_owned(), token);
        }
        *self.challenge.lock().await = Some(challenge);
        Ok(())
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<SecretString, ClientError> {
        let mut query = vec![("scope", scope)];
        if let Some(service) = service {
            query.push(("service", service));
        }
        let once = || async {
            let mut request = self
                .http
                .get(realm)
                .query(&query)
                .timeout(self.timeouts.request);
            if let Some(credentials) = &self.credentials {
                request = request.basic_auth(
                    &credentials.username,
                    Some(credentials.password.expose_secret()),
                );
            }
            Attempt::of(request.send().await)
        };
        let response = self.with_retries(once, "a token request").await?;
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(ClientError::Unauthorized {
                host: self.host.clone(),
                username: self.credentials.as_ref().map(|c| c.username.clone()),
            });
        }
        if !status.is_success() {
            return Err(ClientError::Status {
                host: self.host.clone(),
                action: "a token request".to_owned(),
                status,
                detail: String::new(),
            });
        }
        let answer: TokenAnswer =
            response
                .json()
                .await
                .map_err(|source| ClientError::Transport {
                    host: self.host.clone(),
                    source,
                })?;
        answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| ClientError::NoToken {
                host: self.host.clone(),
            })
    }
}

/// What [`RegistryClient::send`] sends, so that a retry can send it again.
struct Request<'a> {
    method: &'a Method,
    path: &'a str,
    scope: &'a str,
    action: &'a str,
    body: Option<&'a Bytes>,
    content_type: Option<&'a str>,
    streamed: bool,
}

/// Why one try failed in a way that another try could fix.
#[derive(Debug)]
enum Attempt {
    /// The connection failed or dropped.
    Transport(reqwest::Error),
    /// No answer within the deadline.
    Deadline,
    /// 5xx or 429: the answer is kept to return after the last try.
    Busy(Box<reqwest::Response>),
}

impl Attempt {
    /// What one send gave: a response to use, or a failure worth another try (a busy answer
    /// is kept, to be returned after the last try).
    fn of(sent: Result<reqwest::Response, reqwest::Error>) -> Result<reqwest::Response, Self> {
        match sent {
            Err(source) if source.is_timeout() => Err(Self::Deadline),
            Err(source) => Err(Self::Transport(source)),
            Ok(response) if is_busy(response.status()) => Err(Self::Busy(Box::new(response))),
            Ok(response) => Ok(response),
        }
    }
}

impl std::fmt::Display for Attempt {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Transport(source) => write!(formatter, "{source}"),
            Self::Deadline => formatter.write_str("deadline passed"),
            Self::Busy(response) => write!(formatter, "{}", response.status()),
        }
    }
}

fn is_busy(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

/// How far a blob transfer got, and when it last moved.
struct Progress {
    size: u64,
    state: std::sync::Mutex<(Instant, u64)>,
}

impl Progress {
    fn new(size: u64) -> Self {
        Self {
            size,
            state: std::sync::Mutex::new((Instant::now(), 0)),
        }
    }

    fn moved(&self, bytes: u64) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *state = (Instant::now(), state.1.saturating_add(bytes));
    }

    fn snapshot(&self) -> (Instant, u64) {
        *self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when nothing moved for `idle` while bytes remain, or when
    /// the answer has not come `answer` after the last byte; gives the bytes
    /// moved and the limit that passed.
    async fn stalled(&self, idle: Duration, answer: Duration) -> (u64, Duration) {
        loop {
            let (last, moved) = self.snapshot();
            let limit = if moved >= self.size { answer } else { idle };
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return (moved, limit);
            }
            tokio::time::sleep_until(deadline.into()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed() {
        assert_eq!(
            parse_challenge(
                r#"Bearer realm="http://127.0.0.1:9/oauth2/token",service="127.0.0.1:5000",scope="repository:a/b:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:9/oauth2/token".to_owned(),
                service: Some("127.0.0.1:5000".to_owned()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="sgr-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
        assert_eq!(parse_challenge(r#"Bearer service="x""#), None);
    }

    #[test]
    fn digests_are_sha256_of_the_bytes() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn retry_after_is_capped() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "3".parse().unwrap_or_else(|_| unreachable!()));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
        headers.insert(
            RETRY_AFTER,
            "99999".parse().unwrap_or_else(|_| unreachable!()),
        );
        assert_eq!(retry_after(&headers), Some(MAX_RETRY_AFTER));
    }
}
