//! Queues of experiment requests. The local directory queue is the default
//! for one machine with no services; RabbitMQ and SQS come with their own
//! back-ends.

pub mod dir;
