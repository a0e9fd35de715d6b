//! Kubernetes through kube-rs: apply manifests with server-side apply
//! (kinds resolved by discovery), create the token Secret owned by the Job,
//! follow a Job's pods and their logs until it ends, delete what a manifest
//! made. Log following survives dropped connections and log rotation: it
//! resumes from the last printed line's second (`sinceTime`) and drops the
//! lines it already printed, by their timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::AsyncBufRead as _;
use futures_util::AsyncBufReadExt as _;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};
use serde_json::Value;
use thiserror::Error;

/// The field manager of everything sgr applies.
pub const FIELD_MANAGER: &str = "sgr";
/// How often pods are looked at while waiting.
const POLL: Duration = Duration::from_millis(200);

/// Cluster failures.
#[derive(Debug, Error)]
pub enum ClusterError {
    /// No usable kubeconfig or in-cluster configuration.
    #[error("no Kubernetes cluster configured: {0}")]
    Config(String),
    /// An object cannot be applied, read or deleted.
    #[error("{action} failed: {message}")]
    Api {
        /// What was being done (names the object).
        action: String,
        /// The API server's answer.
        message: String,
    },
    /// The API server does not answer (refused, no route, TLS, timeout).
    #[error("cannot reach the Kubernetes API server at {server} while {action}: {message}")]
    Unreachable {
        /// The server URL of the kubeconfig context (or in-cluster).
        server: String,
        /// What was being done.
        action: String,
        /// Why.
        message: String,
    },
    /// A manifest document is not an object sgr can apply.
    #[error("document {index} of the manifest: {reason}")]
    Document {
        /// Its position (1-based).
        index: usize,
        /// Why.
        reason: String,
    },
}

/// The hint for [`ClusterError::Unreachable`] and [`ClusterError::Config`],
/// shared by every command that talks to Kubernetes.
pub const CLUSTER_HINT: &str = "check KUBECONFIG (or ~/.kube/config and --context) names the right cluster, and that the cluster is up (kubectl cluster-info)";

fn api_error(server: &str, action: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
    let action = action.into();
    let server = server.to_owned();
    move |error| match error {
        kube::Error::Api(status) => ClusterError::Api {
            action,
            message: format!("{} ({})", status.message, status.code),
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => ClusterError::Unreachable {
            server,
            action,
            message: crate::error::chain(&error),
        },
        other => ClusterError::Api {
            action,
            message: other.to_string(),
        },
    }
}

/// Whether the cluster serves a kind, and what to use instead when not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KindCheck {
    /// The group/version serves the kind.
    Served,
    /// Unknown or removed.
    Unserved {
        /// The `apiVersion` to use instead, when one is known.
        replacement: Option<String>,
        /// When Kubernetes removed it, when known (`1.16`).
        removed_in: Option<&'static str>,
    },
}

