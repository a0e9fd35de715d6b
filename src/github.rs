//! GitHub releases through octocrab: find a release by tag (drafts
//! included: the by-tag lookup does not return them), create and publish
//! it, list, delete and upload assets. Uploads stream the file from disk, so
//! memory does not grow with the asset. Rate limits wait, 5xx and dropped
//! connections are retried; nothing here prints.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::BodyExt as _;
use octocrab::Octocrab;
use octocrab::models::repos::{Asset, Release};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Serialize;
use thiserror::Error;

/// Attempts for a call failing with 5xx or a dropped connection.
const ATTEMPTS: u32 = 4;
/// Attempts for a call that keeps hitting the rate limit.
const RATE_LIMIT_ATTEMPTS: u32 = 6;
/// The longest single wait for a rate limit.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_mins(15);
/// First backoff for 5xx; doubled each time.
const BACKOFF: Duration = Duration::from_secs(1);

/// GitHub failures.
#[derive(Debug, Error)]
pub enum GitHubError {
    /// The client cannot be built (bad URL).
    #[error("cannot use the GitHub API at {url}: {message}")]
    Setup {
        /// The API URL.
        url: String,
        /// Why.
        message: String,
    },
    /// GitHub answered with an error.
    #[error("GitHub refused to {action}: {status} {message}")]
    Api {
        /// What was being done.
        action: String,
        /// The HTTP status.
        status: u16,
        /// GitHub's message.
        message: String,
        /// `errors[].code` values (`already_exists`).
        codes: Vec<String>,
    },
    /// GitHub could not be reached.
    #[error("cannot reach GitHub to {action}: {message}")]
    Transport {
        /// What was being done.
        action: String,
        /// Why.
        message: String,
    },
    /// A local file cannot be read.
    #[error("cannot read {}", .path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl GitHubError {
    /// The HTTP status, when GitHub answered.
    #[must_use]
    pub const fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether GitHub said the thing already exists (422 `already_exists`).
    #[must_use]
    pub fn already_exists(&self) -> bool {
        matches!(self, Self::Api { status: 422, codes, .. } if codes.iter().any(|code| code == "already_exists"))
    }
}

/// A release as sgr needs it.
#[derive(Clone, Debug, Serialize)]
pub struct ReleaseInfo {
    /// Its id.
    pub id: u64,
    /// The tag.
    pub tag: String,
    /// Draft flag.
    pub draft: bool,
    /// Pre-release flag.
    pub prerelease: bool,
    /// The page.
    pub html_url: String,
    /// Where assets go (template part removed).
    #[serde(skip)]
    pub upload_url: String,
}

/// An asset as sgr needs it.
#[derive(Clone, Debug, Serialize)]
pub struct RemoteAsset {
    /// Its id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its size.
    pub size: u64,
    /// `sha256:<hex>`, when GitHub computed it.
    pub digest: Option<String>,
}

/// A release to create.
#[derive(Debug)]
pub struct NewRelease<'a> {
    /// The tag (created by GitHub at `target`).
    pub tag: &'a str,
    /// The title.
    pub name: &'a str,
    /// The notes.
    pub body: &'a str,
    /// The commit hash.
    pub target: &'a str,
    /// Created as a draft.
    pub draft: bool,
    /// Marked as a pre-release.
    pub prerelease: bool,
}

impl From<Release> for ReleaseInfo {
    fn from(release: Release) -> Self {
        Self {
            id: release.id.into_inner(),
            tag: release.tag_name,
            draft: release.draft,
            prerelease: release.prerelease,
            html_url: release.html_url.to_string(),
            upload_url: release
                .upload_url
                .split('{')
                .next()
                .unwrap_or_default()
                .to_owned(),
        }
    }
}

impl From<Asset> for RemoteAsset {
    fn from(asset: Asset) -> Self {
        Self {
            id: asset.id.into_inner(),
            name: asset.name,
            size: u64::try_from(asset.size).unwrap_or(0),
            digest: asset.digest,
        }
    }
}

