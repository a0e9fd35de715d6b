//! `sgr k8s-build`: render the manifest (or build the `--attach` Job),
//! apply it, put `GITHUB_TOKEN` in a Secret owned by the Job, follow the Job
//! and its logs, and exit with its result.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};
use thiserror::Error;

use super::template::{self, Source, TemplateCommandError};
use crate::cli::GlobalArgs;
use crate::cli::k8s_build::{K8sAction, K8sBuildArgs};
use crate::env;
use crate::error::{ExitStatus, Failure};
use crate::k8s::{Cluster, ClusterError, KindCheck, Outcome, Progress};
use crate::output::{OutputFormat, Printer};
use crate::template::settings::{ContextSettings, RenderSettings};

/// The image pull secret of the seed.
const DEFAULT_PULL_SECRET: &str = "studioml-go-docker-key";

/// `sgr k8s-build` failures.
#[derive(Debug, Error)]
pub enum K8sBuildError {
    /// The manifest template.
    #[error(transparent)]
    Template(#[from] TemplateCommandError),
    /// The rendered manifest is not YAML.
    #[error("{}: the rendered manifest is not valid YAML: {message}", .path.display())]
    Yaml {
        /// The manifest.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The manifest has no Job, or several.
    #[error("{}: {message}", .path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A bad option.
    #[error("{0}")]
    Usage(String),
    /// A file cannot be read or written.
    #[error("cannot {action} {}", .path.display())]
    File {
        /// Read or write.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cluster.
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    /// Objects whose group/version/kind the cluster does not serve; nothing was applied.
    #[error("{}: the cluster does not serve {} of the manifest's objects; nothing was applied:\n{}", .path.display(), .problems.len(), .problems.join("\n"))]
    UnservedKinds {
        /// The manifest.
        path: PathBuf,
        /// One line per object: its line, kind, name, apiVersion, replacement.
        problems: Vec<String>,
    },
    /// An error message with the token taken out.
    #[error("{0}")]
    Redacted(String),
    /// The Job failed.
    #[error("job {job} failed{}", .exit_code.map(|code| format!(" (exit code {code})")).unwrap_or_default())]
    JobFailed {
        /// The Job.
        job: String,
        /// The container's exit code.
        exit_code: Option<i32>,
    },
    /// `--timeout` expired.
    #[error("job {job} did not finish within {seconds} s")]
    TimedOut {
        /// The Job.
        job: String,
        /// The limit.
        seconds: u64,
    },
}

impl From<K8sBuildError> for Failure {
    fn from(error: K8sBuildError) -> Self {
        let (status, hint) = match &error {
            K8sBuildError::JobFailed { exit_code, .. } => (
                ExitStatus::Job(exit_code.and_then(|code| u8::try_from(code).ok()).filter(|code| *code != 0).unwrap_or(1)),
                Some("the log copy has the whole output; sgr k8s-build delete removes the resources".to_owned()),
            ),
            K8sBuildError::TimedOut { .. } => (
                ExitStatus::TimedOut,
                Some("the Job keeps running; follow it again with sgr k8s-build, or remove it with sgr k8s-build delete".to_owned()),
            ),
            K8sBuildError::Cluster(ClusterError::Config(_) | ClusterError::Unreachable { .. }) => {
                (ExitStatus::Usage, Some(crate::k8s::CLUSTER_HINT.to_owned()))
            }
            K8sBuildError::File { action: "write", .. } => (ExitStatus::Failed, None),
            _ => (ExitStatus::Usage, None),
        };
        Self::new(error, status, hint)
    }
}

/// Run `sgr k8s-build`.
///
/// # Errors
/// As documented in `--help`: 1 or the container's code, 2, 124.
pub fn run(
    args: &K8sBuildArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    run_inner(args, global, printer, runtime).map_err(|error| {
        let failure = Failure::from(error);
        let secrets = secrets_of(read_token(args).ok().flatten().as_ref(), &[]);
        let message = failure.message();
        let cleaned = redact(&message, &secrets);
        if cleaned == message {
            failure
        } else {
            Failure::new(
                K8sBuildError::Redacted(cleaned),
                failure.status,
                failure.hint,
            )
        }
    })
}

/// `90s`, `30m`, `2h`, `45`.
fn parse_duration(text: &str) -> Result<Duration, K8sBuildError> {
    let text = text.trim();
    let (number, unit) = text
        .find(|character: char| !character.is_ascii_digit())
        .map_or((text, ""), |position| text.split_at(position));
    let value: u64 = number.parse().map_err(|_| {
        K8sBuildError::Usage(format!("--timeout {text}: expected e.g. 90s, 30m, 2h"))
    })?;
    let seconds = match unit {
        "" | "s" => value,
        "m" => value * 60,
        "h" => value * 3600,
        _ => {
            return Err(K8sBuildError::Usage(format!(
                "--timeout {text}: the unit is s, m or h"
            )));
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// The one Job of the documents.
fn job_index(documents: &[Value], path: &std::path::Path) -> Result<usize, K8sBuildError> {
    let jobs: Vec<usize> = documents
        .iter()
        .enumerate()
        .filter(|(_, document)| document["kind"] == "Job")
        .map(|(index, _)| index)
        .collect();
    match jobs.as_slice() {
        [index] => Ok(*index),
        [] => Err(K8sBuildError::Manifest {
            path: path.to_path_buf(),
            message: "no Job in the manifest".to_owned(),
        }),
        _ => Err(K8sBuildError::Manifest {
            path: path.to_path_buf(),
            message: "more than one Job in the manifest".to_owned(),
        }),
    }
}

/// The Secret the Job's `GITHUB_TOKEN` env refers to: `(name, key)`.
fn token_reference(job: &Value) -> Option<(String, String)> {
    job["spec"]["template"]["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|container| container["env"].as_array().cloned().unwrap_or_default())
        .find(|entry| entry["name"] == "GITHUB_TOKEN")
        .and_then(|entry| {
            let reference = &entry["valueFrom"]["secretKeyRef"];
            Some((
                reference["name"].as_str()?.to_owned(),
                reference["key"].as_str()?.to_owned(),
            ))
        })
}

/// Apply `--gpus`, `--node-selector`, `--memory`, `--cpu`, `--image-pull-secret` to the Job.
fn customise(job: &mut Value, args: &K8sBuildArgs) -> Result<(), K8sBuildError> {
    let pod = &mut job["spec"]["template"]["spec"];
    for entry in &args.node_selector {
        let (key, value) = entry.split_once('=').ok_or_else(|| {
            K8sBuildError::Usage(format!("--node-selector {entry}: expected KEY=VALUE"))
        })?;
        pod["nodeSelector"][key] = json!(value);
    }
    if let Some(secret) = &args.image_pull_secret {
        pod["imagePullSecrets"] = json!([{"name": secret}]);
    }
    if let Some(containers) = pod["containers"].as_array_mut()
        && let Some(first) = containers.first_mut()
    {
        let resources = &mut first["resources"];
        for (flag, key, value) in [
            (
                args.gpus.is_some(),
                "nvidia.com/gpu",
                args.gpus.map(|gpus| json!(gpus)),
            ),
            (
                args.memory.is_some(),
                "memory",
                args.memory.clone().map(Value::from),
            ),
            (args.cpu.is_some(), "cpu", args.cpu.clone().map(Value::from)),
        ] {
            if let (true, Some(value)) = (flag, value) {
                resources["requests"][key] = value.clone();
                resources["limits"][key] = value;
            }
        }
    }
    Ok(())
}

/// The seed's `kubectl run --image … --requests=nvidia.com/gpu=1 --limits=nvidia.com/gpu=1 build`, as a Job.
fn attach_job(args: &K8sBuildArgs, namespace: &str, image: &str) -> Value {
    let gpus = args.gpus.unwrap_or(1);
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": args.name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "sgr"}},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/managed-by": "sgr"}},
                "spec": {
                    "restartPolicy": "Never",
                    "imagePullSecrets": [{"name": args.image_pull_secret.clone().unwrap_or_else(|| DEFAULT_PULL_SECRET.to_owned())}],
                    "containers": [{
                        "name": "build",
                        "image": image,
                        "env": [{"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {"name": format!("{}-github-token", args.name), "key": "token", "optional": true}}}],
                        "resources": {"requests": {"nvidia.com/gpu": gpus}, "limits": {"nvidia.com/gpu": gpus}}
                    }]
                }
            }
        }
    })
}

/// The token Secret, owned by the Job when its uid is known.
fn token_secret(
    namespace: &str,
    name: &str,
    key: &str,
    token: Option<&SecretString>,
    owner: Option<(&str, &str)>,
) -> Value {
    let data = token.map_or_else(
        || "***".to_owned(),
        |token| base64::engine::general_purpose::STANDARD.encode(token.expose_secret()),
    );
    let mut secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "sgr"}},
        "type": "Opaque",
        "data": {key: data}
    });
    if let Some((job, uid)) = owner {
        secret["metadata"]["ownerReferences"] = json!([{"apiVersion": "batch/v1", "kind": "Job", "name": job, "uid": uid, "blockOwnerDeletion": true}]);
    }
    secret
}

