//! `sgr render`: the tera dialect (or another with `--dialect`).

use crate::cli::GlobalArgs;
use crate::cli::render::RenderArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::dialect::Dialect;

use super::template::{self, TemplateCommandSettings};

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
    let mut settings =
        TemplateCommandSettings::resolve(&args.template_args, Dialect::Tera, global.dry_run);
    settings.render.allow_missing = args.allow_missing;
    let source = template::read_source(args.template.as_deref())?;
    let dialect = template::choose_dialect(settings.dialect, None, &source, printer);
    template::render_and_emit(&settings, &source, printer, runtime, |context| {
        template::render_in(dialect, &source, context, settings.render).map_err(|error| match error
        {
            template::TemplateCommandError::Template { message, .. } => message,
            other => other.to_string(),
        })
    })
    .map_err(Failure::from)
}