/// `(apiVersion, kinds ("*" for all), replacement, removed in)` of the
/// Kubernetes API versions removed since 1.16 that old manifests still carry.
const REMOVED_APIS: &[(&str, &[&str], &str, &str)] = &[
    (
        "extensions/v1beta1",
        &["Deployment", "DaemonSet", "ReplicaSet"],
        "apps/v1",
        "1.16",
    ),
    (
        "extensions/v1beta1",
        &["NetworkPolicy"],
        "networking.k8s.io/v1",
        "1.16",
    ),
    (
        "extensions/v1beta1",
        &["Ingress"],
        "networking.k8s.io/v1",
        "1.22",
    ),
    ("apps/v1beta1", &["*"], "apps/v1", "1.16"),
    ("apps/v1beta2", &["*"], "apps/v1", "1.16"),
    ("batch/v1beta1", &["CronJob"], "batch/v1", "1.25"),
    ("batch/v2alpha1", &["CronJob"], "batch/v1", "1.21"),
    (
        "networking.k8s.io/v1beta1",
        &["*"],
        "networking.k8s.io/v1",
        "1.22",
    ),
    (
        "rbac.authorization.k8s.io/v1beta1",
        &["*"],
        "rbac.authorization.k8s.io/v1",
        "1.22",
    ),
    (
        "rbac.authorization.k8s.io/v1alpha1",
        &["*"],
        "rbac.authorization.k8s.io/v1",
        "1.22",
    ),
    (
        "policy/v1beta1",
        &["PodDisruptionBudget"],
        "policy/v1",
        "1.25",
    ),
    ("autoscaling/v2beta1", &["*"], "autoscaling/v2", "1.25"),
    ("autoscaling/v2beta2", &["*"], "autoscaling/v2", "1.26"),
    (
        "apiextensions.k8s.io/v1beta1",
        &["*"],
        "apiextensions.k8s.io/v1",
        "1.22",
    ),
    (
        "admissionregistration.k8s.io/v1beta1",
        &["*"],
        "admissionregistration.k8s.io/v1",
        "1.22",
    ),
    (
        "storage.k8s.io/v1beta1",
        &["*"],
        "storage.k8s.io/v1",
        "1.22",
    ),
    (
        "scheduling.k8s.io/v1beta1",
        &["*"],
        "scheduling.k8s.io/v1",
        "1.22",
    ),
    (
        "certificates.k8s.io/v1beta1",
        &["*"],
        "certificates.k8s.io/v1",
        "1.22",
    ),
    (
        "coordination.k8s.io/v1beta1",
        &["*"],
        "coordination.k8s.io/v1",
        "1.22",
    ),
    ("events.k8s.io/v1beta1", &["*"], "events.k8s.io/v1", "1.25"),
    (
        "discovery.k8s.io/v1beta1",
        &["*"],
        "discovery.k8s.io/v1",
        "1.25",
    ),
    ("node.k8s.io/v1beta1", &["*"], "node.k8s.io/v1", "1.25"),
];

/// The `apiVersion` that replaces a removed one for `kind`, and the
/// Kubernetes release that removed it (`extensions/v1beta1` Deployment:
/// `apps/v1`, 1.16).
#[must_use]
pub fn removed_api(api_version: &str, kind: &str) -> Option<(&'static str, &'static str)> {
    REMOVED_APIS
        .iter()
        .find(|(removed, kinds, ..)| {
            *removed == api_version && kinds.iter().any(|known| *known == "*" || *known == kind)
        })
        .map(|(_, _, replacement, removed_in)| (*replacement, *removed_in))
}

/// What is happening to the Job, for the output.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Progress {
    /// An object was applied.
    Applied {
        /// Its kind.
        kind: String,
        /// `namespace/name` or `name`.
        name: String,
    },
    /// A pod changed phase (or its pending reason).
    Phase {
        /// The pod.
        pod: String,
        /// `Pending`, `Running`, `Succeeded`, `Failed`.
        phase: String,
        /// Why, when Pending or Failed.
        reason: Option<String>,
    },
    /// One line of a container's log, or a piece of a long one.
    Log {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// The text (at most [`MAX_PIECE`] bytes).
        line: String,
        /// The line goes on in the next event (it is longer than [`MAX_PIECE`]).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        partial: bool,
        /// This event continues the previous one's line.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        continued: bool,
    },
}

/// How the Job ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Completed.
    pub succeeded: bool,
    /// The last pod's first container's exit code, when it terminated.
    pub exit_code: Option<i32>,
    /// The last pod followed.
    pub pod: Option<String>,
}

