//! `runner`: the GPU experiment runner the sgr images carry.
//!
//! It takes experiments from a local directory queue, RabbitMQ or SQS, holds
//! the cores, memory, disk and GPUs each asks for, and runs as many at once
//! as those allow, with `file://` or S3 artifacts (optionally cached).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::Parser;
use regex::Regex;
use runner::cache::Cache;
use runner::cluster::{self, Placement};
use runner::envelope::{Envelopes, Keys};
use runner::execute::Settings;
use runner::ledger::Ledger;
use runner::queue::QueueFilter;
use runner::queue::amqp::AmqpQueues;
use runner::queue::dir::DirQueues;
use runner::queue::sqs::SqsQueues;
use runner::request::{Policy, parse_duration, parse_size};
use runner::resources::{self, Limits, Resources};
use runner::scheduler::{Options, Scheduler, Served, report};
use runner::state::Control;
use runner::telemetry::{self, Metrics};
use runner::worker::Event;
use runner::{gpu, log};

/// Takes StudioML experiment requests from a local directory queue (a
/// directory per queue under --queue-root, a JSON file per message), from
/// RabbitMQ (--amqp-url; queues found through the management API) or from
/// AWS SQS (--sqs) and runs them. A message is removed only after the experiment's results are
/// stored; a runner that dies leaves its message to be run again; a message
/// that can never run is dead-lettered with its reason (the queue's .dead/
/// directory, the `<queue>.dead` RabbitMQ queue, the `<queue>-dead` SQS queue).
#[derive(Debug, Parser)]
#[command(name = "runner", version, about, long_about)]
#[allow(clippy::struct_excessive_bools)] // on/off flags, as clap reads them
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
    #[arg(long, env = "RUNNER_SQS", conflicts_with_all = ["queue_root", "amqp_url"])]
    sqs: bool,

    /// SQS: how long a message being run stays hidden from other
    /// consumers, in seconds; renewed every third of it while it runs.
    #[arg(
        long,
        value_name = "SECONDS",
        env = "RUNNER_SQS_VISIBILITY",
        default_value_t = runner::queue::sqs::VISIBILITY
    )]
    sqs_visibility: i32,

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

    /// The Python every experiment uses, whatever its `pythonver` (default:
    /// the newest `python3.X` on PATH that matches the request's `pythonver`).
    #[arg(long, value_name = "PROGRAM", env = "RUNNER_PYTHON")]
    python: Option<String>,

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

    /// Exit once every queue is empty (or holds only requests this runner
    /// cannot run) and no experiment is running, instead of waiting for more work.
    #[arg(long, env = "RUNNER_ONCE")]
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

    /// Requeue an experiment that exits non-zero up to N times before its
    /// failure is final (its message acked, its output stored).
    #[arg(
        long,
        value_name = "N",
        env = "RUNNER_RETRY_FAILED",
        default_value_t = 0
    )]
    retry_failed: u32,

    /// Attempts a message gets when it fails for the environment's sake (S3
    /// or the broker unreachable, a full disk, pip failing) before it is
    /// dead-lettered with the reason of each attempt; attempts wait 5 s,
    /// 10 s, 20 s, … (up to 5 min) apart.
    #[arg(
        long,
        value_name = "N",
        env = "RUNNER_MAX_ATTEMPTS",
        default_value_t = runner::scheduler::MAX_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    max_attempts: u32,

    /// Variables of the runner's environment that experiments get (e.g. a
    /// proxy or a licence server); experiments get nothing else of it.
    #[arg(
        long,
        value_name = "NAME",
        env = "RUNNER_PASS_ENV",
        value_delimiter = ','
    )]
    pass_env: Vec<String>,

    /// Let `pythonenv`/`pip` entries of requests be URLs (`name @ https://…`,
    /// `git+https://…`); refused by default (a request's packages are
    /// requirement specifiers from the package index).
    #[arg(long, env = "RUNNER_ALLOW_PIP_URLS")]
    allow_pip_urls: bool,

    /// Decrypt encrypted requests with the RSA key of this directory:
    /// `encryption/ssh-privatekey` (PEM, PKCS#8, passphrase-protected) and
    /// `passphrase/ssh-passphrase`, as the Secrets `studioml-runner-key-secret`
    /// and `studioml-runner-passphrase-secret` are mounted (docs/studioml.md).
    #[arg(
        long,
        value_name = "DIR",
        env = "ENCRYPT_DIR",
        requires = "request_signatures_dir"
    )]
    encrypt_dir: Option<PathBuf>,

    /// Verify the signature every encrypted request needs with the Ed25519
    /// keys of this directory: a file per queue-name prefix holding one
    /// `ssh-ed25519 …` line (the Secret `studioml-signing`); the longest
    /// prefix of a queue's name picks its key. Read again when it changes.
    #[arg(
        long,
        value_name = "DIR",
        env = "REQUEST_SIGNATURES_DIR",
        requires = "encrypt_dir"
    )]
    request_signatures_dir: Option<PathBuf>,

    /// Take clear-text (unencrypted) requests; `false` dead-letters them
    /// (and needs --encrypt-dir).
    #[arg(
        long,
        value_name = "BOOL",
        env = "CLEAR_TEXT_MESSAGES",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    clear_text_messages: bool,

    /// Answer 503 on /healthz once taking work from the queues has failed
    /// continuously for this long (Go duration, e.g. `5m`); `--once` gives
    /// up then, with exit code 1.
    #[arg(long, value_name = "DURATION", env = "RUNNER_UNHEALTHY_AFTER", default_value = "5m", value_parser = duration)]
    unhealthy_after: Duration,

    /// An S3 transfer that receives nothing for this long fails (and its
    /// message is given back), as a Go duration.
    #[arg(long, value_name = "DURATION", env = "RUNNER_S3_IDLE_TIMEOUT", default_value = "60s", value_parser = duration)]
    s3_idle_timeout: Duration,

    /// CPU cores experiments may claim together (0: every core this process may use).
    #[arg(long, value_name = "N", env = "RUNNER_MAX_CORES", default_value_t = 0)]
    max_cores: u32,

    /// Memory experiments may claim together, e.g. `16GiB` (default: what is
    /// available at start-up, within the container's memory limit).
    #[arg(long, value_name = "SIZE", env = "RUNNER_MAX_MEM", value_parser = size)]
    max_mem: Option<u64>,

    /// Disk under --work-dir experiments may claim together, e.g. `100GB` (a
    /// maximum, not a reserve; default: 85% of what is free at start-up).
    #[arg(long, value_name = "SIZE", env = "RUNNER_MAX_DISK", value_parser = size)]
    max_disk: Option<u64>,

    /// The NVML library to load instead of the system's `libnvidia-ml.so.1`.
    /// Without NVML the runner runs CPU-only. The GPUs used are those
    /// `CUDA_VISIBLE_DEVICES` (else `NVIDIA_VISIBLE_DEVICES`) lists: UUIDs or
    /// indexes, `all`, or `none`.
    #[arg(long, value_name = "PATH", env = "RUNNER_NVML_LIB")]
    nvml_lib: Option<PathBuf>,

    /// Keep downloaded immutable artifacts here, named by their storage hash
    /// (needs --cache-size).
    #[arg(
        long,
        value_name = "DIR",
        env = "RUNNER_CACHE_DIR",
        requires = "cache_size"
    )]
    cache_dir: Option<PathBuf>,

    /// The most the artifact cache may hold, e.g. `20GiB`; the least
    /// recently used objects go first.
    #[arg(long, value_name = "SIZE", env = "RUNNER_CACHE_SIZE", value_parser = size, requires = "cache_dir")]
    cache_size: Option<u64>,

    /// How long a cached object is kept after its last use (Go duration, e.g. `48h`).
    #[arg(long, value_name = "DURATION", env = "RUNNER_CACHE_TTL", default_value = "48h", value_parser = duration)]
    cache_ttl: Duration,

    /// Take the state (Running, `DrainAndSuspend`, `DrainAndTerminate`) and
    /// `QUEUE_MATCH/QUEUE_MISMATCH` overrides from this file: `KEY=VALUE`
    /// lines, or just the state; read every half second.
    #[arg(
        long,
        value_name = "PATH",
        env = "RUNNER_STATE_FILE",
        conflicts_with = "kubernetes"
    )]
    state_file: Option<PathBuf>,

    /// Take the state from the config maps `studioml-go-runner` and
    /// `<--node-name>` of the namespace (the node's keys win), and report to
    /// `studioml-go-runner-status`. The cluster comes from the in-cluster
    /// service account or the kubeconfig.
    #[arg(long, env = "RUNNER_KUBERNETES")]
    kubernetes: bool,

    /// This runner's name: its node config map and its key in the status map
    /// (default: the host name).
    #[arg(long, value_name = "NAME", env = "HOSTNAME")]
    node_name: Option<String>,

    /// This runner's key in the status map (default: --node-name).
    #[arg(long, value_name = "NAME", env = "K8S_POD_NAME")]
    pod_name: Option<String>,

    /// The namespace of the config maps (default: the service account's, else the kubeconfig's).
    #[arg(long, value_name = "NAMESPACE", env = "K8S_NAMESPACE")]
    namespace: Option<String>,

    /// Log lines as text or JSON (`auto`: JSON when stdout is not a terminal).
    #[arg(
        long,
        value_name = "FORMAT",
        env = "RUNNER_LOG_FORMAT",
        default_value = "auto"
    )]
    log_format: log::Format,

    /// Which log lines are written, in env-filter syntax (`debug`,
    /// `runner=debug,kube=info`; default: `RUST_LOG`, else the runner's from
    /// info and its libraries' from warn). `debug` shows kube, AWS SDK and
    /// lapin diagnostics.
    #[arg(long, value_name = "FILTER", env = "RUNNER_LOG")]
    log_level: Option<String>,
}

