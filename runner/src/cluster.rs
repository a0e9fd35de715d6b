//! The runner on Kubernetes (`--kubernetes`): it watches the config maps of
//! its namespace and takes its state from the global map
//! `studioml-go-runner` and the map named after its node (`--node-name`,
//! default `$HOSTNAME`), the node's keys winning; and it reports its state
//! and running experiments under its own key (`--pod-name`, else the node
//! name) of the status map
//! `studioml-go-runner-status` (server-side apply, a field manager per
//! runner, so runners never overwrite each other).
//!
//! The watch is kube-rs's watcher: it relists after 410 Gone and retries with
//! backoff when the API server is unreachable; the runner keeps the last
//! good state meanwhile. A map deleted no longer counts (the original
//! re-applied a deleted map's STATE).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt as _, watcher};

use runner_protocol::{REPORT_EVERY, node_map};

use crate::log;
use crate::state::{self, Control};

/// How often the status writer looks for a change.
const REPORT_POLL: Duration = Duration::from_millis(250);

/// Where the runner is.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The namespace (`K8S_NAMESPACE`, else the service account's or the
    /// kubeconfig's).
    pub namespace: Option<String>,
    /// The node's name (its map is [`node_map`] of it).
    pub node: String,
    /// This runner's key in the status map (the pod's name, else the node's).
    pub reporter: String,
}

/// Start following the cluster on a thread of its own (on the process's
/// runtime). Failures are logged and retried; they never stop the runner.
pub fn follow(placement: Placement, control: Arc<Control>) {
    std::thread::spawn(move || {
        if let Err(error) = crate::runtime::block_on(run(placement, control)) {
            log::error(&format!(
                "cannot start the Kubernetes follower: {}",
                crate::error_text(&error)
            ));
        }
    });
}

async fn connect(placement: &Placement) -> Result<(kube::Client, String), String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = kube::Config::infer()
        .await
        .map_err(|error| crate::error_text(&error))?;
    let namespace = placement
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = kube::Client::try_from(config).map_err(|error| crate::error_text(&error))?;
    Ok((client, namespace))
}

async fn run(placement: Placement, control: Arc<Control>) {
    let mut delay = Duration::from_secs(1);
    let (client, namespace) = loop {
        match connect(&placement).await {
            Ok(connected) => break connected,
            Err(error) => {
                log::warn(&format!(
                    "no Kubernetes API ({error}): retrying in {}s; the state stays {}",
                    delay.as_secs(),
                    control.state()
                ));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    };
    log::info(&format!(
        "following ConfigMaps {}/{} and {namespace}/{}",
        namespace,
        state::GLOBAL_MAP,
        node_map(&placement.node)
    ));
    let maps: Api<ConfigMap> = Api::namespaced(client, &namespace);
    tokio::join!(
        watch(&maps, &namespace, &placement.node, &control),
        report(&maps, &namespace, &placement.reporter, &control)
    );
}

/// Follow the two maps; apply their merge whenever either changes.
async fn watch(maps: &Api<ConfigMap>, namespace: &str, node: &str, control: &Control) {
    let node = node_map(node);
    let names = [state::GLOBAL_MAP, node];
    let mut current: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut listing: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut failing = false;
    let mut events = watcher(maps.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(event) => {
                if failing {
                    log::info("the ConfigMap watch is back");
                    failing = false;
                }
                let name_of = |map: &ConfigMap| map.metadata.name.clone().unwrap_or_default();
                match event {
                    watcher::Event::Init => {
                        listing.clear();
                        false
                    }
                    watcher::Event::InitApply(map) => {
                        let name = name_of(&map);
                        if names.contains(&name.as_str()) {
                            listing.insert(name, map.data.unwrap_or_default());
                        }
                        false
                    }
                    watcher::Event::InitDone => {
                        let changed = listing != current;
                        current = std::mem::take(&mut listing);
                        changed
                    }
                    watcher::Event::Apply(map) => {
                        let name = name_of(&map);
                        if names.contains(&name.as_str()) {
                            let data = map.data.unwrap_or_default();
                            current.insert(name, data.clone()) != Some(data)
                        } else {
                            false
                        }
                    }
                    watcher::Event::Delete(map) => current.remove(&name_of(&map)).is_some(),
                }
            }
            Err(error) => {
                if !failing {
                    log::warn(&format!(
                        "the ConfigMap watch failed ({}): retrying; the state stays {}",
                        crate::error_text(&error),
                        control.state()
                    ));
                    failing = true;
                }
                false
            }
        };
        if changed {
            let merged = state::merge(current.get(state::GLOBAL_MAP), current.get(node));
            let origin = match (
                current.contains_key(state::GLOBAL_MAP),
                current.contains_key(node),
            ) {
                (true, true) => format!(
                    "ConfigMaps {namespace}/{} and {namespace}/{node}",
                    state::GLOBAL_MAP
                ),
                (true, false) => format!("ConfigMap {namespace}/{}", state::GLOBAL_MAP),
                (false, true) => format!("ConfigMap {namespace}/{node}"),
                (false, false) => "no ConfigMap".to_owned(),
            };
            for note in control.apply(&merged, &origin) {
                log::info(&note);
            }
        }
    }
}

/// Write this runner's report into the status map when it changes, and
/// every [`REPORT_EVERY`] so a stale entry shows a dead runner.
async fn report(maps: &Api<ConfigMap>, namespace: &str, reporter: &str, control: &Control) {
    let params = PatchParams::apply(&format!("runner-{reporter}")).force();
    let mut written: Option<u64> = None;
    let mut at = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let version = control.version();
        if written != Some(version) || at.elapsed() >= REPORT_EVERY {
            let report = serde_json::to_string(&control.report()).unwrap_or_default();
            let patch = serde_json::json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": state::STATUS_MAP},
                "data": {reporter: report},
            });
            match maps
                .patch(state::STATUS_MAP, &params, &Patch::Apply(&patch))
                .await
            {
                Ok(_) => {
                    written = Some(version);
                    at = tokio::time::Instant::now();
                    failing = false;
                }
                Err(error) => {
                    if !failing {
                        log::warn(&format!(
                            "cannot report to ConfigMap {namespace}/{}: {}",
                            state::STATUS_MAP,
                            crate::error_text(&error)
                        ));
                        failing = true;
                    }
                    // Try again after a pause, not at every poll.
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        tokio::time::sleep(REPORT_POLL).await;
    }
}
