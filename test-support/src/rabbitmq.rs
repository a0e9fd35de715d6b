//! A RabbitMQ broker of a test's own, for tests that stop and start the
//! broker (the shared one of `scripts/test.sh` must never be touched). It is
//! started exactly as the script's `start_rabbitmq` does: its own epmd on its
//! own port, the node on fresh loopback ports, its data and logs under a
//! temporary directory, the management plugin on. [`PrivateRabbitMq::stop`]
//! and [`PrivateRabbitMq::start`] restart the node on the same ports and
//! data, so queues and messages (durable, persistent) survive, as in a real
//! broker restart.
//!
//! Skipped like the script's services: without
//! `/usr/lib/rabbitmq/bin/rabbitmq-server` the test is skipped, unless
//! `SGR_TEST_SERVICES=1` promised the services, then it fails.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::os::unix::process::CommandExt as _;

/// The broker's start script (Debian's rabbitmq-server package).
pub const RABBITMQ_SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// How long the broker may take to answer its management API.
const READY_WITHIN: Duration = Duration::from_mins(2);
/// How long a stopped broker may take to exit before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(30);
/// How often readiness and exit are polled.
const POLL: Duration = Duration::from_millis(200);

/// The ports of one broker.
#[derive(Clone, Copy, Debug)]
struct Ports {
    amqp: u16,
    management: u16,
    epmd: u16,
    distribution: u16,
}

/// A private broker; stopped (by process group) when dropped.
pub struct PrivateRabbitMq {
    directory: tempfile::TempDir,
    ports: Ports,
    epmd: Option<Child>,
    server: Option<Child>,
}

