//! `sgr stencil`: duat's Go-template dialect (or another with `--dialect`).

use crate::cli::GlobalArgs;
use crate::cli::stencil::StencilArgs;
use crate::cli::template::DialectFlag;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::dialect::Dialect;
use crate::template::go::{Template, Value};

use super::template::{self, RenderSettings, TemplateCommandError};
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
    let template_args = &args.template_args;
    let path = args.input.as_deref().or(args.template.as_deref());
    let source = template::read_source(path)?;
    let dialect = template::choose_dialect(
        template_args
            .dialect
            .map_or(Some(Dialect::Go), DialectFlag::forced),
        None,
        &source,
        printer,
    );
    let max_output = usize::try_from(template_args.max_output).unwrap_or(usize::MAX);
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
    let settings = RenderSettings {
        strict: args.strict,
        allow_missing: false,
        max_output: template_args.max_output,
    };
    template::render_and_emit(
        template_args,
        &source,
        global.dry_run,
        printer,
        runtime,
        |context| match &parsed {
            Some(parsed) => parsed
                .render_limited(&Value::from(context), &ProcessHost, args.strict, max_output)
                .map_err(|error| error.to_string()),
            None => {
                template::render_in(dialect, &source, context, settings).map_err(
                    |error| match error {
                        TemplateCommandError::Template { message, .. } => message,
                        other => other.to_string(),
                    },
                )
            }
        },
    )
    .map_err(Failure::from)
}
