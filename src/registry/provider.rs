//! A registry sgr pushes to, with the credentials for it: fetched right
//! before they are needed, cached until they are due for renewal, and
//! fetched again when the registry refuses them (tokens expire: ECR's after
//! 12 h, ACR's after about 3 h).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use serde::Serialize;
use thiserror::Error;
use tokio::sync::Mutex;

use super::Credentials;
use super::azure::{self, AzureError};
use super::client::{ClientError, RegistryClient, Timeouts};
use super::docker_config::{self, DockerConfigError};
use super::ecr::{Ecr, EcrError};
use crate::env;

/// The kinds of registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Azure Container Registry.
    Azure,
    /// AWS Elastic Container Registry.
    Aws,
    /// Any OCI registry (`--registry`).
    Registry,
}

impl Kind {
    /// The flag that selects it.
    #[must_use]
    pub const fn flag(self) -> &'static str {
        match self {
            Self::Azure => "--azure",
            Self::Aws => "--aws",
            Self::Registry => "--registry",
        }
    }
}

/// Why a registry cannot be used.
#[derive(Debug, Error)]
pub enum ProviderError {
    /// ACR.
    #[error(transparent)]
    Azure(#[from] AzureError),
    /// ECR.
    #[error(transparent)]
    Aws(#[from] EcrError),
    /// Docker's configuration.
    #[error(transparent)]
    DockerConfig(#[from] DockerConfigError),
    /// The registry API client cannot be made.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A helper thread failed.
    #[error("looking up credentials for {host} stopped: {message}")]
    Internal {
        /// The registry.
        host: String,
        /// Why.
        message: String,
    },
}

enum Auth {
    /// Credentials that do not expire (a registry user, Docker's config) or none.
    Fixed(Option<Credentials>),
    /// ACR: the Entra chain and the exchange, again on renewal.
    Acr,
    /// ECR: `GetAuthorizationToken`.
    Ecr(Box<Ecr>),
}

struct Cached {
    credentials: Credentials,
    renew_at: Option<Instant>,
}

/// One registry to push to.
pub struct Registry {
    /// Its kind.
    pub kind: Kind,
    /// Its host (`leafai.azurecr.io`, `127.0.0.1:5000`).
    pub host: String,
    /// Where the credentials come from, for the output (never the credentials).
    pub origin: String,
    auth: Auth,
    cache: Mutex<Option<Cached>>,
    /// Bumped whenever new credentials are fetched.
    generation: AtomicU64,
    /// An API client for the current credentials (it keeps its bearer tokens).
    client: Mutex<Option<(u64, Arc<RegistryClient>)>>,
    /// Time limits of its API clients.
    timeouts: Timeouts,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Registry")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

fn instant_of(at: SystemTime) -> Option<Instant> {
    at.duration_since(SystemTime::now())
        .ok()
        .and_then(|left| Instant::now().checked_add(left))
}

impl Registry {
    /// An ACR at `host`: finds a working source of the chain now (so a
    /// registry with no usable credentials is known before anything is pushed).
    ///
    /// # Errors
    /// No source works.
    pub async fn azure(host: &str) -> Result<Self, ProviderError> {
        let (credentials, origin) = azure::credentials(host, &env::process).await?;
        let fixed = origin.starts_with("registry user");
        Ok(Self {
            kind: Kind::Azure,
            host: host.to_owned(),
            origin,
            auth: if fixed {
                Auth::Fixed(Some(credentials.clone()))
            } else {
                Auth::Acr
            },
            generation: AtomicU64::new(0),
            client: Mutex::new(None),
            timeouts: Timeouts::default(),
            cache: Mutex::new(Some(Cached {
                credentials,
                renew_at: if fixed {
                    None
                } else {
                    Instant::now().checked_add(azure::REFRESH_TOKEN_LIFETIME)
                },
            })),
        })
    }

    /// The ECR of the default AWS account and region.
    ///
    /// # Errors
    /// No region or credentials, or STS failing.
    pub async fn aws() -> Result<Self, ProviderError> {
        let ecr = Ecr::discover(env::process(env::ECR_REGISTRY_OVERRIDE)).await?;
        Ok(Self {
            kind: Kind::Aws,
            host: ecr.host.clone(),
            origin: "AWS default credential chain".to_owned(),
            auth: Auth::Ecr(Box::new(ecr)),
            generation: AtomicU64::new(0),
            client: Mutex::new(None),
            timeouts: Timeouts::default(),
            cache: Mutex::new(None),
        })
    }

    /// Any registry: `SGR_REGISTRY_USERNAME`/`SGR_REGISTRY_PASSWORD`, else
    /// Docker's configuration and credential helpers, else anonymous.
    ///
    /// # Errors
    /// Docker's configuration is unreadable or its helper fails.
    pub async fn generic(host: &str) -> Result<Self, ProviderError> {
        if let (Some(username), Some(password)) = (
            env::process(env::REGISTRY_USERNAME),
            env::process(env::REGISTRY_PASSWORD),
        ) && !username.is_empty()
        {
            return Ok(Self::fixed(
                host,
                Some(Credentials::new(username, password)),
                format!("{} and {}", env::REGISTRY_USERNAME, env::REGISTRY_PASSWORD),
            ));
        }
        let owned = host.to_owned();
        let found = tokio::task::spawn_blocking(move || {
            docker_config::config_path()
                .map_or(Ok(None), |path| docker_config::lookup(&path, &owned))
        })
        .await
        .map_err(|error| ProviderError::Internal {
            host: host.to_owned(),
            message: error.to_string(),
        })??;
        Ok(match found {
            Some(found) => Self::fixed(host, Some(found.credentials), found.origin),
            None => Self::fixed(host, None, "anonymous".to_owned()),
        })
    }

    fn fixed(host: &str, credentials: Option<Credentials>, origin: String) -> Self {
        Self {
            kind: Kind::Registry,
            host: host.to_owned(),
            origin,
            auth: Auth::Fixed(credentials),
            generation: AtomicU64::new(0),
            client: Mutex::new(None),
            timeouts: Timeouts::default(),
            cache: Mutex::new(None),
        }
    }

    /// The same registry, its API clients with these time limits.
    #[must_use]
    pub const fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// The credentials to use now; `refresh` forces new ones (after a 401).
    ///
    /// # Errors
    /// The source fails.
    pub async fn credentials(&self, refresh: bool) -> Result<Option<Credentials>, ProviderError> {
        let mut cache = self.cache.lock().await;
        if !refresh
            && let Some(cached) = cache.as_ref()
            && cached.renew_at.is_some_and(|at| Instant::now() < at)
        {
            return Ok(Some(cached.credentials.clone()));
        }
        let fresh = match &self.auth {
            Auth::Fixed(credentials) => return Ok(credentials.clone()),
            Auth::Acr => {
                let (credentials, _) = azure::credentials(&self.host, &env::process).await?;
                Cached {
                    credentials,
                    renew_at: Instant::now().checked_add(azure::REFRESH_TOKEN_LIFETIME),
                }
            }
            Auth::Ecr(ecr) => {
                let token = ecr.token().await?;
                Cached {
                    credentials: token.credentials,
                    renew_at: token.renew_at.and_then(instant_of),
                }
            }
        };
        tracing::debug!(host = %self.host, refresh, "registry credentials fetched");
        self.generation.fetch_add(1, Ordering::SeqCst);
        let credentials = fresh.credentials.clone();
        *cache = Some(fresh);
        Ok(Some(credentials))
    }

    /// An API client with the current credentials (`refresh`: new ones),
    /// reused while the credentials stay the same.
    ///
    /// # Errors
    /// The credentials cannot be fetched or the client made.
    pub async fn client(&self, refresh: bool) -> Result<Arc<RegistryClient>, ProviderError> {
        let credentials = self.credentials(refresh).await?;
        let generation = self.generation.load(Ordering::SeqCst);
        let mut cached = self.client.lock().await;
        if let Some((made_at, client)) = cached.as_ref()
            && *made_at == generation
        {
            return Ok(Arc::clone(client));
        }
        let client = Arc::new(RegistryClient::with_timeouts(
            &self.host,
            credentials,
            self.timeouts,
        )?);
        *cached = Some((generation, Arc::clone(&client)));
        Ok(client)
    }

    /// Make sure `repository` can be pushed to: ECR repositories are created
    /// (scan on push) when missing. True when one was created.
    ///
    /// # Errors
    /// The ECR calls fail.
    pub async fn prepare(&self, repository: &str) -> Result<bool, ProviderError> {
        match &self.auth {
            Auth::Ecr(ecr) => Ok(ecr.ensure_repository(repository).await?),
            _ => Ok(false),
        }
    }
}
