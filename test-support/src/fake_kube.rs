//! A fake Kubernetes API server on loopback for the tests of `sgr k8s-build`
//! and the runner: real REST paths and JSON, so kube-rs's production code is
//! what runs. It serves discovery, get/list/watch (with resourceVersion and
//! 410 Gone once history is compacted), create, server-side apply, delete
//! (with owner garbage collection), and `pods/{name}/log` with `follow`,
//! `sinceTime` and `timestamps`. A scripted job controller turns each Job
//! into pods that go Pending → Running → Succeeded/Failed, writing scripted
//! log lines, restarting as told, with dropped log connections and rotation.
//!
//! Every request body is recorded, so a test can grep everything the
//! "cluster" was sent.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;

/// What one pod of a Job does.
#[derive(Clone, Debug)]
pub struct PodScript {
    /// Reason shown while Pending (`ContainerCreating`, `ImagePullBackOff`, `Unschedulable`).
    pub pending_reason: String,
    /// How long it stays Pending.
    pub pending: Duration,
    /// Never leaves Pending (for timeouts).
    pub stuck: bool,
    /// Log lines per container name (one container `build` by default).
    pub containers: Vec<(String, Vec<String>)>,
    /// Pause after every `burst` lines while writing.
    pub burst: usize,
    /// Pause length.
    pub pause: Duration,
    /// Exit code of the (first) container.
    pub exit_code: i32,
    /// Append ` wall=<unix nanoseconds>` to each line as it is written (latency benchmarks).
    pub wall_clock: bool,
}

impl PodScript {
    /// A pod with one container `build` writing `lines`, then exiting with `exit_code`.
    #[must_use]
    pub fn lines(lines: Vec<String>, exit_code: i32) -> Self {
        Self {
            pending_reason: "ContainerCreating".to_owned(),
            pending: Duration::from_millis(100),
            stuck: false,
            containers: vec![("build".to_owned(), lines)],
            burst: 500,
            pause: Duration::from_millis(5),
            exit_code,
            wall_clock: false,
        }
    }
}

/// Faults of the log endpoint.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogFaults {
    /// Drop the connection (mid-line) this many times, each after `cut_after` lines.
    pub cuts: usize,
    /// Lines per connection before a cut.
    pub cut_after: usize,
    /// End one follow stream cleanly at this line index (kubelet's behaviour on rotation).
    pub rotate_at: Option<usize>,
}

#[derive(Clone)]
struct LogLine {
    timestamp: String,
    text: String,
}

#[derive(Default)]
struct ContainerLog {
    lines: Vec<LogLine>,
    done: bool,
}

#[derive(Clone, Debug)]
struct WatchEvent {
    kind: &'static str,
    resource: String,
    object: Value,
    version: u64,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<(String, String, String), Value>,
    version: u64,
    /// Watches asking for older versions get 410 Gone.
    compacted_below: u64,
    history: Vec<WatchEvent>,
    scripts: HashMap<String, Vec<PodScript>>,
    logs: HashMap<(String, String, String), ContainerLog>,
    log_faults: LogFaults,
    cuts_done: usize,
    rotated: bool,
    received: Vec<(String, String, String)>,
    next_uid: u64,
    clock: u64,
}

