//! Shared harness for the tests of `sgr` and `runner`.
//!
//! `scripts/test.sh` starts real services on loopback and exports their
//! addresses. A test asks for one with [`service`]: when the script ran
//! (`SGR_TEST_SERVICES=1`) a missing address is a failure, because the script
//! promised it; otherwise the test is skipped with a line naming the service,
//! so plain `cargo test` passes on a machine that runs none of them.

use std::fmt;

mod fake_github;
mod fake_kube;
mod fault_proxy;
mod rabbitmq;
mod tcp_proxy;
pub use fake_github::{FakeAsset, FakeGitHub, FakeRelease, Fault};
pub use fake_kube::{FakeKube, LogFaults, PodScript};
pub use fault_proxy::{FaultProxy, Seen};
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

/// Variable set by `scripts/test.sh` once every service it starts answers.
pub const SERVICES_VARIABLE: &str = "SGR_TEST_SERVICES";

/// Whether the test script started the services for this run.
#[must_use]
pub fn services_expected() -> bool {
    std::env::var(SERVICES_VARIABLE).is_ok_and(|value| value == "1")
}

/// The address of `service`, or `None` when the test should be skipped.
///
/// # Panics
/// When `SGR_TEST_SERVICES=1` and the address is missing: the test script
/// promised the service, so its absence is a failure, not a skip.
#[must_use]
pub fn service(service: Service) -> Option<String> {
    match std::env::var(service.variable()) {
        Ok(address) if !address.is_empty() => Some(address),
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
