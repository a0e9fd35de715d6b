//! The few OCI distribution API calls sgr makes itself (the engine does the
//! uploads): read a manifest to learn whether a push is needed, and copy a
//! manifest to a new tag. Handles Basic and Bearer challenges (token
//! services such as ACR's and docker-registry's) and retries what is
//! transient (5xx, 429, dropped connections) with backoff.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
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
const ATTEMPTS: u32 = 4;
/// First backoff; doubled per attempt.
const BACKOFF: Duration = Duration::from_millis(250);
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Timeout of one request.
const REQUEST_TIMEOUT: Duration = Duration::from_mins(1);

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
}

impl ClientError {
    /// Whether retrying with fresh credentials could help.
    #[must_use]
    pub const fn is_auth(&self) -> bool {
        matches!(self, Self::Unauthorized { .. })
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
    use sha2::Digest as _;
    let hash = sha2::Sha256::digest(body);
    let mut digest = String::with_capacity(71);
    digest.push_str("sha256:");
    for byte in hash {
        let _ = write!(digest, "{byte:02x}");
    }
    digest
}

impl RegistryClient {
    /// A client for `host`.
    ///
    /// # Errors
    /// The HTTP client cannot be built (no TLS roots).
    pub fn new(host: &str, credentials: Option<Credentials>) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(10))
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
            .send(Method::GET, &path, repository, "pull", &action, None, None)
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
    ///
    /// # Errors
    /// As [`Self::manifest`]. The body cannot be replayed, so the caller retries.
    pub async fn upload_blob(
        &self,
        repository: &str,
        digest: &str,
        size: u64,
        body: reqwest::Body,
    ) -> Result<(), ClientError> {
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
        let request = self
            .http
            .put(url)
            .header(CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body);
        let response = self
            .authorize(request, &scope)
            .await
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                host: self.host.clone(),
                source,
            })?;
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

    /// Send with authentication and retries; the answer may still be an error status.
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
    ) -> Result<reqwest::Response, ClientError> {
        let scope = format!("repository:{repository}:{actions}");
        let mut authenticated_again = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let url = if path.starts_with("http://") || path.starts_with("https://") {
                path.to_owned()
            } else {
                format!("{}{path}", self.base)
            };
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(ACCEPT, MANIFEST_TYPES);
            if let Some(content_type) = content_type {
                request = request.header(CONTENT_TYPE, content_type);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            request = self.authorize(request, &scope).await;
            let outcome = request.send().await;
            let delay = BACKOFF * 2u32.pow(attempt - 1);
            match outcome {
                Err(source) => {
                    if attempt >= ATTEMPTS {
                        return Err(ClientError::Transport {
                            host: self.host.clone(),
                            source,
                        });
                    }
                    tracing::debug!(host = %self.host, %action, attempt, "transport error; retrying");
                    tokio::time::sleep(delay).await;
                }
                Ok(response) => {
                    let status = response.status();
                    if status == StatusCode::UNAUTHORIZED && !authenticated_again {
                        authenticated_again = true;
                        let challenge = response
                            .headers()
                            .get(WWW_AUTHENTICATE)
                            .and_then(|value| value.to_str().ok())
                            .and_then(parse_challenge);
                        if let Some(challenge) = challenge {
                            self.learn(challenge, &scope).await?;
                            attempt -= 1;
                            continue;
                        }
                        return Ok(response);
                    }
                    let transient =
                        status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
                    if transient && attempt < ATTEMPTS {
                        let wait = retry_after(response.headers()).unwrap_or(delay);
                        tracing::debug!(host = %self.host, %action, %status, attempt, "transient answer; retrying");
                        tokio::time::sleep(wait).await;
                        continue;
                    }
                    return Ok(response);
                }
            }
        }
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
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.http.get(realm).query(&query);
            if let Some(credentials) = &self.credentials {
                request = request.basic_auth(
                    &credentials.username,
                    Some(credentials.password.expose_secret()),
                );
            }
            let transport = |source| ClientError::Transport {
                host: self.host.clone(),
                source,
            };
            let response = match request.send().await {
                Ok(response) => response,
                Err(source) if attempt >= ATTEMPTS => return Err(transport(source)),
                Err(_) => {
                    tokio::time::sleep(BACKOFF * 2u32.pow(attempt - 1)).await;
                    continue;
                }
            };
            let status = response.status();
            if (status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS)
                && attempt < ATTEMPTS
            {
                tokio::time::sleep(
                    retry_after(response.headers()).unwrap_or(BACKOFF * 2u32.pow(attempt - 1)),
                )
                .await;
                continue;
            }
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
            let answer: TokenAnswer = response.json().await.map_err(transport)?;
            return answer
                .token
                .or(answer.access_token)
                .ok_or_else(|| ClientError::NoToken {
                    host: self.host.clone(),
                });
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
