//! `sgr build`: plan the images, render their Dockerfiles, build them
//! concurrently through the engine, print a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use thiserror::Error;

use super::template::{self, Source, TemplateCommandError};
use crate::build::plan::{self, Config, Dialect, Naming, PlanError, PlannedImage};
use crate::build::{context, labels};
use crate::cli::GlobalArgs;
use crate::cli::build::BuildArgs;
use crate::cli::template::DialectFlag;
use crate::docker::{BuildRequest, DockerError, Engine};
use crate::error::{ExitStatus, Failure};
use crate::git::{GitError, GitRepository};
use crate::output::{OutputFormat, Printer};
use crate::template::process_host::now_seconds;
use crate::template::settings::{ContextSettings, RenderSettings};
use crate::version::branch;

/// Failures before any image is built.
#[derive(Debug, Error)]
pub enum BuildCommandError {
    /// Git metadata.
    #[error(transparent)]
    Git(#[from] GitError),
    /// `sgr.toml` cannot be read or parsed.
    #[error("{}: {message}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An image named on the command line is not in the plan.
    #[error("no image {name} in the plan (images: {})", .known.join(", "))]
    UnknownImage {
        /// The name given.
        name: String,
        /// The plan's names.
        known: Vec<String>,
    },
    /// A Dockerfile template failed to render.
    #[error(transparent)]
    Template(#[from] TemplateCommandError),
    /// `--out-dir` cannot be written.
    #[error("cannot write {}", .path.display())]
    OutDir {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine cannot be reached.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Some builds failed.
    #[error("{failed} of {total} image(s) failed to build{}", if *.skipped > 0 { format!(", {} skipped because an image they depend on was not built", .skipped) } else { String::new() })]
    Failed {
        /// Failed builds.
        failed: usize,
        /// Images not built because one they depend on failed.
        skipped: usize,
        /// All builds.
        total: usize,
    },
}

impl From<BuildCommandError> for Failure {
    fn from(error: BuildCommandError) -> Self {
        let (status, hint) = match &error {
            BuildCommandError::Docker(DockerError::Unreachable { .. }) => (
                ExitStatus::Usage,
                Some("start the engine, or point DOCKER_HOST (or --docker-host) at it, e.g. DOCKER_HOST=unix:///run/user/1000/docker.sock".to_owned()),
            ),
            BuildCommandError::Plan(PlanError::SecretBuildArg { .. }) => (
                ExitStatus::Usage,
                Some("pass secrets at run time (an env var or a mounted file), never as build args".to_owned()),
            ),
            BuildCommandError::Plan(PlanError::NothingToBuild { .. }) => {
                (ExitStatus::Usage, Some("add a Dockerfile, or describe the images in sgr.toml (docs/config.md)".to_owned()))
            }
            BuildCommandError::Failed { .. } | BuildCommandError::Docker(_) | BuildCommandError::OutDir { .. } => (ExitStatus::Failed, None),
            BuildCommandError::Git(error) => (ExitStatus::Usage, error.hint()),
            _ => (ExitStatus::Usage, None),
        };
        Self::new(error, status, hint)
    }
}

/// Where an image of the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Built,
    Failed,
    Skipped,
}

/// What became of an image.
enum Outcome {
    /// Its build ran.
    Ran {
        outcome: Result<crate::docker::BuiltImage, DockerError>,
        started: std::time::Duration,
        elapsed: std::time::Duration,
    },
    /// An image it depends on was not built.
    Skipped { dependency: String },
}

/// One row of the summary.
#[derive(Debug, Serialize)]
struct BuildResult {
    image: String,
    tags: Vec<String>,
    id: Option<String>,
    size: Option<u64>,
    context_files: Option<u64>,
    context_bytes: Option<u64>,
    /// When the build began, in seconds after the first one began.
    started: Option<f64>,
    seconds: f64,
    result: &'static str,
    error: Option<String>,
}

fn read_config(path: &Path) -> Result<Config, BuildCommandError> {
    let text = std::fs::read_to_string(path).map_err(|error| BuildCommandError::Config {
        path: path.to_path_buf(),
        message: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| BuildCommandError::Config {
        path: path.to_path_buf(),
        message: error.to_string().trim().replace('\n', " "),
    })
}

fn extra_build_args(args: &BuildArgs) -> BTreeMap<String, String> {
    args.build_args
        .iter()
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (entry.clone(), std::env::var(entry).unwrap_or_default()),
        })
        .collect()
}

/// Render one Dockerfile template, in its dialect, with the shared context.
fn render_dockerfile(
    image: &PlannedImage,
    source: &Source,
    context_value: &serde_json::Value,
    flag: Option<Dialect>,
    printer: &Printer,
) -> Result<String, BuildCommandError> {
    let dialect = template::choose_dialect(flag, image.dialect, source, printer);
    // The image's own values (sgr.toml `[image.values]`) beside the shared context.
    let with_values;
    let context_value = if image.values.is_empty() {
        context_value
    } else {
        let mut merged = context_value.clone();
        if let Some(object) = merged.as_object_mut() {
            for (key, value) in &image.values {
                object.insert(key.clone(), serde_json::Value::String(value.clone()));
            }
        }
        with_values = merged;
        &with_values
    };
    Ok(template::render_in(
        dialect,
        source,
        context_value,
        RenderSettings::default(),
    )?)
}

/// Run `sgr build`.
///
/// # Errors
/// Bad configuration or templates (2), unreachable engine (2), failed builds (1).
pub fn run(
    args: &BuildArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    run_inner(args, global, printer, runtime).map_err(Failure::from)
}

/// Which images a command works on.
pub(crate) struct PlanSelection<'a> {
    /// Where git discovery starts.
    pub git_dir: &'a Path,
    /// `--config`.
    pub config: Option<&'a Path>,
    /// `--org`.
    pub org: Option<&'a str>,
    /// Image names given on the command line (all when empty).
    pub images: &'a [String],
    /// Extra build args.
    pub extra_args: BTreeMap<String, String>,
}