fn read_token(args: &K8sBuildArgs) -> Result<Option<SecretString>, K8sBuildError> {
    if args.no_github_token {
        return Ok(None);
    }
    if let Some(path) = &args.github_token_file {
        let text = std::fs::read_to_string(path).map_err(|source| K8sBuildError::File {
            action: "read",
            path: path.clone(),
            source,
        })?;
        return Ok(Some(SecretString::from(text.trim().to_owned())));
    }
    Ok(env::process(env::GITHUB_TOKEN)
        .filter(|token| !token.trim().is_empty())
        .map(|token| SecretString::from(token.trim().to_owned())))
}

/// The 1-based line where each YAML document of `text` starts (after a
/// `---` line), with its text.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut documents = vec![(1, String::new())];
    for (index, line) in text.lines().enumerate() {
        let bare = line.trim_end();
        if bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t") {
            documents.push((index + 2, String::new()));
            continue;
        }
        if let Some((_, current)) = documents.last_mut() {
            current.push_str(line);
            current.push('\n');
        }
    }
    documents
}

/// The line of the document's `apiVersion:` (else of its first content line).
fn object_line(start: usize, text: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .position(|line| line.starts_with("apiVersion:"))
        .or_else(|| {
            lines
                .iter()
                .position(|line| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        })
        .map_or(start, |offset| start + offset)
}

/// The rendered file's line of each object document, in order, when the
/// documents can be told apart line by line.
fn object_lines(text: &str, objects: usize) -> Vec<Option<usize>> {
    let mut lines = Vec::new();
    for (start, document) in split_documents(text) {
        match serde_saphyr::from_multiple::<Value>(&document) {
            Ok(values) => {
                let count = values.iter().filter(|value| value.is_object()).count();
                lines.extend(std::iter::repeat_n(
                    Some(object_line(start, &document)),
                    count,
                ));
            }
            Err(_) => return vec![None; objects],
        }
    }
    if lines.len() == objects {
        lines
    } else {
        vec![None; objects]
    }
}

/// Render the manifest into documents, Namespaces first, each with its
/// line in the rendered file.
fn documents(
    args: &K8sBuildArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<(Value, Option<usize>)>, K8sBuildError> {
    let mut set = args.set.clone();
    if let Some(namespace) = &args.namespace {
        set.push(format!("namespace={namespace}"));
    }
    let context_settings = ContextSettings {
        set,
        git_dir: args.git.git_dir.clone(),
        ..ContextSettings::default()
    };
    let source: Source = template::read_source(Some(&args.manifest))?;
    // The manifest's warnings (no version file, no AWS) are not the build's concern.
    let (context, _) = template::gather(&context_settings, &source, runtime)?;
    // The same decision as `sgr build` makes for a Dockerfile template:
    // duat's `stencil -input build.yaml` files are Go templates.
    let dialect = template::choose_dialect(args.dialect.forced(), None, &source, printer);
    let text = template::render_in(dialect, &source, &context, RenderSettings::default())?;
    let parsed: Vec<Value> =
        serde_saphyr::from_multiple(&text).map_err(|error| K8sBuildError::Yaml {
            path: args.manifest.clone(),
            message: error.to_string(),
        })?;
    let objects: Vec<Value> = parsed.into_iter().filter(Value::is_object).collect();
    let lines = object_lines(&text, objects.len());
    let (mut namespaces, rest): (Vec<_>, Vec<_>) = objects
        .into_iter()
        .zip(lines)
        .partition(|(document, _)| document["kind"] == "Namespace");
    namespaces.extend(rest);
    Ok(namespaces)
}

/// The strings that must never be shown: the token as given and as the
/// manifest or sgr encodes it (base64), and every value of the manifest's
/// Secrets, encoded and decoded.
fn secrets_of(token: Option<&SecretString>, documents: &[Value]) -> Vec<String> {
    let mut secrets: Vec<String> = Vec::new();
    let mut add = |text: &str| {
        let engine = &base64::engine::general_purpose::STANDARD;
        for candidate in [text.to_owned(), engine.encode(text)] {
            // Very short values would mask ordinary words.
            if candidate.len() >= 6 && !secrets.contains(&candidate) {
                secrets.push(candidate);
            }
        }
        if let Ok(decoded) = engine.decode(text)
            && let Ok(decoded) = String::from_utf8(decoded)
            && decoded.len() >= 6
            && !secrets.contains(&decoded)
        {
            secrets.push(decoded);
        }
    };
    if let Some(token) = token {
        add(token.expose_secret());
    }
    if let Some(token) = env::process(env::GITHUB_TOKEN).filter(|token| !token.trim().is_empty()) {
        add(token.trim());
        add(&token);
    }
    for document in documents
        .iter()
        .filter(|document| document["kind"] == "Secret")
    {
        for field in ["data", "stringData"] {
            if let Some(values) = document[field].as_object() {
                for value in values.values().filter_map(Value::as_str) {
                    add(value);
                }
            }
        }
    }
    // Longest first, so a base64 form is not half-masked by a shorter match.
    secrets.sort_by_key(|secret| std::cmp::Reverse(secret.len()));
    secrets
}

/// `text` with every secret replaced by `***`.
fn redact(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "***")
    })
}

