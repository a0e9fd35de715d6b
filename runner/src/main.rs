//! `runner`: the GPU experiment runner the sgr images carry.
//!
//! This version takes experiments from a local directory queue, RabbitMQ or
//! SQS and runs them with `file://` or S3 artifacts, one at a time; GPU
//! allocation comes with the next steps of the runner issue.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use regex::Regex;
use runner::execute::Outcome;
use runner::execute::Settings;
use runner::queue::amqp::AmqpQueues;
use runner::queue::dir::DirQueues;
use runner::queue::sqs::SqsQueues;
use runner::queue::{QueueFilter, Queues};
use runner::telemetry::{self, ExperimentLabels, MessageLabels, Metrics};
use runner::worker::{self, Event};

/// Takes StudioML experiment requests from a local directory queue (a
/// directory per queue under --queue-root, a JSON file per message), from
/// RabbitMQ (--amqp-url; queues found through the management API) or from
/// AWS SQS (--sqs) and runs them. A message is removed only after the experiment's results are
/// stored; a runner that dies leaves its message to be run again; a message
/// that can never run is dead-lettered with its reason (the queue's .dead/
/// directory, the `<queue>.dead` RabbitMQ queue, the `<queue>-dead` SQS queue).
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, long_about)]
struct Cli {
    /// Directory whose sub-directories are queues.
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNNER_QUEUE_ROOT",
        required_unless_present_any = ["amqp_url", "sqs"]
    )]
    queue_root: Option<PathBuf>,

    /// RabbitMQ to take requests from (`amqp://user:password@host:5672/%2f`).
    #[arg(
        long,
        value_name = "URL",
        env = "AMQP_URL",
        conflicts_with = "queue_root",
        hide_env_values = true
    )]
    amqp_url: Option<String>,

    /// Take requests from the AWS SQS queues of the default account and region
    /// (credentials, region and `AWS_ENDPOINT_URL` from the AWS configuration).
    #[arg(long, conflicts_with_all = ["queue_root", "amqp_url"])]
    sqs: bool,

    /// RabbitMQ's management API, to list its queues (default: `http://<host>:15672`).
    #[arg(long, value_name = "URL", env = "AMQP_MGT_URL")]
    amqp_mgt_url: Option<String>,

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

    /// Serve /healthz and /metrics on this address (e.g. `0.0.0.0:9090`).
    #[arg(long, value_name = "ADDRESS", env = "RUNNER_HTTP_ADDR")]
    http_addr: Option<String>,

    /// Exit once every queue is empty instead of waiting for more work.
    #[arg(long)]
    once: bool,

    /// After SIGTERM or SIGINT: how long running experiments may go on before
    /// they are killed and their messages requeued, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "RUNNER_DRAIN_TIMEOUT",
        default_value_t = 300
    )]
    drain_timeout: u64,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let regex = |text: &str, flag: &str| {
        Regex::new(text)
            .map_err(|error| format!("--{flag} '{text}' is not a regular expression: {error}"))
    };
    let filter = match (
        regex(&cli.queue_match, "queue-match"),
        cli.queue_mismatch
            .as_deref()
            .map(|text| regex(text, "queue-mismatch"))
            .transpose(),
    ) {
        (Ok(matching), Ok(mismatching)) => QueueFilter::new(matching, mismatching),
        (Err(message), _) | (_, Err(message)) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    let settings = Settings {
        work_dir: cli.work_dir.clone(),
        venv_cache: cli.venv_cache.clone(),
        python: cli.python.clone(),
        max_runtime: Duration::from_secs(cli.max_runtime),
        gpus: Vec::new(),
        stop: Arc::new(AtomicBool::new(false)),
        drain_timeout: Duration::from_secs(cli.drain_timeout),
    };
    let metrics = Metrics::default();
    if let Some(address) = &cli.http_addr {
        match telemetry::serve(address, &metrics, Arc::clone(&settings.stop)) {
            Ok(bound) => eprintln!("runner: serving /healthz and /metrics on {bound}"),
            Err(error) => {
                eprintln!("error: cannot listen on {address}: {error}");
                return ExitCode::from(2);
            }
        }
    }
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        if let Err(error) = signal_hook::flag::register(signal, Arc::clone(&settings.stop)) {
            eprintln!("error: cannot handle signal {signal}: {error}");
            return ExitCode::from(2);
        }
    }
    if cli.sqs {
        let wait = if cli.once { 1 } else { 20 };
        return match SqsQueues::connect(filter, wait) {
            Ok(queues) => serve(&queues, &settings, &metrics, cli.once),
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        };
    }
    if let Some(url) = &cli.amqp_url {
        let management = cli
            .amqp_mgt_url
            .clone()
            .unwrap_or_else(|| default_management(url));
        let queues = match AmqpQueues::connect(url, &management, filter) {
            Ok(queues) => queues,
            Err(error) => {
                eprintln!("error: {error}");
                eprintln!("hint: check --amqp-url (AMQP_URL) and that RabbitMQ is running");
                return ExitCode::from(2);
            }
        };
        let code = serve(&queues, &settings, &metrics, cli.once);
        queues.close();
        return code;
    }
    let Some(root) = &cli.queue_root else {
        eprintln!("error: give --queue-root DIR or --amqp-url URL");
        return ExitCode::from(2);
    };
    if !root.is_dir() {
        eprintln!(
            "error: the queue root {} is not a directory",
            root.display()
        );
        eprintln!(
            "hint: create it, with a directory per queue (e.g. local_experiments/) holding one JSON request per file"
        );
        return ExitCode::from(2);
    }
    let queues = DirQueues::new(root, filter);
    match queues.recover() {
        Ok(0) => {}
        Ok(count) => report(Event::Recovered(count), &metrics),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    }
    serve(&queues, &settings, &metrics, cli.once)
}

