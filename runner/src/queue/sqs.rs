//! AWS SQS through the SDK's default chain (`AWS_ENDPOINT_URL` honoured).
//! Queues are the account's queues whose names match the regexes; a message
//! is received with a long poll and kept invisible while its experiment
//! runs (the visibility is extended every third of it by a background task);
//! ack deletes it, nack makes it visible again, and an unusable one is sent
//! to `<queue>-dead` with the reason as a message attribute, then deleted.
//!
//! Every call has timeouts ([`CONNECT_TIMEOUT`], [`READ_TIMEOUT`] beyond the
//! longest long poll, [`ATTEMPT_TIMEOUT`]), so an unreachable or silent SQS
//! fails the call (a [`Class::Transient`] error) instead of hanging a thread.

use std::time::Duration;

use aws_sdk_sqs::config::timeout::TimeoutConfig;
use aws_sdk_sqs::types::MessageAttributeValue;
use thiserror::Error;
use tokio::sync::oneshot;

use super::QueueFilter;
use crate::failure::{Class, Classify};
use crate::runtime;

/// How long connecting to SQS may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest long poll SQS allows, in seconds.
pub const LONGEST_POLL: i32 = 20;
/// How long SQS may take to start answering: beyond the longest long poll.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one attempt of a call may take, answer included.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(35);

/// Visibility given to a message while it is held, by default; renewed
/// every third of it.
pub const VISIBILITY: i32 = 300;

/// SQS failures.
#[derive(Debug, Error)]
#[error("SQS: {action} failed: {message}")]
pub struct SqsError {
    action: String,
    message: String,
}

impl Classify for SqsError {
    /// Always [`Class::Transient`]: the queues are the operator's, never
    /// the request's, so no SQS failure says the request is bad (a deleted
    /// queue, refused credentials or a throttle are fixed outside, later).
    fn class(&self) -> Class {
        Class::Transient
    }
}

fn sqs_error<E: std::error::Error + 'static>(
    action: impl Into<String>,
) -> impl FnOnce(E) -> SqsError {
    let action = action.into();
    move |error| SqsError {
        action,
        message: crate::error_text(&error),
    }
}

/// A message held by the runner.
pub struct SqsClaim {
    queue: String,
    url: String,
    receipt: String,
    body: Vec<u8>,
    stop_renewing: Option<oneshot::Sender<()>>,
}

/// The queues of one account and region.
pub struct SqsQueues {
    runtime: tokio::runtime::Handle,
    client: aws_sdk_sqs::Client,
    filter: QueueFilter,
    wait: i32,
    visibility: i32,
}

impl std::fmt::Debug for SqsQueues {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SqsQueues").finish_non_exhaustive()
    }
}

impl SqsQueues {
    /// The account's queues; `wait` is the long-poll time (at most
    /// [`LONGEST_POLL`]) and `visibility` how long a held message stays
    /// hidden before it is renewed, in seconds.
    ///
    /// # Errors
    /// The runtime cannot start.
    pub fn connect(filter: QueueFilter, wait: i32, visibility: i32) -> Result<Self, SqsError> {
        let runtime = runtime::handle().map_err(sqs_error("starting a runtime"))?;
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .operation_attempt_timeout(ATTEMPT_TIMEOUT)
            .build();
        let config = Self::block_on(
            "loading the AWS configuration",
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .timeout_config(timeouts)
                .load(),
        )?;
        Ok(Self {
            client: aws_sdk_sqs::Client::new(&config),
            runtime,
            filter,
            wait: wait.clamp(0, LONGEST_POLL),
            visibility: visibility.max(3),
        })
    }

    /// Run `future` on the process's runtime.
    fn block_on<F: Future>(action: &str, future: F) -> Result<F::Output, SqsError> {
        runtime::block_on(future).map_err(sqs_error(action))
    }

    fn url_of(&self, queue: &str) -> Result<String, SqsError> {
        let action = format!("finding queue {queue}");
        let answer = Self::block_on(
            &action,
            self.client.get_queue_url().queue_name(queue).send(),
        )?
        .map_err(sqs_error(action))?;
        Ok(answer.queue_url().unwrap_or_default().to_owned())
    }

