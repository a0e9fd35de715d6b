//! `sgr push`: plan which image goes to which registry under which tags,
//! then push them, registries at the same time, each image checked against
//! the remote manifest first so that re-runs upload nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use thiserror::Error;

use super::build::BuildCommandError;
use super::shared::{self, RegistryChoiceError};
use crate::build::images::{self, PushRecord, Pushed};
use crate::build::plan::{self, Naming};
use crate::build::prepare::{PrepareError, Prepared, prepare};
use crate::cli::GlobalArgs;
use crate::cli::push::PushArgs;
use crate::docker::DockerError;
use crate::env;
use crate::error::{ExitStatus, Failure};
use crate::output::progress::BuildProgress;
use crate::output::{OutputFormat, Printer};
use crate::registry::client::{TimeoutError, Timeouts};
use crate::registry::remote_repository;
use crate::registry::transfer::{
    self, Outcome, RegistrySelection, TransferError, TransferImage, TransferRow, TransferSettings,
    host_label,
};
use crate::version::branch;

/// Failures that stop `sgr push` before anything is pushed.
#[derive(Debug, Error)]
pub enum PushCommandError {
    /// Reading git, `sgr.toml` or planning failed.
    #[error(transparent)]
    Plan(#[from] BuildCommandError),
    /// A tag pattern or `--image` reference is invalid.
    #[error(transparent)]
    Reference(#[from] plan::PlanError),
    /// The registry flags select nothing usable.
    #[error(transparent)]
    Registry(#[from] RegistryChoiceError),
    /// Every selected registry was skipped.
    #[error("none of the registries could be used: {}", .skipped.join("; "))]
    NothingUsable {
        /// Why each was skipped.
        skipped: Vec<String>,
    },
    /// The engine cannot be reached.
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// Some pushes failed.
    #[error("{failed} of {total} push(es) failed")]
    Failed {
        /// Failed rows.
        failed: usize,
        /// All rows.
        total: usize,
    },
    /// A registry time limit in the environment is not a number of seconds.
    #[error(transparent)]
    Timeouts(#[from] TimeoutError),
    /// stdout cannot be written.
    #[error("cannot write the results")]
    Output(#[source] std::io::Error),
}

impl From<TransferError> for PushCommandError {
    fn from(error: TransferError) -> Self {
        match error {
            TransferError::Docker(error) => Self::Docker(error),
            TransferError::NothingUsable { skipped } => Self::NothingUsable { skipped },
        }
    }
}

impl From<PushCommandError> for Failure {
    fn from(error: PushCommandError) -> Self {
        let (status, hint) = match &error {
            PushCommandError::Plan(_) => return Self::from(unwrap_plan(error)),
            PushCommandError::Registry(RegistryChoiceError::NoRegistry) => (
                ExitStatus::Usage,
                Some(format!(
                    "name one: --registry HOST, --aws, or --azure with --azure-registry NAME (or set {})",
                    env::AZURE_REGISTRY_NAME
                )),
            ),
            PushCommandError::Registry(RegistryChoiceError::NoAzureRegistry) => (
                ExitStatus::Usage,
                Some("e.g. --azure-registry leafai for leafai.azurecr.io".to_owned()),
            ),
            PushCommandError::Docker(DockerError::Unreachable { .. }) => (
                ExitStatus::Usage,
                Some("start the engine, or point DOCKER_HOST (or --docker-host) at it".to_owned()),
            ),
            PushCommandError::Reference(_) | PushCommandError::Timeouts(_) => {
                (ExitStatus::Usage, None)
            }
            PushCommandError::NothingUsable { .. } => (
                ExitStatus::Failed,
                Some(
                    "give credentials for one of them, or name a registry with --registry"
                        .to_owned(),
                ),
            ),
            _ => (ExitStatus::Failed, None),
        };
        Self::new(error, status, hint)
    }
}

fn unwrap_plan(error: PushCommandError) -> BuildCommandError {
    match error {
        PushCommandError::Plan(inner) => inner,
        other => BuildCommandError::Prepare(PrepareError::Config {
            path: PathBuf::new(),
            message: other.to_string(),
        }),
    }
}

/// What a dry run prints.
#[derive(Debug, Serialize)]
struct PushPlan {
    registries: Vec<RegistrySelection>,
    images: Vec<TransferImage>,
    targets: Vec<String>,
    atomic: bool,
}

/// Run `sgr push`.
///
/// # Errors
/// Bad configuration (2), unreachable engine (2), failed pushes (1).
pub fn run(
    args: &PushArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    run_inner(args, global, printer, runtime).map_err(Failure::from)
}

/// The images to push, from the plan or `--image`.
fn items(
    args: &PushArgs,
    prepared: Option<&Prepared>,
    naming: &Naming,
) -> Result<Vec<TransferImage>, PushCommandError> {
    let own_tags = |tags: Vec<String>| -> Result<Vec<String>, PushCommandError> {
        if args.tags.is_empty() {
            return Ok(tags);
        }
        let mut expanded = Vec::with_capacity(args.tags.len());
        for pattern in &args.tags {
            let tag = branch::docker_tag(&plan::expand(pattern, naming)?);
            if tag.is_empty() {
                return Err(plan::PlanError::InvalidReference {
                    reference: format!("--tag {pattern}"),
                    reason: "the pattern is empty here ({version} needs a version file, {branch} a branch)".to_owned(),
                }
                .into());
            }
            expanded.push(tag);
        }
        Ok(expanded)
    };
    let mut items = Vec::new();
    if args.image.is_empty() {
        for image in prepared
            .map(|prepared| prepared.planned.as_slice())
            .unwrap_or_default()
        {
            let tags = image
                .tags
                .iter()
                .map(|reference| crate::docker::split_tag(reference).1.to_owned())
                .collect();
            items.push(TransferImage {
                image: image.name.clone(),
                source: image
                    .tags
                    .first()
                    .cloned()
                    .unwrap_or_else(|| image.name.clone()),
                repository: image.remote.clone(),
                tags: own_tags(tags)?,
            });
        }
    } else {
        for reference in &args.image {
            plan::validate_reference(reference)?;
            let (name, tag) = crate::docker::split_tag(reference);
            items.push(TransferImage {
                image: reference.clone(),
                source: format!("{name}:{tag}"),
                repository: remote_repository(name, &naming.org, &naming.module),
                tags: own_tags(vec![tag.to_owned()])?,
            });
        }
    }
    for item in &items {
        for tag in &item.tags {
            plan::validate_reference(&format!("{}:{tag}", item.repository))?;
        }
    }
    Ok(items)
}

/// `name:tag` references pushed under their own tag, in the repository the
/// naming gives them (`sgr release --images`).
///
/// # Errors
/// A reference is invalid.
pub(crate) fn reference_images(
    references: &[String],
    naming: &Naming,
) -> Result<Vec<TransferImage>, PushCommandError> {
    references
        .iter()
        .map(|reference| {
            plan::validate_reference(reference)?;
            let (name, tag) = crate::docker::split_tag(reference);
            let repository = remote_repository(name, &naming.org, &naming.module);
            plan::validate_reference(&format!("{repository}:{tag}"))?;
            Ok(TransferImage {
                image: reference.clone(),
                source: format!("{name}:{tag}"),
                repository,
                tags: vec![tag.to_owned()],
            })
        })
        .collect()
}

/// The registries the flags and environment select.
fn selections(args: &PushArgs) -> Result<Vec<RegistrySelection>, PushCommandError> {
    Ok(shared::registry_selections(&args.targets, &env::process)?)
}

/// `sgr push` from its arguments: the plan's images (or `--image`), the
/// selected registries, then [`deliver`].
///
/// # Errors
/// As [`run`].
fn run_inner(
    args: &PushArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), PushCommandError> {
    let prepared = prepare(&shared::plan_selection(
        &args.git,
        &args.plan,
        &args.images,
        BTreeMap::new(),
    ));
    // `--image` needs no plan: a repository without Dockerfiles can still push.
    let prepared = match prepared {
        Ok(prepared) => Some(prepared),
        Err(PrepareError::Plan(plan::PlanError::NothingToBuild { .. }))
            if !args.image.is_empty() =>
        {
            None
        }
        Err(error) => return Err(BuildCommandError::from(error).into()),
    };
    let naming = match &prepared {
        Some(prepared) => prepared.naming.clone(),
        None => fallback_naming(args)?,
    };
    let settings = TransferSettings {
        images: items(args, prepared.as_ref(), &naming)?,
        registries: selections(args)?,
        atomic: args.atomic,
        create_repositories: !args.targets.no_create_repos,
        docker_host: args.engine.docker_host.clone(),
        timeouts: Timeouts::from_lookup(&env::process)?,
    };
    let record_in = crate::git::GitRepository::discover(&args.git.git_dir)
        .ok()
        .map(|repository| repository.git_dir().to_path_buf());
    deliver(
        settings,
        record_in.as_deref(),
        global.dry_run,
        printer,
        runtime,
    )
}

/// Run a transfer and print it: in a dry run the plan and nothing else,
/// otherwise the summary table (or JSON rows). Shared by `sgr push` and
/// `sgr release --images`. What was pushed is added to the push record of the git directory
/// `record_in` (see [`crate::build::images`]), so that templates name the pushed references.
///
/// # Errors
/// The engine cannot be reached, no registry can be used, a row failed.
pub(crate) fn deliver(
    settings: TransferSettings,
    record_in: Option<&Path>,
    dry_run: bool,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), PushCommandError> {
    if dry_run {
        let targets: Vec<String> = settings
            .registries
            .iter()
            .flat_map(|selection| {
                let host = host_label(selection);
                settings.images.iter().flat_map(move |item| {
                    let host = host.clone();
                    item.tags.iter().map(move |tag| {
                        format!("{} -> {host}/{}:{tag}", item.source, item.repository)
                    })
                })
            })
            .collect();
        let human = targets.join("\n");
        let plan = PushPlan {
            registries: settings.registries,
            images: settings.images,
            targets,
            atomic: settings.atomic,
        };
        return printer
            .result(&human, &plan)
            .map_err(PushCommandError::Output);
    }
    let interactive = printer.interactive() && printer.format() == OutputFormat::Human;
    let progress = BuildProgress::new(printer, interactive);
    let mut rows = runtime.block_on(transfer::transfer(&settings, printer, &progress))?;
    rows.sort_by(|left, right| {
        (&left.image, &left.registry, &left.target).cmp(&(
            &right.image,
            &right.registry,
            &right.target,
        ))
    });
    if let Some(git_dir) = record_in {
        let pushed: Vec<(String, Pushed)> = rows
            .iter()
            .filter(|row| matches!(row.result, Outcome::Pushed | Outcome::UpToDate))
            .map(|row| {
                (
                    images::repository_of(&row.image).to_owned(),
                    Pushed {
                        reference: row.target.clone(),
                        digest: row.digest.clone(),
                    },
                )
            })
            .collect();
        // The record only saves typing references later: failing to keep it is a warning.
        if let Err(error) = PushRecord::update(git_dir, pushed) {
            printer.warn(&crate::error::chain(&error));
        }
    }
    printer
        .result(&summary_table(&rows), &rows)
        .map_err(PushCommandError::Output)?;
    let failed = rows
        .iter()
        .filter(|row| matches!(row.result, Outcome::Failed | Outcome::Skipped))
        .count();
    if failed > 0 {
        return Err(PushCommandError::Failed {
            failed,
            total: rows.len(),
        });
    }
    Ok(())
}

/// Names for `--image` pushes outside a buildable repository.
fn fallback_naming(args: &PushArgs) -> Result<Naming, PushCommandError> {
    let repository =
        crate::git::GitRepository::discover(&args.git.git_dir).map_err(BuildCommandError::from)?;
    let metadata = repository
        .metadata(&env::process)
        .map_err(BuildCommandError::from)?;
    let module = crate::template::context::scrub_module(
        &repository
            .top_dir()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    Ok(Naming {
        org: args
            .plan
            .org
            .clone()
            .unwrap_or_else(|| crate::build::prepare::DEFAULT_ORG.to_owned()),
        module,
        branch: metadata.branch_slug.unwrap_or_default(),
        short_hash: metadata.short_commit.unwrap_or_default(),
        user: metadata.user.name,
        uid: metadata.user.uid.to_string(),
        gid: metadata.user.gid.to_string(),
        ..Naming::default()
    })
}

fn summary_table(rows: &[TransferRow]) -> String {
    let mut lines = vec![[
        "IMAGE".to_owned(),
        "TARGET".to_owned(),
        "DIGEST".to_owned(),
        "RESULT".to_owned(),
    ]];
    for row in rows {
        lines.push([
            row.image.clone(),
            row.target.clone(),
            row.digest.as_deref().map_or_else(
                || "-".to_owned(),
                |digest| {
                    digest
                        .trim_start_matches("sha256:")
                        .chars()
                        .take(12)
                        .collect()
                },
            ),
            row.result.text().to_owned(),
        ]);
    }
    crate::output::table(&lines.iter().map(|line| line.to_vec()).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::provider::Kind;

    fn args(extra: &[&str]) -> PushArgs {
        use clap::Parser as _;
        let mut argv = vec!["sgr", "push"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::try_parse_from(argv) {
            Ok(crate::cli::Cli {
                command: crate::cli::Command::Push(parsed),
                ..
            }) => parsed,
            other => panic!("not a push: {other:?}"),
        }
    }

    #[test]
    fn explicit_flags_select_exactly_those_registries() -> Result<(), PushCommandError> {
        let chosen = selections(&args(&[
            "--registry",
            "localhost:5000",
            "--registry",
            "https://r.example/",
        ]))?;
        let hosts: Vec<_> = chosen
            .iter()
            .map(|selection| (selection.kind, selection.host.clone(), selection.explicit))
            .collect();
        assert_eq!(
            hosts,
            [
                (Kind::Registry, Some("localhost:5000".to_owned()), true),
                (Kind::Registry, Some("r.example".to_owned()), true)
            ]
        );
        let chosen = selections(&args(&["--azure", "--azure-registry", "leafai"]))?;
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].host.as_deref(), Some("leafai.azurecr.io"));
        Ok(())
    }

    #[test]
    fn azure_without_a_name_is_a_usage_error() {
        let mut parsed = args(&["--azure"]);
        parsed.targets.azure_registry = None;
        assert!(matches!(
            selections(&parsed),
            Err(PushCommandError::Registry(
                RegistryChoiceError::NoAzureRegistry
            ))
        ));
    }

    #[test]
    fn without_flags_aws_is_implied_and_not_explicit() -> Result<(), PushCommandError> {
        let mut parsed = args(&[]);
        parsed.targets.azure_registry = None;
        parsed.targets.registries.clear();
        let chosen = selections(&parsed)?;
        assert_eq!(chosen.len(), 1);
        assert_eq!(chosen[0].kind, Kind::Aws);
        assert!(!chosen[0].explicit);
        Ok(())
    }
}