impl std::fmt::Debug for PrivateRabbitMq {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PrivateRabbitMq")
            .field("directory", &self.directory.path())
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

/// Free loopback ports, all different.
fn free_ports<const N: usize>() -> io::Result<[u16; N]> {
    let listeners = (0..N)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<io::Result<Vec<_>>>()?;
    let mut ports = [0_u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// `epmd` on the PATH, else the Erlang runtime's own.
fn epmd() -> io::Result<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|directory| directory.join("epmd"))
        .find(|candidate| candidate.is_file());
    if let Some(found) = on_path {
        return Ok(found);
    }
    let mut runtimes: Vec<PathBuf> = fs::read_dir("/usr/lib/erlang")?
        .filter_map(Result::ok)
        .map(|entry| entry.path().join("bin/epmd"))
        .filter(|candidate| candidate.is_file())
        .collect();
    runtimes.sort();
    runtimes
        .pop()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no epmd in /usr/lib/erlang"))
}

fn log_file(directory: &Path, name: &str) -> io::Result<Stdio> {
    Ok(fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(directory.join(format!("{name}.log")))?
        .into())
}

/// Signal `child`'s process group, wait for the group to end (killing it
/// after [`STOP_WITHIN`]), and reap `child`.
fn stop_group(child: &mut Child) -> io::Result<()> {
    let group = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    let deadline = Instant::now() + STOP_WITHIN;
    while rustix::process::test_kill_process_group(group).is_ok() {
        // Reap the leader, or the group never looks empty.
        let _ = child.try_wait();
        if Instant::now() >= deadline {
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            break;
        }
        std::thread::sleep(POLL);
    }
    child.wait().map(drop)
}

impl PrivateRabbitMq {
    /// Start a broker, or `None` when the test should be skipped (no
    /// RabbitMQ installed and the test script did not promise one).
    ///
    /// # Errors
    /// RabbitMQ is installed (or promised) but does not start and answer.
    pub fn start_or_skip() -> io::Result<Option<Self>> {
        if !Path::new(RABBITMQ_SERVER).is_file() {
            if crate::services_expected() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "{RABBITMQ_SERVER} is missing although {}=1",
                        crate::SERVICES_VARIABLE
                    ),
                ));
            }
            eprintln!("skipped: needs RabbitMQ ({RABBITMQ_SERVER}); run scripts/test.sh");
            return Ok(None);
        }
        let directory = tempfile::Builder::new()
            .prefix("sgr-private-rabbitmq.")
            .tempdir()?;
        let [amqp, management, epmd_port, distribution] = free_ports::<4>()?;
        let ports = Ports {
            amqp,
            management,
            epmd: epmd_port,
            distribution,
        };
        let root = directory.path();
        fs::create_dir_all(root.join("mnesia"))?;
        fs::create_dir_all(root.join("log"))?;
        fs::write(root.join("enabled_plugins"), "[rabbitmq_management].\n")?;
        fs::write(
            root.join("rabbitmq.conf"),
            format!("management.tcp.port = {management}\nmanagement.tcp.ip = 127.0.0.1\n"),
        )?;
        fs::write(root.join("rabbitmq-env.conf"), "")?;
        // Our own epmd on our own port, so the node does not daemonise one
        // we could not stop.
        let epmd = Command::new(epmd()?)
            .args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()])
            .stdin(Stdio::null())
            .stdout(log_file(root, "epmd")?)
            .stderr(log_file(root, "epmd")?)
            .process_group(0)
            .spawn()?;
        let mut broker = Self {
            directory,
            ports,
            epmd: Some(epmd),
            server: None,
        };
        broker.start()?;
        Ok(Some(broker))
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    #[must_use]
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.ports.amqp)
    }

    /// `127.0.0.1:PORT` of AMQP (for a proxy in front of it).
    #[must_use]
    pub fn amqp_address(&self) -> String {
        format!("127.0.0.1:{}", self.ports.amqp)
    }

    /// `http://127.0.0.1:PORT` of the management API.
    #[must_use]
    pub fn management_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.management)
    }

    /// Whether the node is running (started and not stopped).
    #[must_use]
    pub const fn running(&self) -> bool {
        self.server.is_some()
    }

    /// Start the node (again) on the same ports and data, and wait until
    /// its management API answers. Nothing happens when it runs.
    ///
    /// # Errors
    /// The node cannot be started or does not answer within two minutes.
    pub fn start(&mut self) -> io::Result<()> {
        if self.server.is_some() {
            return Ok(());
        }
        let root = self.directory.path();
        let path = |name: &str| root.join(name);
        let server = Command::new(RABBITMQ_SERVER)
            .env("HOME", root)
            .env("ERL_EPMD_PORT", self.ports.epmd.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODENAME", "sgrfaults@localhost")
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.ports.amqp.to_string())
            .env("RABBITMQ_DIST_PORT", self.ports.distribution.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_PID_FILE", path("rabbitmq.pid"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_CONF_ENV_FILE", path("rabbitmq-env.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .stdin(Stdio::null())
            .stdout(log_file(root, "rabbitmq")?)
            .stderr(log_file(root, "rabbitmq")?)
            .process_group(0)
            .spawn()?;
        self.server = Some(server);
        self.wait_ready()
    }

    /// Stop the node (its whole process group) and wait until it is gone;
    /// epmd, the ports and the data stay for [`PrivateRabbitMq::start`].
    ///
    /// # Errors
    /// Waiting for the node fails.
    pub fn stop(&mut self) -> io::Result<()> {
        match self.server.take() {
            Some(mut server) => stop_group(&mut server),
            None => Ok(()),
        }
    }

    /// Poll the management API's `/api/overview` until it answers 200.
    fn wait_ready(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if self.overview_answers() {
                return Ok(());
            }
            if let Some(server) = self.server.as_mut()
                && let Some(status) = server.try_wait()?
            {
                self.server = None;
                return Err(io::Error::other(format!(
                    "rabbitmq-server exited ({status}) before answering; its log:\n{}",
                    self.log_tail()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the private RabbitMQ did not answer within {} s; its log:\n{}",
                        READY_WITHIN.as_secs(),
                        self.log_tail()
                    ),
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    fn overview_answers(&self) -> bool {
        let attempt = || -> io::Result<bool> {
            let address = std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.management));
            let mut stream =
                std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
            stream.set_read_timeout(Some(Duration::from_secs(2)))?;
            // guest:guest
            write!(
                stream,
                "GET /api/overview HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n",
                self.ports.management
            )?;
            let mut status = [0_u8; 12];
            stream.read_exact(&mut status)?;
            Ok(status.ends_with(b" 200"))
        };
        attempt().unwrap_or(false)
    }

    fn log_tail(&self) -> String {
        let text =
            fs::read_to_string(self.directory.path().join("rabbitmq.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for PrivateRabbitMq {
    fn drop(&mut self) {
        let _ = self.stop();
        if let Some(mut epmd) = self.epmd.take() {
            let _ = stop_group(&mut epmd);
        }
    }
}
