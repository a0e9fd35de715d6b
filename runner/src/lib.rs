//! The runner's library: what the binary is built from, and what its tests
//! exercise directly: the StudioML request model, the local directory
//! queue, `file://` artifact storage, experiment execution, and the intake
//! loop. RabbitMQ, SQS, S3, GPUs, metrics and the Kubernetes state come with
//! the runner issues' next steps.

pub mod cache;
pub mod cluster;
pub mod digest;
pub mod envelope;
pub mod execute;
pub mod failure;
pub mod gpu;
pub mod ledger;
pub mod log;
pub mod python;
pub mod queue;
pub mod request;
pub mod resources;
pub mod runtime;
pub mod s3;
pub mod scheduler;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod unpack;
pub mod worker;

/// An error and its causes on one line (`outer: cause: root cause`); the
/// formatter sgr uses too.
pub use runner_protocol::error_chain as error_text;