/// The fake API server; stops when dropped.
pub struct FakeKube {
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    address: SocketAddr,
    runtime: Option<tokio::runtime::Runtime>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pseudo-resource of the event that ends every open watch.
const DROP_WATCHES: &str = "__drop_watches__";

/// `(api prefix, plural, kind, namespaced)` of every kind served.
const RESOURCES: &[(&str, &str, &str, bool)] = &[
    ("/api/v1", "namespaces", "Namespace", false),
    ("/api/v1", "configmaps", "ConfigMap", true),
    ("/api/v1", "secrets", "Secret", true),
    ("/api/v1", "services", "Service", true),
    ("/api/v1", "serviceaccounts", "ServiceAccount", true),
    ("/api/v1", "pods", "Pod", true),
    (
        "/api/v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        true,
    ),
    (
        "/api/v1",
        "replicationcontrollers",
        "ReplicationController",
        true,
    ),
    ("/apis/apps/v1", "deployments", "Deployment", true),
    ("/apis/batch/v1", "jobs", "Job", true),
    ("/apis/rbac.authorization.k8s.io/v1", "roles", "Role", true),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "rolebindings",
        "RoleBinding",
        true,
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterroles",
        "ClusterRole",
        false,
    ),
    (
        "/apis/rbac.authorization.k8s.io/v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        false,
    ),
];

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response =
        Response::new(http_body_util::Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    full(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": if code.is_success() {"Success"} else {"Failure"},
                "message": message, "reason": reason, "code": code.as_u16()}),
    )
}

fn query(uri: &hyper::Uri) -> HashMap<String, String> {
    uri.query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.to_owned(), decode(value)))
        })
        .collect()
}

