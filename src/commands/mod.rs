//! One function per verb: arguments and environment become settings, the
//! library does the work, the printer reports it.

pub mod build;
pub mod k8s_build;
pub mod push;
pub mod release;
pub mod render;
pub mod runner;
pub mod semver;
pub mod shared;
pub mod stencil;
pub mod template;

use crate::cli::{Cli, Command};
use crate::error::Failure;
use crate::output::Printer;

/// Run the parsed command line.
///
/// # Errors
/// The command's failure, with its exit code and hint.
pub fn run(cli: &Cli, printer: &Printer, runtime: &tokio::runtime::Runtime) -> Result<(), Failure> {
    match &cli.command {
        Command::Semver(args) => semver::run(args, &cli.global, printer, &crate::env::process),
        Command::Build(args) => build::run(args, &cli.global, printer, runtime),
        Command::Push(args) => push::run(args, &cli.global, printer, runtime),
        Command::Release(args) => release::run(args, &cli.global, printer, runtime),
        Command::K8sBuild(args) => k8s_build::run(args, &cli.global, printer, runtime),
        Command::Runner(args) => runner::run(args, &cli.global, printer, runtime),
        Command::Render(args) => render::run(args, &cli.global, printer, runtime),
        Command::Stencil(args) => stencil::run(args, &cli.global, printer, runtime),
    }
}
