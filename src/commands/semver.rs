//! `sgr semver`: settings from the command line, a plan of what to write,
//! then the writes.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use thiserror::Error;

use crate::cli::GlobalArgs;
use crate::cli::semver::{SemverArgs, SemverCommand, StampArgs};
use crate::env;
use crate::error::{ExitStatus, Failure};
use crate::git::{GitError, GitRepository};
use crate::output::Printer;
use crate::version::document::Replacement;
use crate::version::stamp::{self, Encoding, StampError};
use crate::version::{ParseError, Version, branch, rc};
use crate::version_file::{self, VersionFile, VersionFileError};

/// What can go wrong in `sgr semver`.
#[derive(Debug, Error)]
pub enum SemverError {
    /// None of the candidate files exists.
    #[error("no version file found: looked for {} in {}", .candidates.join(", "), .directory.display())]
    NoVersionFile {
        /// The `-f` list.
        candidates: Vec<String>,
        /// Where they were looked for.
        directory: PathBuf,
    },
    /// Reading or writing a version file.
    #[error(transparent)]
    File(#[from] VersionFileError),
    /// Git metadata.
    #[error(transparent)]
    Git(#[from] GitError),
    /// `-g` in a repository without version tags.
    #[error("no git tag of {} is a version", .top.display())]
    NoVersionTags {
        /// The work tree.
        top: PathBuf,
    },
    /// The prefix does not make a version.
    #[error("prefix '{prefix}' is not supported: the result '{prefix}{version}' is not a version")]
    BadPrefix {
        /// The `-p` value.
        prefix: String,
        /// The version it was put in front of.
        version: String,
    },
    /// A generated version is invalid (a branch name that cannot be a pre-release).
    #[error("cannot make a version")]
    Generated(#[source] ParseError),
    /// `apply` without targets, or with an empty entry.
    #[error("apply needs target files (-t FILE[,FILE…]){}", if *.empty_entry { "; the list has an empty entry" } else { "" })]
    NoTargets {
        /// Whether an entry was empty rather than the list missing.
        empty_entry: bool,
    },
    /// An `apply` target without a marker to replace.
    #[error("{} has no {} to put the version in", .path.display(), .marker)]
    TargetWithoutMarker {
        /// The target.
        path: PathBuf,
        /// What was looked for.
        marker: &'static str,
    },
    /// A bad `--decode` value.
    #[error("cannot decode the stamp")]
    Stamp(#[source] StampError),
    /// `SOURCE_DATE_EPOCH` is not a number of seconds.
    #[error(
        "{} is '{value}', not a number of seconds since 1970",
        env::SOURCE_DATE_EPOCH
    )]
    SourceDateEpoch {
        /// The value.
        value: String,
    },
    /// stdout could not be written.
    #[error("cannot write the result")]
    Output(#[source] io::Error),
    /// A bump past the largest version component.
    #[error(transparent)]
    Overflow(#[from] crate::version::OverflowError),
}

impl SemverError {
    fn exit_status(&self) -> ExitStatus {
        match self {
            Self::File(VersionFileError::Write { .. })
            | Self::Output(_)
            | Self::Git(GitError::Read { .. }) => ExitStatus::Failed,
            _ => ExitStatus::Usage,
        }
    }

    fn hint(&self) -> Option<String> {
        match self {
            Self::NoVersionFile { .. } => Some(
                "add a line like 'Version: <repo-version>0.1.0</repo-version>' to README.md, or name the file with -f FILE".to_owned(),
            ),
            Self::File(VersionFileError::Content { source, .. }) => match source {
                crate::version::document::DocumentError::NoVersion { .. } => Some(
                    "add '<repo-version>0.1.0</repo-version>' (Markdown) or ':Revision: 0.1.0' (AsciiDoc) to the file".to_owned(),
                ),
                crate::version::document::DocumentError::Disagree { .. } => {
                    Some("make every <repo-version> tag in the file hold the same version".to_owned())
                }
                crate::version::document::DocumentError::Invalid { .. } => {
                    Some("a version looks like 1.2.3, v1.2 or 1.2.3-rc.1+build".to_owned())
                }
                crate::version::document::DocumentError::NestedTags { .. } => {
                    Some("keep one <repo-version>VERSION</repo-version> per place, none inside another".to_owned())
                }
            },
            Self::Overflow(_) => Some("a version component is at most 18446744073709551615; set the version by hand".to_owned()),
            Self::Git(error) => error.hint(),
            Self::NoVersionTags { .. } => Some("tag a release first (git tag 0.1.0), or read the file instead of -g".to_owned()),
            Self::BadPrefix { .. } => Some("use -p v, or no prefix".to_owned()),
            Self::NoTargets { .. } => Some("name the files: sgr semver apply -t Dockerfile,docs/index.md".to_owned()),
            Self::TargetWithoutMarker { .. } => {
                Some("add <repo-version></repo-version> where the version belongs; it is filled in on apply".to_owned())
            }
            Self::Stamp(_) => Some("stamps look like aaaagipajnu (base25) or 1gn6sG (base62)".to_owned()),
            Self::SourceDateEpoch { .. } => Some(format!("unset {} or set it to e.g. $(git log -1 --format=%ct)", env::SOURCE_DATE_EPOCH)),
            Self::Generated(_) | Self::File(_) | Self::Output(_) => None,
        }
    }
}

impl From<SemverError> for Failure {
    fn from(error: SemverError) -> Self {
        let status = error.exit_status();
        let hint = error.hint();
        Self::new(error, status, hint)
    }
}

/// Where the starting version came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum Source {
    File,
    GitTags,
}

/// One planned write.
#[derive(Debug, Serialize)]
struct PlannedWrite {
    path: PathBuf,
    #[serde(skip)]
    contents: Vec<u8>,
}

/// The result of a version command, as printed.
#[derive(Debug, Serialize)]
struct VersionReport<'a> {
    command: &'static str,
    version: String,
    previous: String,
    source: Source,
    file: Option<&'a Path>,
    major: u64,
    minor: u64,
    patch: u64,
    prerelease: &'a str,
    build: &'a str,
    written: Vec<&'a Path>,
    dry_run: bool,
}

/// Run `sgr semver`.
///
/// # Errors
/// Bad input (exit 2) or a failed write (exit 1); no file is modified on bad input.
pub fn run(
    args: &SemverArgs,
    global: &GlobalArgs,
    printer: &Printer,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), Failure> {
    let command = args.command.clone().unwrap_or(SemverCommand::Extract);
    match &command {
        SemverCommand::Stamp(stamp_args) => stamp_command(stamp_args, printer, lookup),
        SemverCommand::Sort => sort_command(args, printer),
        _ => version_command(&command, args, global, printer, lookup),
    }
    .map_err(Failure::from)
}

fn command_name(command: &SemverCommand) -> &'static str {
    match command {
        SemverCommand::Extract => "extract",
        SemverCommand::Major => "major",
        SemverCommand::Minor => "minor",
        SemverCommand::Patch => "patch",
        SemverCommand::Pre => "pre",
        SemverCommand::Rc => "rc",
        SemverCommand::Apply => "apply",
        SemverCommand::Sort => "sort",
        SemverCommand::Stamp(_) => "stamp",
    }
}

/// The first `-f` candidate that exists.
fn locate_version_file(candidates: &[PathBuf]) -> Result<PathBuf, SemverError> {
    candidates
        .iter()
        .find(|candidate| !candidate.as_os_str().is_empty() && candidate.exists())
        .cloned()
        .ok_or_else(|| SemverError::NoVersionFile {
            candidates: candidates
                .iter()
                .map(|candidate| candidate.display().to_string())
                .collect(),
            directory: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        })
}

fn apply_prefix(version: Version, prefix: Option<&str>) -> Result<Version, SemverError> {
    match prefix {
        None => Ok(version),
        Some("") => Ok(version.with_v_prefix(false)),
        Some("v") => Ok(version.with_v_prefix(true)),
        Some(other) => Err(SemverError::BadPrefix {
            prefix: other.to_owned(),
            version: version.to_string(),
        }),
    }
}

/// Seconds since 1970: `SOURCE_DATE_EPOCH` when set, else the clock.
fn now_seconds(lookup: &dyn Fn(&str) -> Option<String>) -> Result<u64, SemverError> {
    match lookup(env::SOURCE_DATE_EPOCH).filter(|value| !value.is_empty()) {
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| SemverError::SourceDateEpoch { value }),
        None => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs())),
    }
}

