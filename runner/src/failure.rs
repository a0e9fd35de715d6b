//! One classification of every failure, so that each is handled in one
//! place (the scheduler) and never retried hot:
//!
//! | class | what it means | what happens to the message |
//! |---|---|---|
//! | [`Class::Rejected`] | the request is bad (parse, validation, limits, a hostile artifact) | dead-lettered with its reason |
//! | [`Class::ExperimentFailed`] | the experiment ran and failed (exit code, deadline, disk quota) | results stored, acked (`--retry-failed` may requeue) |
//! | [`Class::Transient`] | the environment failed (S3 or broker unreachable, disk full) | given back with backoff; dead-lettered with the history of reasons after `--max-attempts` |
//! | [`Class::Bug`] | a bug of the runner (a panic caught at the experiment boundary) | given back once, then dead-lettered |

/// What kind of failure an error is; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// The request is bad: it can never run anywhere.
    Rejected,
    /// The experiment ran (or started) and failed on its own account.
    ExperimentFailed,
    /// Something the runner depends on failed; a later attempt may succeed.
    Transient,
    /// The runner itself failed (a caught panic).
    Bug,
}

impl Class {
    /// A short lower-case name, for logs and metrics labels.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Rejected => "rejected",
            Self::ExperimentFailed => "experiment_failed",
            Self::Transient => "transient",
            Self::Bug => "bug",
        }
    }
}

/// An error that knows its [`Class`].
pub trait Classify {
    /// The class of this failure.
    fn class(&self) -> Class;
}

impl Classify for crate::request::RequestError {
    fn class(&self) -> Class {
        Class::Rejected
    }
}
