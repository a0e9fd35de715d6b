//! The intake: claim a message, turn it into a request, and hold the
//! resources it needs ([`take`]); then run it and settle the message
//! ([`finish`]) by the class of what happened (see [`crate::failure`]):
//! ack once the results are stored, give back what can succeed later (with
//! bounded attempts), dead-letter what never can. The caller runs each
//! [`Job`] on its own thread, so as many experiments run at once as the
//! resources allow.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, SystemTime};

use crate::execute::{self, Outcome, Settings};
use crate::failure::{Class, Classify};
use crate::ledger::{self, Ledger};
use crate::queue::Queues;
use crate::request::Request;
use crate::resources::{Allocation, Demand, Fit, Resources};

/// The most messages of one queue held aside in one pass (refused ones,
/// or ones waiting for their back-off) while looking for one that can run.
pub const MAX_HELD: usize = 16;
/// A message's first back-off after a transient failure; doubled each
/// attempt up to [`MESSAGE_BACKOFF_CAP`].
pub const MESSAGE_BACKOFF: Duration = Duration::from_secs(5);
/// The longest a message waits between attempts.
pub const MESSAGE_BACKOFF_CAP: Duration = Duration::from_mins(5);
/// How many times a runner bug (a caught panic) may hit one message before
/// it is dead-lettered.
pub const MAX_BUGS: u32 = 2;

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
    /// A redelivered message whose results were already stored was acked
    /// without running it again.
    AlreadyDone {
        /// The queue.
        queue: String,
        /// The experiment key (or the message identity when it does not parse).
        key: String,
    },
    /// The message was given back to be tried again later.
    Requeued {
        /// The queue.
        queue: String,
        /// Why.
        reason: String,
        /// The failure's class, when it failed ([`Class::Transient`] or
        /// [`Class::Bug`]); `None` when the runner is stopping.
        class: Option<Class>,
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
    /// The message's identity in the ledger.
    pub id: String,
    /// The request.
    pub request: Request,
    /// What settles the message.
    pub claim: Claim,
    /// The resources held; given back when the job is done.
    pub allocation: Allocation,
}

/// What one pass over the queues left behind without running it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Messages this runner can never run (left for other runners), with why.
    pub never: Vec<String>,
    /// Messages waiting for their back-off after a transient failure.
    pub waiting: usize,
}

/// What [`take`] did.
#[derive(Debug)]
pub enum Intake<Claim> {
    /// No queue (of those not skipped) had a message that can run now.
    Empty(Left),
    /// A message to run.
    Run(Box<Job<Claim>>),
    /// A message that was settled at once (dead-lettered, already done,
    /// refused for now).
    Settled(Event),
}

/// What the intake needs besides the queues.
pub struct Intaker<'run> {
    /// The capacity experiments share.
    pub resources: &'run Resources,
    /// Attempts and completions.
    pub ledger: &'run Ledger,
    /// Which request fields are allowed.
    pub policy: &'run crate::request::Policy,
    /// The Pythons experiments may use.
    pub python: &'run crate::python::Interpreters,
    /// Opens encrypted requests; the clear-text policy.
    pub envelopes: &'run crate::envelope::Envelopes,
}

/// Claim messages from the first queue (not `skip`ped) that has one and
/// hold the resources of the first that can run now. Messages that can
/// never run here, or wait for their back-off, are held aside while the
/// queue is searched further (so they do not block the ones behind them)
/// and given back at the end of the pass.
///
/// # Errors
/// The queue service or directory fails.
pub fn take<Q: Queues>(
    queues: &Q,
    intaker: &Intaker<'_>,
    skip: &dyn Fn(&str) -> bool,
    now: SystemTime,
) -> Result<Intake<Q::Claim>, Q::Error> {
    let mut held = Vec::new();
    let mut left = Left::default();
    let result = search(queues, intaker, skip, now, &mut held, &mut left);
    let mut give_back = Ok(());
    for claim in held {
        if let Err(error) = queues.nack(claim) {
            give_back = Err(error);
        }
    }
    let intake = result?;
    give_back?;
    left.waiting += queues.not_yet();
    Ok(intake.unwrap_or(Intake::Empty(left)))
}