/// A Secret's values masked, for showing.
fn masked(document: &Value) -> Value {
    let mut shown = document.clone();
    if shown["kind"] == "Secret" {
        for field in ["data", "stringData"] {
            if let Some(values) = shown[field].as_object_mut() {
                for value in values.values_mut() {
                    *value = json!("***");
                }
            }
        }
    }
    shown
}

/// Check every object's group/version/kind against the cluster's discovery
/// before anything is written.
async fn check_kinds(
    cluster: &Cluster,
    path: &std::path::Path,
    documents: &[Value],
    lines: &[Option<usize>],
) -> Result<(), K8sBuildError> {
    let mut problems = Vec::new();
    for (document, line) in documents.iter().zip(lines) {
        let (Some(api_version), Some(kind)) =
            (document["apiVersion"].as_str(), document["kind"].as_str())
        else {
            continue;
        };
        if let KindCheck::Unserved {
            replacement,
            removed_in,
        } = cluster.check_kind(api_version, kind).await?
        {
            let (_, name) = kind_name(document);
            let place = line.map_or_else(String::new, |line| {
                format!("line {line} of the rendered {}: ", path.display())
            });
            let why = removed_in.map_or_else(
                || "not served by this cluster".to_owned(),
                |release| format!("removed in Kubernetes {release}"),
            );
            let instead = replacement.map_or_else(
                || "; hint: check the kind and apiVersion (kubectl api-resources)".to_owned(),
                |replacement| format!("; use apiVersion: {replacement}"),
            );
            problems.push(format!(
                "  {place}{kind} {name}: apiVersion {api_version} is {why}{instead}"
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(K8sBuildError::UnservedKinds {
            path: path.to_path_buf(),
            problems,
        })
    }
}

fn kind_name(document: &Value) -> (String, String) {
    let kind = document["kind"].as_str().unwrap_or_default().to_owned();
    let name = document["metadata"]["name"].as_str().unwrap_or_default();
    let name = match document["metadata"]["namespace"].as_str() {
        Some(namespace) => format!("{namespace}/{name}"),
        None => name.to_owned(),
    };
    (kind, name)
}

/// `sgr k8s-build`: connect, read the documents, then delete them, show
/// them (`--dry-run`) or run the Job.
fn run_inner(
    args: &K8sBuildArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), K8sBuildError> {
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    if args.attach && args.action.is_some() {
        return Err(K8sBuildError::Usage(
            "--attach cannot be combined with delete".to_owned(),
        ));
    }
    let token = read_token(args)?;
    // kube's client spawns tasks: connect inside the runtime.
    let _runtime = runtime.enter();
    let cluster = connect(args, global.dry_run, runtime)?;
    let located = if args.attach {
        let namespace = args
            .namespace
            .clone()
            .or_else(|| {
                cluster
                    .as_ref()
                    .map(|cluster| cluster.default_namespace.clone())
            })
            .unwrap_or_else(|| "default".to_owned());
        vec![(
            attach_job(args, &namespace, args.image.as_deref().unwrap_or_default()),
            None,
        )]
    } else {
        documents(args, printer, runtime)?
    };
    let (documents, lines): (Vec<Value>, Vec<Option<usize>>) = located.into_iter().unzip();
    let secrets = secrets_of(token.as_ref(), &documents);
    if matches!(args.action, Some(K8sAction::Delete)) {
        return delete(
            &documents,
            cluster.as_ref(),
            global.dry_run,
            printer,
            runtime,
        );
    }
    let plan = JobPlan::new(documents, args, cluster.as_ref(), token, printer)?;
    if global.dry_run {
        return show(&plan, &lines, &secrets, &args.manifest, printer);
    }
    let Some(cluster) = cluster else {
        return Ok(());
    };
    // Nothing is written unless the cluster serves every object's kind.
    runtime.block_on(check_kinds(
        &cluster,
        &args.manifest,
        &plan.documents,
        &lines,
    ))?;
    let log_path = args
        .log_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("{}-{}.log", plan.namespace, plan.job_name)));
    let outcome = run_job(&plan, &cluster, &log_path, timeout, printer, runtime)?;
    finish(
        &plan,
        &cluster,
        &outcome,
        &log_path,
        args.cleanup,
        printer,
        runtime,
    )
}

/// The cluster: none for a manifest dry run, any that answers for an
/// `--attach` dry run (its default namespace), else one that must answer.
fn connect(
    args: &K8sBuildArgs,
    dry_run: bool,
    runtime: &tokio::runtime::Runtime,
) -> Result<Option<Cluster>, K8sBuildError> {
    Ok(if dry_run && !args.attach {
        None
    } else if dry_run {
        runtime
            .block_on(Cluster::connect(args.context.as_deref()))
            .ok()
    } else {
        Some(runtime.block_on(Cluster::connect(args.context.as_deref()))?)
    })
}

/// `sgr k8s-build delete`: every document, last first.
fn delete(
    documents: &[Value],
    cluster: Option<&Cluster>,
    dry_run: bool,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), K8sBuildError> {
    if dry_run {
        let names: Vec<String> = documents
            .iter()
            .rev()
            .map(|document| {
                let (kind, name) = kind_name(document);
                format!("would delete {kind} {name}")
            })
            .collect();
        return printer
            .result(&names.join("\n"), &names)
            .map_err(stdout_error);
    }
    let Some(cluster) = cluster else {
        return Ok(());
    };
    runtime.block_on(async {
        for (index, document) in documents.iter().enumerate().rev() {
            let (kind, name) = kind_name(document);
            if cluster.delete(document, index + 1).await? {
                printer.note(&format!("deleted {kind} {name}"));
            } else {
                printer.detail(&format!("{kind} {name} was not there"));
            }
        }
        Ok::<_, K8sBuildError>(())
    })
}

fn stdout_error(source: std::io::Error) -> K8sBuildError {
    K8sBuildError::File {
        action: "write",
        path: PathBuf::from("<stdout>"),
        source,
    }
}

/// The documents with the Job customised, and what running it needs.
struct JobPlan {
    documents: Vec<Value>,
    job_position: usize,
    job_name: String,
    namespace: String,
    secret_name: String,
    secret_key: String,
    /// The token for the Secret sgr creates; `None` when there is none or
    /// the manifest declares that Secret itself.
    token: Option<SecretString>,
    /// The Job has several containers: log lines get the container's name.
    several_containers: bool,
}

impl JobPlan {
    fn new(
        mut documents: Vec<Value>,
        args: &K8sBuildArgs,
        cluster: Option<&Cluster>,
        token: Option<SecretString>,
        printer: &Printer,
    ) -> Result<Self, K8sBuildError> {
        let job_position = job_index(&documents, &args.manifest)?;
        customise(&mut documents[job_position], args)?;
        let job = &documents[job_position];
        let job_name = job["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let namespace = job["metadata"]["namespace"]
            .as_str()
            .map(str::to_owned)
            .or_else(|| cluster.map(|cluster| cluster.default_namespace.clone()))
            .unwrap_or_else(|| "default".to_owned());
        let (secret_name, secret_key) = token_reference(job)
            .unwrap_or_else(|| (format!("{job_name}-github-token"), "token".to_owned()));
        let several_containers = job["spec"]["template"]["spec"]["containers"]
            .as_array()
            .is_some_and(|containers| containers.len() > 1);
        // A manifest that declares the Secret fills it itself (studio-go-runner's
        // `{{ expandenv "$GITHUB_TOKEN" | b64enc }}`): sgr leaves it alone.
        let declares_secret = documents.iter().any(|document| {
            document["kind"] == "Secret"
                && document["metadata"]["name"] == secret_name.as_str()
                && document["metadata"]["namespace"]
                    .as_str()
                    .is_none_or(|declared| declared == namespace)
        });
        let token = if declares_secret { None } else { token };
        if token.is_none() && !args.no_github_token && !declares_secret {
            printer.warn(
                "GITHUB_TOKEN is not set: the build runs without it (--no-github-token silences this)",
            );
        }
        Ok(Self {
            documents,
            job_position,
            job_name,
            namespace,
            secret_name,
            secret_key,
            token,
            several_containers,
        })
    }
}

/// `--dry-run`: the documents as they would be applied, Secret data masked
/// and secrets taken out; removed API versions warned about.
fn show(
    plan: &JobPlan,
    lines: &[Option<usize>],
    secrets: &[String],
    manifest: &std::path::Path,
    printer: &Printer,
) -> Result<(), K8sBuildError> {
    for (document, line) in plan.documents.iter().zip(lines) {
        if let (Some(api_version), Some(kind)) =
            (document["apiVersion"].as_str(), document["kind"].as_str())
            && let Some((replacement, release)) = crate::k8s::removed_api(api_version, kind)
        {
            let (_, name) = kind_name(document);
            printer.warn(&format!(
                "{}{}: {kind} {name}: apiVersion {api_version} was removed in Kubernetes {release}; use apiVersion: {replacement} (a real run refuses it)",
                manifest.display(),
                line.map(|line| format!(":{line}")).unwrap_or_default()
            ));
        }
    }
    let mut shown: Vec<Value> = plan.documents.iter().map(masked).collect();
    if plan.token.is_some() {
        shown.push(token_secret(
            &plan.namespace,
            &plan.secret_name,
            &plan.secret_key,
            None,
            Some((&plan.job_name, "<job uid>")),
        ));
    }
    let text = shown
        .iter()
        .map(|document| serde_saphyr::to_string(document).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("---\n");
    let text = redact(&text, secrets);
    let shown: Vec<Value> = serde_json::from_str(&redact(
        &serde_json::to_string(&shown).unwrap_or_default(),
        secrets,
    ))
    .unwrap_or_default();
    printer
        .result(&format!("---\n{}", text.trim_end()), &shown)
        .map_err(stdout_error)
}

/// Where the Job's progress goes: log lines to the log copy and stdout,
/// the rest to stderr, or everything as JSON Lines with `--output json`.
struct ProgressSink<'a> {
    log_file: Mutex<std::io::BufWriter<std::fs::File>>,
    several_containers: bool,
    printer: &'a Printer,
}

impl ProgressSink<'_> {
    fn json(&self) -> bool {
        self.printer.format() == OutputFormat::Json
    }

    /// One event as a JSON line. Output errors while following are
    /// ignored: the log copy has everything.
    fn emit_json(&self, value: &Value) {
        let _ = self.printer.json_line(value);
    }

    fn on(&self, progress: Progress) {
        if let Progress::Log {
            container,
            line,
            partial,
            continued,
            ..
        } = &progress
        {
            // A long line comes in pieces: the prefix on its first, the newline after its last.
            let prefix = if self.several_containers && !continued {
                format!("{container} | ")
            } else {
                String::new()
            };
            let end = if *partial { "" } else { "\n" };
            if let Ok(mut file) = self.log_file.lock() {
                let _ = write!(file, "{prefix}{line}{end}");
            }
            if self.json() {
                self.emit_json(&serde_json::to_value(&progress).unwrap_or_default());
            } else {
                let _ = self.printer.text(&format!("{prefix}{line}{end}"));
            }
            return;
        }
        if self.json() {
            self.emit_json(&serde_json::to_value(&progress).unwrap_or_default());
            return;
        }
        match progress {
            Progress::Applied { kind, name } => {
                self.printer.detail(&format!("applied {kind} {name}"));
            }
            Progress::Phase { pod, phase, reason } => self.printer.note(&format!(
                "pod {pod}: {phase}{}",
                reason
                    .map(|reason| format!(" ({reason})"))
                    .unwrap_or_default()
            )),
            Progress::Log { .. } => {}
        }
    }

    fn flush(&self) {
        if let Ok(mut file) = self.log_file.lock() {
            let _ = file.flush();
        }
    }
}

/// Apply the documents and the token Secret, then follow the Job until it
/// ends (or `timeout`), its log copied to `log_path`.
fn run_job(
    plan: &JobPlan,
    cluster: &Cluster,
    log_path: &std::path::Path,
    timeout: Option<Duration>,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<Outcome, K8sBuildError> {
    let log_file = std::fs::File::create(log_path).map_err(|source| K8sBuildError::File {
        action: "write",
        path: log_path.to_path_buf(),
        source,
    })?;
    let sink = ProgressSink {
        log_file: Mutex::new(std::io::BufWriter::new(log_file)),
        several_containers: plan.several_containers,
        printer,
    };
    let on_progress = |progress: Progress| sink.on(progress);
    let outcome =
        runtime.block_on(async {
            apply_all(plan, cluster, &on_progress).await?;
            let follow = cluster.follow_job(&plan.namespace, &plan.job_name, &on_progress);
            match timeout {
                Some(limit) => tokio::time::timeout(limit, follow).await.map_err(|_| {
                    K8sBuildError::TimedOut {
                        job: plan.job_name.clone(),
                        seconds: limit.as_secs(),
                    }
                })?,
                None => follow.await,
            }
            .map_err(K8sBuildError::from)
        });
    sink.flush();
    outcome
}

/// Apply every document in order, then the token Secret owned by the Job.
async fn apply_all(
    plan: &JobPlan,
    cluster: &Cluster,
    on_progress: &(dyn Fn(Progress) + Send + Sync),
) -> Result<(), K8sBuildError> {
    let mut job_uid = None;
    for (index, document) in plan.documents.iter().enumerate() {
        let applied = cluster.apply(document, index + 1).await?;
        let (kind, name) = kind_name(document);
        if index == plan.job_position {
            job_uid = applied["metadata"]["uid"].as_str().map(str::to_owned);
        }
        on_progress(Progress::Applied { kind, name });
    }
    if let (Some(token), Some(uid)) = (&plan.token, &job_uid) {
        let secret = token_secret(
            &plan.namespace,
            &plan.secret_name,
            &plan.secret_key,
            Some(token),
            Some((&plan.job_name, uid)),
        );
        cluster.apply(&secret, plan.documents.len() + 1).await?;
        on_progress(Progress::Applied {
            kind: "Secret".to_owned(),
            name: format!("{}/{}", plan.namespace, plan.secret_name),
        });
    }
    Ok(())
}

/// Report the outcome, delete with `--cleanup`, and fail when the Job did.
fn finish(
    plan: &JobPlan,
    cluster: &Cluster,
    outcome: &Outcome,
    log_path: &std::path::Path,
    cleanup: bool,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), K8sBuildError> {
    if printer.format() == OutputFormat::Json {
        let _ = printer.json_line(
            &json!({"event": "finished", "succeeded": outcome.succeeded, "exit_code": outcome.exit_code, "pod": outcome.pod, "log_file": log_path}),
        );
    } else {
        printer.note(&format!(
            "job {} {} (log: {})",
            plan.job_name,
            if outcome.succeeded {
                "completed"
            } else {
                "failed"
            },
            log_path.display()
        ));
    }
    if cleanup {
        runtime.block_on(async {
            for (index, document) in plan.documents.iter().enumerate().rev() {
                cluster.delete(document, index + 1).await?;
            }
            Ok::<_, ClusterError>(())
        })?;
        printer.note("deleted the resources (--cleanup)");
    }
    if outcome.succeeded {
        Ok(())
    } else {
        Err(K8sBuildError::JobFailed {
            job: plan.job_name.clone(),
            exit_code: outcome.exit_code,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() -> Result<(), K8sBuildError> {
        assert_eq!(parse_duration("90s")?, Duration::from_secs(90));
        assert_eq!(parse_duration("30m")?, Duration::from_mins(30));
        assert_eq!(parse_duration("2h")?, Duration::from_hours(2));
        assert_eq!(parse_duration("45")?, Duration::from_secs(45));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("3d").is_err());
        Ok(())
    }

    #[test]
    fn the_token_is_taken_out_raw_and_base64_and_secret_data_is_masked() {
        let token = SecretString::from("ghp_canary_0123".to_owned());
        let encoded = base64::engine::general_purpose::STANDARD.encode("ghp_canary_0123");
        let other = base64::engine::general_purpose::STANDARD.encode("another-secret");
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
            "data": {"github_token": encoded, "other": other}, "stringData": {"plain": "p4ssw0rd!"}});
        let secrets = secrets_of(Some(&token), std::slice::from_ref(&secret));
        let message =
            format!("refused: ghp_canary_0123 / {encoded} / another-secret / {other} / p4ssw0rd!");
        assert_eq!(
            redact(&message, &secrets),
            "refused: *** / *** / *** / *** / ***"
        );
        let shown = masked(&secret);
        assert_eq!(shown["data"]["github_token"], "***");
        assert_eq!(shown["data"]["other"], "***");
        assert_eq!(shown["stringData"]["plain"], "***");
        assert_eq!(
            masked(&json!({"kind": "ConfigMap", "data": {"a": "b"}}))["data"]["a"],
            "b"
        );
    }

    #[test]
    fn objects_are_found_by_their_line_in_the_rendered_file() {
        let text = "# head\n---\napiVersion: v1\nkind: A\n---\n# only a comment\n---\nkind: B\napiVersion: v1\n";
        assert_eq!(object_lines(text, 2), vec![Some(3), Some(9)]);
        assert_eq!(object_lines(text, 3), vec![None, None, None]);
    }

    #[test]
    fn the_secret_holds_the_token_only_in_data_and_masks_it_for_show() {
        let token = SecretString::from("ghp_secret".to_owned());
        let secret = token_secret(
            "ns",
            "build-github-token",
            "token",
            Some(&token),
            Some(("build", "uid-1")),
        );
        assert_eq!(
            secret["data"]["token"],
            base64::engine::general_purpose::STANDARD.encode("ghp_secret")
        );
        assert_eq!(secret["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let shown = token_secret("ns", "build-github-token", "token", None, None);
        assert_eq!(shown["data"]["token"], "***");
    }
}