fn size(text: &str) -> Result<u64, String> {
    parse_size(text).ok_or_else(|| format!("'{text}' is not a size (e.g. 512MiB, 16GB)"))
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text).ok_or_else(|| format!("'{text}' is not a duration (e.g. 90s, 48h)"))
}

/// A usage or set-up error: its message, and a hint when the fix is known.
struct Fatal {
    message: String,
    hint: Option<&'static str>,
}

impl Fatal {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            hint: None,
        }
    }

    const fn hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }
}

fn main() -> ExitCode {
    // Experiments run as this user: not dumpable, they cannot read this
    // process's environment (its credentials) through /proc unless they
    // hold CAP_SYS_PTRACE (run the runner as a non-root user).
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let cli = Cli::parse();
    if let Err(error) = log::init(cli.log_format, cli.log_level.as_deref()) {
        log::error(&runner::error_text(&error));
        return ExitCode::from(2);
    }
    match start(&cli) {
        Ok(code) => code,
        Err(fatal) => {
            log::error(&fatal.message);
            if let Some(hint) = fatal.hint {
                eprintln!("hint: {hint}");
            }
            ExitCode::from(2)
        }
    }
}

fn start(cli: &Cli) -> Result<ExitCode, Fatal> {
    let regex = |text: &str, flag: &str| {
        Regex::new(text).map_err(|error| {
            Fatal::new(format!(
                "--{flag} '{text}' is not a regular expression: {error}"
            ))
        })
    };
    let flags = QueueFilter::new(
        regex(&cli.queue_match, "queue-match")?,
        cli.queue_mismatch
            .as_deref()
            .map(|text| regex(text, "queue-mismatch"))
            .transpose()?,
    );
    let _lock = runner::execute::lock_work_dir(&cli.work_dir).map_err(|error| {
        Fatal::new(runner::error_text(&error))
            .hint("give each runner on a machine its own --work-dir")
    })?;
    let reaped = runner::execute::reap(&cli.work_dir);
    if reaped > 0 {
        log::warn(&format!(
            "killed {reaped} experiment process group(s) a previous runner left running"
        ));
    }
    runner::s3::configure(runner::s3::Timeouts::with_idle(cli.s3_idle_timeout));
    let control = control(cli, flags);
    let mut metrics = Metrics::default();
    metrics.register_state(&control);
    let resources = resources(cli, &metrics)?;
    let envelopes = envelopes(cli, &resources)?;
    let cache = open_cache(cli, &mut metrics)?;
    let settings = Settings {
        work_dir: cli.work_dir.clone(),
        venv_cache: cli.venv_cache.clone(),
        python: Arc::new(interpreters(cli)),
        max_runtime: Duration::from_secs(cli.max_runtime),
        cache,
        stop: Arc::new(AtomicBool::new(false)),
        drain_timeout: Duration::from_secs(cli.drain_timeout),
        retry_failed: cli.retry_failed,
        failures: Arc::default(),
        pass_env: cli.pass_env.clone(),
    };
    // The scheduler reports each intake attempt here (`intake_ok`, `intake_failed`).
    let health = telemetry::Health::new(cli.unhealthy_after);
    if let Some(address) = &cli.http_addr {
        let bound = telemetry::serve(address, &metrics, &health, Arc::clone(&settings.stop))
            .map_err(|error| Fatal::new(format!("cannot listen on {address}: {error}")))?;
        log::info(&format!("serving /healthz and /metrics on {bound}"));
    }
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, Arc::clone(&settings.stop))
            .map_err(|error| Fatal::new(format!("cannot handle signal {signal}: {error}")))?;
    }
    let ledger = Ledger::open(&cli.work_dir);
    let policy = Policy {
        allow_urls: cli.allow_pip_urls,
    };
    let on_intake = |failure: Option<&str>| match failure {
        None => health.intake_ok(),
        Some(reason) => health.intake_failed(reason),
    };
    let scheduler = Scheduler {
        settings: &settings,
        resources: &resources,
        metrics: &metrics,
        control: &control,
        ledger: &ledger,
        policy: &policy,
        python: &settings.python,
        envelopes: &envelopes,
        options: Options {
            once: cli.once,
            max_attempts: cli.max_attempts,
            unhealthy_after: cli.unhealthy_after,
        },
        on_intake: &on_intake,
    };
    serve_queues(cli, &scheduler, &metrics, &settings)
}