fn open_repository(args: &SemverArgs) -> Result<GitRepository, SemverError> {
    Ok(GitRepository::discover(&args.git.git_dir)?)
}

/// The version a command starts from, and where it was read.
struct Start {
    source: Source,
    file: Option<VersionFile>,
    current: Version,
    /// The repository, when reading the version needed it.
    repository: Option<GitRepository>,
}

/// Read the starting version: the highest version tag with `-g`, else the version file.
fn read_start(args: &SemverArgs, printer: &Printer) -> Result<Start, SemverError> {
    let start = if args.from_git_tags {
        let opened = open_repository(args)?;
        let (_, highest) =
            opened
                .version_tags()?
                .pop()
                .ok_or_else(|| SemverError::NoVersionTags {
                    top: opened.top_dir().to_path_buf(),
                })?;
        let file = locate_version_file(&args.files)
            .ok()
            .map(|path| VersionFile::read(&path))
            .transpose()?;
        Start {
            source: Source::GitTags,
            file,
            current: highest,
            repository: Some(opened),
        }
    } else {
        let path = locate_version_file(&args.files)?;
        let file = VersionFile::read(&path)?;
        let (version, _) = file.version()?;
        Start {
            source: Source::File,
            file: Some(file),
            current: version,
            repository: None,
        }
    };
    printer.detail(&match &start.file {
        Some(file) if start.source == Source::File => {
            format!(
                "read {} from {}",
                start.current.original(),
                file.path.display()
            )
        }
        _ => format!("read {} from the git tags", start.current.original()),
    });
    Ok(start)
}

