//! What `sgr render` and `sgr stencil` share: reading the input, gathering
//! the context (git, version file, user, environment, values, AWS), writing
//! the output atomically.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::build::prepare::{PlanSelection, PrepareError, prepare};
use crate::cli::template::{DialectFlag, TemplateArgs};
use crate::error::{ExitStatus, Failure};
use crate::git::GitRepository;
use crate::output::Printer;
use crate::template::context::{self, ContextInputs, Needs, ValuesError};
use crate::template::dialect::{self, Dialect};
use crate::template::go::{Template, Value as GoValue};
use crate::template::process_host::ProcessHost;
use crate::template::settings::ContextSettings;
pub use crate::template::settings::RenderSettings;
use crate::template::tera_dialect;
use crate::version_file::VersionFile;
use crate::{aws, env};

/// Failures of the template commands.
#[derive(Debug, Error)]
pub enum TemplateCommandError {
    /// The template cannot be read.
    #[error("cannot read the template {}", .path.display())]
    Input {
        /// The file (`<stdin>` for standard input).
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A values file cannot be read or is not a mapping.
    #[error("values file {}: {reason}", .path.display())]
    ValuesFile {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A `--values` or `--set` entry is malformed.
    #[error("bad value")]
    Values(#[source] ValuesError),
    /// The template is invalid or failed to render.
    #[error("{}:{message}", .path.display())]
    Template {
        /// The template.
        path: PathBuf,
        /// `line:col: message`.
        message: String,
    },
    /// `--error-warnings` and warnings occurred.
    #[error("{count} warning(s) occurred and --error-warnings is set; nothing was written")]
    Warnings {
        /// How many.
        count: usize,
    },
    /// The output file cannot be written; it is unchanged.
    #[error("cannot write {} (it is unchanged)", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The output names a device, FIFO, socket or directory: it would be replaced.
    #[error("{} is a {kind}, not a regular file: sgr replaces its output file, so it refuses to write there", .path.display())]
    NotARegularFile {
        /// The path given to `-o`.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// stdout failed.
    #[error("cannot write the result")]
    Output(#[source] io::Error),
}

impl From<TemplateCommandError> for Failure {
    fn from(error: TemplateCommandError) -> Self {
        let (status, hint) = match &error {
            TemplateCommandError::Write { .. } | TemplateCommandError::Output(_) => {
                (ExitStatus::Failed, None)
            }
            TemplateCommandError::Values(_) => (
                ExitStatus::Usage,
                Some("values are KEY=VALUE, e.g. --values Namespace=ci,Image=x".to_owned()),
            ),
            TemplateCommandError::Input { .. } => (
                ExitStatus::Usage,
                Some("name an existing file, or - for stdin".to_owned()),
            ),
            TemplateCommandError::NotARegularFile { .. } => (
                ExitStatus::Usage,
                Some("use - for stdout (e.g. -o - > /dev/null)".to_owned()),
            ),
            TemplateCommandError::Warnings { .. } => (
                ExitStatus::Usage,
                Some("fix the warnings above, or drop --error-warnings".to_owned()),
            ),
            TemplateCommandError::Template { message, .. }
                if message.ends_with(crate::template::isolated::OUT_OF_MEMORY) =>
            {
                (
                    ExitStatus::Usage,
                    Some(
                        "the limit is four times --max-output, plus four times the context and 512 MiB; raise --max-output if the value is meant to be that large"
                            .to_owned(),
                    ),
                )
            }
            _ => (ExitStatus::Usage, None),
        };
        Self::new(error, status, hint)
    }
}

/// The template text and the name used in messages.
pub struct Source {
    /// File path, or `<stdin>`.
    pub path: PathBuf,
    /// The text.
    pub text: String,
}

/// Read the template: `None` or `-` is stdin.
///
/// # Errors
/// The file cannot be read or is not UTF-8.
pub fn read_source(path: Option<&Path>) -> Result<Source, TemplateCommandError> {
    match path {
        None => read_stdin(),
        Some(path) if path.as_os_str() == "-" => read_stdin(),
        Some(path) => std::fs::read_to_string(path)
            .map(|text| Source {
                path: path.to_path_buf(),
                text,
            })
            .map_err(|source| TemplateCommandError::Input {
                path: path.to_path_buf(),
                source,
            }),
    }
}

fn read_stdin() -> Result<Source, TemplateCommandError> {
    let mut text = String::new();
    io::stdin()
        .read_to_string(&mut text)
        .map_err(|source| TemplateCommandError::Input {
            path: PathBuf::from("<stdin>"),
            source,
        })?;
    Ok(Source {
        path: PathBuf::from("<stdin>"),
        text,
    })
}

/// The user values: `--values-file`s, then `--values`, then `--set`.
fn user_values(args: &ContextSettings) -> Result<Map<String, Value>, TemplateCommandError> {
    let mut values = Map::new();
    for path in &args.values_files {
        let text =
            std::fs::read_to_string(path).map_err(|error| TemplateCommandError::ValuesFile {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        let parsed: Value = if path
            .extension()
            .is_some_and(|extension| extension == "json")
        {
            serde_json::from_str(&text).map_err(|error| TemplateCommandError::ValuesFile {
                path: path.clone(),
                reason: error.to_string(),
            })?
        } else {
            serde_saphyr::from_str(&text).map_err(|error| TemplateCommandError::ValuesFile {
                path: path.clone(),
                reason: error.to_string(),
            })?
        };
        let levels = context::depth(&parsed);
        if levels > context::MAX_DEPTH {
            return Err(TemplateCommandError::ValuesFile {
                path: path.clone(),
                reason: format!(
                    "values nest {levels} levels deep; the limit is {}",
                    context::MAX_DEPTH
                ),
            });
        }
        match parsed {
            Value::Object(map) => context::merge(&mut values, map),
            Value::Null => {}
            _ => {
                return Err(TemplateCommandError::ValuesFile {
                    path: path.clone(),
                    reason: "the document is not a mapping of names to values".to_owned(),
                });
            }
        }
    }
    for list in &args.values {
        for (key, value) in
            context::parse_duat_values(list).map_err(TemplateCommandError::Values)?
        {
            values.insert(key, Value::String(value));
        }
    }
    for pair in &args.set {
        context::apply_set(&mut values, pair).map_err(TemplateCommandError::Values)?;
    }
    Ok(values)
}

/// The context for `source`, and the warnings met while gathering it.
///
/// # Errors
/// Bad values or values files.
pub fn gather(
    args: &ContextSettings,
    source: &Source,
    runtime: &tokio::runtime::Runtime,
) -> Result<(Value, Vec<String>), TemplateCommandError> {
    let mut warnings = Vec::new();
    let values = user_values(args)?;
    let module_directory =
        std::fs::canonicalize(&args.module).unwrap_or_else(|_| args.module.clone());
    let module_name = module_directory
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let repository = match GitRepository::discover(&args.git_dir) {
        Ok(repository) => Some(repository),
        Err(error) => {
            warnings.push(format!("{error}: the git variables are not set"));
            None
        }
    };
    let needs = if args.all_variables {
        Needs::ALL
    } else {
        Needs::of_template(&source.text)
    };
    let git = match &repository {
        Some(repository) => match repository.metadata_for(&env::process, needs) {
            Ok(metadata) => {
                if needs.branch && metadata.branch.is_none() {
                    warnings.push("HEAD is detached and no CI branch variable is set: duat.gitBranch is empty".to_owned());
                }
                Some(metadata)
            }
            Err(error) => {
                warnings.push(format!("{error}: the git variables are not set"));
                None
            }
        },
        None => None,
    };
    let base = repository.as_ref().map_or_else(
        || PathBuf::from("."),
        |repository| repository.top_dir().to_path_buf(),
    );
    let version = version_of(&args.version_files, &base, &mut warnings);
    // duat looked AWS up on every run; sgr only when the template mentions it.
    let aws_ecr = if source.text.contains("awsecr") {
        match runtime.block_on(aws::default_ecr_registry()) {
            Ok(registry) => Some(registry),
            Err(error) => {
                warnings.push(format!(
                    "duat.awsecr is not set: {}",
                    crate::error::Failure::new(error, ExitStatus::Usage, None).message()
                ));
                None
            }
        }
    } else {
        None
    };
    let inputs = ContextInputs {
        version,
        module: context::scrub_module(&module_name),
        git,
        environment: std::env::vars().collect::<BTreeMap<_, _>>(),
        values,
        aws_ecr,
        needs,
    };
    let mut context_value = context::build(&inputs);
    if args.all_variables || crate::build::images::referenced_in(&source.text) {
        add_images(&mut context_value, repository.as_ref(), &mut warnings);
    }
    Ok((context_value, warnings))
}

/// Add `images` to the context; values of the user's under `images` win, key by key.
fn add_images(
    context_value: &mut Value,
    repository: Option<&GitRepository>,
    warnings: &mut Vec<String>,
) {
    if let Some(repository) = repository
        && let Some(object) = context_value.as_object_mut()
    {
        let mut images = images_variable(repository, warnings);
        if let Some(user) = object.remove("images") {
            crate::build::images::merge(&mut images, user);
        }
        object.insert("images".to_owned(), images);
    }
}

/// The version in the first of `candidates` (relative to `base`) that exists;
/// `None` with a warning when there is none or it holds no version.
fn version_of(
    candidates: &[PathBuf],
    base: &Path,
    warnings: &mut Vec<String>,
) -> Option<crate::version::Version> {
    let version_file = candidates
        .iter()
        .map(|candidate| base.join(candidate))
        .find(|candidate| candidate.exists());
    if let Some(path) = version_file {
        match VersionFile::read(&path).and_then(|file| file.version()) {
            Ok((version, _)) => Some(version),
            Err(error) => {
                warnings.push(format!(
                    "{}: the version variables are not set",
                    crate::error::Failure::new(error, ExitStatus::Usage, None).message()
                ));
                None
            }
        }
    } else {
        let names: Vec<String> = candidates
            .iter()
            .map(|path| path.display().to_string())
            .collect();
        warnings.push(format!(
            "no version file ({}) in {}: the version variables are not set",
            names.join(", "),
            base.display()
        ));
        None
    }
}

/// `images`: the plan's images by key, with what `sgr push` recorded
/// ([`crate::build::images`]). A repository without images gives an empty map; a broken
/// `sgr.toml` a warning (the template may not need it).
fn images_variable(repository: &GitRepository, warnings: &mut Vec<String>) -> Value {
    let prepared = prepare(&PlanSelection {
        git_dir: repository.top_dir(),
        config: None,
        org: None,
        images: &[],
        extra_args: BTreeMap::new(),
    });
    match prepared {
        Ok(prepared) => {
            let (images, collisions) = crate::build::images::variable(
                &prepared.planned,
                &crate::build::images::PushRecord::read(repository.git_dir()),
            );
            warnings.extend(collisions);
            images
        }
        Err(PrepareError::Plan(crate::build::plan::PlanError::NothingToBuild { .. })) => {
            Value::Object(serde_json::Map::new())
        }
        Err(error) => {
            warnings.push(format!(
                "{}: the images variable is empty",
                crate::error::Failure::new(error, ExitStatus::Usage, None).message()
            ));
            Value::Object(serde_json::Map::new())
        }
    }
}

/// The context as it may be shown: values under secret-looking names and
/// passwords inside URLs masked ([`crate::secrets::masked`]).
#[must_use]
pub fn masked(context: &Value) -> Value {
    crate::secrets::masked(context)
}

/// Choose the dialect of `source` ([`dialect::choose`]) and say why under `-v`.
#[must_use]
pub fn choose_dialect(
    flag: Option<Dialect>,
    configured: Option<Dialect>,
    source: &Source,
    printer: &Printer,
) -> Dialect {
    let detection = dialect::choose(flag, configured, &source.text);
    printer.detail(&format!(
        "{}: dialect {} ({})",
        source.path.display(),
        detection.dialect,
        detection.reason
    ));
    detection.dialect
}

/// Render `source` in `dialect` with `context`.
///
/// # Errors
/// A broken template or a failed render, named with the template's path; an
/// output past `settings.max_output`.
pub fn render_in(
    dialect: Dialect,
    source: &Source,
    context: &Value,
    settings: RenderSettings,
) -> Result<String, TemplateCommandError> {
    let rendered = if crate::template::isolated::needs_isolation(dialect, &source.text) {
        crate::template::isolated::render(&crate::template::isolated::Job {
            dialect,
            path: source.path.clone(),
            text: source.text.clone(),
            context: context.clone(),
            strict: settings.strict,
            allow_missing: settings.allow_missing,
            max_output: settings.max_output,
        })
    } else {
        render_here(dialect, source, context, settings)
    };
    rendered.map_err(|message| TemplateCommandError::Template {
        path: source.path.clone(),
        message,
    })
}

/// The isolated renderer's side ([`crate::template::isolated`]): render a job in this process.
///
/// # Errors
/// The template's error as text.
pub fn render_isolated_job(job: &crate::template::isolated::Job) -> Result<String, String> {
    render_here(
        job.dialect,
        &Source {
            path: job.path.clone(),
            text: job.text.clone(),
        },
        &job.context,
        RenderSettings {
            strict: job.strict,
            allow_missing: job.allow_missing,
            max_output: job.max_output,
        },
    )
}

/// Render in this process.
fn render_here(
    dialect: Dialect,
    source: &Source,
    context: &Value,
    settings: RenderSettings,
) -> Result<String, String> {
    let max_output = usize::try_from(settings.max_output).unwrap_or(usize::MAX);
    match dialect {
        Dialect::Go => Template::parse(&source.text)
            .and_then(|parsed| {
                parsed.render_limited(
                    &GoValue::from(context),
                    &ProcessHost,
                    settings.strict,
                    max_output,
                )
            })
            .map_err(|error| error.to_string()),
        Dialect::Tera => tera_dialect::render_limited(
            &source.path.display().to_string(),
            &source.text,
            context,
            settings.allow_missing,
            max_output,
        )
        .map_err(|error| error.to_string()),
    }
}

/// What `sgr render` and `sgr stencil` were asked for: their flags
/// resolved once ([`TemplateCommandSettings::resolve`]).
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // independent flags
pub struct TemplateCommandSettings {
    /// Where the variables come from.
    pub context: ContextSettings,
    /// How strictly the template renders.
    pub render: RenderSettings,
    /// The dialect forced, `None` to detect it.
    pub dialect: Option<Dialect>,
    /// The output file; `None` is stdout.
    pub out: Option<PathBuf>,
    /// Print the variables instead of rendering.
    pub print_context: bool,
    /// Do not print warnings.
    pub suppress_warnings: bool,
    /// Fail when any warning occurred.
    pub error_warnings: bool,
    /// Write nothing; say what would be written.
    pub dry_run: bool,
}

impl TemplateCommandSettings {
    /// The settings `args` ask for; `own_dialect` is the command's dialect
    /// when `--dialect` is not given.
    #[must_use]
    pub fn resolve(args: &TemplateArgs, own_dialect: Dialect, dry_run: bool) -> Self {
        Self {
            context: ContextSettings {
                values: args.values.clone(),
                set: args.set.clone(),
                values_files: args.values_files.clone(),
                module: args.module.clone(),
                version_files: args.version_files.clone(),
                git_dir: args.git.git_dir.clone(),
                all_variables: args.print_context,
            },
            render: RenderSettings {
                max_output: args.max_output,
                ..RenderSettings::default()
            },
            dialect: args.dialect.map_or(Some(own_dialect), DialectFlag::forced),
            out: args.out.clone().filter(|path| path.as_os_str() != "-"),
            print_context: args.print_context,
            suppress_warnings: args.suppress_warnings,
            error_warnings: args.error_warnings,
            dry_run,
        }
    }
}

/// What `sgr render` and `sgr stencil` do once their template is read: gather
/// the context, then either print it (`--print-context`) or render with
/// `render`, report warnings, and write the result.
///
/// # Errors
/// Bad values, a failed render (named with the template's path), warnings
/// with `--error-warnings`, or a failed write.
pub fn render_and_emit(
    settings: &TemplateCommandSettings,
    source: &Source,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
    render: impl FnOnce(&Value) -> Result<String, String>,
) -> Result<(), TemplateCommandError> {
    check_output(settings.out.as_deref())?;
    let (context, warnings) = gather(&settings.context, source, runtime)?;
    if settings.print_context {
        return print_context(settings, &context, &warnings, printer);
    }
    let rendered = render(&context).map_err(|message| TemplateCommandError::Template {
        path: source.path.clone(),
        message,
    })?;
    report_warnings(settings, &warnings, printer)?;
    emit(settings, &rendered, printer)
}

/// `--print-context`: the variables as JSON (secret-looking environment values masked).
///
/// # Errors
/// Warnings with `--error-warnings`, or a failed write.
pub fn print_context(
    settings: &TemplateCommandSettings,
    context: &Value,
    warnings: &[String],
    printer: &Printer,
) -> Result<(), TemplateCommandError> {
    report_warnings(settings, warnings, printer)?;
    let shown = serde_json::to_string_pretty(&masked(context)).unwrap_or_default();
    emit(settings, &format!("{shown}\n"), printer)
}

/// Print warnings (unless suppressed) and fail when `--error-warnings` is set.
///
/// # Errors
/// Warnings with `--error-warnings`.
pub fn report_warnings(
    settings: &TemplateCommandSettings,
    warnings: &[String],
    printer: &Printer,
) -> Result<(), TemplateCommandError> {
    if !settings.suppress_warnings {
        for warning in warnings {
            printer.warn(warning);
        }
    }
    if settings.error_warnings && !warnings.is_empty() {
        return Err(TemplateCommandError::Warnings {
            count: warnings.len(),
        });
    }
    Ok(())
}

/// Refuse an output that is not a regular file (symbolic links are followed):
/// writing replaces the file, which would turn `/dev/null` or a FIFO into a file.
///
/// # Errors
/// The output exists and is a device, FIFO, socket or directory.
pub fn check_output(out: Option<&Path>) -> Result<(), TemplateCommandError> {
    use std::os::unix::fs::FileTypeExt as _;
    let Some(path) = out else {
        return Ok(());
    };
    let Ok(metadata) = std::fs::metadata(path) else {
        return Ok(());
    };
    let file_type = metadata.file_type();
    let kind = if file_type.is_file() {
        return Ok(());
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else if file_type.is_fifo() {
        "FIFO"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_dir() {
        "directory"
    } else {
        "special file"
    };
    Err(TemplateCommandError::NotARegularFile {
        path: path.to_path_buf(),
        kind,
    })
}

/// Write the rendered text to the output file atomically, or to stdout.
///
/// # Errors
/// The file or stdout cannot be written.
pub fn emit(
    settings: &TemplateCommandSettings,
    rendered: &str,
    printer: &Printer,
) -> Result<(), TemplateCommandError> {
    check_output(settings.out.as_deref())?;
    match &settings.out {
        Some(path) if settings.dry_run => {
            printer.note(&format!(
                "would write {} bytes to {}",
                rendered.len(),
                path.display()
            ));
            Ok(())
        }
        Some(path) => crate::atomic::write(path, rendered.as_bytes()).map_err(|source| {
            TemplateCommandError::Write {
                path: path.clone(),
                source,
            }
        }),
        None => printer.text(rendered).map_err(TemplateCommandError::Output),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    #[test]
    fn the_flags_defaults_are_the_settings_defaults() {
        let parsed = Cli::try_parse_from(["sgr", "render"]).map(|cli| cli.command);
        let Ok(Command::Render(args)) = parsed else {
            panic!("not a render: {parsed:?}");
        };
        let settings = TemplateCommandSettings::resolve(&args.template_args, Dialect::Tera, false);
        assert_eq!(settings.context, ContextSettings::default());
        assert_eq!(settings.render, RenderSettings::default());
        assert_eq!(settings.dialect, Some(Dialect::Tera));
        assert_eq!(settings.out, None);
    }

    #[test]
    fn flags_become_settings_and_dash_is_stdout() {
        let parsed = Cli::try_parse_from([
            "sgr",
            "stencil",
            "--set",
            "a=1",
            "--values",
            "B=2",
            "--module",
            "m",
            "--git",
            "g",
            "-f",
            "V.md",
            "--max-output",
            "1KiB",
            "--dialect",
            "auto",
            "-o",
            "-",
            "--print-context",
        ])
        .map(|cli| cli.command);
        let Ok(Command::Stencil(args)) = parsed else {
            panic!("not a stencil: {parsed:?}");
        };
        let settings = TemplateCommandSettings::resolve(&args.template_args, Dialect::Go, true);
        assert_eq!(
            settings.context,
            ContextSettings {
                values: vec!["B=2".to_owned()],
                set: vec!["a=1".to_owned()],
                values_files: Vec::new(),
                module: PathBuf::from("m"),
                version_files: vec![PathBuf::from("V.md")],
                git_dir: PathBuf::from("g"),
                all_variables: true,
            }
        );
        assert_eq!(settings.render.max_output, 1024);
        assert_eq!(settings.dialect, None);
        assert_eq!(settings.out, None);
        assert!(settings.print_context && settings.dry_run);
    }
}
