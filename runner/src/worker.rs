//! The intake loop: claim a message, turn it into a request, run it, and
//! settle the message: ack once the results are stored, requeue what can
//! succeed later, dead-letter what never can.

use crate::execute::{self, Outcome, Settings};
use crate::queue::Queues;
use crate::request::Request;

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Messages a dead runner held were put back.
    Recovered(usize),
    /// An experiment starts.
    Started {
        /// The queue.
        queue: String,
        /// The experiment key.
        key: String,
    },
    /// An experiment ran; the message was acked.
    Finished {
        /// The queue.
        queue: String,
        /// The experiment key.
        key: String,
        /// How it ended.
        outcome: Outcome,
    },
    /// The message was requeued (try again later).
    Requeued {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
    /// The message can never run: kept aside with the reason.
    DeadLettered {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
}

/// Take one message from the first queue that has one and handle it.
/// `Ok(false)` when every queue was empty.
///
/// # Errors
/// The queue directory itself fails.
pub fn handle_one<Q: Queues>(
    queues: &Q,
    settings: &Settings,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_event: &mut dyn FnMut(Event),
) -> Result<bool, Q::Error> {
    for queue in queues.queues()? {
        let Some((body, claimed)) = queues.claim(&queue)? else {
            continue;
        };
        let request = match Request::parse(&body) {
            Ok(request) => request,
            Err(error) => {
                let reason = error.to_string();
                queues.dead_letter(claimed, &reason)?;
                on_event(Event::DeadLettered { queue, reason });
                return Ok(true);
            }
        };
        on_event(Event::Started {
            queue: queue.clone(),
            key: request.experiment.key.clone(),
        });
        match execute::run(&request, settings, lookup) {
            Ok(Outcome::Interrupted) => {
                queues.nack(claimed)?;
                on_event(Event::Requeued {
                    queue,
                    reason: "the runner is stopping and the drain timeout passed".to_owned(),
                });
            }
            Ok(outcome) => {
                queues.ack(claimed)?;
                on_event(Event::Finished {
                    queue,
                    key: request.experiment.key.clone(),
                    outcome,
                });
            }
            Err(error) if error.is_transient() => {
                queues.nack(claimed)?;
                on_event(Event::Requeued {
                    queue,
                    reason: crate::error_text(&error),
                });
            }
            Err(error) => {
                let reason = crate::error_text(&error);
                queues.dead_letter(claimed, &reason)?;
                on_event(Event::DeadLettered { queue, reason });
            }
        }
        return Ok(true);
    }
    Ok(false)
}
