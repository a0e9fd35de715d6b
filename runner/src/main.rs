//! `runner`: the GPU experiment runner the sgr images carry.
//!
//! This version takes experiments from a local directory queue and runs
//! them with `file://` artifacts, one at a time; RabbitMQ, SQS, S3 and GPU
//! allocation come with the next steps of the runner issue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use regex::Regex;
use runner::execute::Settings;
use runner::queue::dir::DirQueues;
use runner::worker::{self, Event};

/// Takes StudioML experiment requests from a local directory queue (a
/// directory per queue under --queue-root, a JSON file per message) and runs
/// them. A message is removed only after the experiment's results are
/// stored; a runner that dies leaves its message to be run again; a message
/// that can never run is moved to the queue's .dead/ with a .reason file.
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, long_about)]
struct Cli {
    /// Directory whose sub-directories are queues.
    #[arg(long, value_name = "DIR", env = "RUNNER_QUEUE_ROOT")]
    queue_root: PathBuf,

    /// Queues whose names match this regular expression are served.
    #[arg(
        long,
        value_name = "REGEX",
        env = "QUEUE_MATCH",
        default_value = "^(rmq|sqs|local)_.*$"
    )]
    queue_match: String,

    /// Queues whose names match this regular expression are not served.
    #[arg(long, value_name = "REGEX", env = "QUEUE_MISMATCH")]
    queue_mismatch: Option<String>,

    /// Where experiment directories are made.
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNNER_WORK_DIR",
        default_value = "/tmp/runner/work"
    )]
    work_dir: PathBuf,

    /// Where Python environments are kept for reuse.
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNNER_VENV_CACHE",
        default_value = "/tmp/runner/venvs"
    )]
    venv_cache: PathBuf,

    /// The Python that makes the environments.
    #[arg(
        long,
        value_name = "PROGRAM",
        env = "RUNNER_PYTHON",
        default_value = "python3"
    )]
    python: String,

    /// The longest any experiment may run, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "RUNNER_MAX_RUNTIME",
        default_value_t = 86_400
    )]
    max_runtime: u64,

    /// Exit once every queue is empty instead of waiting for more work.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let regex = |text: &str, flag: &str| {
        Regex::new(text)
            .map_err(|error| format!("--{flag} '{text}' is not a regular expression: {error}"))
    };
    let queues = match (
        regex(&cli.queue_match, "queue-match"),
        cli.queue_mismatch
            .as_deref()
            .map(|text| regex(text, "queue-mismatch"))
            .transpose(),
    ) {
        (Ok(matching), Ok(mismatching)) => DirQueues::new(&cli.queue_root, matching, mismatching),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    if !cli.queue_root.is_dir() {
        eprintln!(
            "error: the queue root {} is not a directory",
            cli.queue_root.display()
        );
        eprintln!(
            "hint: create it, with a directory per queue (e.g. local_experiments/) holding one JSON request per file"
        );
        return ExitCode::from(2);
    }
    let settings = Settings {
        work_dir: cli.work_dir.clone(),
        venv_cache: cli.venv_cache.clone(),
        python: cli.python.clone(),
        max_runtime: Duration::from_secs(cli.max_runtime),
        gpus: Vec::new(),
    };
    let lookup = |name: &str| std::env::var(name).ok();
    let mut report = |event: Event| match event {
        Event::Recovered(count) => {
            eprintln!("runner: put back {count} message(s) a previous runner held");
        }
        Event::Finished {
            queue,
            key,
            outcome,
        } => eprintln!("runner: {queue}: experiment {key}: {outcome:?}"),
        Event::Requeued { queue, reason } => eprintln!("runner: {queue}: requeued: {reason}"),
        Event::DeadLettered { queue, reason } => {
            eprintln!("runner: {queue}: dead-lettered: {reason}");
        }
    };
    match queues.recover() {
        Ok(0) => {}
        Ok(count) => report(Event::Recovered(count)),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    loop {
        match worker::handle_one(&queues, &settings, &lookup, &mut report) {
            Ok(true) => {}
            Ok(false) if cli.once => return ExitCode::SUCCESS,
            Ok(false) => std::thread::sleep(Duration::from_secs(3)),
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