fn decode(text: &str) -> String {
    let mut bytes = Vec::new();
    let raw = text.as_bytes();
    let mut index = 0;
    while index < raw.len() {
        if raw[index] == b'%'
            && index + 2 < raw.len()
            && let Ok(byte) = u8::from_str_radix(
                std::str::from_utf8(&raw[index + 1..index + 3]).unwrap_or(""),
                16,
            )
        {
            bytes.push(byte);
            index += 3;
            continue;
        }
        bytes.push(if raw[index] == b'+' { b' ' } else { raw[index] });
        index += 1;
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn matches_selector(object: &Value, selector: Option<&String>) -> bool {
    let Some(selector) = selector.filter(|selector| !selector.is_empty()) else {
        return true;
    };
    selector.split(',').all(|term| match term.split_once('=') {
        Some((key, value)) => {
            object["metadata"]["labels"][key.trim_end_matches('=')].as_str()
                == Some(value.trim_start_matches('='))
        }
        None => !object["metadata"]["labels"][term].is_null(),
    })
}

impl FakeKube {
    /// Start the server.
    ///
    /// # Errors
    /// The runtime or listener cannot be created.
    pub fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0"))?;
        let address = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State {
            clock: 1_795_000_000,
            ..State::default()
        }));
        let (events, _) = broadcast::channel(65_536);
        let shared = Arc::clone(&state);
        let sender = events.clone();
        runtime.spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                let events = sender.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = Arc::clone(&state);
                        let events = events.clone();
                        async move { Ok::<_, Infallible>(handle(state, events, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            state,
            events,
            address,
            runtime: Some(runtime),
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig for this server with `token`, context `fake`, namespace `default`.
    #[must_use]
    pub fn kubeconfig(&self, token: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n    namespace: default\ncurrent-context: fake\nusers:\n- name: fake\n  user:\n    token: {token}\n",
            self.url()
        )
    }

    /// What the pods of Job `name` do, one script per attempt (default: one pod, 3 lines, exit 0).
    pub fn script(&self, job: &str, pods: Vec<PodScript>) {
        lock(&self.state).scripts.insert(job.to_owned(), pods);
    }

    /// Faults of the log endpoint.
    pub fn log_faults(&self, faults: LogFaults) {
        lock(&self.state).log_faults = faults;
    }

    /// Forget watch history below the current version (watches from older versions get 410).
    pub fn compact(&self) {
        let mut state = lock(&self.state);
        state.compacted_below = state.version + 1;
        state.history.clear();
    }

    /// End every open watch stream (clients reconnect with their last resourceVersion).
    pub fn drop_watches(&self) {
        let _ = self.events.send(WatchEvent {
            kind: "DROP",
            resource: DROP_WATCHES.to_owned(),
            object: Value::Null,
            version: 0,
        });
    }

    /// The object `plural/name` in `namespace` ("" for cluster-scoped), if present.
    #[must_use]
    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        lock(&self.state)
            .objects
            .get(&(plural.to_owned(), namespace.to_owned(), name.to_owned()))
            .cloned()
    }

    /// Every object of `plural`.
    #[must_use]
    pub fn objects(&self, plural: &str) -> Vec<Value> {
        lock(&self.state)
            .objects
            .iter()
            .filter(|((kind, _, _), _)| kind == plural)
            .map(|(_, object)| object.clone())
            .collect()
    }

    /// `(method, path, body)` of every request received.
    #[must_use]
    pub fn received(&self) -> Vec<(String, String, String)> {
        lock(&self.state).received.clone()
    }

    /// Change or create an object as a controller would (emits a watch event).
    pub fn put(&self, plural: &str, namespace: &str, object: Value) {
        store(
            &self.state,
            &self.events,
            plural,
            namespace,
            object,
            "MODIFIED",
        );
    }

    /// Delete an object as a controller or user would.
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) {
        remove(&self.state, &self.events, plural, namespace, name);
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn stamp(state: &mut State) -> String {
    state.clock += 1;
    let seconds = state.clock;
    let days = seconds / 86_400;
    let (year, month, day) = civil(i64::try_from(days).unwrap_or(0));
    let rest = seconds % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// Store `object` (creating metadata as the API server does) and announce it.
fn store(
    state: &Mutex<State>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    mut object: Value,
    kind: &'static str,
) -> Value {
    let event = {
        let mut state = lock(state);
        state.version += 1;
        let version = state.version;
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (plural.to_owned(), namespace.to_owned(), name);
        let existing_uid = state
            .objects
            .get(&key)
            .and_then(|old| old["metadata"]["uid"].as_str().map(str::to_owned));
        let created = state.objects.get(&key).and_then(|old| {
            old["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_owned)
        });
        let uid = existing_uid.unwrap_or_else(|| {
            state.next_uid += 1;
            format!("00000000-0000-4000-8000-{:012}", state.next_uid)
        });
        let created = match created {
            Some(created) => created,
            None => stamp(&mut state),
        };
        let metadata = object["metadata"].as_object_mut();
        if let Some(metadata) = metadata {
            metadata.insert("uid".to_owned(), json!(uid));
            metadata.insert("resourceVersion".to_owned(), json!(version.to_string()));
            metadata.insert("creationTimestamp".to_owned(), json!(created));
            if !namespace.is_empty() {
                metadata.insert("namespace".to_owned(), json!(namespace));
            }
        }
        let kind = if state.objects.contains_key(&key)
            || kind == "MODIFIED" && state.objects.contains_key(&key)
        {
            "MODIFIED"
        } else {
            "ADDED"
        };
        state.objects.insert(key, object.clone());
        let event = WatchEvent {
            kind,
            resource: plural.to_owned(),
            object: object.clone(),
            version,
        };
        state.history.push(event.clone());
        event
    };
    let _ = events.send(event);
    object
}

fn remove(
    state: &Mutex<State>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Option<Value> {
    let (removed, dependents) = {
        let mut state = lock(state);
        let removed =
            state
                .objects
                .remove(&(plural.to_owned(), namespace.to_owned(), name.to_owned()))?;
        let uid = removed["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        // Garbage collection: objects owned by it, and a Job's pods.
        let dependents: Vec<(String, String, String)> = state
            .objects
            .iter()
            .filter(|(_, object)| {
                object["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|owners| owners.iter().any(|owner| owner["uid"] == json!(uid)))
                    || (plural == "jobs"
                        && object["metadata"]["labels"]["job-name"].as_str() == Some(name))
            })
            .map(|(key, _)| key.clone())
            .collect();
        state.version += 1;
        let mut object = removed.clone();
        if let Some(metadata) = object["metadata"].as_object_mut() {
            metadata.insert(
                "resourceVersion".to_owned(),
                json!(state.version.to_string()),
            );
        }
        let event = WatchEvent {
            kind: "DELETED",
            resource: plural.to_owned(),
            object,
            version: state.version,
        };
        state.history.push(event.clone());
        let _ = events.send(event);
        (removed, dependents)
    };
    for (plural, namespace, name) in dependents {
        remove(state, events, &plural, &namespace, &name);
    }
    Some(removed)
}

/// Merge an applied object into the stored one, field by field at the top
/// level (enough for what sgr applies): metadata labels/annotations merge,
/// everything else is replaced.
/// RFC 7386: objects merge recursively, `null` removes a member.
fn json_merge(target: &mut Value, patch: &Value) {
    let Some(fields) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(object) = target.as_object_mut() {
        for (key, value) in fields {
            if value.is_null() {
                object.remove(key);
            } else {
                json_merge(object.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn apply_merge(mut stored: Value, applied: &Value) -> Value {
    if let (Some(target), Some(source)) = (stored.as_object_mut(), applied.as_object()) {
        for (key, value) in source {
            if key == "metadata" {
                for field in ["labels", "annotations", "ownerReferences"] {
                    if !value[field].is_null() {
                        target.entry("metadata").or_insert_with(|| json!({}))[field] =
                            value[field].clone();
                    }
                }
            } else if matches!(key.as_str(), "data" | "stringData")
                && let (Some(existing), Some(fields)) = (
                    target.get_mut(key).and_then(Value::as_object_mut),
                    value.as_object(),
                )
            {
                // Map fields are owned key by key: other managers' keys stay.
                for (field, field_value) in fields {
                    existing.insert(field.clone(), field_value.clone());
                }
            } else if key != "status" {
                target.insert(key.clone(), value.clone());
            }
        }
    }
    stored
}

fn discovery(path: &str) -> Option<Value> {
    match path {
        "/api" => Some(
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ),
        "/apis" => Some(
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [{"groupVersion": "apps/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"}},
                {"name": "batch", "versions": [{"groupVersion": "batch/v1", "version": "v1"}], "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"}},
                {"name": "rbac.authorization.k8s.io", "versions": [{"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}],
                 "preferredVersion": {"groupVersion": "rbac.authorization.k8s.io/v1", "version": "v1"}}
            ]}),
        ),
        _ => {
            let prefix = path;
            let resources: Vec<Value> = RESOURCES
                .iter()
                .filter(|(api, ..)| *api == prefix)
                .flat_map(|(_, plural, kind, namespaced)| {
                    let main = json!({"name": plural, "singularName": kind.to_ascii_lowercase(), "namespaced": namespaced, "kind": kind,
                        "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]});
                    let log = (*plural == "pods").then(|| json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
                    std::iter::once(main).chain(log)
                })
                .collect();
            if resources.is_empty() {
                return None;
            }
            let group_version = prefix
                .trim_start_matches("/apis/")
                .trim_start_matches("/api/");
            Some(
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}),
            )
        }
    }
}

#[allow(clippy::too_many_lines)]
async fn handle(
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    request: Request<Incoming>,
) -> Response<Body> {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let path = uri.path().to_owned();
    let query = query(&uri);
    let merge_patch = request
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .is_some_and(|value| {
            value
                .as_bytes()
                .starts_with(b"application/merge-patch+json")
        });
    let body_bytes = request
        .into_body()
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
        .unwrap_or_default();
    lock(&state).received.push((
        method.to_string(),
        uri.to_string(),
        String::from_utf8_lossy(&body_bytes).into_owned(),
    ));
    if method == Method::GET
        && let Some(answer) = discovery(&path)
    {
        return full(StatusCode::OK, &answer);
    }
    let Some((prefix, plural, kind, namespaced)) =
        RESOURCES.iter().copied().find(|(prefix, plural, ..)| {
            path.strip_prefix(prefix).is_some_and(|rest| {
                let segments: Vec<&str> = rest
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .collect();
                match segments.as_slice() {
                    ["namespaces", _, resource, ..] => resource == plural,
                    [first, ..] => first == plural,
                    [] => false,
                }
            })
        })
    else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("the server could not find {path}"),
        );
    };
    let rest: Vec<&str> = path[prefix.len()..]
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let (namespace, name, subresource) = match rest.as_slice() {
        ["namespaces", namespace, resource, name, sub] if *resource == plural => (
            (*namespace).to_owned(),
            Some((*name).to_owned()),
            Some(*sub),
        ),
        ["namespaces", namespace, resource, name] if *resource == plural => {
            ((*namespace).to_owned(), Some((*name).to_owned()), None)
        }
        ["namespaces", namespace, resource] if *resource == plural && namespaced => {
            ((*namespace).to_owned(), None, None)
        }
        ["namespaces", name] if plural == "namespaces" => {
            (String::new(), Some((*name).to_owned()), None)
        }
        [resource] if *resource == plural => (String::new(), None, None),
        [resource, name] if *resource == plural => (String::new(), Some((*name).to_owned()), None),
        _ => {
            return status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("the server could not find {path}"),
            );
        }
    };
    let key = |name: &str| (plural.to_owned(), namespace.clone(), name.to_owned());
    match (method, name, subresource) {
        (Method::GET, Some(name), Some("log")) => logs(state, &namespace, &name, &query),
        (Method::GET, Some(name), None) => match lock(&state).objects.get(&key(&name)) {
            Some(object) => full(StatusCode::OK, object),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("{plural} \"{name}\" not found"),
            ),
        },
        (Method::GET, None, _)
            if query
                .get("watch")
                .is_some_and(|watch| watch == "true" || watch == "1") =>
        {
            watch(&state, &events, plural, &namespace, &query)
        }
        (Method::GET, None, _) => {
            let state = lock(&state);
            let items: Vec<Value> = state
                .objects
                .iter()
                .filter(|((resource, object_namespace, _), object)| {
                    resource == plural
                        && (namespace.is_empty() || *object_namespace == namespace)
                        && matches_selector(object, query.get("labelSelector"))
                })
                .map(|(_, object)| object.clone())
                .collect();
            full(
                StatusCode::OK,
                &json!({"kind": format!("{kind}List"), "apiVersion": "v1", "metadata": {"resourceVersion": state.version.to_string()}, "items": items}),
            )
        }
        (Method::PATCH, Some(name), None) => {
            let Ok(applied) = serde_json::from_slice::<Value>(&body_bytes) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the patch is not JSON",
                );
            };
            if merge_patch {
                // RFC 7386 JSON merge patch of an existing object.
                let Some(mut stored) = lock(&state).objects.get(&key(&name)).cloned() else {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        &format!("{plural} \"{name}\" not found"),
                    );
                };
                json_merge(&mut stored, &applied);
                let stored = store(&state, &events, plural, &namespace, stored, "MODIFIED");
                return full(StatusCode::OK, &stored);
            }
            if applied["metadata"]["name"].as_str() != Some(name.as_str()) {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "metadata.name does not match the URL",
                );
            }
            let existing = lock(&state).objects.get(&key(&name)).cloned();
            let created = existing.is_none();
            let merged = match existing {
                Some(stored) => apply_merge(stored, &applied),
                None => applied,
            };
            let stored = store(&state, &events, plural, &namespace, merged, "ADDED");
            if created && plural == "jobs" {
                tokio::spawn(run_job(
                    Arc::clone(&state),
                    events.clone(),
                    namespace.clone(),
                    stored.clone(),
                ));
            }
            full(
                if created {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                &stored,
            )
        }
        (Method::POST, None, _) => {
            let Ok(object) = serde_json::from_slice::<Value>(&body_bytes) else {
                return status(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    "the body is not JSON",
                );
            };
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if lock(&state).objects.contains_key(&key(&name)) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    &format!("{plural} \"{name}\" already exists"),
                );
            }
            let stored = store(&state, &events, plural, &namespace, object, "ADDED");
            if plural == "jobs" {
                tokio::spawn(run_job(
                    Arc::clone(&state),
                    events.clone(),
                    namespace.clone(),
                    stored.clone(),
                ));
            }
            full(StatusCode::CREATED, &stored)
        }
        (Method::DELETE, Some(name), None) => {
            match remove(&state, &events, plural, &namespace, &name) {
                Some(removed) => full(StatusCode::OK, &removed),
                None => status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    &format!("{plural} \"{name}\" not found"),
                ),
            }
        }
        _ => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "not supported by the fake",
        ),
    }
}

