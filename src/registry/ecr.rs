//! AWS Elastic Container Registry through the SDK: the default credential
//! chain and region, the account from STS, a registry token from
//! `GetAuthorizationToken`, and repositories created on first push.
//! `AWS_ENDPOINT_URL` (and `_ECR`, `_STS`) are honoured by aws-config.

use std::time::{Duration, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability};
use base64::Engine as _;
use thiserror::Error;

use super::Credentials;

/// How long one AWS call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tokens are renewed this long before they expire.
const EXPIRY_MARGIN: Duration = Duration::from_mins(10);

/// ECR failures.
#[derive(Debug, Error)]
pub enum EcrError {
    /// No region configured.
    #[error("no AWS region is configured")]
    NoRegion,
    /// No credentials in the chain.
    #[error("no AWS credentials: {0}")]
    NoCredentials(String),
    /// An API call failed.
    #[error("AWS {call} failed: {message}")]
    Call {
        /// The operation.
        call: &'static str,
        /// The SDK's explanation.
        message: String,
    },
    /// An API call took too long.
    #[error("AWS {0} did not answer within 30 s")]
    Timeout(&'static str),
    /// The token is not `AWS:<password>` in base64.
    #[error("ECR returned an authorization token sgr cannot decode")]
    BadToken,
}

/// A resolved ECR registry of one account and region.
#[derive(Debug, Clone)]
pub struct Ecr {
    config: SdkConfig,
    /// `<account>.dkr.ecr.<region>.amazonaws.com`, or the test override.
    pub host: String,
}

/// A registry token and when it should be renewed.
#[derive(Debug)]
pub struct EcrToken {
    /// `AWS` and the password.
    pub credentials: Credentials,
    /// When to fetch a new one (`None`: at once, e.g. moto's token from 2015).
    pub renew_at: Option<SystemTime>,
}

async fn timed<T, E: std::fmt::Display>(
    call: &'static str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, EcrError> {
    tokio::time::timeout(CALL_TIMEOUT, future)
        .await
        .map_err(|_| EcrError::Timeout(call))?
        .map_err(|error| EcrError::Call {
            call,
            message: error.to_string(),
        })
}

impl Ecr {
    /// Load the default chain and find the account's registry.
    ///
    /// # Errors
    /// No region, no credentials, STS failing.
    pub async fn discover(override_host: Option<String>) -> Result<Self, EcrError> {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let region = config.region().ok_or(EcrError::NoRegion)?.to_string();
        let provider = config
            .credentials_provider()
            .ok_or_else(|| EcrError::NoCredentials("no credential provider".to_owned()))?;
        tokio::time::timeout(
            CALL_TIMEOUT,
            aws_sdk_ecr::config::ProvideCredentials::provide_credentials(&provider),
        )
        .await
        .map_err(|_| EcrError::NoCredentials("the credential chain did not answer".to_owned()))?
        .map_err(|error| EcrError::NoCredentials(source_text(&error)))?;
        let identity = timed(
            "STS GetCallerIdentity",
            aws_sdk_sts::Client::new(&config)
                .get_caller_identity()
                .send(),
        )
        .await?;
        let account = identity.account().ok_or(EcrError::Call {
            call: "STS GetCallerIdentity",
            message: "no account in the answer".to_owned(),
        })?;
        let host = override_host
            .filter(|host| !host.is_empty())
            .unwrap_or_else(|| format!("{account}.dkr.ecr.{region}.amazonaws.com"));
        Ok(Self { config, host })
    }

    /// A fresh registry token.
    ///
    /// # Errors
    /// The call fails or the token cannot be decoded.
    pub async fn token(&self) -> Result<EcrToken, EcrError> {
        let answer = timed(
            "ECR GetAuthorizationToken",
            aws_sdk_ecr::Client::new(&self.config)
                .get_authorization_token()
                .send(),
        )
        .await?;
        let data = answer
            .authorization_data()
            .first()
            .ok_or(EcrError::BadToken)?;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(data.authorization_token().ok_or(EcrError::BadToken)?)
            .map_err(|_| EcrError::BadToken)?;
        let decoded = String::from_utf8(decoded).map_err(|_| EcrError::BadToken)?;
        let (username, password) = decoded.split_once(':').ok_or(EcrError::BadToken)?;
        let renew_at = data
            .expires_at()
            .and_then(|at| SystemTime::try_from(*at).ok())
            .and_then(|at| at.checked_sub(EXPIRY_MARGIN))
            .filter(|at| *at > SystemTime::now());
        Ok(EcrToken {
            credentials: Credentials::new(username, password),
            renew_at,
        })
    }

    /// Create `repository` (scan on push) unless it exists; true when created.
    ///
    /// # Errors
    /// The calls fail for another reason than "exists"/"not found".
    pub async fn ensure_repository(&self, repository: &str) -> Result<bool, EcrError> {
        let client = aws_sdk_ecr::Client::new(&self.config);
        let described = tokio::time::timeout(
            CALL_TIMEOUT,
            client
                .describe_repositories()
                .repository_names(repository)
                .send(),
        )
        .await
        .map_err(|_| EcrError::Timeout("ECR DescribeRepositories"))?;
        match described {
            Ok(_) => return Ok(false),
            Err(error) => {
                let service = error.into_service_error();
                if !service.is_repository_not_found_exception() {
                    return Err(EcrError::Call {
                        call: "ECR DescribeRepositories",
                        message: source_text(&service),
                    });
                }
            }
        }
        let created = tokio::time::timeout(
            CALL_TIMEOUT,
            client
                .create_repository()
                .repository_name(repository)
                .image_tag_mutability(ImageTagMutability::Mutable)
                .image_scanning_configuration(
                    ImageScanningConfiguration::builder()
                        .scan_on_push(true)
                        .build(),
                )
                .send(),
        )
        .await
        .map_err(|_| EcrError::Timeout("ECR CreateRepository"))?;
        match created {
            Ok(_) => Ok(true),
            Err(error) => {
                let service = error.into_service_error();
                if service.is_repository_already_exists_exception() {
                    Ok(false)
                } else {
                    Err(EcrError::Call {
                        call: "ECR CreateRepository",
                        message: source_text(&service),
                    })
                }
            }
        }
    }
}

/// An error and its sources on one line.
fn source_text(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error::chain(error)
}
