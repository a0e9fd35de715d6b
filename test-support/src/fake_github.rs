//! A fake of the part of GitHub's REST API that `sgr release` uses, on
//! loopback, speaking the real paths and JSON so that sgr's production
//! client (octocrab) is what the tests exercise:
//!
//! - API host: `GET/POST /repos/{o}/{r}/releases` (the list includes drafts),
//!   `GET /repos/{o}/{r}/releases/tags/{tag}` (published only, as GitHub),
//!   `GET/PATCH /repos/{o}/{r}/releases/{id}`, `GET /repos/{o}/{r}/releases/{id}/assets`,
//!   `DELETE /repos/{o}/{r}/releases/assets/{id}`, `GET /repos/{o}/{r}/releases/assets/{id}`
//!   (`Accept: application/octet-stream`: the bytes, for assets of at most 16 MiB);
//! - uploads host (a second port, as `uploads.github.com`):
//!   `POST /repos/{o}/{r}/releases/{id}/assets?name=`, 422 `already_exists` for a taken name.
//!
//! Uploaded bodies are hashed as they arrive and kept only up to 16 MiB, so a
//! 500 MiB asset costs the fake no memory. `omit_digests` answers as GitHub
//! did before June 2025 (and GitHub Enterprise Server does): assets without
//! `digest`. Scripted failures: uploads failing after
//! N successes, 500s, rate limits with `Retry-After`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::loopback::LoopbackServer;

/// One asset as the fake holds it.
#[derive(Clone, Debug)]
pub struct FakeAsset {
    /// Its id.
    pub id: u64,
    /// Its name (decoded).
    pub name: String,
    /// Bytes received.
    pub size: u64,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
}

/// One release as the fake holds it.
#[derive(Clone, Debug)]
pub struct FakeRelease {
    /// Its id.
    pub id: u64,
    /// The tag.
    pub tag_name: String,
    /// The title.
    pub name: String,
    /// The notes.
    pub body: String,
    /// The commit it was created for.
    pub target_commitish: String,
    /// Draft flag.
    pub draft: bool,
    /// Pre-release flag.
    pub prerelease: bool,
    /// Its assets.
    pub assets: Vec<FakeAsset>,
}

/// A scripted failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Uploads fail with 500 once this many more have succeeded.
    UploadsFailAfter(usize),
    /// The next N API (not upload) requests answer 500.
    ServerErrors(usize),
    /// The next N API requests answer 403 "API rate limit exceeded" with `Retry-After: 1`.
    RateLimited(usize),
}

#[derive(Default)]
struct State {
    token: String,
    owner: String,
    repository: String,
    uploads_base: String,
    api_base: String,
    releases: Vec<FakeRelease>,
    next_id: u64,
    fault: Option<Fault>,
    log: Vec<(String, String)>,
    authorization_failures: usize,
    omit_digests: bool,
    contents: std::collections::HashMap<u64, Bytes>,
}

/// The largest upload the fake keeps for downloads.
const KEPT_CONTENT: u64 = 16 * 1024 * 1024;

/// The running fake; stops when dropped.
pub struct FakeGitHub {
    state: Arc<Mutex<State>>,
    api: SocketAddr,
    _server: LoopbackServer,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeGitHub {
    /// Start the API and uploads hosts for `owner/repository`, accepting `token`.
    ///
    /// # Errors
    /// The runtime or a listener cannot be created.
    pub fn start(owner: &str, repository: &str, token: &str) -> std::io::Result<Self> {
        let server = LoopbackServer::new("fake-github")?;
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            owner: owner.to_owned(),
            repository: repository.to_owned(),
            next_id: 1000,
            ..State::default()
        }));
        let serve = |state: Arc<Mutex<State>>| {
            move |request| {
                let state = Arc::clone(&state);
                async move { handle(&state, request).await }
            }
        };
        let api = server.listen_http(serve(Arc::clone(&state)))?;
        let uploads = server.listen_http(serve(Arc::clone(&state)))?;
        {
            let mut state = lock(&state);
            state.uploads_base = format!("http://{uploads}");
            state.api_base = format!("http://{api}");
        }
        Ok(Self {
            state,
            api,
            _server: server,
        })
    }

    /// The API base URL (`--api-url`).
    #[must_use]
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Script a failure.
    pub fn fault(&self, fault: Fault) {
        lock(&self.state).fault = Some(fault);
    }

    /// Remove the assets named `name` from every release.
    pub fn remove_asset(&self, name: &str) {
        for release in &mut lock(&self.state).releases {
            release.assets.retain(|asset| asset.name != name);
        }
    }

    /// Answer assets without `digest`, as GitHub before June 2025 and
    /// GitHub Enterprise Server do.
    pub fn omit_digests(&self, omit: bool) {
        lock(&self.state).omit_digests = omit;
    }

    /// The releases as they are now.
    #[must_use]
    pub fn releases(&self) -> Vec<FakeRelease> {
        lock(&self.state).releases.clone()
    }

    /// `METHOD path` of every request so far.
    #[must_use]
    pub fn log(&self) -> Vec<(String, String)> {
        lock(&self.state).log.clone()
    }

    /// Forget the request log.
    pub fn clear_log(&self) {
        lock(&self.state).log.clear();
    }

    /// Requests refused for a wrong or missing token.
    #[must_use]
    pub fn authorization_failures(&self) -> usize {
        lock(&self.state).authorization_failures
    }

    /// Add a release as if made earlier (by hand or another tool).
    pub fn add_release(&self, tag: &str, draft: bool) -> u64 {
        let mut state = lock(&self.state);
        state.next_id += 1;
        let id = state.next_id;
        state.releases.push(FakeRelease {
            id,
            tag_name: tag.to_owned(),
            name: tag.to_owned(),
            body: String::new(),
            target_commitish: "main".to_owned(),
            draft,
            prerelease: false,
            assets: Vec::new(),
        });
        id
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    reply(
        status,
        &json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
    )
}