/// Serve the queues `cli` names with `scheduler`.
fn serve_queues(
    cli: &Cli,
    scheduler: &Scheduler<'_>,
    metrics: &Metrics,
    settings: &Settings,
) -> Result<ExitCode, Fatal> {
    if cli.sqs {
        let wait = if cli.once { 1 } else { 20 };
        let queues = SqsQueues::connect(QueueFilter::all(), wait, cli.sqs_visibility)
            .map_err(|error| Fatal::new(error.to_string()))?;
        return Ok(served(scheduler.serve(&queues), settings));
    }
    if let Some(url) = &cli.amqp_url {
        let management = cli
            .amqp_mgt_url
            .clone()
            .unwrap_or_else(|| default_management(url));
        // Connected on first use, and again after the broker went away:
        // a runner started before its broker waits for it.
        let queues = AmqpQueues::new(url, &management, QueueFilter::all())
            .map_err(|error| Fatal::new(error.to_string()).hint("check --amqp-url (AMQP_URL)"))?;
        let code = served(scheduler.serve(&queues), settings);
        queues.close();
        return Ok(code);
    }
    let Some(root) = &cli.queue_root else {
        return Err(Fatal::new("give --queue-root DIR, --amqp-url URL or --sqs"));
    };
    if !root.is_dir() {
        return Err(Fatal::new(format!(
            "the queue root {} is not a directory",
            root.display()
        ))
        .hint("create it, with a directory per queue (e.g. local_experiments/) holding one JSON request per file"));
    }
    // This runner's messages in flight are its own: another runner sharing
    // the root never takes them back while this one lives.
    let queues = DirQueues::with_owner(root, QueueFilter::all(), &owner(&cli.work_dir));
    match queues.recover() {
        Ok(0) => {}
        Ok(count) => report(Event::Recovered(count), metrics),
        Err(error) => return Err(Fatal::new(error.to_string())),
    }
    Ok(served(scheduler.serve(&queues), settings))
}

