//! `sgr build`: plan the images, render their Dockerfiles, build them
//! concurrently through the engine, print a summary.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use serde::Serialize;
use thiserror::Error;

use super::template::{self, Source, TemplateCommandError};
use crate::build::context;
use crate::build::plan::{self, Dialect, PlanError, PlannedImage};
use crate::build::prepare::{PlanSelection, PrepareError, Prepared, prepare};
use crate::cli::GlobalArgs;
use crate::cli::build::BuildArgs;
use crate::cli::template::DialectFlag;
use crate::docker::{BuildRequest, BuilderChoice, DockerError, Engine};
use crate::error::{ExitStatus, Failure};
use crate::git::GitError;
use crate::output::{OutputFormat, Printer};
use crate::template::settings::{ContextSettings, RenderSettings};

/// Failures before any image is built.
#[derive(Debug, Error)]
pub enum BuildCommandError {
    /// No plan could be made: git, `sgr.toml`, the plan itself, an unknown image name.
    #[error(transparent)]
    Prepare(#[from] PrepareError),
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
    /// `DOCKER_BUILDKIT` holds something else than a boolean.
    #[error("{0}")]
    Builder(String),
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

impl From<PlanError> for BuildCommandError {
    fn from(error: PlanError) -> Self {
        Self::Prepare(PrepareError::Plan(error))
    }
}

impl From<GitError> for BuildCommandError {
    fn from(error: GitError) -> Self {
        Self::Prepare(PrepareError::Git(error))
    }
}

impl From<BuildCommandError> for Failure {
    fn from(error: BuildCommandError) -> Self {
        let (status, hint) = match &error {
            BuildCommandError::Docker(DockerError::Unreachable { .. }) => (
                ExitStatus::Usage,
                Some("start the engine, or point DOCKER_HOST (or --docker-host) at it, e.g. DOCKER_HOST=unix:///run/user/1000/docker.sock".to_owned()),
            ),
            BuildCommandError::Prepare(PrepareError::Plan(PlanError::SecretBuildArg { .. })) => (
                ExitStatus::Usage,
                Some("pass secrets at run time (an env var or a mounted file), never as build args".to_owned()),
            ),
            BuildCommandError::Prepare(PrepareError::Plan(PlanError::NothingToBuild { .. })) => {
                (ExitStatus::Usage, Some("add a Dockerfile, or describe the images in sgr.toml (docs/config.md)".to_owned()))
            }
            BuildCommandError::Failed { .. } | BuildCommandError::Docker(_) | BuildCommandError::OutDir { .. } => (ExitStatus::Failed, None),
            BuildCommandError::Prepare(PrepareError::Git(error)) => (ExitStatus::Usage, error.hint()),
            BuildCommandError::Builder(_) => (
                ExitStatus::Usage,
                Some("--builder auto builds with BuildKit where it can and with the classic builder elsewhere".to_owned()),
            ),
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

/// `sgr build` as asked: its flags and the environment, resolved once.
struct BuildSettings {
    /// Where git discovery starts.
    git_dir: PathBuf,
    /// `--config`.
    config: Option<PathBuf>,
    /// `--org`.
    org: Option<String>,
    /// Images to build, without what they depend on.
    images: Vec<String>,
    /// Images to build with what they depend on.
    only: Vec<String>,
    /// `--build-arg`s, values from the environment filled in.
    extra_args: BTreeMap<String, String>,
    /// The environment, against which build args are checked for secrets.
    environment: Vec<(String, String)>,
    /// The dialect forced for every Dockerfile.
    dialect: Option<Dialect>,
    /// Where the rendered Dockerfiles are also written.
    out_dir: Option<PathBuf>,
    /// How the engine builds.
    engine: EngineSettings,
    /// Print the plan and build nothing.
    dry_run: bool,
}

/// How the images are built.
#[allow(clippy::struct_excessive_bools)] // independent engine options
struct EngineSettings {
    docker_host: Option<String>,
    jobs: usize,
    no_cache: bool,
    pull: bool,
    include_git: bool,
    target: Option<String>,
    network: Option<String>,
    builder: BuilderChoice,
    /// What chose the builder, for messages.
    builder_source: &'static str,
}

impl BuildSettings {
    fn resolve(args: &BuildArgs, global: &GlobalArgs) -> Result<Self, BuildCommandError> {
        let (builder, builder_source) = match (
            args.builder,
            crate::env::process(crate::env::DOCKER_BUILDKIT),
        ) {
            (Some(flag), _) => (BuilderChoice::from(flag), "--builder"),
            (None, Some(value)) if !value.is_empty() => (
                BuilderChoice::from_docker_buildkit(&value).map_err(BuildCommandError::Builder)?,
                "DOCKER_BUILDKIT",
            ),
            (None, _) => (BuilderChoice::Auto, "the default"),
        };
        Ok(Self {
            git_dir: args.git.git_dir.clone(),
            config: args.plan.config.clone(),
            org: args.plan.org.clone(),
            images: args.images.clone(),
            only: args.only.clone(),
            extra_args: extra_build_args(args),
            environment: std::env::vars().collect(),
            dialect: args.dialect.and_then(DialectFlag::forced),
            out_dir: args.out_dir.clone(),
            engine: EngineSettings {
                docker_host: args.engine.docker_host.clone(),
                jobs: usize::from(args.jobs),
                no_cache: args.no_cache,
                pull: args.pull,
                include_git: args.include_git,
                target: args.target.clone(),
                network: args.network.clone(),
                builder,
                builder_source,
            },
            dry_run: global.dry_run,
        })
    }
}

/// `sgr build`: plan, render every Dockerfile, then print the plan
/// (`--dry-run`) or build and summarise.
fn run_inner(
    args: &BuildArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), BuildCommandError> {
    let settings = BuildSettings::resolve(args, global)?;
    let Prepared {
        top,
        planned,
        context_settings,
        ..
    } = prepare(&PlanSelection {
        git_dir: &settings.git_dir,
        config: settings.config.as_deref(),
        org: settings.org.as_deref(),
        images: &[],
        extra_args: settings.extra_args.clone(),
    })?;
    let planned = plan::select(planned, &settings.images, &settings.only)?;
    for image in &planned {
        plan::check_build_args(&image.build_args, &settings.environment)?;
    }
    let rendered = render_dockerfiles(
        &planned,
        &top,
        &context_settings,
        settings.dialect,
        printer,
        runtime,
    )?;
    if let Some(out_dir) = &settings.out_dir {
        write_out_dir(out_dir, &planned, &rendered, printer)?;
    }
    if settings.dry_run {
        return print_plan(&planned, printer);
    }
    let results = runtime.block_on(build_all(
        &planned,
        &top,
        rendered,
        &settings.engine,
        printer,
    ))?;
    summarise(&planned, results, printer)
}

/// Render every Dockerfile before building anything: a broken template
/// stops the run early. One context serves them all (git, version file and
/// AWS are read once); `awsecr` is looked up when any of them mentions it.
fn render_dockerfiles(
    planned: &[PlannedImage],
    top: &Path,
    context_settings: &ContextSettings,
    dialect: Option<Dialect>,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<String>, BuildCommandError> {
    let sources = planned
        .iter()
        .map(|image| template::read_source(Some(&top.join(&image.dockerfile))))
        .collect::<Result<Vec<_>, _>>()?;
    let all_templates = Source {
        path: top.to_path_buf(),
        text: sources
            .iter()
            .map(|source| source.text.as_str())
            .collect::<Vec<_>>()
            .join("\n"),
    };
    let (context_value, _) = template::gather(context_settings, &all_templates, runtime)?;
    planned
        .iter()
        .zip(&sources)
        .map(|(image, source)| render_dockerfile(image, source, &context_value, dialect, printer))
        .collect()
}

/// `--out-dir`: the rendered Dockerfiles, one file per image.
fn write_out_dir(
    out_dir: &Path,
    planned: &[PlannedImage],
    rendered: &[String],
    printer: &Printer,
) -> Result<(), BuildCommandError> {
    for (image, text) in planned.iter().zip(rendered) {
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
    Ok(())
}

/// `--dry-run`: one line per image (tags, Dockerfile, context, order, build args).
fn print_plan(planned: &[PlannedImage], printer: &Printer) -> Result<(), BuildCommandError> {
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
                image.all_references().join(","),
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
    printer
        .result(human.trim_end(), &planned)
        .map_err(|error| BuildCommandError::OutDir {
            path: PathBuf::from("<stdout>"),
            source: error,
        })
}

/// What one build gives: the image, when it began and how long it took,
/// both from the start of the run.
type Built = (
    Result<crate::docker::BuiltImage, DockerError>,
    std::time::Duration,
    std::time::Duration,
);

/// Build the images through the engine, `settings.jobs` at a time, each
/// after the images it waits for.
async fn build_all(
    planned: &[PlannedImage],
    top: &Path,
    rendered: Vec<String>,
    settings: &EngineSettings,
    printer: &Printer,
) -> Result<Vec<Option<Outcome>>, BuildCommandError> {
    let progress = crate::output::progress::BuildProgress::new(
        printer,
        printer.interactive() && printer.format() == OutputFormat::Human,
    );
    let engine = Engine::connect(settings.docker_host.as_deref()).await?;
    printer.detail(&format!("engine {}", engine.host()));
    if settings.builder == BuilderChoice::BuildKit
        && let Some(reason) = engine.buildkit_obstacle(settings.network.as_deref())
    {
        return Err(BuildCommandError::Builder(format!(
            "cannot build with BuildKit, which {} demands: {reason}",
            settings.builder_source
        )));
    }
    let run_started = Instant::now();
    let (engine, progress) = (&engine, &progress);
    let build = |index: usize, dockerfile: String| async move {
        let (outcome, started, elapsed) = build_one(
            engine,
            &planned[index],
            top,
            dockerfile,
            settings,
            progress,
            run_started,
        )
        .await;
        (index, outcome, started, elapsed)
    };
    Ok(schedule(planned, rendered, settings.jobs, build).await)
}

/// Build one image: its labels joined to the Dockerfile, its context streamed.
async fn build_one(
    engine: &Engine,
    image: &PlannedImage,
    top: &Path,
    dockerfile: String,
    settings: &EngineSettings,
    progress: &crate::output::progress::BuildProgress<'_>,
    run_started: Instant,
) -> Built {
    let context_directory = top.join(&image.context);
    let mut tracker = progress.image(&image.name);
    let started = run_started.elapsed();
    let target = settings.target.clone().or_else(|| image.target.clone());
    let outcome = match context::read_ignore(&context_directory) {
        Err(error) => Err(DockerError::from(error)),
        Ok(ignore) => {
            let request = BuildRequest {
                image: image.name.clone(),
                context: context_directory,
                ignore,
                include_git: settings.include_git,
                dockerfile: dockerfile.into_bytes(),
                tags: image.all_references(),
                build_args: image.build_args.clone(),
                labels: image.labels.clone(),
                no_cache: settings.no_cache,
                pull: settings.pull,
                target,
                network: settings.network.clone(),
                builder: settings.builder,
                sent: std::sync::Arc::clone(&tracker.sent),
            };
            engine.build(request, |line| tracker.line(line)).await
        }
    };
    tracker.finish(if outcome.is_ok() { "built" } else { "failed" });
    let finished = run_started.elapsed();
    (outcome, started, finished.saturating_sub(started))
}

/// Run `build` for every image once the images it waits for are built, at
/// most `jobs` at a time; an image whose dependency failed (or was skipped)
/// is skipped, transitively.
async fn schedule<Build, Running>(
    planned: &[PlannedImage],
    rendered: Vec<String>,
    jobs: usize,
    build: Build,
) -> Vec<Option<Outcome>>
where
    Build: Fn(usize, String) -> Running,
    Running: std::future::Future<
            Output = (
                usize,
                Result<crate::docker::BuiltImage, DockerError>,
                std::time::Duration,
                std::time::Duration,
            ),
        >,
{
    let waits = plan::waits(planned);
    let mut dockerfiles: Vec<Option<String>> = rendered.into_iter().map(Some).collect();
    let mut states = vec![State::Waiting; planned.len()];
    let mut outcomes: Vec<Option<Outcome>> = (0..planned.len()).map(|_| None).collect();
    let mut running = futures_util::stream::FuturesUnordered::new();
    loop {
        skip_dependents(planned, &waits, &mut states, &mut outcomes);
        for index in 0..planned.len() {
            if running.len() >= jobs {
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
    outcomes
}

/// Mark as skipped every waiting image whose dependency failed or was skipped, until nothing changes.
fn skip_dependents(
    planned: &[PlannedImage],
    waits: &[Vec<usize>],
    states: &mut [State],
    outcomes: &mut [Option<Outcome>],
) {
    let mut changed = true;
    while changed {
        changed = false;
        for index in 0..planned.len() {
            if states[index] != State::Waiting {
                continue;
            }
            if let Some(&dependency) = waits[index]
                .iter()
                .find(|&&dependency| matches!(states[dependency], State::Failed | State::Skipped))
            {
                states[index] = State::Skipped;
                outcomes[index] = Some(Outcome::Skipped {
                    dependency: planned[dependency].name.clone(),
                });
                changed = true;
            }
        }
    }
}

/// Print one summary row per image, errors on stderr; fail when any image
/// was not built.
fn summarise(
    planned: &[PlannedImage],
    results: Vec<Option<Outcome>>,
    printer: &Printer,
) -> Result<(), BuildCommandError> {
    let mut rows = Vec::with_capacity(results.len());
    let mut failed = 0;
    let mut skipped = 0;
    for (image, outcome) in planned.iter().zip(results) {
        let row = summary_row(image, outcome, printer);
        match row.result {
            "failed" => failed += 1,
            "skipped" => skipped += 1,
            _ => {}
        }
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

/// The summary row of one image; a failure or skip is also printed as an error.
fn summary_row(image: &PlannedImage, outcome: Option<Outcome>, printer: &Printer) -> BuildResult {
    let row = BuildResult {
        image: image.name.clone(),
        tags: image.all_references(),
        id: None,
        size: None,
        context_files: None,
        context_bytes: None,
        started: None,
        seconds: 0.0,
        result: "skipped",
        error: None,
    };
    match outcome {
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
        None => row,
    }
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