/// The plan and what it was made from.
pub(crate) struct Prepared {
    /// The git top directory.
    pub top: PathBuf,
    /// Placeholder values.
    pub naming: Naming,
    /// The selected images.
    pub planned: Vec<PlannedImage>,
    /// Where the Dockerfiles' variables come from.
    pub context_settings: ContextSettings,
}

/// Read git, the version file and `sgr.toml`, and plan the selected images.
///
/// # Errors
/// Git, configuration or plan errors; an unknown image name.
#[allow(clippy::too_many_lines)]
pub(crate) fn prepare(selection: &PlanSelection<'_>) -> Result<Prepared, BuildCommandError> {
    let repository = GitRepository::discover(selection.git_dir)?;
    let top = repository.top_dir().to_path_buf();
    // No status scan (git.dirty) nor tag walk: the plan and labels use neither.
    let metadata = template::git_metadata(
        &repository,
        &crate::env::process,
        crate::template::context::Needs {
            dirty: false,
            tag: false,
            ..crate::template::context::Needs::ALL
        },
    )?;
    let config_path = selection
        .config
        .map_or_else(|| top.join("sgr.toml"), Path::to_path_buf);
    let config = if selection.config.is_some() || config_path.exists() {
        read_config(&config_path)?
    } else {
        Config::default()
    };
    let mut images = if config.images.is_empty() {
        plan::default_images(&|path| top.join(path).is_file())
    } else {
        config.images.clone()
    };
    for image in &mut images {
        image.dialect = image.dialect.or(config.dialect);
    }
    let context_settings = ContextSettings {
        module: top.clone(),
        git_dir: selection.git_dir.to_path_buf(),
        ..ContextSettings::default()
    };
    let version = context_settings
        .version_files
        .iter()
        .map(|name| top.join(name))
        .find(|path| path.exists())
        .and_then(|path| crate::version_file::VersionFile::read(&path).ok())
        .and_then(|file| file.version().ok())
        .map(|(version, _)| version);
    let module = crate::template::context::scrub_module(
        &top.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let naming = Naming {
        org: selection
            .org
            .map(str::to_owned)
            .or(config.org.clone())
            .unwrap_or_else(|| "leafai".to_owned()),
        module: module.clone(),
        branch: metadata.branch_slug.clone().unwrap_or_default(),
        version: version
            .as_ref()
            .map(|version| branch::docker_tag(&version.to_string()))
            .unwrap_or_default(),
        short_hash: metadata.short_commit.clone().unwrap_or_default(),
        user: metadata.user.name.clone(),
        uid: metadata.user.uid.to_string(),
        gid: metadata.user.gid.to_string(),
    };
    let (seconds, _) = now_seconds();
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.created".to_owned(),
        crate::version::stamp::format_utc(seconds),
    );
    labels.insert(
        "org.opencontainers.image.revision".to_owned(),
        metadata.commit.clone().unwrap_or_default(),
    );
    labels.insert(
        "org.opencontainers.image.version".to_owned(),
        version
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
    );
    labels.insert("dev.sgr.module".to_owned(), module);
    labels.insert(
        "dev.sgr.branch".to_owned(),
        metadata
            .branch
            .as_ref()
            .map(|branch| branch.name.clone())
            .unwrap_or_default(),
    );
    if let Some(source) = metadata
        .remote
        .as_ref()
        .and_then(crate::git::RemoteUrl::https)
    {
        labels.insert("org.opencontainers.image.source".to_owned(), source);
    }
    let mut planned = plan::plan(&images, &naming, &labels, &selection.extra_args, &top)?;
    if !selection.images.is_empty() {
        let known: Vec<String> = planned.iter().map(|image| image.name.clone()).collect();
        for name in selection.images {
            if !known.contains(name) {
                return Err(BuildCommandError::UnknownImage {
                    name: name.clone(),
                    known,
                });
            }
        }
        planned.retain(|image| selection.images.contains(&image.name));
    }
    Ok(Prepared {
        top,
        naming,
        planned,
        context_settings,
    })
}

