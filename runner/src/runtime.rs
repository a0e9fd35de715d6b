//! The process's one tokio runtime. The runner's experiments run on plain
//! OS threads, and the network clients (lapin, the AWS SDK, reqwest, kube)
//! are async: every component borrows this runtime instead of building its
//! own (there were five, and one per S3 call). It is built on first use, with
//! two worker threads, and lives until the process ends.
//!
//! Plain threads enter it with [`block_on`], many at once. A thread that is
//! already inside a runtime must not (tokio panics on a nested `block_on`):
//! [`block_on`] refuses with [`RuntimeError::Nested`] instead.

use std::sync::{Mutex, OnceLock, PoisonError};

use thiserror::Error;
use tokio::runtime::{Builder, Handle, Runtime};

use crate::failure::{Class, Classify};

/// Worker threads of the runtime: the network work is I/O-bound and small.
const WORKER_THREADS: usize = 2;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// Held while the runtime is built, so that it is built once; a failed
/// build is tried again by the next caller.
static BUILDING: Mutex<()> = Mutex::new(());

/// The runtime cannot be used.
#[derive(Debug, Error)]
pub enum RuntimeError {
    /// The runtime could not be built (threads or file descriptors exhausted).
    #[error("cannot start the runner's tokio runtime")]
    Build(#[source] std::io::Error),
    /// `block_on` was called from a thread that is inside a runtime: a bug
    /// of the runner (tokio would panic).
    #[error("a blocking network call was made from inside the tokio runtime")]
    Nested,
}

impl Classify for RuntimeError {
    fn class(&self) -> Class {
        match self {
            Self::Build(_) => Class::Transient,
            Self::Nested => Class::Bug,
        }
    }
}

/// A handle on the process's runtime, built on first use.
///
/// # Errors
/// The runtime cannot be built.
pub fn handle() -> Result<Handle, RuntimeError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    let _building = BUILDING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.handle().clone());
    }
    // The AWS SDK and kube otherwise disagree on the crypto provider and
    // the first TLS client panics.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let runtime = Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .thread_name("runner-io")
        .enable_all()
        .build()
        .map_err(RuntimeError::Build)?;
    let handle = runtime.handle().clone();
    // Only this thread sets it (under `BUILDING`), so it cannot be set yet.
    let _ = RUNTIME.set(runtime);
    Ok(handle)
}

/// Run `future` to completion on the process's runtime, blocking this
/// (plain) thread meanwhile. Any number of threads may do so at once.
///
/// # Errors
/// The runtime cannot be built, or this thread is inside a runtime.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, RuntimeError> {
    if Handle::try_current().is_ok() {
        return Err(RuntimeError::Nested);
    }
    Ok(handle()?.block_on(future))
}

/// [`block_on`], giving up on `future` after `limit` (then `None`). The
/// timer is made inside the runtime, where tokio's timers must be.
///
/// # Errors
/// As [`block_on`].
pub fn block_on_within<F: Future>(
    limit: std::time::Duration,
    future: F,
) -> Result<Option<F::Output>, RuntimeError> {
    block_on(async move { tokio::time::timeout(limit, future).await.ok() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_runtime_serves_many_threads_at_once() -> Result<(), RuntimeError> {
        let first = handle()?;
        let results: Vec<Result<u32, RuntimeError>> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..8_u32)
                .map(|index| {
                    scope.spawn(move || {
                        block_on(async move {
                            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                            index
                        })
                    })
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().unwrap_or(Err(RuntimeError::Nested)))
                .collect()
        });
        let values: Vec<u32> = results.into_iter().collect::<Result<_, _>>()?;
        assert_eq!(values, (0..8).collect::<Vec<_>>());
        assert_eq!(first.id(), handle()?.id(), "the runtime was built twice");
        Ok(())
    }

    #[test]
    fn a_limit_gives_up_on_a_future_that_never_ends() -> Result<(), RuntimeError> {
        let limit = std::time::Duration::from_millis(50);
        assert_eq!(block_on_within(limit, std::future::pending::<()>())?, None);
        assert_eq!(block_on_within(limit, async { 7 })?, Some(7));
        Ok(())
    }

    #[test]
    fn a_nested_block_on_is_refused_not_a_panic() -> Result<(), RuntimeError> {
        let nested = block_on(async { block_on(async {}) })?;
        assert!(matches!(nested, Err(RuntimeError::Nested)));
        assert_eq!(RuntimeError::Nested.class(), Class::Bug);
        Ok(())
    }
}