/// The version `command` makes of `start`.
fn next_version(
    command: &SemverCommand,
    args: &SemverArgs,
    start: &mut Start,
    printer: &Printer,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Version, SemverError> {
    let current = &start.current;
    Ok(match command {
        // Sort and stamp never reach here; they have their own functions.
        SemverCommand::Extract
        | SemverCommand::Apply
        | SemverCommand::Sort
        | SemverCommand::Stamp(_) => current.clone(),
        SemverCommand::Major => current.bump_major()?,
        SemverCommand::Minor => current.bump_minor()?,
        SemverCommand::Patch => current.bump_patch()?,
        SemverCommand::Pre => {
            let repository = match start.repository.take() {
                Some(repository) => repository,
                None => open_repository(args)?,
            };
            let branch_name = repository.branch(lookup)?;
            printer.detail(&format!(
                "branch {} ({:?})",
                branch_name.name, branch_name.source
            ));
            let stamp = stamp::encode_base25(now_seconds(lookup)?);
            let identifier = branch::prerelease_identifier(&branch_name.name);
            current
                .with_prerelease(&format!("{identifier}-{stamp}"))
                .map_err(SemverError::Generated)?
        }
        SemverCommand::Rc => {
            let repository = match start.repository.take() {
                Some(repository) => repository,
                None => open_repository(args)?,
            };
            let tags = repository.tag_names()?;
            let candidate = rc::next_candidate(current, tags.iter().map(String::as_str))?;
            for warning in &candidate.warnings {
                printer.detail(&format!("skipped {warning}"));
            }
            candidate.version
        }
    })
}

/// The files `command` rewrites to hold `value`: the `-t` targets for
/// `apply`, else the version file unless nothing changes.
fn planned_writes(
    command: &SemverCommand,
    args: &SemverArgs,
    file: Option<&VersionFile>,
    value: &str,
    printer: &Printer,
) -> Result<Vec<PlannedWrite>, SemverError> {
    let mut writes: Vec<PlannedWrite> = Vec::new();
    if matches!(command, SemverCommand::Apply) {
        let targets = apply_targets(args)?;
        let replacement = if args.substitute {
            Replacement::Substitute
        } else {
            Replacement::KeepMarkers
        };
        for target in targets {
            let target_file = VersionFile::read(&target)?;
            target_file.check_markers()?;
            if target_file.marker_count() == 0 {
                return Err(SemverError::TargetWithoutMarker {
                    path: target,
                    marker: target_file.format.marker(),
                });
            }
            let (contents, changed) = target_file.rewritten(value, replacement);
            if changed {
                writes.push(PlannedWrite {
                    path: target,
                    contents,
                });
            }
        }
    } else if let Some(file) = file {
        let (contents, changed) = file.rewritten(value, Replacement::KeepMarkers);
        if changed && !matches!(command, SemverCommand::Extract) {
            writes.push(PlannedWrite {
                path: file.path.clone(),
                contents,
            });
        }
    } else if !matches!(command, SemverCommand::Extract) {
        printer.warn("no version file exists, so the new version is printed but written nowhere");
    }
    Ok(writes)
}

/// Write the planned files (in a dry run, say what would be written).
fn execute_writes(
    writes: &[PlannedWrite],
    value: &str,
    dry_run: bool,
    printer: &Printer,
) -> Result<(), SemverError> {
    for write in writes {
        if dry_run {
            printer.note(&format!(
                "would write {} to {}",
                value,
                write.path.display()
            ));
        } else {
            version_file::write_atomic(&write.path, &write.contents)?;
            printer.detail(&format!("wrote {} to {}", value, write.path.display()));
        }
    }
    Ok(())
}

/// A version command: read the start, make the next version, plan the
/// writes, write, report.
fn version_command(
    command: &SemverCommand,
    args: &SemverArgs,
    global: &GlobalArgs,
    printer: &Printer,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SemverError> {
    let mut start = read_start(args, printer)?;
    let next = next_version(command, args, &mut start, printer, lookup)?;
    let next = apply_prefix(next, args.prefix.as_deref())?;
    let value = next.original();
    let writes = planned_writes(command, args, start.file.as_ref(), &value, printer)?;
    execute_writes(&writes, &value, global.dry_run, printer)?;
    let report = VersionReport {
        command: command_name(command),
        version: value.clone(),
        previous: start.current.original(),
        source: start.source,
        file: start.file.as_ref().map(|file| file.path.as_path()),
        major: next.semver().major,
        minor: next.semver().minor,
        patch: next.semver().patch,
        prerelease: next.prerelease(),
        build: next.build_metadata(),
        written: if global.dry_run {
            Vec::new()
        } else {
            writes.iter().map(|write| write.path.as_path()).collect()
        },
        dry_run: global.dry_run,
    };
    printer.result(&value, &report).map_err(SemverError::Output)
}

/// The `-t` list, every entry present and non-empty.
fn apply_targets(args: &SemverArgs) -> Result<Vec<PathBuf>, SemverError> {
    if args.targets.is_empty() {
        return Err(SemverError::NoTargets { empty_entry: false });
    }
    if args.targets.iter().any(|target| target.trim().is_empty()) {
        return Err(SemverError::NoTargets { empty_entry: true });
    }
    Ok(args
        .targets
        .iter()
        .map(|target| PathBuf::from(target.trim()))
        .collect())
}

#[derive(Debug, Serialize)]
struct SortedTag {
    name: String,
    version: String,
}

#[derive(Debug, Serialize)]
struct SortReport {
    tags: Vec<SortedTag>,
}

fn sort_command(args: &SemverArgs, printer: &Printer) -> Result<(), SemverError> {
    let repository = open_repository(args)?;
    let tags: Vec<SortedTag> = repository
        .version_tags()?
        .into_iter()
        .filter(|(_, version)| args.include_prereleases || version.prerelease().is_empty())
        .map(|(name, version)| SortedTag {
            name,
            version: version.to_string(),
        })
        .collect();
    let human = tags
        .iter()
        .map(|tag| tag.name.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if tags.is_empty() {
        printer.warn(&format!(
            "no git tag of {} is a version",
            repository.top_dir().display()
        ));
        if printer.format() == crate::output::OutputFormat::Human {
            return Ok(());
        }
    }
    printer
        .result(&human, &SortReport { tags })
        .map_err(SemverError::Output)
}

#[derive(Debug, Serialize)]
struct StampReport {
    stamp: String,
    encoding: Encoding,
    seconds: u64,
    utc: String,
}

fn stamp_command(
    args: &StampArgs,
    printer: &Printer,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(), SemverError> {
    let (stamp_text, encoding, seconds) = if let Some(text) = &args.decode {
        let stamp_text = stamp::stamp_of(text.trim());
        let encoding = match args.encoding {
            Some(encoding) => encoding,
            None => stamp::detect(stamp_text).map_err(SemverError::Stamp)?,
        };
        let seconds = stamp::decode(stamp_text, encoding).map_err(SemverError::Stamp)?;
        (stamp_text.to_owned(), encoding, seconds)
    } else {
        let seconds = now_seconds(lookup)?;
        let encoding = args.encoding.unwrap_or(Encoding::Base25);
        let stamp_text = match encoding {
            Encoding::Base25 => stamp::encode_base25(seconds),
            Encoding::Base62 => stamp::encode_base62(seconds),
        };
        (stamp_text, encoding, seconds)
    };
    let report = StampReport {
        stamp: stamp_text,
        encoding,
        seconds,
        utc: stamp::format_utc(seconds),
    };
    let human = if args.decode.is_some() {
        &report.utc
    } else {
        &report.stamp
    };
    printer.result(human, &report).map_err(SemverError::Output)
}
