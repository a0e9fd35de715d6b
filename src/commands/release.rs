//! `sgr release`: plan the release (tag, commit, notes, assets with their
//! checksums), then make GitHub match it: find or create the release,
//! upload what is missing, refuse or replace what differs, publish a draft
//! last. Re-running after a failure finishes the job.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use thiserror::Error;

use super::push::{self, PushCommandError};
use super::shared;
use crate::build::prepare::prepare;
use crate::cli::GlobalArgs;
use crate::cli::release::ReleaseArgs;
use crate::digest::{hex, sha256_hex};
use crate::env;
use crate::error::{ExitStatus, Failure};
use crate::git::{GitError, GitRepository};
use crate::github::{GitHub, GitHubError, NewRelease, ReleaseInfo, RemoteAsset};
use crate::output::Printer;
use crate::output::progress::human_bytes;
use crate::registry::client::Timeouts;
use crate::registry::transfer::TransferSettings;
use crate::version::Version;
use crate::version_file::{VersionFile, VersionFileError};

/// The checksum file uploaded with the assets.
const CHECKSUMS: &str = "SHA256SUMS";
/// Commit subjects listed at most in generated notes.
const NOTES_LIMIT: usize = 200;

/// `sgr release` failures.
#[derive(Debug, Error)]
pub enum ReleaseError {
    /// Git metadata.
    #[error(transparent)]
    Git(#[from] GitError),
    /// The version file.
    #[error(transparent)]
    Version(#[from] VersionFileError),
    /// No commit to release.
    #[error("the repository has no commit to release")]
    NoCommit,
    /// The remote does not name a GitHub repository.
    #[error("cannot tell the GitHub repository: {reason}")]
    NotGitHub {
        /// Why.
        reason: String,
    },
    /// A file argument matched nothing or is not a file.
    #[error("{pattern}: {reason}")]
    Asset {
        /// The argument.
        pattern: String,
        /// Why.
        reason: String,
    },
    /// A local file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No token anywhere.
    #[error(
        "no GitHub token: GITHUB_TOKEN is not set, no --token-file, and `gh auth token` gave none"
    )]
    NoToken,
    /// GitHub failed.
    #[error(transparent)]
    GitHub(#[from] GitHubError),
    /// Assets on GitHub differ from the local files.
    #[error("{} asset(s) on the release differ from the local files: {}", .names.len(), .names.join(", "))]
    Differs {
        /// The asset names.
        names: Vec<String>,
    },
    /// stdout cannot be written.
    #[error("cannot write the results")]
    Output(#[source] std::io::Error),
    /// `--images`: planning or pushing failed.
    #[error(transparent)]
    Images(#[from] PushCommandError),
    /// `--images`: no image of the plan is tagged with the version.
    #[error(
        "no image of the plan is tagged with the version {version} ({{version}} in sgr.toml, or runner/Dockerfile)"
    )]
    NoImages {
        /// The version.
        version: String,
    },
    /// `--images`: the pre-release image is not built.
    #[error("no local image {reference}: nothing to release")]
    NotBuilt {
        /// The local reference.
        reference: String,
    },
    /// `--images`: the engine failed.
    #[error(transparent)]
    Docker(#[from] crate::docker::DockerError),
    /// The version file cannot be rewritten.
    #[error(transparent)]
    VersionWrite(VersionFileError),
}

impl From<ReleaseError> for Failure {
    fn from(error: ReleaseError) -> Self {
        let error = match error {
            ReleaseError::Images(inner) => return Self::from(inner),
            other => other,
        };
        let (status, hint) = match &error {
            ReleaseError::Git(inner) => (ExitStatus::Usage, inner.hint()),
            ReleaseError::NotGitHub { .. } => (
                ExitStatus::Usage,
                Some("name it with --repo OWNER/NAME (or SGR_GITHUB_REPO)".to_owned()),
            ),
            ReleaseError::NoToken => (
                ExitStatus::Usage,
                Some("export GITHUB_TOKEN, pass --token-file FILE, or run gh auth login".to_owned()),
            ),
            ReleaseError::Differs { .. } => (
                ExitStatus::Failed,
                Some("re-run with --replace to upload the local files in their place".to_owned()),
            ),
            ReleaseError::GitHub(inner) if inner.status() == Some(401) => (
                ExitStatus::Failed,
                Some("the token was refused: check GITHUB_TOKEN (it needs the repo or contents:write scope)".to_owned()),
            ),
            ReleaseError::GitHub(_) => (
                ExitStatus::Failed,
                Some("run the same command again: it resumes where this one stopped".to_owned()),
            ),
            ReleaseError::Version(_) | ReleaseError::NoCommit | ReleaseError::Asset { .. } | ReleaseError::Read { .. } => {
                (ExitStatus::Usage, None)
            }
            ReleaseError::NoImages { .. } => (ExitStatus::Usage, None),
            ReleaseError::NotBuilt { .. } => (
                ExitStatus::Failed,
                Some("run sgr build first: it tags images with the pre-release version".to_owned()),
            ),
            ReleaseError::Docker(crate::docker::DockerError::Unreachable { .. }) => (
                ExitStatus::Usage,
                Some("start the engine, or point DOCKER_HOST (or --docker-host) at it".to_owned()),
            ),
            ReleaseError::Output(_)
            | ReleaseError::Images(_)
            | ReleaseError::Docker(_)
            | ReleaseError::VersionWrite(_) => (ExitStatus::Failed, None),
        };
        Self::new(error, status, hint)
    }
}

/// A file to attach.
#[derive(Clone, Debug, Serialize)]
struct LocalAsset {
    name: String,
    #[serde(skip)]
    path: PathBuf,
    size: u64,
    sha256: String,
}

/// What the release will be.
#[derive(Debug, Serialize)]
struct ReleasePlan {
    repository: String,
    /// The repository's owner and name, for the client.
    #[serde(skip)]
    owner_and_name: (String, String),
    tag: String,
    target: String,
    prerelease: bool,
    draft: bool,
    notes: String,
    assets: Vec<LocalAsset>,
}

/// One asset row of the summary.
#[derive(Debug, Serialize)]
struct AssetRow {
    name: String,
    size: u64,
    sha256: String,
    result: &'static str,
}

/// The outcome.
#[derive(Debug, Serialize)]
struct ReleaseReport {
    repository: String,
    tag: String,
    url: String,
    draft: bool,
    prerelease: bool,
    created: bool,
    assets: Vec<AssetRow>,
}

/// Run `sgr release`.
///
/// # Errors
/// Usage (2) or GitHub failures (1), with hints.
pub fn run(
    args: &ReleaseArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    run_inner(args, global, printer, runtime).map_err(Failure::from)
}

/// `owner/name` from `--repo` or the remote.
fn repository(args: &ReleaseArgs, git: &GitRepository) -> Result<(String, String), ReleaseError> {
    let text = if let Some(text) = &args.repo {
        text.clone()
    } else {
        let remote = git.remote()?.ok_or_else(|| ReleaseError::NotGitHub {
            reason: "the repository has no remote".to_owned(),
        })?;
        if remote.host.is_empty() {
            return Err(ReleaseError::NotGitHub {
                reason: format!("the remote {} is a local path", remote.raw),
            });
        }
        remote.path.clone()
    };
    let parts: Vec<&str> = text.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        [owner, name] if !owner.is_empty() && !name.is_empty() => {
            Ok(((*owner).to_owned(), (*name).to_owned()))
        }
        _ => Err(ReleaseError::NotGitHub {
            reason: format!("'{text}' is not OWNER/NAME"),
        }),
    }
}

fn sha256_of(path: &Path) -> Result<(u64, String), ReleaseError> {
    let read = |source| ReleaseError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(read)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let count = file.read(&mut buffer).map_err(read)?;
        if count == 0 {
            break;
        }
        size += count as u64;
        hasher.update(&buffer[..count]);
    }
    Ok((size, hex(&hasher.finalize())))
}

