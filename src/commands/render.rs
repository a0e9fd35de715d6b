//! `sgr render`: the tera dialect.

use crate::cli::GlobalArgs;
use crate::cli::render::RenderArgs;
use crate::error::Failure;
use crate::output::Printer;
use crate::template::tera_dialect;

use super::template;

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
    let name = source.path.display().to_string();
    template::render_and_emit(
        &args.template_args,
        &source,
        global.dry_run,
        printer,
        runtime,
        |context| {
            tera_dialect::render(&name, &source.text, context, args.allow_missing)
                .map_err(|error| error.to_string())
        },
    )
    .map_err(Failure::from)
}
