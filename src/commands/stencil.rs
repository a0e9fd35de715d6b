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
    template::render_and_emit(
        &args.template_args,
        &source,
        global.dry_run,
        printer,
        runtime,
        |context| {
            parsed
                .render_with(&Value::from(context), &ProcessHost, args.strict)
                .map_err(|error| error.to_string())
        },
    )
    .map_err(Failure::from)
}