/// Who this runner is among those sharing a queue root: its host and its
/// (locked, so unique on the host) work directory.
fn owner(work_dir: &std::path::Path) -> String {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let directory = std::fs::canonicalize(work_dir).unwrap_or_else(|_| work_dir.to_path_buf());
    runner::digest::sha256_hex(format!("{host}\0{}", directory.display()))[..16].to_owned()
}

/// How requests are opened: the keys of --encrypt-dir and
/// --request-signatures-dir, and the clear-text policy.
fn envelopes(cli: &Cli, resources: &Resources) -> Result<Envelopes, Fatal> {
    let keys = match (&cli.encrypt_dir, &cli.request_signatures_dir) {
        (Some(encrypt_dir), Some(signatures_dir)) => {
            let keys = Keys::load(encrypt_dir, signatures_dir)
                .map_err(|error| Fatal::new(runner::error_text(&error)).hint(error.hint()))?;
            log::info(&format!(
                "encrypted requests are decrypted with the key of {} and verified with the signing keys of {} ({} now)",
                encrypt_dir.display(),
                signatures_dir.display(),
                keys.signing.len()
            ));
            Some(keys)
        }
        _ => None,
    };
    if !cli.clear_text_messages && keys.is_none() {
        return Err(Fatal::new(
            "--clear-text-messages=false without --encrypt-dir: this runner could run no request",
        )
        .hint("give --encrypt-dir and --request-signatures-dir (docs/studioml.md), or take clear-text requests"));
    }
    Ok(Envelopes::new(
        cli.clear_text_messages,
        keys,
        Some(resources.clone()),
    ))
}