/// `amqp://user:pw@host:5672/vhost` → `http://host:15672`.
fn default_management(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = host_port
        .rsplit_once(':')
        .map_or(host_port, |(host, _)| host);
    format!("http://{host}:15672")
}

fn report(event: Event, metrics: &Metrics) {
    let count = |queue: &str, result: &str| {
        metrics
            .messages
            .get_or_create(&MessageLabels {
                queue: queue.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    };
    match &event {
        Event::Started { .. } => {
            metrics.running.inc();
        }
        Event::Finished { queue, outcome, .. } => {
            metrics.running.dec();
            count(queue, "acked");
            let outcome = match outcome {
                Outcome::Succeeded => "succeeded",
                Outcome::Failed(_) => "failed",
                Outcome::TimedOut => "timed_out",
                Outcome::Interrupted => "interrupted",
            };
            metrics
                .experiments
                .get_or_create(&ExperimentLabels {
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
        Event::Requeued { queue, .. } => count(queue, "requeued"),
        Event::DeadLettered { queue, .. } => count(queue, "dead_lettered"),
        Event::Recovered(_) => {}
    }
    match event {
        Event::Started { queue, key } => eprintln!("runner: {queue}: experiment {key} started"),
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
    }
}

/// Take and run messages until the queues are empty (`once`) or for ever.
fn serve<Q: Queues>(queues: &Q, settings: &Settings, metrics: &Metrics, once: bool) -> ExitCode {
    let lookup = |name: &str| std::env::var(name).ok();
    let mut on_event = |event: Event| report(event, metrics);
    loop {
        if settings.stop.load(Ordering::SeqCst) {
            eprintln!("runner: stopping: no new work taken");
            return ExitCode::SUCCESS;
        }
        match worker::handle_one(queues, settings, &lookup, &mut on_event) {
            Ok(true) => {}
            Ok(false) if once => return ExitCode::SUCCESS,
            Ok(false) => {
                // Wait for work, but notice a stop request at once.
                for _ in 0..30 {
                    if settings.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
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

    #[test]
    fn the_management_api_defaults_to_the_broker_host() {
        assert_eq!(
            super::default_management("amqp://guest:guest@rabbit.ns.svc:5672/%2f"),
            "http://rabbit.ns.svc:15672"
        );
    }
}
