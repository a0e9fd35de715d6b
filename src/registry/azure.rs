//! Azure Container Registry: the credential chain and the exchange of an
//! Entra ID token for an ACR refresh token (what `az acr login` does,
//! without the CLI and without writing ~/.docker/config.json).
//!
//! `azure_identity` 1.x has no default chain, so it is built here, in the
//! order Azure's own tools use; the first source that yields a registry
//! token wins and is named in the output.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::{Secret, TokenCredential};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use thiserror::Error;

use super::client::{Challenge, parse_challenge};
use super::{Credentials, base_url};
use crate::env;

/// The user name ACR expects with a refresh token.
pub const NULL_GUID: &str = "00000000-0000-0000-0000-000000000000";
/// The scope of Entra tokens for ACR.
const SCOPE: &str = "https://containerregistry.azure.net/.default";
/// How long one source may take (the instance metadata service may never answer).
const SOURCE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the instance metadata service gets when nothing points at it.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// ACR refresh tokens last about 3 h; sgr renews them well before.
pub const REFRESH_TOKEN_LIFETIME: Duration = Duration::from_mins(150);

/// ACR authentication failures.
#[derive(Debug, Error)]
pub enum AzureError {
    /// No source gave a token.
    #[error("no usable Azure credentials for {host} (tried: {})", .tried.join("; "))]
    NoCredentials {
        /// The registry.
        host: String,
        /// Each source tried and why it failed.
        tried: Vec<String>,
    },
}

/// `leafai` → `leafai.azurecr.io`; a name with a dot or a port is a host already.
#[must_use]
pub fn registry_host(name: &str) -> String {
    if name.contains('.') || name.contains(':') {
        name.to_owned()
    } else {
        format!("{name}.azurecr.io")
    }
}

#[derive(Deserialize)]
struct ExchangeAnswer {
    refresh_token: SecretString,
}

/// One source of the chain.
struct Source {
    name: &'static str,
    credential: Result<Arc<dyn TokenCredential>, String>,
    timeout: Duration,
}

/// The chain's sources for this environment, in order.
fn sources(lookup: &dyn Fn(&str) -> Option<String>) -> Vec<Source> {
    let set = |name: &str| lookup(name).is_some_and(|value| !value.is_empty());
    let mut sources = Vec::new();
    if set(env::AZURE_FEDERATED_TOKEN_FILE) {
        sources.push(Source {
            name: "workload identity",
            credential: azure_identity::WorkloadIdentityCredential::new(None)
                .map(|credential| credential as Arc<dyn TokenCredential>)
                .map_err(|error| error.to_string()),
            timeout: SOURCE_TIMEOUT,
        });
    }
    if set(env::AZURE_CLIENT_SECRET) {
        let credential = match (
            lookup(env::AZURE_TENANT_ID),
            lookup(env::AZURE_CLIENT_ID),
            lookup(env::AZURE_CLIENT_SECRET),
        ) {
            (Some(tenant), Some(client), Some(secret)) => {
                azure_identity::ClientSecretCredential::new(
                    &tenant,
                    client,
                    Secret::new(secret),
                    None,
                )
                .map(|credential| credential as Arc<dyn TokenCredential>)
                .map_err(|error| error.to_string())
            }
            _ => Err(
                "AZURE_CLIENT_SECRET is set but AZURE_TENANT_ID or AZURE_CLIENT_ID is not"
                    .to_owned(),
            ),
        };
        sources.push(Source {
            name: "service principal",
            credential,
            timeout: SOURCE_TIMEOUT,
        });
    }
    let pointed = env::AZURE_MANAGED_IDENTITY_ENDPOINTS.into_iter().any(&set);
    sources.push(Source {
        name: "managed identity",
        credential: azure_identity::ManagedIdentityCredential::new(None)
            .map(|credential| credential as Arc<dyn TokenCredential>)
            .map_err(|error| error.to_string()),
        timeout: if pointed {
            SOURCE_TIMEOUT
        } else {
            IMDS_PROBE_TIMEOUT
        },
    });
    if on_path("az") {
        sources.push(Source {
            name: "Azure CLI",
            credential: azure_identity::AzureCliCredential::new(None)
                .map(|credential| credential as Arc<dyn TokenCredential>)
                .map_err(|error| error.to_string()),
            timeout: SOURCE_TIMEOUT,
        });
    }
    sources
}

fn on_path(program: &str) -> bool {
    std::env::var_os(env::PATH).is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
    })
}

/// Where the registry's token service is: the realm of its `/v2/`
/// challenge (`https://<name>.azurecr.io/oauth2/token` on ACR) names it;
/// the exchange endpoint sits beside it. Returns the exchange URL and the
/// service name.
async fn token_service(http: &reqwest::Client, host: &str) -> (String, String) {
    let fallback = (
        format!("{}/oauth2/exchange", base_url(host)),
        host.to_owned(),
    );
    let Ok(response) = http.get(format!("{}/v2/", base_url(host))).send().await else {
        return fallback;
    };
    let challenge = response
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_challenge);
    match challenge {
        Some(Challenge::Bearer { realm, service }) => match realm.strip_suffix("/oauth2/token") {
            Some(base) => (
                format!("{base}/oauth2/exchange"),
                service.unwrap_or_else(|| host.to_owned()),
            ),
            None => fallback,
        },
        _ => fallback,
    }
}