/// Told about each wait: the reason and how long.
type WaitCallback = Box<dyn Fn(&str, Duration) + Send + Sync>;

/// One repository's releases.
pub struct GitHub {
    client: Octocrab,
    token: SecretString,
    owner: String,
    repository: String,
    /// Called before each wait for a rate limit or a retry, with the reason.
    on_wait: WaitCallback,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GitHub")
            .field("owner", &self.owner)
            .field("repository", &self.repository)
            .finish_non_exhaustive()
    }
}

/// What a failed call means for retrying it.
enum Verdict {
    Retry(Duration),
    RateLimited(Duration),
    Fail,
}

fn classify(error: &octocrab::Error) -> Verdict {
    match error {
        octocrab::Error::GitHub { source, .. } => {
            let status = source.status_code.as_u16();
            let header = |name: &str| {
                source
                    .headers
                    .as_ref()
                    .and_then(|headers| headers.get(name))
                    .and_then(|value| value.to_str().ok())
                    .map(str::to_owned)
            };
            let limited = status == 429
                || (status == 403
                    && (source.message.to_ascii_lowercase().contains("rate limit")
                        || header("x-ratelimit-remaining").as_deref() == Some("0")));
            if limited {
                let wait = header("retry-after")
                    .and_then(|value| value.trim().parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .or_else(|| {
                        let reset = source.rate_limit_reset?;
                        let now = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .ok()?
                            .as_secs();
                        Some(Duration::from_secs(reset.saturating_sub(now) + 1))
                    })
                    .unwrap_or(Duration::from_mins(1));
                Verdict::RateLimited(wait.min(MAX_RATE_LIMIT_WAIT))
            } else if status >= 500 {
                Verdict::Retry(BACKOFF)
            } else {
                Verdict::Fail
            }
        }
        octocrab::Error::Hyper { .. } | octocrab::Error::Service { .. } => Verdict::Retry(BACKOFF),
        _ => Verdict::Fail,
    }
}

fn api_error(action: &str, error: octocrab::Error) -> GitHubError {
    match error {
        octocrab::Error::GitHub { source, .. } => GitHubError::Api {
            action: action.to_owned(),
            status: source.status_code.as_u16(),
            message: source.message.clone(),
            codes: source
                .errors
                .unwrap_or_default()
                .iter()
                .filter_map(|entry| {
                    entry
                        .get("code")
                        .and_then(|code| code.as_str())
                        .map(str::to_owned)
                })
                .collect(),
        },
        other => GitHubError::Transport {
            action: action.to_owned(),
            message: other.to_string(),
        },
    }
}

impl GitHub {
    /// A client for `owner/repository` at `api_url` (`https://api.github.com`
    /// or a GitHub Enterprise `https://host/api/v3`).
    ///
    /// # Errors
    /// An unusable URL.
    pub fn new(
        api_url: &str,
        token: SecretString,
        owner: &str,
        repository: &str,
    ) -> Result<Self, GitHubError> {
        let setup = |message: String| GitHubError::Setup {
            url: api_url.to_owned(),
            message,
        };
        let client = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|error| setup(error.to_string()))?
            .personal_token(token.expose_secret().to_owned())
            .build()
            .map_err(|error| setup(error.to_string()))?;
        Ok(Self {
            client,
            token,
            owner: owner.to_owned(),
            repository: repository.to_owned(),
            on_wait: Box::new(|_, _| {}),
        })
    }

    /// Be told about waits (rate limits, retries), e.g. to print them.
    #[must_use]
    pub fn on_wait(mut self, callback: impl Fn(&str, Duration) + Send + Sync + 'static) -> Self {
        self.on_wait = Box::new(callback);
        self
    }

    /// Run `call` until it succeeds, waiting out rate limits and retrying 5xx.
    async fn retrying<T, F, Fut>(&self, action: &str, mut call: F) -> Result<T, GitHubError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, octocrab::Error>>,
    {
        let mut failures = 0;
        let mut limits = 0;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(error) => match classify(&error) {
                    Verdict::RateLimited(wait) if limits + 1 < RATE_LIMIT_ATTEMPTS => {
                        limits += 1;
                        (self.on_wait)(&format!("rate limited while trying to {action}"), wait);
                        tokio::time::sleep(wait).await;
                    }
                    Verdict::Retry(base) if failures + 1 < ATTEMPTS => {
                        failures += 1;
                        let wait = base * 2u32.pow(failures - 1);
                        (self.on_wait)(
                            &format!(
                                "{action} failed ({}); retrying",
                                first_line(&error.to_string())
                            ),
                            wait,
                        );
                        tokio::time::sleep(wait).await;
                    }
                    _ => return Err(api_error(action, error)),
                },
            }
        }
    }

    /// The release for `tag`, drafts included.
    ///
    /// # Errors
    /// GitHub fails.
    pub async fn find_release(&self, tag: &str) -> Result<Option<ReleaseInfo>, GitHubError> {
        for page in 1u32..=100 {
            let releases = self
                .retrying(
                    &format!("list the releases of {}/{}", self.owner, self.repository),
                    || async {
                        self.client
                            .repos(&self.owner, &self.repository)
                            .releases()
                            .list()
                            .per_page(100u8)
                            .page(page)
                            .send()
                            .await
                    },
                )
                .await?;
            let count = releases.items.len();
            if let Some(found) = releases
                .items
                .into_iter()
                .find(|release| release.tag_name == tag)
            {
                return Ok(Some(found.into()));
            }
            if count < 100 {
                break;
            }
        }
        Ok(None)
    }

    /// Create a release.
    ///
    /// # Errors
    /// GitHub refuses (422 `already_exists` when the tag has one).
    pub async fn create_release(
        &self,
        release: &NewRelease<'_>,
    ) -> Result<ReleaseInfo, GitHubError> {
        self.retrying(&format!("create the release {}", release.tag), || async {
            self.client
                .repos(&self.owner, &self.repository)
                .releases()
                .create(release.tag)
                .name(release.name)
                .body(release.body)
                .target_commitish(release.target)
                .draft(release.draft)
                .prerelease(release.prerelease)
                .send()
                .await
        })
        .await
        .map(ReleaseInfo::from)
    }

    /// Publish a draft.
    ///
    /// # Errors
    /// GitHub fails.
    pub async fn publish(&self, release: &ReleaseInfo) -> Result<ReleaseInfo, GitHubError> {
        self.retrying(&format!("publish the release {}", release.tag), || async {
            self.client
                .repos(&self.owner, &self.repository)
                .releases()
                .update(release.id)
                .draft(false)
                .send()
                .await
        })
        .await
        .map(ReleaseInfo::from)
    }

    /// The assets of a release.
    ///
    /// # Errors
    /// GitHub fails.
    pub async fn assets(&self, release: &ReleaseInfo) -> Result<Vec<RemoteAsset>, GitHubError> {
        let mut assets = Vec::new();
        for page in 1u32..=100 {
            let listed = self
                .retrying(&format!("list the assets of {}", release.tag), || async {
                    self.client
                        .repos(&self.owner, &self.repository)
                        .releases()
                        .assets(release.id)
                        .per_page(100u8)
                        .page(page)
                        .send()
                        .await
                })
                .await?;
            let count = listed.items.len();
            assets.extend(listed.items.into_iter().map(RemoteAsset::from));
            if count < 100 {
                break;
            }
        }
        Ok(assets)
    }

    /// Delete an asset.
    ///
    /// # Errors
    /// GitHub fails.
    pub async fn delete_asset(&self, asset: &RemoteAsset) -> Result<(), GitHubError> {
        let route = format!(
            "/repos/{}/{}/releases/assets/{}",
            self.owner, self.repository, asset.id
        );
        self.retrying(&format!("delete the asset {}", asset.name), || async {
            let response = self.client._delete(route.as_str(), None::<&()>).await?;
            octocrab::map_github_error(response).await.map(drop)
        })
        .await
    }

    /// Stream an asset's bytes to `sink`, at most `limit` of them (an
    /// asset that sends more is an error): for assets GitHub holds no
    /// `digest` of (uploaded before June 2025, GitHub Enterprise Server).
    ///
    /// # Errors
    /// GitHub fails, or the asset is larger than `limit`.
    pub async fn download(
        &self,
        asset: &RemoteAsset,
        limit: u64,
        sink: &mut (dyn FnMut(&[u8]) + Send),
    ) -> Result<u64, GitHubError> {
        let route = format!(
            "/repos/{}/{}/releases/assets/{}",
            self.owner, self.repository, asset.id
        );
        let action = format!("download the asset {}", asset.name);
        let mut headers = http::HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/octet-stream"),
        );
        let response = self
            .retrying(&action, || async {
                let response = self
                    .client
                    ._get_with_headers(route.as_str(), Some(headers.clone()))
                    .await?;
                octocrab::map_github_error(response).await
            })
            .await?;
        let mut body = response.into_body();
        let mut received = 0_u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| GitHubError::Api {
                action: action.clone(),
                status: 0,
                message: error.to_string(),
                codes: Vec::new(),
            })?;
            if let Ok(data) = frame.into_data() {
                received += data.len() as u64;
                if received > limit {
                    return Err(GitHubError::Api {
                        action,
                        status: 200,
                        message: format!("the asset is larger than {limit} bytes"),
                        codes: Vec::new(),
                    });
                }
                sink(&data);
            }
        }
        Ok(received)
    }

    /// Upload `path` as `name`, streamed from disk.
    ///
    /// # Errors
    /// The file cannot be read, or GitHub refuses (422 `already_exists`).
    pub async fn upload(
        &self,
        release: &ReleaseInfo,
        name: &str,
        path: &Path,
        size: u64,
    ) -> Result<RemoteAsset, GitHubError> {
        let action = format!("upload {name}");
        let mut url =
            reqwest::Url::parse(&release.upload_url).map_err(|error| GitHubError::Setup {
                url: release.upload_url.clone(),
                message: error.to_string(),
            })?;
        url.query_pairs_mut().append_pair("name", name);
        let url = url.to_string();
        self.retrying(&action, || async {
            let file =
                tokio::fs::File::open(path)
                    .await
                    .map_err(|error| octocrab::Error::Other {
                        source: Box::new(error),
                        backtrace: std::backtrace::Backtrace::capture(),
                    })?;
            let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024)
                .map(|chunk| chunk.map(http_body::Frame::data));
            let body = octocrab::OctoBody::new(http_body_util::StreamBody::new(stream));
            // octocrab adds the token only for api.github.com; uploads go to another host.
            let mut authorization =
                http::HeaderValue::from_str(&format!("Bearer {}", self.token.expose_secret()))
                    .map_err(|error| octocrab::Error::Other {
                        source: Box::new(error),
                        backtrace: std::backtrace::Backtrace::capture(),
                    })?;
            authorization.set_sensitive(true);
            let request = http::Request::builder()
                .method(http::Method::POST)
                .uri(url.as_str())
                .header(http::header::CONTENT_TYPE, "application/octet-stream")
                .header(http::header::CONTENT_LENGTH, size)
                .header(http::header::AUTHORIZATION, authorization)
                .body(body)
                .map_err(|error| octocrab::Error::Other {
                    source: Box::new(error),
                    backtrace: std::backtrace::Backtrace::capture(),
                })?;
            let response = self.client.execute(request).await?;
            let response = octocrab::map_github_error(response).await?;
            let bytes: Bytes = response
                .into_body()
                .collect()
                .await
                .map(http_body_util::Collected::to_bytes)?;
            serde_json::from_slice::<Asset>(&bytes).map_err(|error| octocrab::Error::Other {
                source: Box::new(error),
                backtrace: std::backtrace::Backtrace::capture(),
            })
        })
        .await
        .map(RemoteAsset::from)
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}
