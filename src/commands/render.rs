//! `sgr render`: the tera dialect (or another with `--dialect`).

use crate::cli::GlobalArgs;
use crate::cli::render::RenderArgs;
use crate::cli::template::DialectFlag;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::dialect::Dialect;

use super::template::{self, RenderSettings};

/// Run `sgr render`.
///
/// # Errors
/// Bad input or template (exit 2), a failed write (exit 1); nothing is written on failure.
pub fn run(
    args: &RenderArgs,
    global: &GlobalArgs,
    printer: &Printer,
    runtime: &tokio::runtime::Runtime,
) -> Result<(), Failure> {
    let template_args = &args.template_args;
    let source = template::read_source(args.template.as_deref())?;
    let dialect = template::choose_dialect(
        template_args
            .dialect
            .map_or(Some(Dialect::Tera), DialectFlag::forced),
        None,
        &source,
        printer,
    );
    let settings = RenderSettings {
        strict: false,
        allow_missing: args.allow_missing,
        max_output: template_args.max_output,
    };
    template::render_and_emit(
        template_args,
        &source,
        global.dry_run,
        printer,
        runtime,
        |context| {
            template::render_in(dialect, &source, context, settings).map_err(|error| match error {
                template::TemplateCommandError::Template { message, .. } => message,
                other => other.to_string(),
            })
        },
    )
    .map_err(Failure::from)
}