/// Expand the arguments into files, checked and hashed.
fn assets(patterns: &[String]) -> Result<Vec<LocalAsset>, ReleaseError> {
    let mut found: Vec<LocalAsset> = Vec::new();
    for pattern in patterns {
        let paths: Vec<PathBuf> = if pattern.contains(['*', '?', '[']) {
            glob::glob(pattern)
                .map_err(|error| ReleaseError::Asset {
                    pattern: pattern.clone(),
                    reason: format!("not a valid pattern: {error}"),
                })?
                .filter_map(Result::ok)
                .filter(|path| path.is_file())
                .collect()
        } else {
            vec![PathBuf::from(pattern)]
        };
        if paths.is_empty() {
            return Err(ReleaseError::Asset {
                pattern: pattern.clone(),
                reason: "matches no file".to_owned(),
            });
        }
        for path in paths {
            if !path.is_file() {
                return Err(ReleaseError::Asset {
                    pattern: pattern.clone(),
                    reason: format!("{} is not a file", path.display()),
                });
            }
            let name = path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            if name == CHECKSUMS {
                return Err(ReleaseError::Asset {
                    pattern: pattern.clone(),
                    reason: format!("{CHECKSUMS} is made by sgr; leave it out"),
                });
            }
            if let Some(other) = found.iter().find(|asset| asset.name == name) {
                if other.path == path {
                    continue;
                }
                return Err(ReleaseError::Asset {
                    pattern: pattern.clone(),
                    reason: format!(
                        "{} and {} would both be named {name}",
                        other.path.display(),
                        path.display()
                    ),
                });
            }
            let (size, sha256) = sha256_of(&path)?;
            found.push(LocalAsset {
                name,
                path,
                size,
                sha256,
            });
        }
    }
    found.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(found)
}

