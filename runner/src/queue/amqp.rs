//! RabbitMQ through lapin. Queues are discovered through the management API
//! and filtered by the `--queue-match`/`--queue-mismatch` regexes; a message
//! is taken with `basic.get` (one at a time, manual ack) and settled with
//! ack, nack-with-requeue, or a copy to `<queue>.dead` (reason in its
//! `x-runner-reason` header) followed by an ack. The connection lives on the
//! process's runtime ([`crate::runtime`]), so heartbeats continue while an
//! experiment runs.
//!
//! A broker restart or a network fault is weather, not an end: an operation
//! that finds the connection or its channel dead fails
//! ([`Class::Transient`]) and drops the link; the next operation connects
//! again, at most once per backoff interval ([`BACKOFF_START`] doubling to
//! [`BACKOFF_MAX`], reset by a successful connection), each attempt bounded
//! by [`CONNECT_TIMEOUT`] so no experiment thread waits longer than that.
//! A message taken on a link that has since died cannot be settled on a new
//! one (the broker has already put it back): its settlement fails with
//! [`AmqpError::Stale`] and the broker delivers it again.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use thiserror::Error;

use super::QueueFilter;
use crate::failure::{Class, Classify};
use crate::runtime::{self, RuntimeError};

/// How long connecting (TCP, AMQP handshake, channel) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one broker operation (get, ack, publish) may take.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(15);
/// The first pause between failed connection attempts.
pub const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest pause between failed connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// The heartbeat asked for when the URL names none, in seconds: a broker
/// that vanished without closing the socket is noticed within two of them.
pub const HEARTBEAT: u16 = 10;
/// Connecting to the management API may take this long.
pub const MANAGEMENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One management API request may take this long, answer included.
pub const MANAGEMENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The largest queue listing read from the management API.
const MANAGEMENT_LIMIT: usize = 16 << 20;

/// RabbitMQ failures (never with the URL's password).
#[derive(Debug, Error)]
pub enum AmqpError {
    /// The broker refused or failed an operation.
    #[error("RabbitMQ: {action} failed: {message}")]
    Broker {
        /// What was done.
        action: String,
        /// Why.
        message: String,
    },
    /// There is no connection to the broker: the last attempt failed, and
    /// the next is not due yet.
    #[error("RabbitMQ at {host}: not connected ({message}); next attempt in {:.1} s", .retry_in.as_secs_f64())]
    Disconnected {
        /// `host:port` of the broker.
        host: String,
        /// Why the last attempt failed.
        message: String,
        /// When the next attempt is due.
        retry_in: Duration,
    },
    /// The message was taken on a connection or channel that has died
    /// since: it cannot be settled any more, and the broker delivers it
    /// again (to this runner or another).
    #[error(
        "RabbitMQ: cannot {action} a message of {queue}: the connection it came on is gone; the broker will deliver it again"
    )]
    Stale {
        /// The message's queue.
        queue: String,
        /// `ack`, `return` or `dead-letter`.
        action: &'static str,
    },
    /// The management API failed.
    #[error("RabbitMQ management API at {url}: {message}")]
    Management {
        /// The API (without credentials).
        url: String,
        /// Why.
        message: String,
    },
    /// The AMQP URL does not parse (its text is not repeated: it holds the password).
    #[error("the AMQP URL does not parse: {message}")]
    Url {
        /// Why.
        message: String,
    },
    /// The process's runtime cannot be used.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl AmqpError {
    /// Whether this is [`AmqpError::Stale`]: the settlement did not happen,
    /// the broker redelivers the message.
    #[must_use]
    pub const fn is_stale(&self) -> bool {
        matches!(self, Self::Stale { .. })
    }
}

impl Classify for AmqpError {
    /// Everything is the broker's weather ([`Class::Transient`]) except a
    /// misused runtime, a bug. A URL that does not parse is only returned
    /// by [`AmqpQueues::new`]/[`AmqpQueues::connect`], before any message.
    fn class(&self) -> Class {
        match self {
            Self::Runtime(error) => error.class(),
            Self::Broker { .. }
            | Self::Disconnected { .. }
            | Self::Stale { .. }
            | Self::Management { .. }
            | Self::Url { .. } => Class::Transient,
        }
    }
}

fn broker(action: impl Into<String>) -> impl FnOnce(lapin::Error) -> AmqpError {
    let action = action.into();
    move |error| AmqpError::Broker {
        action,
        message: error.to_string(),
    }
}

fn timed_out(action: impl Into<String>, limit: Duration) -> AmqpError {
    AmqpError::Broker {
        action: action.into(),
        message: format!("no answer within {} s", limit.as_secs()),
    }
}

