//! The intake: claim a message, turn it into a request, and hold the
//! resources it needs ([`take`]); then run it and settle the message
//! ([`finish`]): ack once the results are stored, requeue what can succeed
//! later, dead-letter what never can. The caller runs each [`Job`] on its
//! own thread, so as many experiments run at once as the resources allow.

use crate::execute::{self, Outcome, Settings};
use crate::queue::Queues;
use crate::request::Request;
use crate::resources::{Allocation, Demand, Fit, Resources};

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
    /// The message was given back because its resources are not free now
    /// (`never`: this runner can never give them; another runner may).
    Refused {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
        /// Whether it could fit here once running experiments end.
        never: bool,
    },
    /// The message can never run: kept aside with the reason.
    DeadLettered {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
    },
}

/// A claimed message with the resources held for it.
#[derive(Debug)]
pub struct Job<Claim> {
    /// The queue it came from.
    pub queue: String,
    /// The request.
    pub request: Request,
    /// What settles the message.
    pub claim: Claim,
    /// The resources held; given back when the job is done.
    pub allocation: Allocation,
}

/// What [`take`] did.
#[derive(Debug)]
pub enum Intake<Claim> {
    /// No queue (of those not skipped) had a message.
    Empty,
    /// A message to run.
    Run(Box<Job<Claim>>),
    /// A message that was settled at once (refused, dead-lettered).
    Settled(Event),
}

/// Claim one message from the first queue (not `skip`ped) that has one and
/// hold its resources. A message that does not fit is given back.
///
/// # Errors
/// The queue service or directory fails.
pub fn take<Q: Queues>(
    queues: &Q,
    resources: &Resources,
    skip: &dyn Fn(&str) -> bool,
) -> Result<Intake<Q::Claim>, Q::Error> {
    for queue in queues.queues()? {
        if skip(&queue) {
            continue;
        }
        let Some((body, claim)) = queues.claim(&queue)? else {
            continue;
        };
        let request = match Request::parse(&body) {
            Ok(request) => request,
            Err(error) => {
                let reason = error.to_string();
                queues.dead_letter(claim, &reason)?;
                return Ok(Intake::Settled(Event::DeadLettered { queue, reason }));
            }
        };
        return match resources.allocate(Demand::of(&request)) {
            Fit::Now(allocation) => Ok(Intake::Run(Box::new(Job {
                queue,
                request,
                claim,
                allocation,
            }))),
            Fit::Later(reason) => {
                queues.nack(claim)?;
                Ok(Intake::Settled(Event::Refused {
                    queue,
                    reason: format!("experiment {}: {reason}", request.experiment.key),
                    never: false,
                }))
            }
            Fit::Never(reason) => {
                queues.nack(claim)?;
                Ok(Intake::Settled(Event::Refused {
                    queue,
                    reason: format!("experiment {}: {reason}", request.experiment.key),
                    never: true,
                }))
            }
        };
    }
    Ok(Intake::Empty)
}

/// Give a job's message back without running it (the runner is stopping).
///
/// # Errors
/// As [`take`].
pub fn give_back<Q: Queues>(queues: &Q, job: Job<Q::Claim>) -> Result<Event, Q::Error> {
    queues.nack(job.claim)?;
    Ok(Event::Requeued {
        queue: job.queue,
        reason: "the runner is stopping".to_owned(),
    })
}

/// Run a job and settle its message; its resources are given back at the end.
///
/// # Errors
/// As [`take`].
pub fn finish<Q: Queues>(
    queues: &Q,
    job: Job<Q::Claim>,
    settings: &Settings,
    lookup: &dyn Fn(&str) -> Option<String>,
    on_event: &dyn Fn(Event),
) -> Result<(), Q::Error> {
    let Job {
        queue,
        request,
        claim,
        allocation,
    } = job;
    on_event(Event::Started {
        queue: queue.clone(),
        key: request.experiment.key.clone(),
    });
    let result = execute::run(&request, settings, &allocation, lookup);
    drop(allocation);
    match result {
        Ok(Outcome::Interrupted) => {
            queues.nack(claim)?;
            on_event(Event::Requeued {
                queue,
                reason: "the runner is stopping and the drain timeout passed".to_owned(),
            });
        }
        Ok(Outcome::Failed(code))
            if let Some(attempt) = settings.retry(&request.experiment.key) =>
        {
            queues.nack(claim)?;
            on_event(Event::Requeued {
                queue,
                reason: format!(
                    "experiment {} exited with {code} (failure {attempt} of {} allowed by --retry-failed): it will run again",
                    request.experiment.key, settings.retry_failed
                ),
            });
        }
        Ok(outcome) => {
            settings.forget(&request.experiment.key);
            queues.ack(claim)?;
            on_event(Event::Finished {
                queue,
                key: request.experiment.key.clone(),
                outcome,
            });
        }
        Err(error) if error.is_transient() => {
            queues.nack(claim)?;
            on_event(Event::Requeued {
                queue,
                reason: crate::error_text(&error),
            });
        }
        Err(error) => {
            let reason = crate::error_text(&error);
            queues.dead_letter(claim, &reason)?;
            on_event(Event::DeadLettered { queue, reason });
        }
    }
    Ok(())
}
