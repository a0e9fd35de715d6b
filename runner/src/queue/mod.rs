//! Queues of experiment requests behind one interface: the local directory
//! queue (the default for one machine with no services), RabbitMQ and SQS. A
//! message is claimed, then settled exactly once: acked when its results
//! are stored, returned when it can succeed later, or dead-lettered with the
//! reason when it never can.

pub mod amqp;
pub mod dir;
pub mod sqs;

/// Which queues are served: names matching `--queue-match` and not
/// `--queue-mismatch`, in name order.
#[derive(Clone, Debug)]
pub struct QueueFilter {
    matching: regex::Regex,
    mismatching: Option<regex::Regex>,
}

impl QueueFilter {
    /// A filter from the two expressions.
    #[must_use]
    pub const fn new(matching: regex::Regex, mismatching: Option<regex::Regex>) -> Self {
        Self {
            matching,
            mismatching,
        }
    }

    /// Every queue.
    #[must_use]
    pub fn all() -> Self {
        Self {
            matching: regex::Regex::new("")
                .unwrap_or_else(|_| unreachable!("an empty regex is valid")),
            mismatching: None,
        }
    }

    /// Whether `name` matches `--queue-match`.
    #[must_use]
    pub fn matches(&self, name: &str) -> bool {
        self.matching.is_match(name)
    }

    /// Whether `name` matches `--queue-mismatch`.
    #[must_use]
    pub fn excludes(&self, name: &str) -> bool {
        self.mismatching
            .as_ref()
            .is_some_and(|regex| regex.is_match(name))
    }

    /// The selected names, sorted.
    #[must_use]
    pub fn select(&self, names: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut selected: Vec<String> = names
            .into_iter()
            .filter(|name| self.matches(name) && !self.excludes(name))
            .collect();
        selected.sort();
        selected
    }
}

/// A claimed message: its body and what settles it.
pub type Taken<Claim> = (Vec<u8>, Claim);

/// A set of queues the runner serves.
pub trait Queues {
    /// What settles a claimed message.
    type Claim;
    /// Failures of the queue itself.
    type Error: std::error::Error + 'static;

    /// The names of the queues to serve, in order.
    ///
    /// # Errors
    /// The queue service or directory fails.
    fn queues(&self) -> Result<Vec<String>, Self::Error>;

    /// Take the next message of `queue`, if any: its body and its claim.
    ///
    /// # Errors
    /// As [`Queues::queues`].
    fn claim(&self, queue: &str) -> Result<Option<Taken<Self::Claim>>, Self::Error>;

    /// Done: the message is gone.
    ///
    /// # Errors
    /// As [`Queues::queues`].
    fn ack(&self, claim: Self::Claim) -> Result<(), Self::Error>;

    /// Not now: the message goes back to its queue.
    ///
    /// # Errors
    /// As [`Queues::queues`].
    fn nack(&self, claim: Self::Claim) -> Result<(), Self::Error>;

    /// Never: the message is kept aside with `reason`.
    ///
    /// # Errors
    /// As [`Queues::queues`].
    fn dead_letter(&self, claim: Self::Claim, reason: &str) -> Result<(), Self::Error>;

    /// Whether the broker says `claim` was delivered before (so it may be
    /// one whose results are already stored). Queues that cannot tell say
    /// yes.
    fn redelivered(&self, _claim: &Self::Claim) -> bool {
        true
    }

    /// Messages seen since the last [`Queues::queues`] that could not be
    /// claimed yet but will be soon (a file still being written).
    fn not_yet(&self) -> usize {
        0
    }
}

impl Queues for dir::DirQueues {
    type Claim = dir::Claimed;
    type Error = dir::DirQueueError;

    fn queues(&self) -> Result<Vec<String>, Self::Error> {
        dir::DirQueues::queues(self)
    }

    fn claim(&self, queue: &str) -> Result<Option<Taken<Self::Claim>>, Self::Error> {
        Ok(dir::DirQueues::claim(self, queue)?.map(|claimed| (claimed.body.clone(), claimed)))
    }

    fn ack(&self, claim: Self::Claim) -> Result<(), Self::Error> {
        dir::DirQueues::ack(self, claim)
    }

    fn nack(&self, claim: Self::Claim) -> Result<(), Self::Error> {
        dir::DirQueues::nack(self, claim)
    }

    fn dead_letter(&self, claim: Self::Claim, reason: &str) -> Result<(), Self::Error> {
        dir::DirQueues::dead_letter(self, claim, reason).map(drop)
    }

    /// Only a message this runner recovered at start-up: a file queued
    /// again on purpose, even byte for byte, is a new request.
    fn redelivered(&self, claim: &Self::Claim) -> bool {
        claim.redelivered
    }

    fn not_yet(&self) -> usize {
        self.settling()
    }
}