/// A message taken from a queue, on the link numbered `link`.
pub struct AmqpClaim {
    queue: String,
    link: u64,
    delivery: lapin::message::Delivery,
}

impl AmqpClaim {
    /// The queue the message came from.
    #[must_use]
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Whether the broker says this is a redelivery (taken before by a
    /// runner whose connection or settlement failed).
    #[must_use]
    pub const fn redelivered(&self) -> bool {
        self.delivery.redelivered
    }
}

/// A live connection and its channel; `number` counts links, so a claim
/// knows which one it came on.
struct Link {
    number: u64,
    connection: Connection,
    channel: Channel,
}

impl Link {
    fn alive(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}

/// The connection's state: the live link if any, and when the next
/// connection attempt is allowed.
struct Connector {
    link: Option<Link>,
    links: u64,
    next_attempt: Option<Instant>,
    backoff: Duration,
    last_failure: String,
}

/// The queues of one broker.
pub struct AmqpQueues {
    uri: AMQPUri,
    host: String,
    connector: Mutex<Connector>,
    http: reqwest::Client,
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
            .field("host", &self.host)
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

/// The next pause after a failed attempt that waited `backoff`.
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

impl AmqpQueues {
    /// The broker at `url` with its management API at `management`, not
    /// connected yet: the first operation connects. A runner built so
    /// starts while the broker is down.
    ///
    /// # Errors
    /// The URL does not parse, or the HTTP client cannot be built.
    pub fn new(url: &str, management: &str, filter: QueueFilter) -> Result<Self, AmqpError> {
        let mut uri: AMQPUri = url.parse().map_err(|message| AmqpError::Url { message })?;
        if uri.query.heartbeat.is_none() {
            uri.query.heartbeat = Some(HEARTBEAT);
        }
        let host = format!("{}:{}", uri.authority.host, uri.authority.port);
        let management = management.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .connect_timeout(MANAGEMENT_CONNECT_TIMEOUT)
            .timeout(MANAGEMENT_TIMEOUT)
            .build()
            .map_err(|error| AmqpError::Management {
                url: management.clone(),
                message: crate::error_text(&error),
            })?;
        let (user, password, vhost) = credentials(url);
        Ok(Self {
            uri,
            host,
            connector: Mutex::new(Connector {
                link: None,
                links: 0,
                next_attempt: None,
                backoff: BACKOFF_START,
                last_failure: String::new(),
            }),
            http,
            management,
            user,
            password,
            vhost,
            filter,
        })
    }

    /// [`AmqpQueues::new`], then connect once now.
    ///
    /// # Errors
    /// The URL does not parse, or the broker cannot be reached.
    pub fn connect(url: &str, management: &str, filter: QueueFilter) -> Result<Self, AmqpError> {
        let queues = Self::new(url, management, filter)?;
        queues.channel()?;
        Ok(queues)
    }

    /// Close the connection.
    pub fn close(self) {
        let link = self.lock().link.take();
        if let Some(link) = link {
            let _ = runtime::block_on_within(
                CONNECT_TIMEOUT,
                link.connection.close(200, "runner stopping".into()),
            );
        }
    }

    /// Whether a link to the broker is up now (nothing is attempted).
    #[must_use]
    pub fn connected(&self) -> bool {
        self.lock().link.as_ref().is_some_and(Link::alive)
    }

    fn lock(&self) -> MutexGuard<'_, Connector> {
        self.connector
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The live channel and its link's number, connecting when there is
    /// none and an attempt is due. Holds the lock while connecting, so
    /// other threads wait at most [`CONNECT_TIMEOUT`] and never stack
    /// attempts.
    fn channel(&self) -> Result<(Channel, u64), AmqpError> {
        let mut connector = self.lock();
        if let Some(link) = &connector.link {
            if link.alive() {
                return Ok((link.channel.clone(), link.number));
            }
            crate::log::warn(&format!(
                "RabbitMQ at {}: the connection was lost; reconnecting",
                self.host
            ));
            let dead = connector.link.take();
            drop(dead);
        }
        let now = Instant::now();
        if let Some(due) = connector.next_attempt
            && now < due
        {
            return Err(AmqpError::Disconnected {
                host: self.host.clone(),
                message: connector.last_failure.clone(),
                retry_in: due - now,
            });
        }
        let attempt = runtime::block_on_within(CONNECT_TIMEOUT, async {
            let connection =
                Connection::connect_uri(self.uri.clone(), ConnectionProperties::default())
                    .await
                    .map_err(|error| error.to_string())?;
            let channel = connection
                .create_channel()
                .await
                .map_err(|error| format!("opening a channel: {error}"))?;
            Ok::<_, String>((connection, channel))
        })?;
        let failure = match attempt {
            Some(Ok((connection, channel))) => {
                connector.links += 1;
                connector.next_attempt = None;
                connector.backoff = BACKOFF_START;
                if !connector.last_failure.is_empty() {
                    crate::log::info(&format!("RabbitMQ at {}: connected again", self.host));
                    connector.last_failure.clear();
                }
                let link = Link {
                    number: connector.links,
                    connection,
                    channel: channel.clone(),
                };
                let number = link.number;
                connector.link = Some(link);
                return Ok((channel, number));
            }
            Some(Err(message)) => message,
            None => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
        };
        let wait = connector.backoff;
        connector.next_attempt = Some(now + wait);
        connector.backoff = next_backoff(wait);
        connector.last_failure.clone_from(&failure);
        Err(AmqpError::Disconnected {
            host: self.host.clone(),
            message: failure,
            retry_in: wait,
        })
    }