/// The token: `GITHUB_TOKEN`, `--token-file`, `gh auth token`.
fn token(args: &ReleaseArgs) -> Result<SecretString, ReleaseError> {
    if let Some(token) = env::process(env::GITHUB_TOKEN).filter(|token| !token.trim().is_empty()) {
        return Ok(SecretString::from(token.trim().to_owned()));
    }
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|source| ReleaseError::Read {
            path: path.clone(),
            source,
        })?;
        let token = text.trim();
        if !token.is_empty() {
            return Ok(SecretString::from(token.to_owned()));
        }
    }
    let from_gh = std::process::Command::new("gh")
        .args(["auth", "token"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .map(|text| text.trim().to_owned())
        .filter(|token| !token.is_empty());
    from_gh.map(SecretString::from).ok_or(ReleaseError::NoToken)
}

/// Notes: the file, or the commit subjects since the previous version tag.
fn notes(
    args: &ReleaseArgs,
    git: &GitRepository,
    version: &Version,
    tag: &str,
) -> Result<String, ReleaseError> {
    if let Some(path) = &args.notes_file {
        return std::fs::read_to_string(path).map_err(|source| ReleaseError::Read {
            path: path.clone(),
            source,
        });
    }
    let previous = git
        .version_tags()?
        .into_iter()
        .filter(|(name, other)| name != tag && other.precedence(version).is_lt())
        .map(|(name, _)| name)
        .next_back();
    let subjects = git.commit_subjects(previous.as_deref(), NOTES_LIMIT)?;
    let mut text = match &previous {
        Some(previous) => format!("Changes since {previous}:\n\n"),
        None => "Changes:\n\n".to_owned(),
    };
    if subjects.is_empty() {
        text.push_str("- no commits\n");
    }
    for (short, subject) in subjects {
        let _ = writeln!(text, "- {subject} ({short})");
    }
    Ok(text)
}

/// The version file, the version it holds and the version released (with
/// `--images`, the pre-release part dropped: 1.2.3-main-aaaa becomes 1.2.3).
struct Versions {
    path: PathBuf,
    file: VersionFile,
    current: Version,
    release: Version,
}

fn read_versions(args: &ReleaseArgs, git: &GitRepository) -> Result<Versions, ReleaseError> {
    let path = if args.version_file.is_absolute() {
        args.version_file.clone()
    } else {
        git.top_dir().join(&args.version_file)
    };
    let file = VersionFile::read(&path)?;
    let (current, _) = file.version()?;
    let release = if args.images {
        current
            .with_prerelease("")
            .unwrap_or_else(|_| current.clone())
    } else {
        current.clone()
    };
    Ok(Versions {
        path,
        file,
        current,
        release,
    })
}

/// `sgr release`: plan the release, check the token, release the images
/// (`--images`), then print the plan (`--dry-run`) or make GitHub match it.
fn run_inner(
    args: &ReleaseArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), ReleaseError> {
    let git = GitRepository::discover(&args.git.git_dir)?;
    let versions = read_versions(args, &git)?;
    let (plan, checksums_file) = plan_release(args, &git, &versions.release)?;
    // The token is checked before any image is pushed.
    let token = if global.dry_run {
        None
    } else {
        Some(token(args)?)
    };
    if args.images {
        release_images(
            args,
            global,
            printer,
            runtime,
            &versions.current,
            &versions.release,
        )?;
    }
    if global.dry_run {
        return print_plan(&plan, printer);
    }
    let Some(token) = token else {
        return Err(ReleaseError::NoToken);
    };
    let report = publish_with(args, token, &plan, printer, runtime);
    drop(checksums_file);
    let report = report?;
    if args.images && versions.current.to_string() != versions.release.to_string() {
        write_release_version(&versions, printer)?;
    }
    print_report(&report, printer)
}

/// The release: tag, commit, notes, and the assets with their checksum file
/// (kept in a temporary file for as long as the returned handle lives).
fn plan_release(
    args: &ReleaseArgs,
    git: &GitRepository,
    version: &Version,
) -> Result<(ReleasePlan, Option<tempfile::NamedTempFile>), ReleaseError> {
    let tag = format!("{}{version}", args.tag_prefix);
    let target = git.commit()?.ok_or(ReleaseError::NoCommit)?;
    let (owner, name) = repository(args, git)?;
    let mut assets = assets(&args.files)?;
    let notes = notes(args, git, version, &tag)?;
    let checksums_file = if assets.is_empty() {
        None
    } else {
        let (asset, file) = checksums_asset(&assets)?;
        assets.push(asset);
        Some(file)
    };
    let plan = ReleasePlan {
        repository: format!("{owner}/{name}"),
        owner_and_name: (owner, name),
        tag,
        target,
        prerelease: !version.prerelease().is_empty(),
        draft: args.draft,
        notes,
        assets,
    };
    Ok((plan, checksums_file))
}

/// The SHA256SUMS asset of `assets`, written to a temporary file.
fn checksums_asset(
    assets: &[LocalAsset],
) -> Result<(LocalAsset, tempfile::NamedTempFile), ReleaseError> {
    let text = assets.iter().fold(String::new(), |mut text, asset| {
        let _ = writeln!(text, "{}  {}", asset.sha256, asset.name);
        text
    });
    let mut file = tempfile::NamedTempFile::new().map_err(|source| ReleaseError::Read {
        path: PathBuf::from(CHECKSUMS),
        source,
    })?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|source| ReleaseError::Read {
        path: file.path().to_path_buf(),
        source,
    })?;
    let digest = sha256_hex(text.as_bytes());
    let asset = LocalAsset {
        name: CHECKSUMS.to_owned(),
        path: file.path().to_path_buf(),
        size: text.len() as u64,
        sha256: digest,
    };
    Ok((asset, file))
}