    fn stop(claim: &mut SqsClaim) {
        if let Some(stop) = claim.stop_renewing.take() {
            let _ = stop.send(());
        }
    }
}

impl super::Queues for SqsQueues {
    type Claim = SqsClaim;
    type Error = SqsError;

    fn queues(&self) -> Result<Vec<String>, SqsError> {
        let answer = Self::block_on("listing queues", self.client.list_queues().send())?
            .map_err(sqs_error("listing queues"))?;
        let names = answer
            .queue_urls()
            .iter()
            .filter_map(|url| url.rsplit('/').next().map(str::to_owned))
            .filter(|name| !name.to_ascii_lowercase().ends_with("-dead"))
            .collect::<Vec<_>>();
        Ok(self.filter.select(names))
    }

    fn claim(&self, queue: &str) -> Result<Option<super::Taken<SqsClaim>>, SqsError> {
        let url = self.url_of(queue)?;
        let visibility = self.visibility;
        let renew = Duration::from_secs(u64::try_from(visibility / 3).unwrap_or(1));
        let action = format!("receiving from {queue}");
        let answer = Self::block_on(
            &action,
            self.client
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(1)
                .visibility_timeout(visibility)
                .wait_time_seconds(self.wait)
                .send(),
        )?
        .map_err(sqs_error(action))?;
        let Some(message) = answer.messages().first() else {
            return Ok(None);
        };
        let receipt = message.receipt_handle().unwrap_or_default().to_owned();
        let body = message.body().unwrap_or_default().as_bytes().to_vec();
        // Keep it invisible while the experiment runs.
        let (stop, mut stopped) = oneshot::channel();
        let client = self.client.clone();
        let (renew_url, renew_receipt) = (url.clone(), receipt.clone());
        self.runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stopped => return,
                    () = tokio::time::sleep(renew) => {
                        let _ = client
                            .change_message_visibility()
                            .queue_url(&renew_url)
                            .receipt_handle(&renew_receipt)
                            .visibility_timeout(visibility)
                            .send()
                            .await;
                    }
                }
            }
        });
        Ok(Some((
            body.clone(),
            SqsClaim {
                queue: queue.to_owned(),
                url,
                receipt,
                body,
                stop_renewing: Some(stop),
            },
        )))
    }

    fn ack(&self, mut claim: SqsClaim) -> Result<(), SqsError> {
        Self::stop(&mut claim);
        let action = format!("deleting a message of {}", claim.queue);
        Self::block_on(
            &action,
            self.client
                .delete_message()
                .queue_url(&claim.url)
                .receipt_handle(&claim.receipt)
                .send(),
        )?
        .map(drop)
        .map_err(sqs_error(action))
    }

    fn nack(&self, mut claim: SqsClaim) -> Result<(), SqsError> {
        Self::stop(&mut claim);
        let action = format!("returning a message of {}", claim.queue);
        Self::block_on(
            &action,
            self.client
                .change_message_visibility()
                .queue_url(&claim.url)
                .receipt_handle(&claim.receipt)
                .visibility_timeout(0)
                .send(),
        )?
        .map(drop)
        .map_err(sqs_error(action))
    }

    fn dead_letter(&self, mut claim: SqsClaim, reason: &str) -> Result<(), SqsError> {
        Self::stop(&mut claim);
        let dead = format!("{}-dead", claim.queue);
        Self::block_on(&format!("sending to {dead}"), async {
            let created = self
                .client
                .create_queue()
                .queue_name(&dead)
                .send()
                .await
                .map_err(sqs_error(format!("creating {dead}")))?;
            let attribute = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(reason)
                .build()
                .map_err(sqs_error("building the reason attribute"))?;
            self.client
                .send_message()
                .queue_url(created.queue_url().unwrap_or_default())
                .message_body(String::from_utf8_lossy(&claim.body))
                .message_attributes("x-runner-reason", attribute)
                .send()
                .await
                .map_err(sqs_error(format!("sending to {dead}")))?;
            self.client
                .delete_message()
                .queue_url(&claim.url)
                .receipt_handle(&claim.receipt)
                .send()
                .await
                .map(drop)
                .map_err(sqs_error(format!("deleting a message of {}", claim.queue)))
        })?
    }
}