fn user(base: &str) -> Value {
    json!({
        "login": "sgr-bot", "id": 1, "node_id": "U_1", "avatar_url": format!("{base}/avatar"),
        "gravatar_id": "", "url": format!("{base}/users/sgr-bot"), "html_url": format!("{base}/sgr-bot"),
        "followers_url": format!("{base}/f"), "following_url": format!("{base}/f"), "gists_url": format!("{base}/g"),
        "starred_url": format!("{base}/s"), "subscriptions_url": format!("{base}/s"),
        "organizations_url": format!("{base}/o"), "repos_url": format!("{base}/r"), "events_url": format!("{base}/e"),
        "received_events_url": format!("{base}/e"), "type": "User", "site_admin": false
    })
}

fn asset_json(state: &State, asset: &FakeAsset) -> Value {
    let base = &state.api_base;
    json!({
        "url": format!("{base}/repos/{}/{}/releases/assets/{}", state.owner, state.repository, asset.id),
        "browser_download_url": format!("{base}/download/{}", asset.id),
        "id": asset.id, "node_id": format!("RA_{}", asset.id), "name": asset.name, "label": null,
        "state": "uploaded", "content_type": "application/octet-stream", "size": asset.size,
        "digest": (!state.omit_digests).then(|| asset.digest.clone()), "download_count": 0,
        "created_at": "2026-11-28T00:00:00Z", "updated_at": "2026-11-28T00:00:00Z",
        "uploader": user(base)
    })
}

fn release_json(state: &State, release: &FakeRelease) -> Value {
    let base = &state.api_base;
    let (owner, repository) = (&state.owner, &state.repository);
    json!({
        "url": format!("{base}/repos/{owner}/{repository}/releases/{}", release.id),
        "html_url": format!("{base}/{owner}/{repository}/releases/tag/{}", release.tag_name),
        "assets_url": format!("{base}/repos/{owner}/{repository}/releases/{}/assets", release.id),
        "upload_url": format!("{}/repos/{owner}/{repository}/releases/{}/assets{{?name,label}}", state.uploads_base, release.id),
        "tarball_url": null, "zipball_url": null,
        "id": release.id, "node_id": format!("RE_{}", release.id),
        "tag_name": release.tag_name, "target_commitish": release.target_commitish,
        "name": release.name, "body": release.body, "draft": release.draft, "prerelease": release.prerelease,
        "created_at": "2026-11-28T00:00:00Z",
        "published_at": if release.draft { Value::Null } else { json!("2026-11-28T00:00:00Z") },
        "author": user(base),
        "assets": release.assets.iter().map(|asset| asset_json(state, asset)).collect::<Vec<_>>()
    })
}

fn query_value(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name == key).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("");
                if let Ok(byte) = u8::from_str_radix(hex, 16) {
                    decoded.push(byte);
                    index += 3;
                } else {
                    decoded.push(b'%');
                    index += 1;
                }
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