fn search<Q: Queues>(
    queues: &Q,
    intaker: &Intaker<'_>,
    skip: &dyn Fn(&str) -> bool,
    now: SystemTime,
    held: &mut Vec<Q::Claim>,
    left: &mut Left,
) -> Result<Option<Intake<Q::Claim>>, Q::Error> {
    for queue in queues.queues()? {
        if skip(&queue) {
            continue;
        }
        let held_before = held.len();
        while held.len() - held_before < MAX_HELD {
            let Some((body, claim)) = queues.claim(&queue)? else {
                break;
            };
            let id = ledger::identity(&queue, &body);
            let record = intaker.ledger.get(&id);
            if record
                .as_ref()
                .is_some_and(|record| record.completed_recently(now))
                && queues.redelivered(&claim)
            {
                queues.ack(claim)?;
                let key = Request::parse_with(&body, intaker.policy)
                    .map_or_else(|_| id.clone(), |request| request.experiment.key);
                return Ok(Some(Intake::Settled(Event::AlreadyDone { queue, key })));
            }
            // A redelivery of a message whose experiment runs here now (the
            // broker connection dropped under it) waits for its end.
            if intaker.ledger.is_running(&id) {
                held.push(claim);
                left.waiting += 1;
                continue;
            }
            if record.as_ref().is_some_and(|record| waits(record, now)) {
                held.push(claim);
                left.waiting += 1;
                continue;
            }
            // An encrypted request is verified and decrypted here; one that
            // this runner cannot open or run is left for another runner.
            let body = match intaker.envelopes.open(&body, &queue) {
                Ok(opened) => opened,
                Err(crate::envelope::EnvelopeError::Elsewhere(reason)) => {
                    held.push(claim);
                    left.never.push(format!("{queue}: message {id}: {reason}"));
                    continue;
                }
                Err(error) => {
                    let reason = error.to_string();
                    queues.dead_letter(claim, &reason)?;
                    let _ = intaker.ledger.settled(&id);
                    return Ok(Some(Intake::Settled(Event::DeadLettered { queue, reason })));
                }
            };
            let request = match Request::parse_with(&body, intaker.policy) {
                Ok(request) => request,
                Err(error) => {
                    let reason = error.to_string();
                    queues.dead_letter(claim, &reason)?;
                    let _ = intaker.ledger.settled(&id);
                    return Ok(Some(Intake::Settled(Event::DeadLettered { queue, reason })));
                }
            };
            // No Python here for it: another runner may have one.
            if let Err(reason) = intaker.python.choose(&request.experiment.pythonver) {
                held.push(claim);
                left.never.push(format!(
                    "{queue}: experiment {}: {reason}",
                    request.experiment.key
                ));
                continue;
            }
            match intaker.resources.allocate(Demand::of(&request)) {
                Fit::Now(allocation) => {
                    intaker.ledger.begin(&id);
                    return Ok(Some(Intake::Run(Box::new(Job {
                        queue,
                        id,
                        request,
                        claim,
                        allocation,
                    }))));
                }
                Fit::Later(reason) => {
                    queues.nack(claim)?;
                    return Ok(Some(Intake::Settled(Event::Refused {
                        queue,
                        reason: format!("experiment {}: {reason}", request.experiment.key),
                        never: false,
                    })));
                }
                Fit::Never(reason) => {
                    held.push(claim);
                    left.never.push(format!(
                        "{queue}: experiment {}: {reason}",
                        request.experiment.key
                    ));
                }
            }
        }
    }
    Ok(None)
}

/// Whether a message still waits for its back-off at `now`. A wait longer
/// than any back-off can be (the clock was set back since it was recorded)
/// is over: a clock jump never holds a message for good.
fn waits(record: &ledger::Record, now: SystemTime) -> bool {
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    record.not_before > now && record.not_before - now <= MESSAGE_BACKOFF_CAP.as_secs()
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
        class: None,
    })
}