/// The Pythons experiments may use, said in the log.
fn interpreters(cli: &Cli) -> runner::python::Interpreters {
    let path = std::env::var_os("PATH");
    let found = runner::python::Interpreters::discover(cli.python.as_deref(), path.as_deref());
    match &cli.python {
        Some(python) => log::info(&format!("every experiment runs with {python} (--python)")),
        None if found.found().is_empty() => log::warn(
            "no python3.X on PATH: every request will be left for another runner (give --python)",
        ),
        None => log::info(&format!(
            "Pythons for experiments: {}",
            found
                .found()
                .iter()
                .map(|interpreter| format!(
                    "{}.{} ({})",
                    interpreter.version.0,
                    interpreter.version.1,
                    interpreter.path.display()
                ))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
    found
}

/// The state and queue filter, followed from `--state-file` or the
/// cluster when asked.
fn control(cli: &Cli, flags: QueueFilter) -> Arc<Control> {
    // The queues are filtered here (not by the queue back-ends), so that
    // the state maps' QUEUE_MATCH/QUEUE_MISMATCH can widen or narrow them.
    let control = Control::new(flags);
    if let Some(path) = &cli.state_file {
        runner::state::follow_file(path.clone(), Arc::clone(&control));
    }
    if cli.kubernetes {
        let node = cli
            .node_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| {
                rustix::system::uname()
                    .nodename()
                    .to_string_lossy()
                    .into_owned()
            });
        let reporter = cli
            .pod_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| node.clone());
        cluster::follow(
            Placement {
                namespace: cli.namespace.clone().filter(|name| !name.is_empty()),
                node,
                reporter,
            },
            Arc::clone(&control),
        );
    }
    control
}

/// The artifact cache, when `--cache-dir` and `--cache-size` are given.
fn open_cache(cli: &Cli, metrics: &mut Metrics) -> Result<Option<Arc<Cache>>, Fatal> {
    let (Some(directory), Some(limit)) = (&cli.cache_dir, cli.cache_size) else {
        return Ok(None);
    };
    let cache = Cache::open(directory, limit, cli.cache_ttl).map_err(|error| {
        Fatal::new(format!("artifact cache {}: {error}", directory.display()))
            .hint("--cache-dir must be a directory the runner can create and write")
    })?;
    metrics.register_cache(&cache);
    Ok(Some(Arc::new(cache)))
}

/// The run is over: say what the artifact cache did, and how it ended.
fn served(served: Served, settings: &Settings) -> ExitCode {
    if let Some(cache) = &settings.cache {
        log::info(&format!(
            "artifact cache: {} hit(s), {} miss(es), {} held",
            cache.hits.get(),
            cache.misses.get(),
            resources::human(u64::try_from(cache.bytes.get()).unwrap_or(0))
        ));
    }
    match served {
        Served::Done => ExitCode::SUCCESS,
        Served::Failed(reason) => {
            log::error(&reason);
            ExitCode::from(1)
        }
    }
}

/// The capacity experiments share: cores, memory and disk (measured, capped
/// by the flags) and the GPUs NVML reports.
fn resources(cli: &Cli, metrics: &Metrics) -> Result<Resources, Fatal> {
    std::fs::create_dir_all(&cli.work_dir).map_err(|error| {
        Fatal::new(format!(
            "cannot create the work directory {}: {error}",
            cli.work_dir.display()
        ))
    })?;
    let (cores, memory, disk) = resources::measure(&cli.work_dir).map_err(|error| {
        Fatal::new(format!(
            "cannot measure {}: {error}",
            cli.work_dir.display()
        ))
    })?;
    if cli.max_cores > cores {
        return Err(Fatal::new(format!(
            "--max-cores {} is more than the {cores} cores this runner may use",
            cli.max_cores
        ))
        .hint("leave --max-cores out (or 0) to use every core"));
    }
    let cores = if cli.max_cores == 0 {
        cores
    } else {
        cli.max_cores
    };
    let memory = match cli.max_mem {
        Some(asked) if asked > memory => {
            return Err(Fatal::new(format!(
                "--max-mem {} is more than the {} available",
                resources::human(asked),
                resources::human(memory)
            ))
            .hint("leave --max-mem out to offer what is available"));
        }
        Some(asked) => asked,
        None => memory,
    };
    let disk = cli.max_disk.unwrap_or(disk / 100 * 85);
    let lookup = |name: &str| std::env::var(name).ok();
    let inventory = gpu::discover(
        cli.nvml_lib.as_deref().map(std::path::Path::as_os_str),
        &lookup,
    );
    for note in &inventory.notes {
        log::warn(note);
    }
    for card in &inventory.cards {
        log::emit(
            log::Level::Info,
            &format!(
                "GPU {} ({}): {} slot(s), {} free{}",
                card.uuid,
                card.name,
                card.slots,
                resources::human(card.memory),
                if card.ecc_failed {
                    ", ECC errors: not used"
                } else {
                    ""
                }
            ),
            &[],
        );
    }
    metrics.set_gpus(&inventory.cards);
    log::info(&format!(
        "offering {cores} core(s), {} memory, {} disk, {} GPU(s)",
        resources::human(memory),
        resources::human(disk),
        inventory
            .cards
            .iter()
            .filter(|card| !card.ecc_failed)
            .count()
    ));
    Ok(Resources::new(Limits {
        cores,
        memory,
        disk,
        cards: inventory.cards,
    }))
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

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_environment_variable_and_help() {
        let command = super::Cli::command();
        for argument in command.get_arguments() {
            let id = argument.get_id().as_str();
            if matches!(id, "help" | "version") {
                continue;
            }
            assert!(
                argument.get_env().is_some(),
                "--{id} has no environment variable"
            );
            assert!(argument.get_help().is_some(), "--{id} has no help");
        }
    }

    #[test]
    fn the_management_api_defaults_to_the_broker_host() {
        assert_eq!(
            super::default_management("amqp://guest:guest@rabbit.ns.svc:5672/%2f"),
            "http://rabbit.ns.svc:15672"
        );
    }
}