/// Exchange an Entra token for an ACR refresh token at the registry's `/oauth2/exchange`.
async fn exchange(
    http: &reqwest::Client,
    host: &str,
    tenant: Option<&str>,
    entra_token: &str,
) -> Result<SecretString, String> {
    let (url, service) = token_service(http, host).await;
    let mut form = vec![
        ("grant_type", "access_token"),
        ("service", service.as_str()),
        ("access_token", entra_token),
    ];
    if let Some(tenant) = tenant {
        form.push(("tenant", tenant));
    }
    let response = http.post(&url).form(&form).send().await.map_err(|error| {
        format!(
            "the token exchange at {host} failed: {}",
            without_url(&error)
        )
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!(
            "{host} refused the Entra token in the exchange ({status})"
        ));
    }
    response
        .json::<ExchangeAnswer>()
        .await
        .map(|answer| answer.refresh_token)
        .map_err(|_| format!("{host} answered the exchange without a refresh token"))
}

/// A reqwest error without its URL's query (none of ours carry secrets, but stay safe).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(
            url.as_str(),
            &format!("{}{}", url.origin().ascii_serialization(), url.path()),
        );
    }
    text
}

/// Credentials for a push to the ACR at `host`, and the source that gave them.
///
/// # Errors
/// No source of the chain works; the message lists each one and why.
pub async fn credentials(
    host: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<(Credentials, String), AzureError> {
    if let (Some(username), Some(password)) = (lookup(env::ACR_USERNAME), lookup(env::ACR_PASSWORD))
        && !username.is_empty()
        && !password.is_empty()
    {
        return Ok((
            Credentials::new(username, password),
            format!("registry user from {}", env::ACR_USERNAME),
        ));
    }
    let http = reqwest::Client::builder()
        .timeout(SOURCE_TIMEOUT)
        .build()
        .map_err(|error| AzureError::NoCredentials {
            host: host.to_owned(),
            tried: vec![format!("HTTP client: {error}")],
        })?;
    let tenant = lookup(env::AZURE_TENANT_ID);
    let mut tried = Vec::new();
    for source in sources(lookup) {
        let credential = match source.credential {
            Ok(credential) => credential,
            Err(message) => {
                tried.push(format!("{}: {message}", source.name));
                continue;
            }
        };
        let token = match tokio::time::timeout(source.timeout, credential.get_token(&[SCOPE], None))
            .await
        {
            Err(_) => {
                tried.push(format!(
                    "{}: no answer within {} s",
                    source.name,
                    source.timeout.as_secs()
                ));
                continue;
            }
            Ok(Err(error)) => {
                tried.push(format!(
                    "{}: {}",
                    source.name,
                    first_line(&error.to_string())
                ));
                continue;
            }
            Ok(Ok(token)) => token,
        };
        match exchange(&http, host, tenant.as_deref(), token.token.secret()).await {
            Ok(refresh_token) => {
                tracing::debug!(host, source = source.name, "ACR refresh token obtained");
                return Ok((
                    Credentials {
                        username: NULL_GUID.to_owned(),
                        password: SecretString::from(refresh_token.expose_secret().to_owned()),
                    },
                    source.name.to_owned(),
                ));
            }
            Err(message) => tried.push(format!("{}: {message}", source.name)),
        }
    }
    Err(AzureError::NoCredentials {
        host: host.to_owned(),
        tried,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_become_azurecr_hosts() {
        assert_eq!(registry_host("leafai"), "leafai.azurecr.io");
        assert_eq!(registry_host("leafai.azurecr.io"), "leafai.azurecr.io");
        assert_eq!(registry_host("127.0.0.1:5001"), "127.0.0.1:5001");
    }

    #[test]
    fn the_chain_follows_the_environment() {
        let names = |pairs: &[(&str, &str)]| {
            let pairs: Vec<(String, String)> = pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect();
            sources(&move |name| {
                pairs
                    .iter()
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| value.clone())
            })
            .into_iter()
            .map(|source| source.name)
            .filter(|name| *name != "Azure CLI")
            .collect::<Vec<_>>()
        };
        assert_eq!(names(&[]), ["managed identity"]);
        assert_eq!(
            names(&[
                ("AZURE_CLIENT_SECRET", "x"),
                ("AZURE_TENANT_ID", "72f988bf-86f1-41af-91ab-2d7cd011db47"),
                ("AZURE_CLIENT_ID", "c"),
                ("AZURE_FEDERATED_TOKEN_FILE", "/t"),
            ]),
            ["workload identity", "service principal", "managed identity"]
        );
    }

    #[test]
    fn a_half_configured_service_principal_says_what_is_missing() {
        let found = sources(&|name| (name == "AZURE_CLIENT_SECRET").then(|| "x".to_owned()));
        let principal = found
            .iter()
            .find(|source| source.name == "service principal")
            .unwrap_or_else(|| panic!("no service principal source"));
        let Err(message) = &principal.credential else {
            panic!("a credential without tenant")
        };
        assert!(message.contains("AZURE_TENANT_ID"), "{message}");
    }
}
