//! `runner`: the GPU experiment runner the sgr images carry.
//!
//! This is the package skeleton; queue intake, execution and storage arrive
//! with their own issues. Until then the binary answers `--help` and
//! `--version` and refuses to run, so that no deployment mistakes it for a
//! working runner.

use std::process::ExitCode;

use clap::Parser;

/// Takes StudioML experiment requests from RabbitMQ, SQS or a local directory
/// queue and runs them on the node's GPUs.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!(
        "error: runner cannot process experiments yet: no queue back-end is built into this version"
    );
    eprintln!("hint: use a runner image built from a later sgr release");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
