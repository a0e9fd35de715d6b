//! RabbitMQ through lapin. Queues are discovered through the management API
//! and filtered by the `--queue-match`/`--queue-mismatch` regexes; a message
//! is taken with `basic.get` (one at a time, manual ack) and settled with
//! ack, nack-with-requeue, or a copy to `<queue>.dead` (reason in its
//! `x-runner-reason` header) followed by an ack. The connection runs on its
//! own runtime thread, so heartbeats continue while an experiment runs.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use thiserror::Error;

use super::QueueFilter;

/// RabbitMQ failures (never with the URL's password).
#[derive(Debug, Error)]
pub enum AmqpError {
    /// The broker refused or failed.
    #[error("RabbitMQ: {action} failed: {message}")]
    Broker {
        /// What was done.
        action: String,
        /// Why.
        message: String,
    },
    /// The management API failed.
    #[error("RabbitMQ management API at {url}: {message}")]
    Management {
        /// The API (without credentials).
        url: String,
        /// Why.
        message: String,
    },
}

fn broker(action: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
    let action = action.into();
    move |error| AmqpError::Broker {
        action,
        message: error.to_string(),
    }
}

/// A message taken from a queue.
pub struct AmqpClaim {
    queue: String,
    delivery: lapin::message::Delivery,
}

/// The queues of one broker.
pub struct AmqpQueues {
    runtime: tokio::runtime::Runtime,
    connection: Connection,
    channel: lapin::Channel,
    management: String,
    user: String,
    password: String,
    vhost: String,
    filter: QueueFilter,
}

impl std::fmt::Debug for AmqpQueues {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AmqpQueues")
            .field("management", &self.management)
            .field("vhost", &self.vhost)
            .finish_non_exhaustive()
    }
}

/// `amqp://user:password@host:port/vhost` → (user, password, vhost decoded).
fn credentials(url: &str) -> (String, String, String) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, password) = authority
        .rsplit_once('@')
        .map_or(("guest", "guest"), |(userinfo, _)| {
            userinfo.split_once(':').unwrap_or((userinfo, ""))
        });
    let vhost = path.split('?').next().unwrap_or_default();
    let vhost = if vhost.is_empty() {
        "/".to_owned()
    } else {
        vhost.replace("%2f", "/").replace("%2F", "/")
    };
    (user.to_owned(), password.to_owned(), vhost)
}

impl AmqpQueues {
    /// Connect to `url` and use the management API at `management`.
    ///
    /// # Errors
    /// The broker cannot be reached.
    pub fn connect(url: &str, management: &str, filter: QueueFilter) -> Result<Self, AmqpError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|error| AmqpError::Broker {
                action: "starting a runtime".to_owned(),
                message: error.to_string(),
            })?;
        let (connection, channel) = runtime.block_on(async {
            let connection = Connection::connect(url, ConnectionProperties::default())
                .await
                .map_err(broker("connecting"))?;
            let channel = connection
                .create_channel()
                .await
                .map_err(broker("opening a channel"))?;
            Ok::<_, AmqpError>((connection, channel))
        })?;
        let (user, password, vhost) = credentials(url);
        Ok(Self {
            runtime,
            connection,
            channel,
            management: management.trim_end_matches('/').to_owned(),
            user,
            password,
            vhost,
            filter,
        })
    }

    /// Close the connection.
    pub fn close(self) {
        let _ = self
            .runtime
            .block_on(self.connection.close(200, "runner stopping".into()));
    }
}

impl super::Queues for AmqpQueues {
    type Claim = AmqpClaim;
    type Error = AmqpError;

    fn queues(&self) -> Result<Vec<String>, AmqpError> {
        let vhost = self.vhost.replace('/', "%2F");
        let url = format!("{}/api/queues/{vhost}", self.management);
        let failure = |message: String| AmqpError::Management {
            url: url.clone(),
            message,
        };
        let names: Vec<String> = self.runtime.block_on(async {
            let response = reqwest::Client::new()
                .get(&url)
                .basic_auth(&self.user, Some(&self.password))
                .send()
                .await
                .map_err(|error| failure(error.without_url().to_string()))?;
            if !response.status().is_success() {
                return Err(failure(format!("answered {}", response.status())));
            }
            let listed: Vec<serde_json::Value> = response
                .json()
                .await
                .map_err(|error| failure(error.to_string()))?;
            Ok(listed
                .iter()
                .filter_map(|queue| queue["name"].as_str().map(str::to_owned))
                .collect())
        })?;
        let names = names
            .into_iter()
            .filter(|name| !name.to_ascii_lowercase().ends_with(".dead"))
            .collect::<Vec<_>>();
        Ok(self.filter.select(names))
    }

    fn claim(&self, queue: &str) -> Result<Option<super::Taken<Self::Claim>>, AmqpError> {
        let got = self
            .runtime
            .block_on(
                self.channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: false }),
            )
            .map_err(broker(format!("taking a message from {queue}")))?;
        Ok(got.map(|message| {
            (
                message.delivery.data.clone(),
                AmqpClaim {
                    queue: queue.to_owned(),
                    delivery: message.delivery,
                },
            )
        }))
    }

    fn ack(&self, claim: Self::Claim) -> Result<(), AmqpError> {
        self.runtime
            .block_on(claim.delivery.acker.ack(BasicAckOptions::default()))
            .map(drop)
            .map_err(broker("acknowledging a message"))
    }

    fn nack(&self, claim: Self::Claim) -> Result<(), AmqpError> {
        self.runtime
            .block_on(claim.delivery.acker.nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            }))
            .map(drop)
            .map_err(broker("returning a message"))
    }

    fn dead_letter(&self, claim: Self::Claim, reason: &str) -> Result<(), AmqpError> {
        let dead = format!("{}.dead", claim.queue);
        self.runtime.block_on(async {
            self.channel
                .queue_declare(
                    dead.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(broker(format!("declaring {dead}")))?;
            let mut headers = FieldTable::default();
            headers.insert(
                "x-runner-reason".into(),
                AMQPValue::LongString(reason.into()),
            );
            self.channel
                .basic_publish(
                    "".into(),
                    dead.as_str().into(),
                    BasicPublishOptions::default(),
                    &claim.delivery.data,
                    BasicProperties::default()
                        .with_headers(headers)
                        .with_delivery_mode(2),
                )
                .await
                .map_err(broker(format!("publishing to {dead}")))?
                .await
                .map_err(broker(format!("publishing to {dead}")))?;
            claim
                .delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map(drop)
                .map_err(broker("acknowledging a dead-lettered message"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_vhost_come_from_the_url() {
        assert_eq!(
            credentials("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("guest".to_owned(), "guest".to_owned(), "/".to_owned())
        );
        assert_eq!(
            credentials("amqp://runner:p%40ss@rabbit:5672/studio"),
            (
                "runner".to_owned(),
                "p%40ss".to_owned(),
                "studio".to_owned()
            )
        );
    }
}
