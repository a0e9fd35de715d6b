//! The `sgr` binary: parse, run, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser;
use sgr::cli::{Cli, normalise_duat_flags};
use sgr::error::ExitStatus;
use sgr::output::Printer;
use sgr::{commands, env};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // A template that can grow a value without bound renders in a child with a memory limit.
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(
            sgr::template::isolated::CHILD_ARGUMENT,
        ))
    {
        return sgr::template::isolated::child_main(commands::template::render_isolated_job);
    }
    let cli = match Cli::try_parse_from(normalise_duat_flags(std::env::args_os())) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(
                u8::try_from(error.exit_code()).unwrap_or(ExitStatus::Usage.code()),
            );
        }
    };
    init_logging(cli.global.verbose);
    let printer = Printer::new(
        cli.global.output,
        cli.global.quiet,
        cli.global.verbose,
        cli.global.color,
        std::env::var_os(env::NO_COLOR).is_some_and(|value| !value.is_empty()),
    );
    // The AWS SDK and kube otherwise disagree on the rustls provider and the first TLS client panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            printer.error(&format!("cannot start the async runtime: {error}"), None);
            return ExitStatus::Failed.into();
        }
    };
    match commands::run(&cli, &printer, &runtime) {
        Ok(()) => ExitStatus::Success.into(),
        Err(failure) => {
            printer.error(&failure.message(), failure.hint.as_deref());
            failure.status.into()
        }
    }
}

/// Diagnostics logs on stderr: `SGR_LOG` (or `RUST_LOG`), else `-vv` for debug.
fn init_logging(verbose: u8) {
    let filter = std::env::var(env::LOG)
        .or_else(|_| std::env::var(env::RUST_LOG))
        .ok()
        .and_then(|directives| EnvFilter::try_new(directives).ok())
        .unwrap_or_else(|| EnvFilter::new(if verbose >= 2 { "sgr=debug" } else { "off" }));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
}
