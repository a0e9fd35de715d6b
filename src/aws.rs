//! AWS, through the SDK's default chain (environment, profiles, SSO, web
//! identity, instance metadata) and endpoint overrides (`AWS_ENDPOINT_URL`).

use std::time::Duration;

use thiserror::Error;

/// How long the whole lookup may take (the metadata service can hang).
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

type CallerIdentityError = aws_sdk_sts::error::SdkError<
    aws_sdk_sts::operation::get_caller_identity::GetCallerIdentityError,
>;

/// Why an AWS lookup failed.
#[derive(Debug, Error)]
pub enum AwsError {
    /// No region in the environment or profile.
    #[error("no AWS region is configured")]
    NoRegion,
    /// STS refused or could not be reached.
    #[error("AWS STS GetCallerIdentity failed")]
    CallerIdentity(#[source] Box<CallerIdentityError>),
    /// STS answered without an account.
    #[error("AWS STS returned no account id")]
    NoAccount,
    /// The lookup took too long.
    #[error("AWS did not answer within {} s", LOOKUP_TIMEOUT.as_secs())]
    Timeout,
}

/// The ECR registry host of the default account and region:
/// `<account>.dkr.ecr.<region>.amazonaws.com`.
///
/// # Errors
/// No region, no credentials, or STS failing.
pub async fn default_ecr_registry() -> Result<String, AwsError> {
    tokio::time::timeout(LOOKUP_TIMEOUT, async {
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .load()
            .await;
        let region = config.region().ok_or(AwsError::NoRegion)?.to_string();
        let identity = aws_sdk_sts::Client::new(&config)
            .get_caller_identity()
            .send()
            .await
            .map_err(|error| AwsError::CallerIdentity(Box::new(error)))?;
        let account = identity.account().ok_or(AwsError::NoAccount)?;
        Ok(format!("{account}.dkr.ecr.{region}.amazonaws.com"))
    })
    .await
    .map_err(|_| AwsError::Timeout)?
}
