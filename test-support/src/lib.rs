//! Shared harness for the tests of `sgr` and `runner`.
//!
//! `scripts/test.sh` starts real services on loopback (or takes the ones it is
//! given by environment) and exports their addresses. A test asks for one with
//! [`service`]: when the script ran (`SGR_TEST_SERVICES=1`) a missing address
//! is a failure, because the script promised it; otherwise the test is skipped
//! with a line naming the service, so plain `cargo test` passes on a machine
//! that runs none of them.
//!
//! Between the two sits the script's second mode: where no Docker Engine can
//! run (a Kubernetes build Job without privileges), it promises everything
//! except the services named in `SGR_TEST_WITHOUT`. A test needing one of those
//! is skipped by name: a `SKIPPED` line on stderr and a line in
//! `SGR_TEST_SKIPPED_FILE`, which the script prints in its summary, so no test
//! is ever skipped silently under the script.

use std::fmt;
use std::io::Write as _;

mod fake_github;
mod fake_kube;
mod fault_proxy;
mod loopback;
mod rabbitmq;
mod tcp_proxy;
pub use fake_github::{FakeAsset, FakeGitHub, FakeRelease, Fault};
pub use fake_kube::{FakeKube, LogFaults, PodScript};
pub use fault_proxy::{FaultProxy, Seen};
pub use loopback::LoopbackServer;
pub use rabbitmq::PrivateRabbitMq;
pub use tcp_proxy::{Mode as ProxyMode, TcpFaultProxy};

/// The local services `scripts/test.sh` can start, with the variable that carries each address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// dockerd on its own unix socket (`unix:///…/docker.sock`).
    Docker,
    /// docker-registry with htpasswd auth (`127.0.0.1:PORT`).
    Registry,
    /// docker-registry with token auth, the ACR look-alike (`127.0.0.1:PORT`).
    TokenRegistry,
    /// The token service in front of [`Service::TokenRegistry`] (`http://127.0.0.1:PORT`).
    TokenService,
    /// moto server for STS, ECR, SQS (`http://127.0.0.1:PORT`).
    Aws,
    /// RabbitMQ AMQP URL (`amqp://guest:guest@127.0.0.1:PORT/%2f`).
    Amqp,
    /// RabbitMQ management API (`http://127.0.0.1:PORT`).
    AmqpManagement,
    /// SeaweedFS S3 endpoint (`http://127.0.0.1:PORT`).
    S3,
    /// The Python venv's `bin` directory (kubernetes-validate).
    PythonVenv,
    /// The `StudioML` Python client 0.0.49's venv `bin` directory (`studio-run`, `python`).
    StudioMl,
    /// The Go text/template + sprig reference program (tests/reference/stencil).
    StencilReference,
    /// A managed-identity endpoint (App Service protocol) of the token service;
    /// its header secret is in `SGR_TEST_IDENTITY_HEADER`.
    IdentityEndpoint,
}

impl Service {
    /// Every service, in declaration order.
    pub const ALL: [Self; 12] = [
        Self::Docker,
        Self::Registry,
        Self::TokenRegistry,
        Self::TokenService,
        Self::Aws,
        Self::Amqp,
        Self::AmqpManagement,
        Self::S3,
        Self::PythonVenv,
        Self::StudioMl,
        Self::StencilReference,
        Self::IdentityEndpoint,
    ];

    /// The short name `SGR_TEST_WITHOUT` lists this service by.
    #[must_use]
    pub const fn key(self) -> &'static str {
        match self {
            Self::Docker => "docker",
            Self::Registry => "registry",
            Self::TokenRegistry => "token-registry",
            Self::TokenService => "token-service",
            Self::Aws => "aws",
            Self::Amqp => "amqp",
            Self::AmqpManagement => "amqp-management",
            Self::S3 => "s3",
            Self::PythonVenv => "python-venv",
            Self::StudioMl => "studioml",
            Self::StencilReference => "stencil-reference",
            Self::IdentityEndpoint => "identity-endpoint",
        }
    }

    /// The environment variable that holds this service's address.
    #[must_use]
    pub const fn variable(self) -> &'static str {
        match self {
            Self::Docker => "SGR_TEST_DOCKER_HOST",
            Self::Registry => "SGR_TEST_REGISTRY",
            Self::TokenRegistry => "SGR_TEST_TOKEN_REGISTRY",
            Self::TokenService => "SGR_TEST_TOKEN_SERVICE",
            Self::Aws => "SGR_TEST_AWS_ENDPOINT",
            Self::Amqp => "SGR_TEST_AMQP_URL",
            Self::AmqpManagement => "SGR_TEST_AMQP_MANAGEMENT",
            Self::S3 => "SGR_TEST_S3_ENDPOINT",
            Self::PythonVenv => "SGR_TEST_VENV_BIN",
            Self::StudioMl => "SGR_TEST_STUDIOML_BIN",
            Self::StencilReference => "SGR_TEST_STENCIL_REFERENCE",
            Self::IdentityEndpoint => "SGR_TEST_IDENTITY_ENDPOINT",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Docker => "Docker Engine (dockerd)",
            Self::Registry => "OCI registry with htpasswd auth",
            Self::TokenRegistry => "OCI registry with token auth",
            Self::TokenService => "registry token service",
            Self::Aws => "moto (AWS STS/ECR/SQS)",
            Self::Amqp => "RabbitMQ (AMQP)",
            Self::AmqpManagement => "RabbitMQ management API",
            Self::S3 => "SeaweedFS (S3)",
            Self::PythonVenv => "Python venv with kubernetes-validate",
            Self::StudioMl => "StudioML Python client (studioml 0.0.49)",
            Self::StencilReference => "Go text/template reference program",
            Self::IdentityEndpoint => "managed-identity endpoint of the token service",
        };
        formatter.write_str(name)
    }
}

