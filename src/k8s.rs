//! Kubernetes through kube-rs: apply manifests with server-side apply
//! (kinds resolved by discovery), create the token Secret owned by the Job,
//! follow a Job's pods and their logs until it ends, delete what a manifest
//! made. Log following survives dropped connections and log rotation: it
//! resumes from the last printed line's second (`sinceTime`) and drops the
//! lines it already printed, by their timestamps.

use std::collections::BTreeMap;
use std::time::Duration;

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
    /// One line of a container's log.
    Log {
        /// The pod.
        pod: String,
        /// The container.
        container: String,
        /// The text.
        line: String,
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

/// Where a log follower is: the last line printed, by timestamp, and how
/// many printed lines carry exactly that timestamp.
#[derive(Default)]
struct Position {
    last: Option<jiff::Timestamp>,
    at_last: usize,
}

impl Position {
    /// Whether a line with `timestamp` is new; counts it when it is.
    fn admit(&mut self, timestamp: jiff::Timestamp, skip_at_last: &mut usize) -> bool {
        match self.last {
            Some(last) if timestamp < last => false,
            Some(last) if timestamp == last => {
                if *skip_at_last > 0 {
                    *skip_at_last -= 1;
                    false
                } else {
                    self.at_last += 1;
                    true
                }
            }
            _ => {
                self.last = Some(timestamp);
                self.at_last = 1;
                *skip_at_last = 0;
                true
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

/// Follow one container's log until the container ended and everything is printed.
async fn follow_container(
    pods: &Api<Pod>,
    server: &str,
    pod: &str,
    container: &str,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), ClusterError> {
    let mut position = Position::default();
    let mut line = Vec::with_capacity(256);
    let mut failures = 0;
    loop {
        let ended = pods
            .get(pod)
            .await
            .map_or(true, |current| terminated(&current, container));
        let params = LogParams {
            container: Some(container.to_owned()),
            follow: !ended,
            timestamps: true,
            since_time: position.since(),
            ..LogParams::default()
        };
        let mut skip_at_last = position.at_last;
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
        let mut clean = false;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line).await {
                Ok(0) => {
                    clean = true;
                    break;
                }
                Err(_) => break,
                Ok(_) => {}
            }
            // A line cut by a dropped connection is read again after resuming.
            if line.last() != Some(&b'\n') {
                break;
            }
            let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            let (stamp, rest) = text.split_once(' ').unwrap_or((text.as_str(), ""));
            let Ok(timestamp) = stamp.parse::<jiff::Timestamp>() else {
                continue;
            };
            if position.admit(timestamp, &mut skip_at_last) {
                on_progress(Progress::Log {
                    pod: pod.to_owned(),
                    container: container.to_owned(),
                    line: rest.trim_end_matches('\r').to_owned(),
                });
            }
        }
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
        assert!(position.admit(at("2026-11-28T10:00:00.5Z"), &mut skip));
        assert!(position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip));
        assert!(position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip));
        // Resume: the stream starts again at 10:00:00.
        assert_eq!(position.since(), Some(at("2026-11-28T10:00:00Z")));
        let mut skip = position.at_last;
        assert!(!position.admit(at("2026-11-28T10:00:00.5Z"), &mut skip));
        assert!(!position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip));
        assert!(!position.admit(at("2026-11-28T10:00:00.9Z"), &mut skip));
        assert!(position.admit(at("2026-11-28T10:00:01.2Z"), &mut skip));
    }

    #[test]
    fn since_rounds_down_not_to_nearest() {
        let position = Position {
            last: Some(at("2026-11-28T10:00:00.9Z")),
            at_last: 1,
        };
        assert_eq!(position.since(), Some(at("2026-11-28T10:00:00Z")));
    }
}