fn stream_response(receiver: mpsc::Receiver<Bytes>) -> Response<Body> {
    let stream = tokio_stream(receiver).map(|chunk| Ok::<_, Infallible>(Frame::data(chunk)));
    let mut response = Response::new(http_body_util::BodyExt::boxed(StreamBody::new(stream)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}

fn tokio_stream(mut receiver: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |context| receiver.poll_recv(context))
}

fn watch(
    state: &Arc<Mutex<State>>,
    events: &broadcast::Sender<WatchEvent>,
    plural: &str,
    namespace: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|version| version.parse().ok())
        .unwrap_or(0);
    let selector = query.get("labelSelector").cloned();
    let (sender, receiver) = mpsc::channel::<Bytes>(1024);
    let (backlog, gone) = {
        let state = lock(state);
        let gone = since != 0 && since < state.compacted_below;
        let backlog: Vec<WatchEvent> = state
            .history
            .iter()
            .filter(|event| event.version > since)
            .cloned()
            .collect();
        (backlog, gone)
    };
    let mut subscription = events.subscribe();
    let plural = plural.to_owned();
    let namespace = namespace.to_owned();
    tokio::spawn(async move {
        if gone {
            let error = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("too old resource version: {since}"), "reason": "Expired", "code": 410}});
            let _ = sender.send(Bytes::from(format!("{error}\n"))).await;
            return;
        }
        let wanted = |event: &WatchEvent| {
            event.resource == plural
                && (namespace.is_empty()
                    || event.object["metadata"]["namespace"].as_str() == Some(namespace.as_str()))
                && matches_selector(&event.object, selector.as_ref())
        };
        let mut last = since;
        for event in backlog {
            if wanted(&event) {
                last = event.version;
                let line = json!({"type": event.kind, "object": event.object});
                if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                    return;
                }
            }
        }
        loop {
            match subscription.recv().await {
                // `drop_watches`: end every open watch, as a restarting API server does.
                Ok(event) if event.resource == DROP_WATCHES => return,
                Ok(event) if event.version > last && wanted(&event) => {
                    last = event.version;
                    let line = json!({"type": event.kind, "object": event.object});
                    if sender.send(Bytes::from(format!("{line}\n"))).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    stream_response(receiver)
}

/// `pods/{name}/log`: the container's lines from `sinceTime`, followed while it runs.
#[allow(clippy::too_many_lines)]
fn logs(
    state: Arc<Mutex<State>>,
    namespace: &str,
    pod: &str,
    query: &HashMap<String, String>,
) -> Response<Body> {
    let container = query.get("container").cloned().unwrap_or_else(|| {
        lock(&state)
            .objects
            .get(&("pods".to_owned(), namespace.to_owned(), pod.to_owned()))
            .and_then(|object| {
                object["spec"]["containers"][0]["name"]
                    .as_str()
                    .map(str::to_owned)
            })
            .unwrap_or_default()
    });
    let key = (namespace.to_owned(), pod.to_owned(), container);
    if !lock(&state).logs.contains_key(&key) {
        return status(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            &format!("container in pod {pod} is waiting to start"),
        );
    }
    let follow = query.get("follow").is_some_and(|value| value == "true");
    let timestamps = query.get("timestamps").is_some_and(|value| value == "true");
    let since = query.get("sinceTime").cloned();
    let (sender, receiver) = mpsc::channel::<Bytes>(256);
    tokio::spawn(async move {
        let mut index = {
            let state = lock(&state);
            let lines = &state.logs[&key].lines;
            match &since {
                // RFC 3339 strings of the same shape compare in time order; seconds precision as the API.
                Some(since) => lines
                    .iter()
                    .position(|line| line.timestamp[..19] >= since[..19.min(since.len())])
                    .unwrap_or(lines.len()),
                None => 0,
            }
        };
        let mut sent_here = 0;
        loop {
            let (batch, done, cut, rotate) = {
                let mut state = lock(&state);
                let faults = state.log_faults;
                let log = &state.logs[&key];
                let batch: Vec<LogLine> = log.lines[index.min(log.lines.len())..]
                    .iter()
                    .take(64)
                    .cloned()
                    .collect();
                let done = log.done;
                let cut = faults.cuts > state.cuts_done
                    && faults.cut_after > 0
                    && sent_here >= faults.cut_after;
                let rotate =
                    follow && !state.rotated && faults.rotate_at.is_some_and(|at| index >= at);
                if cut {
                    state.cuts_done += 1;
                }
                if rotate {
                    state.rotated = true;
                }
                (batch, done, cut, rotate)
            };
            if rotate {
                return;
            }
            if cut {
                // A dropped connection, mid-line.
                let partial = lock(&state).logs[&key].lines.get(index).map(|line| {
                    let text = if timestamps {
                        format!("{} {}", line.timestamp, line.text)
                    } else {
                        line.text.clone()
                    };
                    let half = text.len() / 2;
                    Bytes::from(text.as_bytes()[..half].to_vec())
                });
                if let Some(partial) = partial {
                    let _ = sender.send(partial).await;
                }
                return;
            }
            if batch.is_empty() {
                if done || !follow {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            let mut chunk = String::new();
            for line in &batch {
                if timestamps {
                    chunk.push_str(&line.timestamp);
                    chunk.push(' ');
                }
                chunk.push_str(&line.text);
                chunk.push('\n');
                index += 1;
                sent_here += 1;
                let faults = lock(&state).log_faults;
                if faults.cut_after > 0 && sent_here >= faults.cut_after {
                    break;
                }
            }
            if sender.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
        }
    });
    let mut response = stream_response(receiver);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain"),
    );
    response
}

/// The scripted job controller.
#[allow(clippy::too_many_lines)]
async fn run_job(
    state: Arc<Mutex<State>>,
    events: broadcast::Sender<WatchEvent>,
    namespace: String,
    job: Value,
) {
    let name = job["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let uid = job["metadata"]["uid"].clone();
    let scripts = lock(&state).scripts.get(&name).cloned().unwrap_or_else(|| {
        vec![PodScript::lines(
            vec!["step 1".to_owned(), "step 2".to_owned(), "done".to_owned()],
            0,
        )]
    });
    let template = job["spec"]["template"].clone();
    let attempts = scripts.len();
    for (attempt, script) in scripts.into_iter().enumerate() {
        let pod_name = format!("{name}-{attempt}x{}", 7 + attempt);
        let mut pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": namespace,
                "labels": {"batch.kubernetes.io/job-name": name, "job-name": name},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid, "controller": true}]},
            "spec": template["spec"].clone(),
            "status": {}
        });
        let containers: Vec<String> = script
            .containers
            .iter()
            .map(|(container, _)| container.clone())
            .collect();
        let waiting: Vec<Value> = containers
            .iter()
            .map(|container| json!({"name": container, "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"waiting": {"reason": script.pending_reason}}}))
            .collect();
        let scheduled = if script.pending_reason == "Unschedulable" {
            json!([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}])
        } else {
            json!([{"type": "PodScheduled", "status": "True"}])
        };
        pod["status"] =
            json!({"phase": "Pending", "conditions": scheduled, "containerStatuses": waiting});
        store(&state, &events, "pods", &namespace, pod.clone(), "ADDED");
        tokio::time::sleep(script.pending).await;
        if script.stuck {
            return;
        }
        if !pod_exists(&state, &namespace, &pod_name) {
            return;
        }
        {
            let mut locked = lock(&state);
            for container in &containers {
                locked.logs.insert(
                    (namespace.clone(), pod_name.clone(), container.clone()),
                    ContainerLog::default(),
                );
            }
        }
        let running: Vec<Value> = containers
            .iter()
            .map(|container| json!({"name": container, "ready": true, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"running": {"startedAt": "2026-11-28T00:00:00Z"}}}))
            .collect();
        pod["status"] = json!({"phase": "Running", "conditions": [{"type": "PodScheduled", "status": "True"}], "containerStatuses": running});
        store(&state, &events, "pods", &namespace, pod.clone(), "MODIFIED");
        // Write the lines, interleaving containers, with nanosecond timestamps.
        let longest = script
            .containers
            .iter()
            .map(|(_, lines)| lines.len())
            .max()
            .unwrap_or(0);
        let base = lock(&state).clock;
        for index in 0..longest {
            {
                let mut locked = lock(&state);
                for (container, lines) in &script.containers {
                    if let Some(text) = lines.get(index) {
                        let second = base + (index as u64) / 1000;
                        let days = second / 86_400;
                        let (year, month, day) = civil(i64::try_from(days).unwrap_or(0));
                        let rest = second % 86_400;
                        let nanos = (index as u64 % 1000) * 1_000_000 + 1;
                        let timestamp = format!(
                            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
                            rest / 3600,
                            rest % 3600 / 60,
                            rest % 60
                        );
                        if let Some(log) = locked.logs.get_mut(&(
                            namespace.clone(),
                            pod_name.clone(),
                            container.clone(),
                        )) {
                            let text = if script.wall_clock {
                                let nanos = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map_or(0, |elapsed| elapsed.as_nanos());
                                format!("{text} wall={nanos}")
                            } else {
                                text.clone()
                            };
                            log.lines.push(LogLine { timestamp, text });
                        }
                    }
                }
            }
            if script.burst > 0 && (index + 1) % script.burst == 0 {
                tokio::time::sleep(script.pause).await;
            }
        }
        {
            let mut locked = lock(&state);
            locked.clock = base + (longest as u64) / 1000 + 2;
            for container in &containers {
                if let Some(log) =
                    locked
                        .logs
                        .get_mut(&(namespace.clone(), pod_name.clone(), container.clone()))
                {
                    log.done = true;
                }
            }
        }
        let succeeded = script.exit_code == 0;
        let terminated: Vec<Value> = containers
            .iter()
            .enumerate()
            .map(|(position, container)| json!({"name": container, "ready": false, "restartCount": 0, "image": "x", "imageID": "",
                "state": {"terminated": {"exitCode": if position == 0 { script.exit_code } else { 0 }, "reason": if succeeded { "Completed" } else { "Error" }}}}))
            .collect();
        pod["status"] = json!({"phase": if succeeded { "Succeeded" } else { "Failed" }, "containerStatuses": terminated});
        if !pod_exists(&state, &namespace, &pod_name) {
            return;
        }
        store(&state, &events, "pods", &namespace, pod, "MODIFIED");
        let last = attempt + 1 == attempts;
        if succeeded || last {
            let Some(mut stored) = lock(&state)
                .objects
                .get(&("jobs".to_owned(), namespace.clone(), name.clone()))
                .cloned()
            else {
                return;
            };
            stored["status"] = if succeeded {
                json!({"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]})
            } else {
                json!({"failed": attempts, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]})
            };
            store(&state, &events, "jobs", &namespace, stored, "MODIFIED");
            return;
        }
    }
}

fn pod_exists(state: &Mutex<State>, namespace: &str, name: &str) -> bool {
    lock(state)
        .objects
        .contains_key(&("pods".to_owned(), namespace.to_owned(), name.to_owned()))
}