/// `--dry-run`: the release and its assets with sizes and checksums.
fn print_plan(plan: &ReleasePlan, printer: &Printer) -> Result<(), ReleaseError> {
    let mut human = format!(
        "release {} of {} at {}{}{}\n",
        plan.tag,
        plan.repository,
        plan.target,
        if plan.prerelease {
            " (pre-release)"
        } else {
            ""
        },
        if plan.draft {
            " (draft until the assets are up)"
        } else {
            ""
        },
    );
    for asset in &plan.assets {
        let _ = writeln!(
            human,
            "{}  {}  {}",
            asset.name,
            human_bytes(asset.size),
            asset.sha256
        );
    }
    printer
        .result(human.trim_end(), plan)
        .map_err(ReleaseError::Output)
}

/// Make GitHub match `plan` through a client for the repository it names.
fn publish_with(
    args: &ReleaseArgs,
    token: SecretString,
    plan: &ReleasePlan,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<ReleaseReport, ReleaseError> {
    let (owner, name) = &plan.owner_and_name;
    let waits = printer.clone();
    // octocrab's client spawns its request buffer: it must be built inside the runtime.
    let _runtime = runtime.enter();
    let github = GitHub::new(&args.api_url, token, owner, name)?.on_wait(move |reason, wait| {
        waits.warn(&format!("{reason}; waiting {} s", wait.as_secs().max(1)));
    });
    runtime.block_on(publish(&github, plan, args, printer))
}

/// `--images`: the version file holds the release version, once everything succeeded.
fn write_release_version(versions: &Versions, printer: &Printer) -> Result<(), ReleaseError> {
    let (contents, _) = versions.file.rewritten(
        &versions.release.to_string(),
        crate::version::document::Replacement::KeepMarkers,
    );
    crate::version_file::write_atomic(&versions.path, &contents)
        .map_err(ReleaseError::VersionWrite)?;
    printer.note(&format!(
        "{}: {} -> {}",
        versions.path.display(),
        versions.current,
        versions.release
    ));
    Ok(())
}

/// One line per asset and the release's address.
fn print_report(report: &ReleaseReport, printer: &Printer) -> Result<(), ReleaseError> {
    let table: Vec<String> = report
        .assets
        .iter()
        .map(|row| {
            format!(
                "{}  {}  {}  {}",
                row.name,
                human_bytes(row.size),
                &row.sha256[..row.sha256.len().min(12)],
                row.result
            )
        })
        .chain(std::iter::once(format!(
            "{} {}{}",
            if report.created { "created" } else { "updated" },
            report.url,
            if report.draft { " (draft)" } else { "" }
        )))
        .collect();
    printer
        .result(&table.join("\n"), report)
        .map_err(ReleaseError::Output)
}

/// `--images`: tag the images built for `current` with `release` and push
/// them (digests checked by the push); in a dry run, show what would happen.
fn release_images(
    args: &ReleaseArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
    current: &Version,
    release: &Version,
) -> Result<(), ReleaseError> {
    let prepared = prepare(&shared::plan_selection(
        &args.git,
        &args.plan,
        &[],
        std::collections::BTreeMap::new(),
    ))
    .map_err(|error| PushCommandError::from(super::build::BuildCommandError::from(error)))?;
    let current_tag = crate::version::branch::docker_tag(&current.to_string());
    let release_tag = crate::version::branch::docker_tag(&release.to_string());
    let sources: Vec<String> = prepared
        .planned
        .iter()
        .filter_map(|image| {
            image
                .tags
                .iter()
                .find(|reference| crate::docker::split_tag(reference).1 == current_tag)
                .cloned()
        })
        .collect();
    if sources.is_empty() {
        return Err(ReleaseError::NoImages {
            version: current.to_string(),
        });
    }
    let targets: Vec<String> = sources
        .iter()
        .map(|source| format!("{}:{release_tag}", crate::docker::split_tag(source).0))
        .collect();
    if global.dry_run {
        for (source, target) in sources.iter().zip(&targets) {
            printer.note(&format!("would tag {source} as {target}"));
        }
    } else {
        runtime.block_on(async {
            let engine = crate::docker::Engine::connect(args.engine.docker_host.as_deref()).await?;
            for (source, target) in sources.iter().zip(&targets) {
                let image =
                    engine
                        .inspect(source)
                        .await?
                        .ok_or_else(|| ReleaseError::NotBuilt {
                            reference: source.clone(),
                        })?;
                engine.tag(&image.id, target).await?;
                printer.note(&format!("tagged {source} as {target}"));
            }
            Ok::<_, ReleaseError>(())
        })?;
    }
    let settings = TransferSettings {
        images: push::reference_images(&targets, &prepared.naming)?,
        registries: shared::registry_selections(&args.targets, &env::process)
            .map_err(PushCommandError::from)?,
        atomic: true,
        create_repositories: !args.targets.no_create_repos,
        docker_host: args.engine.docker_host.clone(),
        timeouts: Timeouts::from_lookup(&crate::env::process).map_err(PushCommandError::from)?,
    };
    let record_in = crate::git::GitRepository::discover(&args.git.git_dir)
        .ok()
        .map(|repository| repository.git_dir().to_path_buf());
    push::deliver(
        settings,
        record_in.as_deref(),
        global.dry_run,
        printer,
        runtime,
    )?;
    Ok(())
}

/// Make GitHub match the plan.
async fn publish(
    github: &GitHub,
    plan: &ReleasePlan,
    args: &ReleaseArgs,
    printer: &Printer,
) -> Result<ReleaseReport, ReleaseError> {
    let found = github.find_release(&plan.tag).await?;
    let (mut release, created) = if let Some(release) = found {
        (release, false)
    } else {
        {
            let new = NewRelease {
                tag: &plan.tag,
                name: &plan.tag,
                body: &plan.notes,
                target: &plan.target,
                draft: args.draft,
                prerelease: plan.prerelease,
            };
            match github.create_release(&new).await {
                Ok(release) => (release, true),
                // Made meanwhile by someone else: use it.
                Err(error) if error.already_exists() => match github.find_release(&plan.tag).await?
                {
                    Some(release) => (release, false),
                    None => return Err(error.into()),
                },
                Err(error) => return Err(error.into()),
            }
        }
    };
    printer.note(&format!(
        "{} release {} ({})",
        if created { "created" } else { "found" },
        plan.tag,
        release.html_url
    ));
    if release.prerelease != plan.prerelease {
        printer.warn(&format!(
            "the release {} is {}marked pre-release on GitHub; left as it is",
            plan.tag,
            if release.prerelease { "" } else { "not " }
        ));
    }
    let remote = github.assets(&release).await?;
    let find = |name: &str| remote.iter().find(|asset| asset.name == name);
    let identical = identical_assets(github, &plan.assets, &remote, printer).await?;
    let same = |local: &LocalAsset, _: &RemoteAsset| identical.contains(&local.name);
    let differing: Vec<String> = plan
        .assets
        .iter()
        .filter(|local| find(&local.name).is_some_and(|remote| !same(local, remote)))
        .map(|local| local.name.clone())
        .collect();
    if !differing.is_empty() && !args.replace {
        return Err(ReleaseError::Differs { names: differing });
    }
    let mut rows = Vec::with_capacity(plan.assets.len());
    for local in &plan.assets {
        let result = match find(&local.name) {
            Some(existing) if same(local, existing) => "up to date",
            Some(existing) => {
                github.delete_asset(existing).await?;
                upload(github, &release, local, printer).await?;
                "replaced"
            }
            None => {
                upload(github, &release, local, printer).await?;
                "uploaded"
            }
        };
        rows.push(AssetRow {
            name: local.name.clone(),
            size: local.size,
            sha256: local.sha256.clone(),
            result,
        });
    }
    if release.draft && args.draft {
        release = github.publish(&release).await?;
        printer.note(&format!("published {}", plan.tag));
    } else if release.draft {
        printer.warn(&format!(
            "the release {} is a draft; run with --draft to publish it",
            plan.tag
        ));
    }
    Ok(ReleaseReport {
        repository: plan.repository.clone(),
        tag: plan.tag.clone(),
        url: release.html_url.clone(),
        draft: release.draft,
        prerelease: release.prerelease,
        created,
        assets: rows,
    })
}

/// The most of a SHA256SUMS asset read back.
const CHECKSUMS_LIMIT: u64 = 1024 * 1024;

/// `<hex>  <name>` lines (`sha256sum` format; `*name` for binary mode too).
fn parse_checksums(text: &[u8]) -> std::collections::BTreeMap<String, String> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|line| {
            let (hash, name) = line.split_once(' ')?;
            let name = name.trim_start_matches(' ').trim_start_matches('*');
            (hash.len() == 64 && hash.bytes().all(|byte| byte.is_ascii_hexdigit()))
                .then(|| (name.to_owned(), hash.to_ascii_lowercase()))
        })
        .collect()
}