#[allow(clippy::too_many_lines)]
fn run_inner(
    args: &BuildArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), BuildCommandError> {
    let Prepared {
        top,
        planned,
        context_settings,
        ..
    } = prepare(&PlanSelection {
        git_dir: &args.git.git_dir,
        config: args.plan.config.as_deref(),
        org: args.plan.org.as_deref(),
        images: &[],
        extra_args: extra_build_args(args),
    })?;
    let planned = plan::select(planned, &args.images, &args.only)?;
    let environment: Vec<(String, String)> = std::env::vars().collect();
    for image in &planned {
        plan::check_build_args(&image.build_args, &environment)?;
    }
    // Render every Dockerfile before building anything: a broken template stops the run early.
    // One context serves them all (git, version file and AWS are read once); `awsecr` is looked
    // up when any of them mentions it.
    let sources = planned
        .iter()
        .map(|image| template::read_source(Some(&top.join(&image.dockerfile))))
        .collect::<Result<Vec<_>, _>>()?;
    let all_templates = Source {
        path: top.clone(),
        text: sources
            .iter()
            .map(|source| source.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let (context_value, _) = template::gather(&context_settings, &all_templates, runtime)?;
    let rendered = planned
        .iter()
        .zip(&sources)
        .map(|(image, source)| {
            render_dockerfile(
                image,
                source,
                &context_value,
                args.dialect.and_then(DialectFlag::forced),
                printer,
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(out_dir) = &args.out_dir {
        for (image, text) in planned.iter().zip(&rendered) {
            let path = out_dir.join(format!(
                "{}.Dockerfile",
                image.name.replace(['/', ':'], "_")
            ));
            std::fs::create_dir_all(out_dir)
                .and_then(|()| crate::atomic::write(&path, text.as_bytes()))
                .map_err(|source| BuildCommandError::OutDir {
                    path: path.clone(),
                    source,
                })?;
            printer.detail(&format!("wrote {}", path.display()));
        }
    }
    if global.dry_run {
        let human = planned
            .iter()
            .map(|image| {
                let args: Vec<String> = image
                    .build_args
                    .iter()
                    .map(|(key, value)| format!("{key}={value}"))
                    .collect();
                format!(
                    "{}  {}  context {}{}  {}",
                    image
                        .tags
                        .iter()
                        .chain(&image.extra_tags)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(","),
                    image.dockerfile.display(),
                    image.context.display(),
                    if image.depends_on.is_empty() {
                        String::new()
                    } else {
                        format!("  after {}", image.depends_on.join(","))
                    },
                    if args.is_empty() {
                        String::new()
                    } else {
                        format!("build args {}", args.join(" "))
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        return printer.result(human.trim_end(), &planned).map_err(|error| {
            BuildCommandError::OutDir {
                path: PathBuf::from("<stdout>"),
                source: error,
            }
        });
    }
    let progress = crate::output::progress::BuildProgress::new(
        printer,
        printer.interactive() && printer.format() == OutputFormat::Human,
    );
    let progress = &progress;
    let waits = plan::waits(&planned);
    let results = runtime.block_on(async {
        let engine = Engine::connect(args.engine.docker_host.as_deref()).await?;
        printer.detail(&format!("engine {}", engine.host()));
        let engine = &engine;
        let run_started = Instant::now();
        let planned = &planned;
        let top = &top;
        let build = |index: usize, dockerfile: String| async move {
            let image = &planned[index];
            let context_directory = top.join(&image.context);
            let mut tracker = progress.image(&image.name);
            let started = run_started.elapsed();
            let target = args.target.clone().or_else(|| image.target.clone());
            // One LABEL step instead of one per label (see build::labels).
            let (dockerfile, labels) = match labels::append_label_instruction(
                &dockerfile,
                &image.labels,
                target.as_deref(),
            ) {
                Some(with_labels) => (with_labels, BTreeMap::new()),
                None => (dockerfile, image.labels.clone()),
            };
            let outcome = match context::read_ignore(&context_directory) {
                Err(error) => Err(DockerError::from(error)),
                Ok(ignore) => {
                    let request = BuildRequest {
                        image: image.name.clone(),
                        context: context_directory,
                        ignore,
                        include_git: args.include_git,
                        dockerfile: dockerfile.into_bytes(),
                        tags: image
                            .tags
                            .iter()
                            .chain(&image.extra_tags)
                            .cloned()
                            .collect(),
                        build_args: image.build_args.clone(),
                        labels,
                        no_cache: args.no_cache,
                        pull: args.pull,
                        target,
                        network: args.network.clone(),
                        sent: std::sync::Arc::clone(&tracker.sent),
                    };
                    engine.build(request, |line| tracker.line(line)).await
                }
            };
            tracker.finish(if outcome.is_ok() { "built" } else { "failed" });
            let finished = run_started.elapsed();
            (index, outcome, started, finished.saturating_sub(started))
        };
        let mut dockerfiles: Vec<Option<String>> = rendered.into_iter().map(Some).collect();
        let mut states = vec![State::Waiting; planned.len()];
        let mut outcomes: Vec<Option<Outcome>> = (0..planned.len()).map(|_| None).collect();
        let mut running = futures_util::stream::FuturesUnordered::new();
        loop {
            // An image whose dependency failed (or was skipped) is skipped, transitively.
            let mut changed = true;
            while changed {
                changed = false;
                for index in 0..planned.len() {
                    if states[index] != State::Waiting {
                        continue;
                    }
                    if let Some(&dependency) = waits[index].iter().find(|&&dependency| {
                        matches!(states[dependency], State::Failed | State::Skipped)
                    }) {
                        states[index] = State::Skipped;
                        outcomes[index] = Some(Outcome::Skipped {
                            dependency: planned[dependency].name.clone(),
                        });
                        changed = true;
                    }
                }
            }
            for index in 0..planned.len() {
                if running.len() >= usize::from(args.jobs) {
                    break;
                }
                if states[index] == State::Waiting
                    && waits[index]
                        .iter()
                        .all(|&dependency| states[dependency] == State::Built)
                    && let Some(dockerfile) = dockerfiles[index].take()
                {
                    states[index] = State::Running;
                    running.push(build(index, dockerfile));
                }
            }
            let Some((index, outcome, started, elapsed)) = running.next().await else {
                break;
            };
            states[index] = if outcome.is_ok() {
                State::Built
            } else {
                State::Failed
            };
            outcomes[index] = Some(Outcome::Ran {
                outcome,
                started,
                elapsed,
            });
        }
        Ok::<_, BuildCommandError>(outcomes)
    })?;
    let mut rows = Vec::with_capacity(results.len());
    let mut failed = 0;
    let mut skipped = 0;
    for (image, outcome) in planned.iter().zip(results) {
        let row = BuildResult {
            image: image.name.clone(),
            tags: image
                .tags
                .iter()
                .chain(&image.extra_tags)
                .cloned()
                .collect(),
            id: None,
            size: None,
            context_files: None,
            context_bytes: None,
            started: None,
            seconds: 0.0,
            result: "skipped",
            error: None,
        };
        let row = match outcome {
            Some(Outcome::Ran {
                outcome: Ok(built),
                started,
                elapsed,
            }) => BuildResult {
                id: Some(built.id),
                size: Some(built.size),
                context_files: Some(built.context.files),
                context_bytes: Some(built.context.bytes),
                started: Some(started.as_secs_f64()),
                seconds: elapsed.as_secs_f64(),
                result: "built",
                ..row
            },
            Some(Outcome::Ran {
                outcome: Err(error),
                started,
                elapsed,
            }) => {
                failed += 1;
                let message = Failure::new(error, ExitStatus::Failed, None).message();
                printer.error(&message, None);
                BuildResult {
                    started: Some(started.as_secs_f64()),
                    seconds: elapsed.as_secs_f64(),
                    result: "failed",
                    error: Some(message),
                    ..row
                }
            }
            Some(Outcome::Skipped { dependency }) => {
                skipped += 1;
                let message = format!(
                    "{} not built: {dependency}, which it depends on, was not built",
                    image.name
                );
                printer.error(&message, None);
                BuildResult {
                    error: Some(message),
                    ..row
                }
            }
            None => {
                skipped += 1;
                row
            }
        };
        rows.push(row);
    }
    rows.sort_by(|left, right| left.image.cmp(&right.image));
    let table = summary_table(&rows);
    if printer.format() == OutputFormat::Json || !rows.is_empty() {
        printer
            .result(&table, &rows)
            .map_err(|error| BuildCommandError::OutDir {
                path: PathBuf::from("<stdout>"),
                source: error,
            })?;
    }
    if failed + skipped > 0 {
        return Err(BuildCommandError::Failed {
            failed,
            skipped,
            total: rows.len(),
        });
    }
    Ok(())
}

fn summary_table(rows: &[BuildResult]) -> String {
    let mut lines = vec![[
        "IMAGE".to_owned(),
        "TAGS".to_owned(),
        "ID".to_owned(),
        "SIZE".to_owned(),
        "TIME".to_owned(),
        "RESULT".to_owned(),
    ]];
    for row in rows {
        let id = row.id.as_deref().map_or_else(
            || "-".to_owned(),
            |id| id.trim_start_matches("sha256:").chars().take(12).collect(),
        );
        let size = row.size.map_or_else(
            || "-".to_owned(),
            |size| format!("{}.{} MB", size / 1_000_000, size % 1_000_000 / 100_000),
        );
        let tags: Vec<&str> = row
            .tags
            .iter()
            .map(|tag| match crate::docker::split_tag(tag) {
                (repository, tag_name) if repository == row.image => tag_name,
                _ => tag.as_str(),
            })
            .collect();
        lines.push([
            row.image.clone(),
            tags.join(","),
            id,
            size,
            format!("{:.1}s", row.seconds),
            row.result.to_owned(),
        ]);
    }
    crate::output::table(&lines.iter().map(|line| line.to_vec()).collect::<Vec<_>>())
}
