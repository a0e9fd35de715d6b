//! `sgr stencil`: duat's Go-template dialect (or another with `--dialect`).

use crate::cli::GlobalArgs;
use crate::cli::stencil::StencilArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::dialect::Dialect;
use crate::template::go::{Template, Value};

use super::template::{self, TemplateCommandError, TemplateCommandSettings};
use crate::template::process_host::ProcessHost;

/// Run `sgr stencil`.
///
/// # Errors
/// Bad input or template (exit 2), a failed write (exit 1); nothing is written on failure.
pub fn run(
    args: &StencilArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    let mut settings =
        TemplateCommandSettings::resolve(&args.template_args, Dialect::Go, global.dry_run);
    settings.render.strict = args.strict;
    let path = args.input.as_deref().or(args.template.as_deref());
    let source = template::read_source(path)?;
    let dialect = template::choose_dialect(settings.dialect, None, &source, printer);
    let max_output = usize::try_from(settings.render.max_output).unwrap_or(usize::MAX);
    // Parse first: a broken template fails before any lookup (git, AWS).
    let parsed =
        match dialect {
            Dialect::Go => Some(Template::parse(&source.text).map_err(|error| {
                TemplateCommandError::Template {
                    path: source.path.clone(),
                    message: error.to_string(),
                }
            })?),
            Dialect::Tera => None,
        };
    template::render_and_emit(
        &settings,
        &source,
        printer,
        runtime,
        |context| match &parsed {
            Some(parsed) => parsed
                .render_limited(
                    &Value::from(context),
                    &ProcessHost,
                    settings.render.strict,
                    max_output,
                )
                .map_err(|error| error.to_string()),
            None => {
                template::render_in(dialect, &source, context, settings.render).map_err(|error| {
                    match error {
                        TemplateCommandError::Template { message, .. } => message,
                        other => other.to_string(),
                    }
                })
            }
        },
    )
    .map_err(Failure::from)
}