/// How a job's run ended, before its message is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ran {
    /// The experiment ran (or was interrupted by a stop).
    Outcome(Outcome),
    /// It could not run or finish: the failure's class and reason.
    Failed(Class, String),
}

/// What [`finish`] needs besides the job.
pub struct Finisher<'run> {
    /// Runner-wide experiment settings.
    pub settings: &'run Settings,
    /// Attempts and completions.
    pub ledger: &'run Ledger,
    /// Transient failures (and bugs) allowed before a dead letter.
    pub max_attempts: u32,
    /// The runner's environment (for `--pass-env`).
    pub lookup: &'run (dyn Fn(&str) -> Option<String> + Sync),
    /// Where events go.
    pub on_event: &'run (dyn Fn(Event) + Sync),
}

/// The text of a caught panic.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}

/// The back-off before attempt `attempts + 1` of a message.
#[must_use]
pub fn message_backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    MESSAGE_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MESSAGE_BACKOFF_CAP)
}

/// Run a job and settle its message by the class of what happened; its
/// resources are given back at the end. A panic while running it is caught
/// here (the runner's bug): the message is given back once, then
/// dead-lettered, and the runner lives on.
///
/// # Errors
/// As [`take`]. When acking fails after the results were stored, the
/// ledger already records the completion, so a redelivery is acked
/// without running again.
pub fn finish<Q: Queues>(
    queues: &Q,
    job: Job<Q::Claim>,
    finisher: &Finisher<'_>,
) -> Result<Event, Q::Error> {
    let Job {
        queue,
        id,
        request,
        claim,
        allocation,
    } = job;
    let key = request.experiment.key.clone();
    (finisher.on_event)(Event::Started {
        queue: queue.clone(),
        key: key.clone(),
    });
    let settings = finisher.settings;
    let ran = match catch_unwind(AssertUnwindSafe(|| {
        execute::run(&request, settings, &allocation, finisher.lookup)
    })) {
        Ok(Ok(outcome)) => Ran::Outcome(outcome),
        Ok(Err(error)) => Ran::Failed(error.class(), crate::error_text(&error)),
        Err(payload) => Ran::Failed(
            Class::Bug,
            format!(
                "the runner failed (a bug): {}",
                panic_text(payload.as_ref())
            ),
        ),
    };
    drop(allocation);
    settle(queues, claim, ran, Message { queue, id, key }, finisher)
}

/// A claimed message, as settling it needs it.
#[derive(Clone, Debug)]
pub struct Message {
    /// The queue.
    pub queue: String,
    /// Its identity in the ledger.
    pub id: String,
    /// The experiment key.
    pub key: String,
}