    /// After a failed operation on link `number`: drop that link if it is
    /// the current one and no longer alive, or if `unknown` (the operation's
    /// outcome is unknown, e.g. a `basic.get` that timed out may still
    /// deliver a message to nobody). Dropping closes the connection, so
    /// the broker gives its unsettled messages back.
    fn failed(&self, number: u64, unknown: bool) {
        let dead = {
            let mut connector = self.lock();
            let current = connector
                .link
                .as_ref()
                .is_some_and(|link| link.number == number && (unknown || !link.alive()));
            if current { connector.link.take() } else { None }
        };
        if let Some(link) = dead {
            let _ = runtime::block_on_within(
                CONNECT_TIMEOUT,
                link.connection.close(200, "runner reconnecting".into()),
            );
        }
    }

    /// Whether `claim` can still be settled: its link is the live one.
    fn settleable(&self, claim: &AmqpClaim) -> bool {
        claim.delivery.acker.usable()
            && self
                .lock()
                .link
                .as_ref()
                .is_some_and(|link| link.number == claim.link && link.alive())
    }

    /// Settle `claim` with `settle`: [`AmqpError::Stale`] when its link is
    /// gone (before or during), else the broker's failure.
    fn settle<F: Future<Output = Result<bool, lapin::Error>>>(
        &self,
        claim: &AmqpClaim,
        action: &'static str,
        settle: F,
    ) -> Result<(), AmqpError> {
        let stale = || AmqpError::Stale {
            queue: claim.queue.clone(),
            action,
        };
        if !self.settleable(claim) {
            return Err(stale());
        }
        match runtime::block_on_within(OPERATION_TIMEOUT, settle)? {
            Some(Ok(true)) => Ok(()),
            // The acker was poisoned meanwhile: the channel closed.
            Some(Ok(false)) => {
                self.failed(claim.link, false);
                Err(stale())
            }
            Some(Err(error)) => {
                self.failed(claim.link, false);
                if self.settleable(claim) {
                    Err(broker(format!("{action} a message of {}", claim.queue))(
                        error,
                    ))
                } else {
                    Err(stale())
                }
            }
            None => {
                // Unknown whether the broker got it: drop the link, so it
                // redelivers the message if not.
                self.failed(claim.link, true);
                Err(stale())
            }
        }
    }

    async fn listing(&self, url: &str) -> Result<Vec<String>, String> {
        let mut response = self
            .http
            .get(url)
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|error| crate::error_text(&error.without_url()))?;
        if !response.status().is_success() {
            return Err(format!("answered {}", response.status()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| crate::error_text(&error.without_url()))?
        {
            if body.len() + chunk.len() > MANAGEMENT_LIMIT {
                return Err(format!(
                    "the queue listing is larger than {} MiB",
                    MANAGEMENT_LIMIT >> 20
                ));
            }
            body.extend_from_slice(&chunk);
        }
        let listed: Vec<serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|error| format!("the queue listing is not JSON: {error}"))?;
        Ok(listed
            .iter()
            .filter_map(|queue| queue["name"].as_str().map(str::to_owned))
            .collect())
    }
}

impl super::Queues for AmqpQueues {
    type Claim = AmqpClaim;
    type Error = AmqpError;

    fn redelivered(&self, claim: &AmqpClaim) -> bool {
        claim.redelivered()
    }

    fn queues(&self) -> Result<Vec<String>, AmqpError> {
        let vhost = self.vhost.replace('/', "%2F");
        let url = format!("{}/api/queues/{vhost}", self.management);
        let names = runtime::block_on(self.listing(&url))?
            .map_err(|message| AmqpError::Management { url, message })?;
        let names = names
            .into_iter()
            .filter(|name| !name.to_ascii_lowercase().ends_with(".dead"))
            .collect::<Vec<_>>();
        Ok(self.filter.select(names))
    }