/// The names of the local assets the release already holds byte for byte.
/// GitHub's `digest` decides where there is one; assets without it
/// (uploaded before June 2025, GitHub Enterprise Server) are judged by the
/// release's own SHA256SUMS first, else by size and a downloaded hash.
async fn identical_assets(
    github: &GitHub,
    locals: &[LocalAsset],
    remote: &[RemoteAsset],
    printer: &Printer,
) -> Result<std::collections::BTreeSet<String>, ReleaseError> {
    let find = |name: &str| remote.iter().find(|asset| asset.name == name);
    let without_digest = locals
        .iter()
        .any(|local| find(&local.name).is_some_and(|existing| existing.digest.is_none()));
    let mut listed = std::collections::BTreeMap::new();
    let mut checksums_hash = None;
    if without_digest && let Some(sums) = find(CHECKSUMS) {
        let mut text = Vec::new();
        github
            .download(sums, CHECKSUMS_LIMIT, &mut |bytes| {
                text.extend_from_slice(bytes);
            })
            .await?;
        checksums_hash = Some(sha256_hex(&text));
        listed = parse_checksums(&text);
    }
    let mut identical = std::collections::BTreeSet::new();
    for local in locals {
        let Some(existing) = find(&local.name) else {
            continue;
        };
        let same = match &existing.digest {
            Some(digest) => *digest == format!("sha256:{}", local.sha256),
            None if existing.size != local.size => false,
            None if local.name == CHECKSUMS => checksums_hash.as_deref() == Some(&local.sha256),
            None => {
                if let Some(hash) = listed.get(&local.name) {
                    *hash == local.sha256
                } else {
                    printer.detail(&format!(
                        "{} has no digest on GitHub and is not in {CHECKSUMS}: downloading it to compare",
                        local.name
                    ));
                    let mut hasher = Sha256::new();
                    github
                        .download(existing, local.size, &mut |bytes| hasher.update(bytes))
                        .await?;
                    hex(&hasher.finalize()) == local.sha256
                }
            }
        };
        if same {
            identical.insert(local.name.clone());
        }
    }
    Ok(identical)
}