/// Settle a message by how its run ended: the one place where a failure's
/// class decides what happens to the message (see [`crate::failure`]).
///
/// # Errors
/// As [`take`].
pub fn settle<Q: Queues>(
    queues: &Q,
    claim: Q::Claim,
    ran: Ran,
    message: Message,
    finisher: &Finisher<'_>,
) -> Result<Event, Q::Error> {
    let Message { queue, id, key } = message;
    let settings = finisher.settings;
    let now = SystemTime::now();
    match ran {
        Ran::Outcome(Outcome::Interrupted) => {
            queues.nack(claim)?;
            Ok(Event::Requeued {
                queue,
                reason: "the runner is stopping and the drain timeout passed".to_owned(),
                class: None,
            })
        }
        Ran::Outcome(Outcome::Failed(code)) if let Some(attempt) = settings.retry(&key) => {
            queues.nack(claim)?;
            Ok(Event::Requeued {
                queue,
                reason: format!(
                    "experiment {key} exited with {code} (failure {attempt} of {} allowed by --retry-failed): it will run again",
                    settings.retry_failed
                ),
                class: None,
            })
        }
        Ran::Outcome(outcome) => {
            settings.forget(&key);
            if let Err(error) = finisher.ledger.completed(&id, now) {
                crate::log::warn(&format!(
                    "experiment {key}: cannot record its completion in the ledger: {error}"
                ));
            }
            queues.ack(claim)?;
            Ok(Event::Finished {
                queue,
                key,
                outcome,
            })
        }
        Ran::Failed(Class::ExperimentFailed, reason) => {
            // The experiment's own fault, found before or while it ran (its
            // disk quota); what it produced is stored, as for a failed run.
            crate::log::warn(&format!("experiment {key}: {reason}"));
            if let Err(error) = finisher.ledger.completed(&id, now) {
                crate::log::warn(&format!(
                    "experiment {key}: cannot record its completion in the ledger: {error}"
                ));
            }
            queues.ack(claim)?;
            Ok(Event::Finished {
                queue,
                key,
                outcome: Outcome::Aborted,
            })
        }
        Ran::Failed(Class::Rejected, reason) => {
            queues.dead_letter(claim, &reason)?;
            let _ = finisher.ledger.settled(&id);
            Ok(Event::DeadLettered { queue, reason })
        }
        Ran::Failed(class, reason) => retry_or_give_up(
            queues,
            claim,
            finisher,
            &Failure {
                queue,
                id,
                key,
                class,
                reason,
                now,
            },
        ),
    }
}

/// A transient failure or a runner bug of one message.
struct Failure {
    queue: String,
    id: String,
    key: String,
    class: Class,
    reason: String,
    now: SystemTime,
}

