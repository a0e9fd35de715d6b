//! The scripted job controller: each Job becomes pods that go Pending →
//! Running → Succeeded/Failed, writing their scripted log lines.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use super::store::{civil, store};
use super::{ContainerLog, LogLine, PodScript, State, WatchEvent, lock};

/// The scripted job controller.
#[allow(clippy::too_many_lines)]
pub(super) async fn run_job(
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

pub(super) fn pod_exists(state: &Mutex<State>, namespace: &str, name: &str) -> bool {
    lock(state)
        .objects
        .contains_key(&("pods".to_owned(), namespace.to_owned(), name.to_owned()))
}
