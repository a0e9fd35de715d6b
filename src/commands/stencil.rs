//! `sgr stencil`: duat's Go-template dialect.

use crate::cli::GlobalArgs;
use crate::cli::stencil::StencilArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::go::{Template, Value};

use super::template::{self, TemplateCommandError};
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
    let path = args.input.as_deref().or(args.template.as_deref());
    let source = template::read_source(path)?;
    // Parse first: a broken template fails before any lookup (git, AWS).
    let parsed = Template::parse(&source.text).map_err(|error| TemplateCommandError::Template {
        path: source.path.clone(),
        message: error.to_string(),
    })?;
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
    let rendered = parsed
        .render_with(&Value::from(&context), &ProcessHost, args.strict)
        .map_err(|error| TemplateCommandError::Template {
            path: source.path.clone(),
            message: error.to_string(),
        })?;
    template::report_warnings(&args.template_args, &warnings, printer)?;
    template::emit(&args.template_args, &rendered, global.dry_run, printer).map_err(Failure::from)
}