/// Count the attempt; give the message back with its back-off, or
/// dead-letter it with its history once it has had its attempts.
fn retry_or_give_up<Q: Queues>(
    queues: &Q,
    claim: Q::Claim,
    finisher: &Finisher<'_>,
    failure: &Failure,
) -> Result<Event, Q::Error> {
    let Failure {
        queue,
        id,
        key,
        class,
        reason,
        now,
    } = failure;
    let (class, now) = (*class, *now);
    let queue = queue.clone();
    let bug = class == Class::Bug;
    let attempts = finisher
        .ledger
        .get(id)
        .map_or(0, |record| record.attempts)
        .saturating_add(1);
    let not_before = now + message_backoff(attempts);
    let record = finisher
        .ledger
        .failed(id, reason, bug, not_before, now)
        .unwrap_or_else(|error| {
            crate::log::warn(&format!(
                "experiment {key}: cannot record the attempt in the ledger: {error}"
            ));
            crate::ledger::Record {
                attempts,
                bugs: u32::from(bug),
                reasons: vec![reason.clone()],
                ..crate::ledger::Record::default()
            }
        });
    if record.attempts >= finisher.max_attempts || record.bugs >= MAX_BUGS {
        let reason = format!(
            "gave up after {} attempt(s): {}",
            record.attempts,
            record.history()
        );
        queues.dead_letter(claim, &reason)?;
        let _ = finisher.ledger.settled(id);
        return Ok(Event::DeadLettered { queue, reason });
    }
    queues.nack(claim)?;
    Ok(Event::Requeued {
        queue,
        reason: format!(
            "experiment {key}: attempt {} of {} failed: {reason}; tried again in {}s at the earliest",
            record.attempts,
            finisher.max_attempts,
            message_backoff(record.attempts).as_secs()
        ),
        class: Some(class),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// What settling did to the one claimed message.
    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Did {
        Acked,
        Nacked,
        DeadLettered(String),
    }

    /// A queue that records how its messages were settled.
    #[derive(Default)]
    struct Recorder {
        did: RefCell<Vec<Did>>,
    }

    impl Queues for Recorder {
        type Claim = ();
        type Error = std::io::Error;

        fn queues(&self) -> Result<Vec<String>, Self::Error> {
            Ok(vec!["local_q".to_owned()])
        }

        fn claim(&self, _queue: &str) -> Result<Option<crate::queue::Taken<()>>, Self::Error> {
            Ok(None)
        }

        fn ack(&self, (): ()) -> Result<(), Self::Error> {
            self.did.borrow_mut().push(Did::Acked);
            Ok(())
        }

        fn nack(&self, (): ()) -> Result<(), Self::Error> {
            self.did.borrow_mut().push(Did::Nacked);
            Ok(())
        }

        fn dead_letter(&self, (): (), reason: &str) -> Result<(), Self::Error> {
            self.did
                .borrow_mut()
                .push(Did::DeadLettered(reason.to_owned()));
            Ok(())
        }
    }

    fn settings(retry_failed: u32) -> Settings {
        Settings {
            work_dir: std::path::PathBuf::from("/nonexistent"),
            venv_cache: std::path::PathBuf::from("/nonexistent"),
            python: std::sync::Arc::default(),
            max_runtime: Duration::from_mins(1),
            cache: None,
            stop: std::sync::Arc::default(),
            drain_timeout: Duration::from_secs(1),
            retry_failed,
            failures: std::sync::Arc::default(),
            pass_env: Vec::new(),
        }
    }

    /// Settle the same message once per entry of `runs`, as its
    /// redeliveries would be: what happened each time.
    fn settle_each(runs: &[Ran], retry_failed: u32) -> Vec<(Did, Event)> {
        with_finisher(retry_failed, |finisher, _| settle_runs(runs, finisher))
    }

    /// `test` with a finisher of `--max-attempts 3` and `retry_failed`,
    /// and its in-memory ledger.
    fn with_finisher<T>(retry_failed: u32, test: impl FnOnce(&Finisher<'_>, &Ledger) -> T) -> T {
        let settings = settings(retry_failed);
        let ledger = Ledger::in_memory();
        let lookup = |_: &str| None;
        let on_event = |_: Event| {};
        let finisher = Finisher {
            settings: &settings,
            ledger: &ledger,
            max_attempts: 3,
            lookup: &lookup,
            on_event: &on_event,
        };
        test(&finisher, &ledger)
    }

    fn settle_runs(runs: &[Ran], finisher: &Finisher<'_>) -> Vec<(Did, Event)> {
        let queues = Recorder::default();
        let message = Message {
            queue: "local_q".to_owned(),
            id: "m1".to_owned(),
            key: "exp".to_owned(),
        };
        runs.iter()
            .map(|ran| {
                let event = settle(&queues, (), ran.clone(), message.clone(), finisher)
                    .unwrap_or_else(|error| panic!("{error}"));
                let did = queues
                    .did
                    .borrow()
                    .last()
                    .cloned()
                    .unwrap_or_else(|| panic!("nothing done"));
                (did, event)
            })
            .collect()
    }

    fn failed(class: Class) -> Ran {
        Ran::Failed(class, format!("{} failure", class.name()))
    }

    /// The classification table: each class (and each outcome of a run)
    /// against what happens to the message on this and later deliveries.
    #[test]
    fn each_class_settles_the_message_its_own_way() {
        type Check = Box<dyn Fn(&Did) -> bool>;
        fn dead(text: &'static str) -> impl Fn(&Did) -> bool {
            move |did| matches!(did, Did::DeadLettered(reason) if reason.contains(text))
        }
        let table: Vec<(&str, Vec<Ran>, u32, Vec<Check>)> = vec![
            (
                "succeeded",
                vec![Ran::Outcome(Outcome::Succeeded)],
                0,
                vec![Box::new(|did| *did == Did::Acked)],
            ),
            (
                "failed run, results stored",
                vec![Ran::Outcome(Outcome::Failed(3))],
                0,
                vec![Box::new(|did| *did == Did::Acked)],
            ),
            (
                "deadline",
                vec![Ran::Outcome(Outcome::TimedOut)],
                0,
                vec![Box::new(|did| *did == Did::Acked)],
            ),
            (
                "disk quota",
                vec![failed(Class::ExperimentFailed)],
                0,
                vec![Box::new(|did| *did == Did::Acked)],
            ),
            (
                "failed run with --retry-failed 1",
                vec![
                    Ran::Outcome(Outcome::Failed(3)),
                    Ran::Outcome(Outcome::Failed(3)),
                ],
                1,
                vec![
                    Box::new(|did| *did == Did::Nacked),
                    Box::new(|did| *did == Did::Acked),
                ],
            ),
            (
                "stopping",
                vec![Ran::Outcome(Outcome::Interrupted)],
                0,
                vec![Box::new(|did| *did == Did::Nacked)],
            ),
            (
                "bad request",
                vec![failed(Class::Rejected)],
                0,
                vec![Box::new(dead("rejected failure"))],
            ),
            (
                "transient, --max-attempts 3",
                vec![
                    failed(Class::Transient),
                    failed(Class::Transient),
                    failed(Class::Transient),
                ],
                0,
                vec![
                    Box::new(|did| *did == Did::Nacked),
                    Box::new(|did| *did == Did::Nacked),
                    Box::new(dead(
                        "gave up after 3 attempt(s): attempt 1: transient failure; attempt 2: transient failure; attempt 3: transient failure",
                    )),
                ],
            ),
            (
                "runner bug: given back once, then dead-lettered",
                vec![failed(Class::Bug), failed(Class::Bug)],
                0,
                vec![
                    Box::new(|did| *did == Did::Nacked),
                    Box::new(dead("gave up after 2 attempt(s): attempt 1: bug failure")),
                ],
            ),
        ];
        for (name, runs, retry_failed, checks) in table {
            let results = settle_each(&runs, retry_failed);
            assert_eq!(results.len(), checks.len(), "{name}");
            for (index, ((did, event), check)) in results.iter().zip(&checks).enumerate() {
                assert!(
                    check(did),
                    "{name}, delivery {}: {did:?} ({event:?})",
                    index + 1
                );
            }
        }
    }

    #[test]
    fn a_completed_message_is_recorded_before_its_ack() {
        with_finisher(0, |finisher, ledger| {
            let message = Message {
                queue: "q".to_owned(),
                id: "done".to_owned(),
                key: "k".to_owned(),
            };
            let event = settle(
                &Recorder::default(),
                (),
                Ran::Outcome(Outcome::Succeeded),
                message,
                finisher,
            );
            assert!(matches!(event, Ok(Event::Finished { .. })));
            assert!(
                ledger
                    .get("done")
                    .and_then(|record| record.completed)
                    .is_some()
            );
        });
    }

    #[test]
    fn a_back_off_from_a_clock_set_back_is_over() {
        let now = SystemTime::now();
        let at = |time: SystemTime| ledger::Record {
            not_before: time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
            ..ledger::Record::default()
        };
        assert!(waits(&at(now + Duration::from_mins(2)), now));
        assert!(!waits(&at(now - Duration::from_secs(1)), now));
        assert!(!waits(&at(now + Duration::from_hours(24 * 365)), now));
    }

    #[test]
    fn message_backoff_doubles_to_its_cap() {
        assert_eq!(message_backoff(1), MESSAGE_BACKOFF);
        assert_eq!(message_backoff(2), MESSAGE_BACKOFF * 2);
        assert_eq!(message_backoff(3), MESSAGE_BACKOFF * 4);
        assert_eq!(message_backoff(40), MESSAGE_BACKOFF_CAP);
        assert_eq!(message_backoff(u32::MAX), MESSAGE_BACKOFF_CAP);
    }

    #[test]
    fn panic_payloads_become_text() {
        let caught = catch_unwind(|| panic!("cannot convert {}", "x")).err();
        assert_eq!(
            caught.as_deref().map(panic_text),
            Some("cannot convert x".to_owned())
        );
        let caught = catch_unwind(|| std::panic::panic_any(7_u8)).err();
        assert_eq!(
            caught.as_deref().map(panic_text),
            Some("a panic without a message".to_owned())
        );
    }
}