/// Variable set by `scripts/test.sh` once every service it promises answers.
pub const SERVICES_VARIABLE: &str = "SGR_TEST_SERVICES";

/// Variable listing, by [`Service::key`] and separated by commas, the services
/// `scripts/test.sh` could not provide here (`docker,registry`): the tests
/// needing them are skipped by name instead of failing.
pub const WITHOUT_VARIABLE: &str = "SGR_TEST_WITHOUT";

/// Variable naming the file each skipped test's line is appended to
/// (`<package> <test>: needs <service>`), for the script's summary.
pub const SKIPPED_FILE_VARIABLE: &str = "SGR_TEST_SKIPPED_FILE";

/// Whether the test script started the services for this run.
#[must_use]
pub fn services_expected() -> bool {
    std::env::var(SERVICES_VARIABLE).is_ok_and(|value| value == "1")
}

/// Whether `SGR_TEST_WITHOUT` lists `service`: the script promised everything but it.
#[must_use]
pub fn service_left_out(service: Service) -> bool {
    std::env::var(WITHOUT_VARIABLE).is_ok_and(|list| lists(&list, service))
}

/// Whether the comma-separated `list` names `service` by its key.
fn lists(list: &str, service: Service) -> bool {
    list.split(',')
        .map(str::trim)
        .any(|key| key == service.key())
}

/// The address of `service`, or `None` when the test should be skipped.
///
/// # Panics
/// When `SGR_TEST_SERVICES=1` and the address is missing although
/// `SGR_TEST_WITHOUT` does not list the service: the test script promised it,
/// so its absence is a failure, not a skip.
#[must_use]
#[track_caller]
pub fn service(service: Service) -> Option<String> {
    match std::env::var(service.variable()) {
        Ok(address) if !address.is_empty() => Some(address),
        _ if services_expected() && service_left_out(service) => {
            record_skip(&test_name(), service);
            None
        }
        _ if services_expected() => panic!(
            "{service} is not available: {} is unset although {SERVICES_VARIABLE}=1",
            service.variable()
        ),
        _ => {
            eprintln!(
                "skipped: needs {service} ({} unset); run scripts/test.sh to start it",
                service.variable()
            );
            None
        }
    }
}

/// The running test's name as libtest gives it (`module::test`), which is the
/// name of the thread it runs on; the caller's file and line where a test
/// asks from a thread of its own.
#[track_caller]
fn test_name() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" && !name.starts_with("tokio-") => name.to_owned(),
        _ => {
            let location = std::panic::Location::caller();
            format!("{}:{}", location.file(), location.line())
        }
    }
}

/// Say on stderr that `test` is skipped for want of `service`, and append the
/// same to `SGR_TEST_SKIPPED_FILE` for the script's summary.
///
/// # Panics
/// When the file is named but cannot be written: a skip the summary would not
/// list is exactly the silent skip the file exists to prevent.
pub fn record_skip(test: &str, service: Service) {
    let package = std::env::var("CARGO_PKG_NAME").unwrap_or_else(|_| "?".to_owned());
    eprintln!(
        "SKIPPED {test} ({package}): needs {service} ({WITHOUT_VARIABLE} lists {})",
        service.key()
    );
    let Some(path) = std::env::var_os(SKIPPED_FILE_VARIABLE) else {
        return;
    };
    let path = std::path::PathBuf::from(path);
    if let Err(error) = append_line(&path, &skip_line(&package, test, service)) {
        panic!(
            "cannot record the skip of {test} in {} ({SKIPPED_FILE_VARIABLE}): {error}",
            path.display()
        );
    }
}

