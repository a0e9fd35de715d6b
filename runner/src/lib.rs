//! The runner's library: what the binary is built from, and what its tests
//! exercise directly: the StudioML request model, the local directory
//! queue, `file://` artifact storage, experiment execution, and the intake
//! loop. RabbitMQ, SQS, S3, GPUs, metrics and the Kubernetes state come with
//! the runner issues' next steps.

pub mod execute;
pub mod queue;
pub mod request;
pub mod storage;
pub mod telemetry;
pub mod worker;
