//! The runner's library: what the binary is built from, and what its tests
//! exercise directly. So far: the StudioML request model and the local
//! directory queue; execution, storage and the other queues come with the
//! runner issue's next steps.

pub mod queue;
pub mod request;