/// The summary's line for one skipped test: `<package> <test>: needs <service>`.
fn skip_line(package: &str, test: &str, service: Service) -> String {
    format!("{package} {test}: needs {service}\n")
}

/// Append `line` with one write to a file opened for appending, so lines from
/// tests running at the same time (threads or test binaries) do not interleave.
fn append_line(path: &std::path::Path, line: &str) -> std::io::Result<()> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(line.as_bytes())
}

/// The `python3` on `PATH` that can make virtual environments (its `venv`
/// and `ensurepip` modules import), which the runner needs to run any
/// experiment; `None` when the test should be skipped.
///
/// Python is not one of the [`Service`]s (nothing listens), but the test
/// script promises it all the same: it installs `python3-venv` before it sets
/// `SGR_TEST_SERVICES=1`.
///
/// # Panics
/// When `SGR_TEST_SERVICES=1` and no such Python is found: a test that
/// returned early then would pass without having run.
#[must_use]
#[track_caller]
pub fn require_python() -> Option<std::path::PathBuf> {
    let found = python_with_venv();
    match found {
        Ok(path) => Some(path),
        Err(reason) if services_expected() => {
            panic!("python3 with venv is missing although {SERVICES_VARIABLE}=1: {reason}")
        }
        Err(reason) => {
            eprintln!("skipped: needs python3 with venv ({reason})");
            None
        }
    }
}

/// The first `python3` on `PATH` whose `venv` and `ensurepip` import, or why there is none.
fn python_with_venv() -> Result<std::path::PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let python = std::env::split_paths(&path)
        .map(|directory| directory.join("python3"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| "no python3 on PATH".to_owned())?;
    let output = std::process::Command::new(&python)
        .args(["-c", "import ensurepip, venv"])
        .output()
        .map_err(|error| format!("{} cannot be run: {error}", python.display()))?;
    if output.status.success() {
        Ok(python)
    } else {
        Err(format!(
            "{} cannot import venv and ensurepip: {}",
            python.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A value that the test script sets beside `service`'s address (a user
/// name, a header secret), or `None` when the test should be skipped.
///
/// # Panics
/// When `SGR_TEST_SERVICES=1`, the service's address is set and `variable`
/// is not: the script promised both, so a test that returned early would
/// pass without having run.
#[must_use]
#[track_caller]
pub fn service_setting(service: Service, variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if services_expected() => panic!(
            "{variable} is unset although {SERVICES_VARIABLE}=1 and {service} is at {}",
            std::env::var(service.variable()).unwrap_or_default()
        ),
        _ => {
            eprintln!("skipped: needs {variable} for {service}; run scripts/test.sh to set it");
            None
        }
    }
}

/// A current-thread runtime for a test, with the crypto provider installed.
///
/// # Errors
/// The runtime cannot be built.
pub fn runtime() -> Result<tokio::runtime::Runtime, std::io::Error> {
    install_crypto_provider();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Install the process-wide rustls provider, as `main` does: the AWS SDK and
/// kube otherwise disagree on the provider and the first TLS client panics.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::{Service, append_line, lists, skip_line};

    #[test]
    fn keys_and_variables_are_distinct() {
        let mut keys: Vec<_> = Service::ALL.iter().map(|service| service.key()).collect();
        let mut variables: Vec<_> = Service::ALL
            .iter()
            .map(|service| service.variable())
            .collect();
        keys.sort_unstable();
        keys.dedup();
        variables.sort_unstable();
        variables.dedup();
        assert_eq!(keys.len(), Service::ALL.len());
        assert_eq!(variables.len(), Service::ALL.len());
    }

    #[test]
    fn the_without_list_names_services_by_key() {
        assert!(lists("docker,registry", Service::Docker));
        assert!(lists(" docker , registry", Service::Registry));
        assert!(!lists("docker,registry", Service::TokenRegistry));
        assert!(!lists("", Service::Docker));
        assert!(!lists("dockerd", Service::Docker));
    }

    #[test]
    fn skips_append_one_line_each() -> std::io::Result<()> {
        let directory = tempfile::tempdir()?;
        let file = directory.path().join("skipped");
        append_line(&file, &skip_line("sgr", "services::a", Service::Docker))?;
        append_line(&file, &skip_line("runner", "b::c", Service::Registry))?;
        assert_eq!(
            std::fs::read_to_string(&file)?,
            "sgr services::a: needs Docker Engine (dockerd)\n\
             runner b::c: needs OCI registry with htpasswd auth\n"
        );
        Ok(())
    }
}
