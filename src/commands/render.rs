//! `sgr render`: the tera dialect.

use crate::cli::GlobalArgs;
use crate::cli::render::RenderArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::tera_dialect;

use super::template::{self, TemplateCommandError};

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
    let source = template::read_source(args.template.as_deref())?;
    let (context, warnings) = template::gather(&args.template_args, &source, runtime)?;
    if args.template_args.print_context {
        return template::print_context(
            &args.template_args,
            &context,
            &warnings,
            global.dry_run,
            printer,
        )
        .map_err(Failure::from);
    }
    let name = source.path.display().to_string();
    let rendered = tera_dialect::render(&name, &source.text, &context, args.allow_missing)
        .map_err(|error| TemplateCommandError::Template {
            path: source.path.clone(),
            message: error.to_string(),
        })?;
    template::report_warnings(&args.template_args, &warnings, printer)?;
    template::emit(&args.template_args, &rendered, global.dry_run, printer).map_err(Failure::from)
}
