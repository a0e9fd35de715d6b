//! How a failed command ends: its message, its hint and its exit code.
//!
//! Library modules have their own error enums; commands turn them into a
//! [`Failure`] that carries the documented exit code, so `main` only prints.

use std::error::Error as StdError;
use std::fmt;
use std::process::ExitCode;

/// The documented exit codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: success.
    Success,
    /// 1: the operation failed (a write, a build, a push, a job).
    Failed,
    /// 2: usage, configuration or input error; nothing was changed.
    Usage,
    /// 130: interrupted.
    Interrupted,
    /// 124: a `--timeout` expired (as timeout(1)).
    TimedOut,
    /// A build Job's container exit code (`sgr k8s-build`), 1 to 255.
    Job(u8),
}

impl ExitStatus {
    /// The process exit code.
    #[must_use]
    pub const fn code(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Interrupted => 130,
            Self::TimedOut => 124,
            Self::Job(code) => code,
        }
    }
}

impl From<ExitStatus> for ExitCode {
    fn from(status: ExitStatus) -> Self {
        Self::from(status.code())
    }
}

/// A command's failure, ready to print.
#[derive(Debug)]
pub struct Failure {
    /// The error with its chain of causes.
    pub error: Box<dyn StdError + Send + Sync + 'static>,
    /// The exit code.
    pub status: ExitStatus,
    /// The fix, when known.
    pub hint: Option<String>,
}

impl Failure {
    /// A failure of `status` with an optional hint.
    pub fn new(
        error: impl StdError + Send + Sync + 'static,
        status: ExitStatus,
        hint: Option<String>,
    ) -> Self {
        Self {
            error: Box::new(error),
            status,
            hint,
        }
    }

    /// The message with its causes on one line: `outer: cause: root cause`.
    #[must_use]
    pub fn message(&self) -> String {
        chain(self.error.as_ref())
    }
}

/// An error and its causes on one line (`outer: cause: root cause`), each
/// cause left out when the text before already ends with it: the formatter
/// the runner uses too.
pub use runner_protocol::error_chain as chain;

impl fmt::Display for Failure {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn message_chains_causes_on_one_line() {
        let failure = Failure::new(
            Outer(std::io::Error::new(std::io::ErrorKind::NotFound, "missing")),
            ExitStatus::Usage,
            None,
        );
        assert_eq!(failure.message(), "outer: missing");
        assert_eq!(ExitCode::from(failure.status), ExitCode::from(2));
    }
}