    fn claim(&self, queue: &str) -> Result<Option<super::Taken<Self::Claim>>, AmqpError> {
        let (channel, link) = self.channel()?;
        let action = format!("taking a message from {queue}");
        let got = match runtime::block_on_within(
            OPERATION_TIMEOUT,
            channel.basic_get(queue.into(), BasicGetOptions { no_ack: false }),
        )? {
            Some(Ok(got)) => got,
            Some(Err(error)) => {
                // A channel error (e.g. the queue was deleted) closes the
                // channel: the next operation opens another link.
                self.failed(link, !channel.status().connected());
                return Err(broker(action)(error));
            }
            None => {
                self.failed(link, true);
                return Err(timed_out(action, OPERATION_TIMEOUT));
            }
        };
        Ok(got.map(|message| {
            (
                message.delivery.data.clone(),
                AmqpClaim {
                    queue: queue.to_owned(),
                    link,
                    delivery: message.delivery,
                },
            )
        }))
    }

    fn ack(&self, claim: Self::Claim) -> Result<(), AmqpError> {
        self.settle(
            &claim,
            "ack",
            claim.delivery.acker.ack(BasicAckOptions::default()),
        )
    }

    fn nack(&self, claim: Self::Claim) -> Result<(), AmqpError> {
        self.settle(
            &claim,
            "return",
            claim.delivery.acker.nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            }),
        )
    }

    fn dead_letter(&self, claim: Self::Claim, reason: &str) -> Result<(), AmqpError> {
        if !self.settleable(&claim) {
            return Err(AmqpError::Stale {
                queue: claim.queue.clone(),
                action: "dead-letter",
            });
        }
        let dead = format!("{}.dead", claim.queue);
        let (channel, link) = self.channel()?;
        let copied = runtime::block_on_within(OPERATION_TIMEOUT, async {
            channel
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
            channel
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
            Ok::<_, AmqpError>(())
        })?;
        match copied {
            Some(Ok(())) => {}
            Some(Err(error)) => {
                self.failed(link, false);
                return Err(error);
            }
            None => {
                self.failed(link, true);
                return Err(timed_out(
                    format!("publishing to {dead}"),
                    OPERATION_TIMEOUT,
                ));
            }
        }
        // The copy is stored; should the ack now fail, the broker delivers
        // the message again and it is dead-lettered a second time (a
        // duplicate in `.dead`, never a lost reason).
        self.settle(
            &claim,
            "dead-letter",
            claim.delivery.acker.ack(BasicAckOptions::default()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling() {
        let mut backoff = BACKOFF_START;
        let mut seen = Vec::new();
        for _ in 0..8 {
            seen.push(backoff.as_secs());
            backoff = next_backoff(backoff);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn every_broker_failure_is_transient_and_stale_is_told_apart() {
        let stale = AmqpError::Stale {
            queue: "q".to_owned(),
            action: "ack",
        };
        assert!(stale.is_stale());
        assert_eq!(stale.class(), Class::Transient);
        assert!(stale.to_string().contains("deliver it again"), "{stale}");
        let disconnected = AmqpError::Disconnected {
            host: "127.0.0.1:5672".to_owned(),
            message: "refused".to_owned(),
            retry_in: Duration::from_secs(2),
        };
        assert!(!disconnected.is_stale());
        assert_eq!(disconnected.class(), Class::Transient);
        assert_eq!(AmqpError::Runtime(RuntimeError::Nested).class(), Class::Bug);
    }

    #[test]
    fn a_url_that_does_not_parse_is_refused_without_its_password() {
        let error = AmqpQueues::new(
            "amqp://user:secret@host:notaport/",
            "http://x",
            QueueFilter::all(),
        )
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
        assert!(error.contains("does not parse"), "{error}");
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn an_unreachable_broker_is_tried_once_per_backoff_interval() -> Result<(), AmqpError> {
        // A port nothing listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map_or(1, |address| address.port());
        let queues = AmqpQueues::new(
            &format!("amqp://guest:guest@127.0.0.1:{port}/%2f"),
            "http://127.0.0.1:1",
            QueueFilter::all(),
        )?;
        let first = queues.channel().err();
        assert!(
            matches!(first, Some(AmqpError::Disconnected { retry_in, .. }) if retry_in == BACKOFF_START),
            "{first:?}"
        );
        let second = queues.channel().err();
        assert!(
            matches!(&second, Some(AmqpError::Disconnected { retry_in, .. }) if *retry_in <= BACKOFF_START),
            "{second:?}"
        );
        assert!(!queues.connected());
        Ok(())
    }

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