async fn json_body(request: Request<Incoming>) -> Value {
    let bytes = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[allow(clippy::too_many_lines)]
async fn handle(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let upload = {
        let mut state = lock(state);
        state.log.push((method.to_string(), path.clone()));
        let expected = format!("Bearer {}", state.token);
        let authorised = request
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value == expected || value == format!("token {}", state.token));
        if !authorised {
            state.authorization_failures += 1;
            return error(StatusCode::UNAUTHORIZED, "Bad credentials");
        }
        let upload = method == Method::POST && path.ends_with("/assets");
        if !upload {
            match state.fault {
                Some(Fault::ServerErrors(count)) if count > 0 => {
                    state.fault = Some(Fault::ServerErrors(count - 1));
                    return error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
                }
                Some(Fault::RateLimited(count)) if count > 0 => {
                    state.fault = Some(Fault::RateLimited(count - 1));
                    let mut response = error(
                        StatusCode::FORBIDDEN,
                        "API rate limit exceeded for user ID 1.",
                    );
                    let headers = response.headers_mut();
                    headers.insert("retry-after", hyper::header::HeaderValue::from_static("1"));
                    headers.insert(
                        "x-ratelimit-remaining",
                        hyper::header::HeaderValue::from_static("0"),
                    );
                    return response;
                }
                _ => {}
            }
        }
        upload
    };
    let prefix = {
        let state = lock(state);
        format!("/repos/{}/{}/releases", state.owner, state.repository)
    };
    let Some(rest) = path.strip_prefix(&prefix) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let segments: Vec<&str> = rest
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    if upload {
        return upload_asset(state, request, &segments, &query).await;
    }
    match (method, segments.as_slice()) {
        (Method::GET, []) => {
            let page: usize = query_value(&query, "page")
                .and_then(|page| page.parse().ok())
                .unwrap_or(1);
            let per_page: usize = query_value(&query, "per_page")
                .and_then(|count| count.parse().ok())
                .unwrap_or(30);
            let state = lock(state);
            let mut releases: Vec<&FakeRelease> = state.releases.iter().collect();
            releases.reverse();
            let page: Vec<Value> = releases
                .into_iter()
                .skip((page.max(1) - 1) * per_page)
                .take(per_page)
                .map(|release| release_json(&state, release))
                .collect();
            reply(StatusCode::OK, &Value::Array(page))
        }
        (Method::POST, []) => {
            let body = json_body(request).await;
            let tag = body["tag_name"].as_str().unwrap_or_default().to_owned();
            let mut state = lock(state);
            if tag.is_empty() {
                return error(StatusCode::UNPROCESSABLE_ENTITY, "Validation Failed");
            }
            if state
                .releases
                .iter()
                .any(|release| release.tag_name == tag && !release.draft)
            {
                return reply(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    &json!({"message": "Validation Failed", "errors": [{"resource": "Release", "code": "already_exists", "field": "tag_name"}]}),
                );
            }
            state.next_id += 1;
            let release = FakeRelease {
                id: state.next_id,
                tag_name: tag.clone(),
                name: body["name"].as_str().unwrap_or(&tag).to_owned(),
                body: body["body"].as_str().unwrap_or_default().to_owned(),
                target_commitish: body["target_commitish"]
                    .as_str()
                    .unwrap_or("main")
                    .to_owned(),
                draft: body["draft"].as_bool().unwrap_or(false),
                prerelease: body["prerelease"].as_bool().unwrap_or(false),
                assets: Vec::new(),
            };
            let answer = release_json(&state, &release);
            state.releases.push(release);
            reply(StatusCode::CREATED, &answer)
        }
        (Method::GET, ["tags", tag]) => {
            let tag = percent_decode(tag);
            let state = lock(state);
            match state
                .releases
                .iter()
                .find(|release| release.tag_name == tag && !release.draft)
            {
                Some(release) => reply(StatusCode::OK, &release_json(&state, release)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (Method::GET, ["assets", id]) => {
            let id: u64 = id.parse().unwrap_or_default();
            let state = lock(state);
            let wants_bytes = request
                .headers()
                .get(hyper::header::ACCEPT)
                .is_some_and(|value| value.as_bytes().starts_with(b"application/octet-stream"));
            let asset = state
                .releases
                .iter()
                .flat_map(|release| release.assets.iter())
                .find(|asset| asset.id == id);
            match (asset, wants_bytes) {
                (Some(_), true) => match state.contents.get(&id) {
                    Some(bytes) => Response::builder()
                        .status(StatusCode::OK)
                        .header(hyper::header::CONTENT_TYPE, "application/octet-stream")
                        .body(Full::new(bytes.clone()))
                        .unwrap_or_else(|_| {
                            error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error")
                        }),
                    None => error(StatusCode::NOT_FOUND, "Not Found"),
                },
                (Some(asset), false) => reply(StatusCode::OK, &asset_json(&state, asset)),
                (None, _) => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (Method::DELETE, ["assets", id]) => {
            let id: u64 = id.parse().unwrap_or_default();
            let mut state = lock(state);
            for release in &mut state.releases {
                if let Some(position) = release.assets.iter().position(|asset| asset.id == id) {
                    release.assets.remove(position);
                    let mut response = Response::new(Full::new(Bytes::new()));
                    *response.status_mut() = StatusCode::NO_CONTENT;
                    return response;
                }
            }
            error(StatusCode::NOT_FOUND, "Not Found")
        }
        (Method::GET, [id]) => {
            let id: u64 = id.parse().unwrap_or_default();
            let state = lock(state);
            match state.releases.iter().find(|release| release.id == id) {
                Some(release) => reply(StatusCode::OK, &release_json(&state, release)),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        (Method::PATCH, [id]) => {
            let id: u64 = id.parse().unwrap_or_default();
            let body = json_body(request).await;
            let mut state = lock(state);
            let Some(position) = state.releases.iter().position(|release| release.id == id) else {
                return error(StatusCode::NOT_FOUND, "Not Found");
            };
            let release = &mut state.releases[position];
            if let Some(draft) = body["draft"].as_bool() {
                release.draft = draft;
            }
            if let Some(prerelease) = body["prerelease"].as_bool() {
                release.prerelease = prerelease;
            }
            if let Some(text) = body["body"].as_str() {
                text.clone_into(&mut release.body);
            }
            if let Some(name) = body["name"].as_str() {
                name.clone_into(&mut release.name);
            }
            let release = release.clone();
            reply(StatusCode::OK, &release_json(&state, &release))
        }
        (Method::GET, [id, "assets"]) => {
            let id: u64 = id.parse().unwrap_or_default();
            if query_value(&query, "page").is_some_and(|page| page != "1") {
                return reply(StatusCode::OK, &json!([]));
            }
            let state = lock(state);
            match state.releases.iter().find(|release| release.id == id) {
                Some(release) => reply(
                    StatusCode::OK,
                    &Value::Array(
                        release
                            .assets
                            .iter()
                            .map(|asset| asset_json(&state, asset))
                            .collect(),
                    ),
                ),
                None => error(StatusCode::NOT_FOUND, "Not Found"),
            }
        }
        _ => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

async fn upload_asset(
    state: &Mutex<State>,
    request: Request<Incoming>,
    segments: &[&str],
    query: &str,
) -> Response<Full<Bytes>> {
    let [id, "assets"] = segments else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    let id: u64 = id.parse().unwrap_or_default();
    let Some(name) = query_value(query, "name").filter(|name| !name.is_empty()) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "name is required");
    };
    {
        let mut state = lock(state);
        if let Some(Fault::UploadsFailAfter(left)) = state.fault {
            if left == 0 {
                // The body is not read: the connection cannot serve another request, so it is
                // closed, and the client must not keep it for the next try (it would meet a
                // closed connection there, not this 500).
                let mut response = error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error");
                response.headers_mut().insert(
                    hyper::header::CONNECTION,
                    hyper::header::HeaderValue::from_static("close"),
                );
                return response;
            }
            state.fault = Some(Fault::UploadsFailAfter(left - 1));
        }
        let Some(release) = state.releases.iter().find(|release| release.id == id) else {
            return error(StatusCode::NOT_FOUND, "Not Found");
        };
        if release.assets.iter().any(|asset| asset.name == name) {
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"message": "Validation Failed", "errors": [{"resource": "ReleaseAsset", "code": "already_exists", "field": "name"}]}),
            );
        }
    }
    let declared: Option<u64> = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut kept = Vec::new();
    let mut body = request.into_body().into_data_stream();
    while let Some(chunk) = body.next().await {
        let Ok(chunk) = chunk else {
            return error(StatusCode::BAD_REQUEST, "the upload was cut short");
        };
        size += chunk.len() as u64;
        hasher.update(&chunk);
        if size <= KEPT_CONTENT {
            kept.extend_from_slice(&chunk);
        }
    }
    if declared.is_some_and(|declared| declared != size) {
        return error(
            StatusCode::BAD_REQUEST,
            "Content-Length does not match the body",
        );
    }
    let digest = hasher
        .finalize()
        .iter()
        .fold(String::from("sha256:"), |mut text, byte| {
            use std::fmt::Write as _;
            let _ = write!(text, "{byte:02x}");
            text
        });
    let mut state = lock(state);
    state.next_id += 1;
    let asset = FakeAsset {
        id: state.next_id,
        name,
        size,
        digest,
    };
    let answer = asset_json(&state, &asset);
    if size <= KEPT_CONTENT {
        let asset_id = asset.id;
        state.contents.insert(asset_id, Bytes::from(kept));
    }
    let Some(release) = state.releases.iter_mut().find(|release| release.id == id) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    release.assets.push(asset);
    reply(StatusCode::CREATED, &answer)
}
