//! `sgr runner state` and `sgr runner status`: the runners' state config
//! maps, written with server-side apply (field manager `sgr`), and the
//! status map the runners report to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use runner_protocol::{GLOBAL_MAP, Report, STATE_KEY, STATUS_MAP, State, node_map};
use serde::Serialize;
use thiserror::Error;

use crate::cli::GlobalArgs;
use crate::cli::runner::{RunnerArgs, RunnerCommand};
use crate::error::{ExitStatus, Failure};
use crate::k8s::{Cluster, ClusterError, FIELD_MANAGER};
use crate::output::{Printer, table};

/// `sgr runner` failures.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// No cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// The API server refused or failed.
    #[error("{action} failed: {message}")]
    Api {
        /// What was done (names the map).
        action: String,
        /// The answer.
        message: String,
    },
    /// A name that cannot be a config map.
    #[error(
        "--node '{0}' is not a valid config map name (lower-case letters, digits, '-' and '.')"
    )]
    Name(String),
}

impl From<RunnerError> for Failure {
    fn from(error: RunnerError) -> Self {
        let (status, hint) = match &error {
            RunnerError::Cluster(ClusterError::Config(_) | ClusterError::Unreachable { .. }) => {
                (ExitStatus::Usage, Some(crate::k8s::CLUSTER_HINT.to_owned()))
            }
            RunnerError::Name(_) => (ExitStatus::Usage, None),
            _ => (
                ExitStatus::Failed,
                Some(
                    "check --namespace and that your account may get and patch config maps there"
                        .to_owned(),
                ),
            ),
        };
        Self::new(error, status, hint)
    }
}

/// One line of `sgr runner status`: a runner's [`Report`], or what is shown
/// for a value that is not one.
#[derive(Debug, Serialize)]
struct Row {
    runner: String,
    state: String,
    since: String,
    running: BTreeMap<String, String>,
    updated: String,
    stale: bool,
}

impl Row {
    fn new(runner: String, text: &str, now: jiff::Timestamp) -> Self {
        match serde_json::from_str::<Report>(text) {
            Ok(report) => Self {
                runner,
                stale: report.is_stale(now),
                state: report.state.to_string(),
                since: report.since,
                running: report.running,
                updated: report.updated,
            },
            Err(_) => Self {
                runner,
                state: "(unreadable report)".to_owned(),
                since: String::new(),
                running: BTreeMap::new(),
                updated: String::new(),
                stale: true,
            },
        }
    }
}

/// Run `sgr runner`.
///
/// # Errors
/// 2 without a cluster or with a bad name; 1 when the API server refuses.
pub fn run(
    args: &RunnerArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    runtime
        .block_on(async {
            match &args.command {
                RunnerCommand::State { state, node, clear } => {
                    set_state(args, global, printer, *state, node.as_deref(), *clear).await
                }
                RunnerCommand::Status => status(args, printer).await,
            }
        })
        .map_err(Failure::from)
}

fn api_error(server: &str, action: String) -> impl FnOnce(kube::Error) -> RunnerError {
    let server = server.to_owned();
    move |error| match error {
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            RunnerError::Cluster(ClusterError::Unreachable {
                server,
                action,
                message: crate::error::chain(&error),
            })
        }
        other => RunnerError::Api {
            action,
            message: crate::error::chain(&other),
        },
    }
}

async fn connect(args: &RunnerArgs) -> Result<(Api<ConfigMap>, String, String), RunnerError> {
    let cluster = Cluster::connect(args.context.as_deref()).await?;
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| cluster.default_namespace.clone());
    Ok((
        cluster.config_maps(&namespace),
        namespace,
        cluster.server().to_owned(),
    ))
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(|character| {
            character.is_ascii_lowercase()
                || character.is_ascii_digit()
                || matches!(character, '-' | '.')
        })
        && name.starts_with(|character: char| character.is_ascii_alphanumeric())
        && name.ends_with(|character: char| character.is_ascii_alphanumeric())
}