/// A connected cluster.
pub struct Cluster {
    client: kube::Client,
    /// The API server's URL, for messages.
    server: String,
    /// The namespace of the kubeconfig context (or the service account's).
    pub default_namespace: String,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cluster")
            .field("default_namespace", &self.default_namespace)
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

/// `apiVersion` → (group, version).
fn group_version(api_version: &str) -> (String, String) {
    match api_version.split_once('/') {
        Some((group, version)) => (group.to_owned(), version.to_owned()),
        None => (String::new(), api_version.to_owned()),
    }
}

impl Cluster {
    /// Connect with `KUBECONFIG`, `~/.kube/config` or the in-cluster
    /// configuration; `context` picks a kubeconfig context.
    ///
    /// # Errors
    /// No configuration, or a client that cannot be built.
    pub async fn connect(context: Option<&str>) -> Result<Self, ClusterError> {
        let config = match context {
            Some(context) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
                context: Some(context.to_owned()),
                ..Default::default()
            })
            .await
            .map_err(|error| ClusterError::Config(error.to_string()))?,
            None => kube::Config::infer()
                .await
                .map_err(|error| ClusterError::Config(error.to_string()))?,
        };
        let default_namespace = config.default_namespace.clone();
        let server = config.cluster_url.to_string();
        let client = kube::Client::try_from(config)
            .map_err(|error| ClusterError::Config(error.to_string()))?;
        Ok(Self {
            client,
            server,
            default_namespace,
        })
    }

    /// The API server's URL.
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Map a kube error of `action` to a [`ClusterError`], an unreachable
    /// server told apart.
    pub fn error(&self, action: impl Into<String>) -> impl FnOnce(kube::Error) -> ClusterError {
        api_error(&self.server, action)
    }

    /// Whether the cluster's discovery serves `kind` in `api_version`; when
    /// not, the replacement (the table of removed versions first, else
    /// the group/version where the cluster serves that kind).
    ///
    /// # Errors
    /// The server cannot be reached or fails.
    pub async fn check_kind(
        &self,
        api_version: &str,
        kind: &str,
    ) -> Result<KindCheck, ClusterError> {
        let (group, version) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        match discovery::pinned_kind(&self.client, &gvk).await {
            Ok(_) => return Ok(KindCheck::Served),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(kube::Error::Discovery(_)) => {}
            Err(error) => {
                return Err(api_error(
                    &self.server,
                    format!("looking up {kind} ({api_version}) in the API discovery"),
                )(error));
            }
        }
        if let Some((replacement, removed_in)) = removed_api(api_version, kind) {
            return Ok(KindCheck::Unserved {
                replacement: Some(replacement.to_owned()),
                removed_in: Some(removed_in),
            });
        }
        // Where does the cluster serve this kind? (best effort)
        let replacement = match kube::Discovery::new(self.client.clone()).run().await {
            Ok(found) => found.groups().find_map(|api_group| {
                api_group
                    .recommended_resources()
                    .into_iter()
                    .find(|(resource, _)| resource.kind == kind)
                    .map(|(resource, _)| resource.api_version)
            }),
            Err(_) => None,
        };
        Ok(KindCheck::Unserved {
            replacement,
            removed_in: None,
        })
    }

    /// The config maps of `namespace`.
    #[must_use]
    pub fn config_maps(&self, namespace: &str) -> Api<k8s_openapi::api::core::v1::ConfigMap> {
        Api::namespaced(self.client.clone(), namespace)
    }

    async fn dynamic(
        &self,
        document: &Value,
        index: usize,
    ) -> Result<(Api<DynamicObject>, String), ClusterError> {
        let invalid = |reason: &str| ClusterError::Document {
            index,
            reason: reason.to_owned(),
        };
        let api_version = document["apiVersion"]
            .as_str()
            .ok_or_else(|| invalid("no apiVersion"))?;
        let kind = document["kind"]
            .as_str()
            .ok_or_else(|| invalid("no kind"))?;
        let name = document["metadata"]["name"]
            .as_str()
            .ok_or_else(|| invalid("no metadata.name"))?;
        let (group, version) = group_version(api_version);
        let gvk = GroupVersionKind::gvk(&group, &version, kind);
        let (resource, capabilities) =
            discovery::pinned_kind(&self.client, &gvk)
                .await
                .map_err(api_error(
                    &self.server,
                    format!("finding the kind {kind} ({api_version})"),
                ))?;
        let api = if capabilities.scope == Scope::Namespaced {
            let namespace = document["metadata"]["namespace"]
                .as_str()
                .unwrap_or(&self.default_namespace);
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            Api::all_with(self.client.clone(), &resource)
        };
        Ok((api, name.to_owned()))
    }

    /// Server-side apply one document (field manager `sgr`, conflicts forced).
    ///
    /// # Errors
    /// An unknown kind or a refusal.
    pub async fn apply(&self, document: &Value, index: usize) -> Result<Value, ClusterError> {
        let (api, name) = self.dynamic(document, index).await?;
        let kind = document["kind"].as_str().unwrap_or_default();
        let applied = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(document),
            )
            .await
            .map_err(api_error(&self.server, format!("applying {kind} {name}")))?;
        serde_json::to_value(applied).map_err(|error| ClusterError::Api {
            action: format!("reading {kind} {name}"),
            message: error.to_string(),
        })
    }

    /// Delete one document's object with background propagation; false when it was not there.
    ///
    /// # Errors
    /// A refusal other than "not found".
    pub async fn delete(&self, document: &Value, index: usize) -> Result<bool, ClusterError> {
        let (api, name) = self.dynamic(document, index).await?;
        let kind = document["kind"].as_str().unwrap_or_default();
        match api.delete(&name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(error) => Err(api_error(&self.server, format!("deleting {kind} {name}"))(
                error,
            )),
        }
    }

    /// Follow Job `job` in `namespace` to its end: pod phases, then each
    /// pod's logs (a replacement pod after a restart too).
    ///
    /// # Errors
    /// The API fails.
    #[allow(clippy::too_many_lines)]
    pub async fn follow_job(
        &self,
        namespace: &str,
        job: &str,
        on_progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Outcome, ClusterError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), namespace);
        let selector = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
        let mut seen_phase: BTreeMap<String, (String, Option<String>)> = BTreeMap::new();
        let mut followed: Vec<String> = Vec::new();
        let mut last = Outcome {
            succeeded: false,
            exit_code: None,
            pod: None,
        };
        loop {
            let listed = pods.list(&selector).await.map_err(api_error(
                &self.server,
                format!("listing the pods of job {job}"),
            ))?;
            let mut candidates: Vec<Pod> = listed.items;
            candidates.sort_by(|left, right| {
                left.metadata
                    .creation_timestamp
                    .cmp(&right.metadata.creation_timestamp)
                    .then(left.metadata.name.cmp(&right.metadata.name))
            });
            for pod in &candidates {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let (phase, reason) = phase_of(pod);
                if seen_phase.get(&name) != Some(&(phase.clone(), reason.clone())) {
                    seen_phase.insert(name.clone(), (phase.clone(), reason.clone()));
                    on_progress(Progress::Phase {
                        pod: name,
                        phase,
                        reason,
                    });
                }
            }
            let next = candidates.iter().find(|pod| {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let (phase, _) = phase_of(pod);
                !followed.contains(&name)
                    && matches!(phase.as_str(), "Running" | "Succeeded" | "Failed")
            });
            if let Some(pod) = next {
                let name = pod.metadata.name.clone().unwrap_or_default();
                followed.push(name.clone());
                let containers: Vec<String> = pod
                    .spec
                    .as_ref()
                    .map(|spec| {
                        spec.containers
                            .iter()
                            .map(|container| container.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let followers = containers.iter().map(|container| {
                    follow_container(&pods, &self.server, &name, container, on_progress)
                });
                for result in futures_util::future::join_all(followers).await {
                    result?;
                }
                let finished = pods
                    .get(&name)
                    .await
                    .map_err(api_error(&self.server, format!("reading pod {name}")))?;
                let (phase, reason) = phase_of(&finished);
                if seen_phase.get(&name) != Some(&(phase.clone(), reason.clone())) {
                    seen_phase.insert(name.clone(), (phase.clone(), reason.clone()));
                    on_progress(Progress::Phase {
                        pod: name.clone(),
                        phase,
                        reason,
                    });
                }
                last = Outcome {
                    succeeded: false,
                    exit_code: exit_code(&finished),
                    pod: Some(name),
                };
            }
            let current = jobs
                .get(job)
                .await
                .map_err(api_error(&self.server, format!("reading job {job}")))?;
            let conditions = current
                .status
                .as_ref()
                .and_then(|status| status.conditions.clone())
                .unwrap_or_default();
            let done = |kind: &str| {
                conditions
                    .iter()
                    .any(|condition| condition.type_ == kind && condition.status == "True")
            };
            let complete = done("Complete") || done("SuccessCriteriaMet");
            if complete || done("Failed") || done("FailureTarget") {
                // Pods that ran and ended between two looks are still followed.
                let listed = pods.list(&selector).await.map_err(api_error(
                    &self.server,
                    format!("listing the pods of job {job}"),
                ))?;
                let unfollowed = listed.items.iter().any(|pod| {
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    !followed.contains(&name) && phase_of(pod).0 != "Pending"
                });
                if !unfollowed {
                    last.succeeded = complete;
                    return Ok(last);
                }
                continue;
            }
            if next.is_none() {
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

/// The phase and, for Pending or Failed, why.
fn phase_of(pod: &Pod) -> (String, Option<String>) {
    let status = pod.status.clone().unwrap_or_default();
    let phase = status.phase.clone().unwrap_or_else(|| "Pending".to_owned());
    let reason = match phase.as_str() {
        "Pending" => status
            .conditions
            .unwrap_or_default()
            .iter()
            .find(|condition| condition.type_ == "PodScheduled" && condition.status == "False")
            .map(|condition| match (&condition.reason, &condition.message) {
                (Some(reason), Some(message)) => format!("{reason}: {message}"),
                (Some(reason), None) => reason.clone(),
                (None, message) => message.clone().unwrap_or_default(),
            })
            .or_else(|| {
                status
                    .container_statuses
                    .unwrap_or_default()
                    .iter()
                    .find_map(|container| {
                        container.state.as_ref()?.waiting.as_ref()?.reason.clone()
                    })
            }),
        "Failed" => exit_code(pod).map(|code| format!("exit code {code}")),
        _ => None,
    };
    (phase, reason)
}

/// The first container's exit code, when it terminated.
fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find_map(|container| Some(container.state.as_ref()?.terminated.as_ref()?.exit_code))
}

fn terminated(pod: &Pod, container: &str) -> bool {
    let phase = pod
        .status
        .as_ref()
        .and_then(|status| status.phase.clone())
        .unwrap_or_default();
    if matches!(phase.as_str(), "Succeeded" | "Failed") {
        return true;
    }
    pod.status
        .as_ref()
        .and_then(|status| status.container_statuses.as_ref())
        .is_some_and(|statuses| {
            statuses.iter().any(|status| {
                status.name == container
                    && status
                        .state
                        .as_ref()
                        .is_some_and(|state| state.terminated.is_some())
            })
        })
}

/// The most of one log line held at once: longer lines (carriage-return
/// progress bars written without a terminal) go out in pieces of this size,
/// so memory stays flat whatever the build prints.
pub const MAX_PIECE: usize = 1024 * 1024;
/// The longest timestamp prefix accepted (RFC 3339 with nanoseconds is 30).
const MAX_STAMP: usize = 64;
/// Trailing carriage returns held back from a piece, so that a line's final
/// `\r` is still trimmed when it falls on a piece boundary.
const HELD_CARRIAGE_RETURNS: usize = 8;

/// Where a log follower is: the last line printed, by timestamp, how many
/// printed lines carry exactly that timestamp, and how much of the last line
/// went out when it has not ended yet (a long line split into pieces).
#[derive(Default)]
struct Position {
    last: Option<jiff::Timestamp>,
    at_last: usize,
    /// Bytes of the last admitted line already printed, while it is unfinished.
    partial: Option<usize>,
}

/// What to do with a line read from a (resumed) stream.
#[derive(Debug, PartialEq, Eq)]
enum Admit {
    /// Print it.
    New,
    /// Printed before.
    Seen,
    /// The unfinished last line: print it from this byte on.
    Resume(usize),
}

impl Position {
    /// Whether a line with `timestamp` is new; counts it when it is.
    fn admit(&mut self, timestamp: jiff::Timestamp, skip_at_last: &mut usize) -> Admit {
        match self.last {
            Some(last) if timestamp < last => Admit::Seen,
            Some(last) if timestamp == last => {
                if *skip_at_last > 0 {
                    *skip_at_last -= 1;
                    match self.partial {
                        Some(printed) if *skip_at_last == 0 => Admit::Resume(printed),
                        _ => Admit::Seen,
                    }
                } else {
                    self.at_last += 1;
                    self.partial = Some(0);
                    Admit::New
                }
            }
            _ => {
                self.last = Some(timestamp);
                self.at_last = 1;
                self.partial = Some(0);
                *skip_at_last = 0;
                Admit::New
            }
        }
    }

    /// `sinceTime` for a resumed stream: the last second, rounded down
    /// (kube rounds to the nearest second, which could skip lines).
    fn since(&self) -> Option<jiff::Timestamp> {
        self.last
            .and_then(|last| jiff::Timestamp::from_second(last.as_second()).ok())
    }
}

/// One piece of a log line, at most [`MAX_PIECE`] bytes.
#[derive(Debug, PartialEq, Eq)]
struct Piece {
    text: String,
    /// The line goes on in the next piece.
    partial: bool,
    /// An earlier piece of this line went out already.
    continued: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum LineState {
    /// Reading the timestamp prefix.
    Stamp,
    /// Printing, after skipping this many bytes printed before a resume.
    Emit { skip: usize },
    /// Printed before, or not a log line.
    Drop,
}

/// Splits `timestamps=true` log streams into bounded pieces of lines and
/// decides, with [`Position`], which were printed before a resume.
struct LogLines {
    position: Position,
    max_piece: usize,
    skip_at_last: usize,
    state: LineState,
    stamp: Vec<u8>,
    piece: Vec<u8>,
    continued: bool,
}

impl LogLines {
    fn new(max_piece: usize) -> Self {
        Self {
            position: Position::default(),
            max_piece: max_piece.max(8),
            skip_at_last: 0,
            state: LineState::Stamp,
            stamp: Vec::new(),
            piece: Vec::new(),
            continued: false,
        }
    }

    /// A new stream starts at the last printed line's second: forget the cut
    /// line's unprinted bytes (they come again) and skip what was printed.
    fn restart(&mut self) {
        self.skip_at_last = self.position.at_last;
        self.state = LineState::Stamp;
        self.stamp.clear();
        self.piece = Vec::new();
        self.continued = false;
    }

    /// Whether the stream is between lines (a clean end is only there).
    fn at_line_start(&self) -> bool {
        self.state == LineState::Stamp && self.stamp.is_empty()
    }

    fn feed(&mut self, mut bytes: &[u8], out: &mut dyn FnMut(Piece)) {
        while !bytes.is_empty() {
            if let Some(end) = bytes.iter().position(|byte| *byte == b'\n') {
                self.segment(&bytes[..end], out);
                self.end_line(out);
                bytes = &bytes[end + 1..];
            } else {
                self.segment(bytes, out);
                bytes = &[];
            }
        }
    }

    fn start_line(&mut self) {
        let timestamp = std::str::from_utf8(&self.stamp)
            .ok()
            .and_then(|stamp| stamp.parse::<jiff::Timestamp>().ok());
        self.stamp.clear();
        self.continued = false;
        self.state = match timestamp {
            None => LineState::Drop,
            Some(timestamp) => match self.position.admit(timestamp, &mut self.skip_at_last) {
                Admit::New => LineState::Emit { skip: 0 },
                Admit::Seen => LineState::Drop,
                Admit::Resume(printed) => {
                    self.continued = printed > 0;
                    LineState::Emit { skip: printed }
                }
            },
        };
    }

    fn segment(&mut self, mut data: &[u8], out: &mut dyn FnMut(Piece)) {
        if self.state == LineState::Stamp {
            if let Some(space) = data.iter().position(|byte| *byte == b' ') {
                if self.stamp.len() + space > MAX_STAMP {
                    self.state = LineState::Drop;
                    return;
                }
                self.stamp.extend_from_slice(&data[..space]);
                data = &data[space + 1..];
                self.start_line();
            } else {
                if self.stamp.len() + data.len() > MAX_STAMP {
                    self.state = LineState::Drop;
                } else {
                    self.stamp.extend_from_slice(data);
                }
                return;
            }
        }
        let LineState::Emit { skip } = &mut self.state else {
            return;
        };
        let skipped = (*skip).min(data.len());
        *skip -= skipped;
        data = &data[skipped..];
        while !data.is_empty() {
            let room = self.max_piece.saturating_sub(self.piece.len()).max(1);
            let take = room.min(data.len());
            self.piece.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.piece.len() >= self.max_piece {
                self.flush_partial(out);
            }
        }
    }

    /// Send what is held of an unfinished line, keeping back an incomplete
    /// UTF-8 character and a few trailing carriage returns.
    fn flush_partial(&mut self, out: &mut dyn FnMut(Piece)) {
        let mut cut = match std::str::from_utf8(&self.piece) {
            Err(error) if error.error_len().is_none() => error.valid_up_to(),
            _ => self.piece.len(),
        };
        let carriage_returns = self.piece[..cut]
            .iter()
            .rev()
            .take_while(|byte| **byte == b'\r')
            .count();
        if carriage_returns <= HELD_CARRIAGE_RETURNS {
            cut -= carriage_returns;
        }
        if cut == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&self.piece[..cut]).into_owned();
        self.piece.drain(..cut);
        out(Piece {
            text,
            partial: true,
            continued: self.continued,
        });
        self.continued = true;
        if let Some(printed) = &mut self.position.partial {
            *printed += cut;
        }
    }

    fn end_line(&mut self, out: &mut dyn FnMut(Piece)) {
        if self.state == LineState::Stamp {
            // A line that is only a timestamp: an empty log line.
            self.start_line();
        }
        if matches!(self.state, LineState::Emit { .. }) {
            let end = self.piece.len()
                - self
                    .piece
                    .iter()
                    .rev()
                    .take_while(|byte| **byte == b'\r')
                    .count();
            out(Piece {
                text: String::from_utf8_lossy(&self.piece[..end]).into_owned(),
                partial: false,
                continued: self.continued,
            });
            self.position.partial = None;
        }
        self.state = LineState::Stamp;
        self.stamp.clear();
        self.piece.clear();
        if self.piece.capacity() > self.max_piece {
            self.piece = Vec::new();
        }
        self.continued = false;
    }
}

/// Follow one container's log until the container ended and everything is printed.
async fn follow_container(
    pods: &Api<Pod>,
    server: &str,
    pod: &str,
    container: &str,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), ClusterError> {
    let mut lines = LogLines::new(MAX_PIECE);
    let mut failures = 0;
    let mut emit = |piece: Piece| {
        on_progress(Progress::Log {
            pod: pod.to_owned(),
            container: container.to_owned(),
            line: piece.text,
            partial: piece.partial,
            continued: piece.continued,
        });
    };
    loop {
        let ended = pods
            .get(pod)
            .await
            .map_or(true, |current| terminated(&current, container));
        let params = LogParams {
            container: Some(container.to_owned()),
            follow: !ended,
            timestamps: true,
            since_time: lines.position.since(),
            ..LogParams::default()
        };
        lines.restart();
        let stream = match pods.log_stream(pod, &params).await {
            Ok(stream) => stream,
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => {
                // 400 while the container starts; anything else is retried a while.
                failures += 1;
                if ended && failures > 20 {
                    return Err(api_error(
                        server,
                        format!("reading the log of {pod}/{container}"),
                    )(error));
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        failures = 0;
        let mut reader = std::pin::pin!(stream);
        let clean = loop {
            let Ok(buffer) = reader.fill_buf().await else {
                break false;
            };
            if buffer.is_empty() {
                // A line cut by a dropped connection is read again after resuming.
                break lines.at_line_start();
            }
            let length = buffer.len();
            lines.feed(buffer, &mut emit);
            reader.as_mut().consume(length);
        };
        // Done when a stream of a finished container ended at a line boundary;
        // otherwise (cut, rotated, still running) resume from the last line.
        if ended && clean {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> jiff::Timestamp {
        text.parse()
            .unwrap_or_else(|error| panic!("{text}: {error}"))
    }

    #[test]
    fn resumed_streams_print_each_line_once() {
        let mut position = Position::default();
        let mut skip = 0;
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.5Z"), &mut skip),
            Admit::New
        );
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip),
            Admit::New
        );
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip),
            Admit::New
        );
        position.partial = None;
        // Resume: the stream starts again at 10:00:00.
        assert_eq!(position.since(), Some(at("2026-11-28T10:00:00Z")));
        let mut skip = position.at_last;
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.5Z"), &mut skip),
            Admit::Seen
        );
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip),
            Admit::Seen
        );
        assert_eq!(
            position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip),
            Admit::Seen
        );
        assert_eq!(
            position.admit(at("2026-11-28T10:00:01.2Z"), &mut skip),
            Admit::New
        );
    }

    /// Feed `streams` (each resumed after the previous one was cut) and
    /// join the pieces into lines.
    fn follow(max_piece: usize, streams: &[&[u8]]) -> (Vec<String>, usize) {
        let mut lines = LogLines::new(max_piece);
        let mut joined = vec![String::new()];
        let mut largest = 0;
        for stream in streams {
            lines.restart();
            // Feed in uneven chunks, as a network delivers them.
            for chunk in stream.chunks(7) {
                lines.feed(chunk, &mut |piece: Piece| {
                    largest = largest.max(piece.text.len());
                    if let Some(current) = joined.last_mut() {
                        assert_eq!(piece.continued, !current.is_empty(), "{current:?}");
                        current.push_str(&piece.text);
                    }
                    if !piece.partial {
                        joined.push(String::new());
                    }
                });
            }
        }
        joined.pop();
        (joined, largest)
    }

    #[test]
    fn long_lines_go_out_in_bounded_pieces() {
        let long = "progress 10%\r".repeat(50);
        let stream = format!(
            "2026-11-28T10:00:00.1Z short\r\n2026-11-28T10:00:00.2Z {long}end\r\n2026-11-28T10:00:00.3Z é€😀 tail\n"
        );
        let (lines, largest) = follow(16, &[stream.as_bytes()]);
        assert_eq!(
            lines,
            vec![
                "short".to_owned(),
                format!("{long}end"),
                "é€😀 tail".to_owned()
            ]
        );
        assert!(largest <= 16, "a piece of {largest} bytes");
    }

    #[test]
    fn a_long_line_cut_mid_piece_resumes_without_repeating_or_losing() {
        let long: String = (b'a'..=b'z').cycle().take(400).map(char::from).collect();
        let full = format!(
            "2026-11-28T10:00:00.1Z first\n2026-11-28T10:00:00.9Z {long}\n2026-11-28T10:00:01.5Z last\n"
        );
        // Cut at many places inside the long line, then twice.
        for cut in [30, 45, 100, 123, 250, 300, full.len() - 20] {
            let first = &full.as_bytes()[..cut];
            let (lines, _) = follow(
                32,
                &[
                    first,
                    &full.as_bytes()[..(cut + 40).min(full.len())],
                    full.as_bytes(),
                ],
            );
            assert_eq!(
                lines,
                vec!["first".to_owned(), long.clone(), "last".to_owned()],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_bare_timestamp_is_an_empty_line_and_garbage_is_dropped() {
        let stream = b"2026-11-28T10:00:00.1Z\nnot a timestamp at all\n2026-11-28T10:00:00.2Z x\n";
        let (lines, _) = follow(1024, &[stream]);
        assert_eq!(lines, vec![String::new(), "x".to_owned()]);
    }

    #[test]
    fn since_rounds_down_not_to_nearest() {
        let position = Position {
            last: Some(at("2026-11-28T10:00:00.9Z")),
            at_last: 1,
            partial: None,
        };
        assert_eq!(position.since(), Some(at("2026-11-28T10:00:00Z")));
    }
}