async fn upload(
    github: &GitHub,
    release: &ReleaseInfo,
    local: &LocalAsset,
    printer: &Printer,
) -> Result<(), ReleaseError> {
    let uploaded = github
        .upload(release, &local.name, &local.path, local.size)
        .await?;
    if let Some(digest) = &uploaded.digest
        && *digest != format!("sha256:{}", local.sha256)
    {
        return Err(GitHubError::Api {
            action: format!("store {} intact", local.name),
            status: 200,
            message: format!("GitHub holds {digest}, the file is sha256:{}", local.sha256),
            codes: Vec::new(),
        }
        .into());
    }
    printer.note(&format!(
        "uploaded {} ({})",
        local.name,
        human_bytes(local.size)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_sha256_hex() -> Result<(), ReleaseError> {
        let directory = tempfile::tempdir().map_err(|source| ReleaseError::Read {
            path: PathBuf::from("tmp"),
            source,
        })?;
        let path = directory.path().join("a.bin");
        std::fs::write(&path, b"abc").map_err(|source| ReleaseError::Read {
            path: path.clone(),
            source,
        })?;
        assert_eq!(
            sha256_of(&path)?,
            (
                3,
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad".to_owned()
            )
        );
        Ok(())
    }

    #[test]
    fn file_patterns_must_match_and_names_must_be_unique() {
        let Ok(directory) = tempfile::tempdir() else {
            panic!("no temporary directory")
        };
        for (sub, name) in [("x", "tool"), ("y", "tool"), ("x", "other")] {
            let folder = directory.path().join(sub);
            assert!(std::fs::create_dir_all(&folder).is_ok());
            assert!(std::fs::write(folder.join(name), name).is_ok());
        }
        let base = directory.path().display().to_string();
        let found = assets(&[format!("{base}/x/*")]).unwrap_or_default();
        assert_eq!(
            found
                .iter()
                .map(|asset| asset.name.as_str())
                .collect::<Vec<_>>(),
            ["other", "tool"]
        );
        assert!(matches!(
            assets(&[format!("{base}/*/tool")]),
            Err(ReleaseError::Asset { .. })
        ));
        assert!(matches!(
            assets(&[format!("{base}/none-*")]),
            Err(ReleaseError::Asset { .. })
        ));
        assert!(matches!(
            assets(&[format!("{base}/x")]),
            Err(ReleaseError::Asset { .. })
        ));
    }
}