async fn set_state(
    args: &RunnerArgs,
    global: &GlobalArgs,
    printer: &Printer,
    state: Option<State>,
    node: Option<&str>,
    clear: bool,
) -> Result<(), RunnerError> {
    if let Some(node) = node.filter(|node| !valid_name(node)) {
        return Err(RunnerError::Name(node.to_owned()));
    }
    let map = node.map_or(GLOBAL_MAP, node_map);
    let value = state.map(State::name);
    if global.dry_run {
        let namespace = args.namespace.as_deref().unwrap_or("<context namespace>");
        let change = value.map_or_else(
            || "remove STATE".to_owned(),
            |value| format!("STATE={value}"),
        );
        printer
            .result(
                &format!("would set {namespace}/{map}: {change}"),
                &serde_json::json!({"namespace": namespace, "map": map, "state": value, "dry_run": true}),
            )
            .map_err(|error| RunnerError::Api {
                action: "writing the result".to_owned(),
                message: error.to_string(),
            })?;
        return Ok(());
    }
    let (maps, namespace, server) = connect(args).await?;
    let previous = maps
        .get_opt(map)
        .await
        .map_err(api_error(
            &server,
            format!("reading config map {namespace}/{map}"),
        ))?
        .and_then(|existing| existing.data)
        .and_then(|data| data.get(STATE_KEY).cloned());
    // sgr owns STATE (and only STATE) in the map; applying without it
    // (--clear) removes it. Forced: the operator's word wins over whoever
    // set it before.
    let data = value.map_or_else(
        || serde_json::json!({}),
        |value| serde_json::json!({STATE_KEY: value}),
    );
    let patch = serde_json::json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": map, "namespace": namespace},
        "data": data,
    });
    if clear {
        // Server-side apply only drops fields this manager owned: remove
        // the key with a JSON merge patch instead, so it goes whoever set it.
        if previous.is_some() {
            maps.patch(
                map,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"data": {STATE_KEY: null}})),
            )
            .await
            .map_err(api_error(
                &server,
                format!("removing STATE from config map {namespace}/{map}"),
            ))?;
        }
    } else {
        maps.patch(
            map,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&patch),
        )
        .await
        .map_err(api_error(
            &server,
            format!("setting STATE in config map {namespace}/{map}"),
        ))?;
    }
    let human = match (value, &previous) {
        (Some(value), Some(previous)) if previous == value => {
            format!("{namespace}/{map}: STATE is already {value}")
        }
        (Some(value), Some(previous)) => format!("{namespace}/{map}: STATE {previous} -> {value}"),
        (Some(value), None) => format!("{namespace}/{map}: STATE {value}"),
        (None, Some(previous)) => {
            format!("{namespace}/{map}: STATE {previous} removed; the global state applies")
        }
        (None, None) => format!("{namespace}/{map}: no STATE to remove"),
    };
    printer
        .result(
            &human,
            &serde_json::json!({"namespace": namespace, "map": map, "state": value, "previous": previous}),
        )
        .map_err(|error| RunnerError::Api {
            action: "writing the result".to_owned(),
            message: error.to_string(),
        })
}

async fn status(args: &RunnerArgs, printer: &Printer) -> Result<(), RunnerError> {
    let (maps, namespace, server) = connect(args).await?;
    let global_state = maps
        .get_opt(GLOBAL_MAP)
        .await
        .map_err(api_error(
            &server,
            format!("reading config map {namespace}/{GLOBAL_MAP}"),
        ))?
        .and_then(|map| map.data)
        .and_then(|data| data.get(STATE_KEY).cloned());
    let reports = maps
        .get_opt(STATUS_MAP)
        .await
        .map_err(api_error(
            &server,
            format!("reading config map {namespace}/{STATUS_MAP}"),
        ))?
        .and_then(|map| map.data)
        .unwrap_or_default();
    let now = jiff::Timestamp::now();
    let rows: Vec<Row> = reports
        .into_iter()
        .map(|(runner, text)| Row::new(runner, &text, now))
        .collect();
    let mut lines = vec![format!(
        "{namespace}/{GLOBAL_MAP}: STATE {}",
        global_state.as_deref().unwrap_or("(not set: Running)")
    )];
    if rows.is_empty() {
        lines.push(format!(
            "no runner has reported to {namespace}/{STATUS_MAP}"
        ));
    } else {
        let mut cells = vec![vec![
            "RUNNER".to_owned(),
            "STATE".to_owned(),
            "SINCE".to_owned(),
            "RUNNING".to_owned(),
            "UPDATED".to_owned(),
        ]];
        for row in &rows {
            cells.push(vec![
                row.runner.clone(),
                row.state.clone(),
                row.since.clone(),
                if row.running.is_empty() {
                    "-".to_owned()
                } else {
                    row.running.keys().cloned().collect::<Vec<_>>().join(",")
                },
                if row.stale {
                    format!("{} (stale)", row.updated)
                } else {
                    row.updated.clone()
                },
            ]);
        }
        lines.push(table(&cells));
    }
    printer
        .result(
            &lines.join("\n"),
            &serde_json::json!({"namespace": namespace, "global_state": global_state, "runners": rows}),
        )
        .map_err(|error| RunnerError::Api {
            action: "writing the result".to_owned(),
            message: error.to_string(),
        })
}
