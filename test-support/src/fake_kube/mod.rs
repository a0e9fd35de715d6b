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
use serde_json::Value;
use tokio::sync::broadcast;

use crate::loopback::LoopbackServer;
use store::{remove, store};

mod jobs;
mod logs;
mod server;
mod store;

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
    _server: LoopbackServer,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The pseudo-resource of the event that ends every open watch.
const DROP_WATCHES: &str = "__drop_watches__";

impl FakeKube {
    /// Start the server.
    ///
    /// # Errors
    /// The runtime or listener cannot be created.
    pub fn start() -> std::io::Result<Self> {
        let server = LoopbackServer::new("fake-kube")?;
        let state = Arc::new(Mutex::new(State {
            clock: 1_795_000_000,
            ..State::default()
        }));
        let (events, _) = broadcast::channel(65_536);
        let shared = Arc::clone(&state);
        let sender = events.clone();
        let address = server.listen_http(move |request| {
            server::handle(Arc::clone(&shared), sender.clone(), request)
        })?;
        Ok(Self {
            state,
            events,
            address,
            _server: server,
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
