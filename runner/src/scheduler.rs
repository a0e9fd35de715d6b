//! The intake loop: take messages while the state and the resources allow,
//! run each experiment on its own thread, settle what comes back, and back
//! off — per queue and per message — so that nothing is ever retried hot.
//!
//! Failures of the queues themselves (a broker restart, an unreachable
//! management API, a deleted queue directory) are weather: logged, reported
//! to the health check, waited out with a growing back-off; the runner and
//! its running experiments carry on. Only `--once` gives up, and only after
//! the queues have failed for `--unhealthy-after` without a break.

use std::collections::{BTreeSet, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::execute::{Outcome, Settings};
use crate::failure::Class;
use crate::ledger::Ledger;
use crate::queue::Queues;
use crate::request::Policy;
use crate::resources::Resources;
use crate::state::{Control, State};
use crate::telemetry::{ExperimentLabels, MessageLabels, Metrics};
use crate::worker::{self, Event, Finisher, Intake, Intaker, Left};

/// How long an idle runner waits before looking at the queues again.
pub const IDLE: Duration = Duration::from_secs(1);
/// A queue's first back-off after a refusal or a transient failure.
pub const QUEUE_BACKOFF: Duration = Duration::from_secs(1);
/// The longest a queue is left alone.
pub const QUEUE_BACKOFF_CAP: Duration = Duration::from_mins(1);
/// The first wait after the queues themselves failed; doubled up to the cap.
pub const OUTAGE_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two looks at failing queues.
pub const OUTAGE_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// `--max-attempts`' default.
pub const MAX_ATTEMPTS: u32 = 5;

/// How the loop behaves.
#[derive(Clone, Debug)]
pub struct Options {
    /// Exit when nothing in any queue can run now and nothing runs.
    pub once: bool,
    /// Transient failures of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// `--once` gives up when the queues have failed this long without a break.
    pub unhealthy_after: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            once: false,
            max_attempts: MAX_ATTEMPTS,
            unhealthy_after: Duration::from_mins(5),
        }
    }
}

/// Why a queue is being left alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Its message does not fit until a running experiment ends.
    Resources,
    /// A message of it failed for the environment's sake.
    Transient,
}

#[derive(Debug)]
struct Backoff {
    until: Instant,
    delay: Duration,
    wait: Wait,
}

/// How the loop ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Served {
    /// Stopped as asked, or `--once` found nothing more to run.
    Done,
    /// `--once` gave up: the queues failed for too long.
    Failed(String),
}

/// The loop's collaborators.
pub struct Scheduler<'run> {
    /// Runner-wide experiment settings.
    pub settings: &'run Settings,
    /// The capacity experiments share.
    pub resources: &'run Resources,
    /// Counters and gauges.
    pub metrics: &'run Metrics,
    /// The state (Running, drains) and the queue filter.
    pub control: &'run Control,
    /// Attempts and completions.
    pub ledger: &'run Ledger,
    /// Which request fields are allowed.
    pub policy: &'run Policy,
    /// The Pythons experiments may use.
    pub python: &'run crate::python::Interpreters,
    /// Opens encrypted requests; the clear-text policy.
    pub envelopes: &'run crate::envelope::Envelopes,
    /// How the loop behaves.
    pub options: Options,
    /// Told after every look at the queues: `None` when it worked, else why not.
    pub on_intake: &'run (dyn Fn(Option<&str>) + Sync),
}

/// What a finished experiment thread sends back.
type Done = Result<Event, String>;

/// The loop's own bookkeeping.
#[derive(Default)]
struct Book {
    backoffs: HashMap<String, Backoff>,
    /// Messages already reported as never runnable here.
    reported: BTreeSet<String>,
    /// Since when the queues have failed without a break, and the next wait.
    outage: Option<(Instant, Duration, String)>,
}

impl Book {
    fn back_off(&mut self, queue: &str, wait: Wait) {
        let delay = self
            .backoffs
            .get(queue)
            .filter(|backoff| backoff.wait == wait)
            .map_or(QUEUE_BACKOFF, |backoff| {
                (backoff.delay * 2).min(QUEUE_BACKOFF_CAP)
            });
        self.backoffs.insert(
            queue.to_owned(),
            Backoff {
                until: Instant::now() + delay,
                delay,
                wait,
            },
        );
    }

    fn waiting_out_failures(&self) -> bool {
        let now = Instant::now();
        self.backoffs
            .values()
            .any(|backoff| backoff.wait == Wait::Transient && backoff.until > now)
    }
}

impl Scheduler<'_> {
    /// Take and run messages until a stop is asked for, the state says
    /// `DrainAndTerminate` and nothing runs, or (`once`) nothing can run now.
    pub fn serve<Q>(&self, queues: &Q) -> Served
    where
        Q: Queues + Sync,
        Q::Claim: Send,
    {
        let lookup = |name: &str| std::env::var(name).ok();
        let on_event = |event: Event| report(event, self.metrics);
        let finisher = Finisher {
            settings: self.settings,
            ledger: self.ledger,
            max_attempts: self.options.max_attempts,
            lookup: &lookup,
            on_event: &on_event,
        };
        let intaker = Intaker {
            resources: self.resources,
            ledger: self.ledger,
            policy: self.policy,
            python: self.python,
            envelopes: self.envelopes,
        };
        let (report_to, results) = mpsc::channel::<Done>();
        let mut book = Book::default();
        let served = std::thread::scope(|scope| {
            loop {
                while let Ok(result) = results.try_recv() {
                    self.settle(result, &mut book);
                }
                if self.settings.stop.load(Ordering::SeqCst) {
                    crate::log::info("stopping: no new work taken");
                    return Served::Done;
                }
                let Some(taken) = self.look(queues, &intaker, &book) else {
                    crate::log::info("DrainAndTerminate and no experiment running: exiting");
                    return Served::Done;
                };
                let taken = match taken {
                    Ok(taken) => {
                        self.intake_worked(&mut book);
                        taken
                    }
                    Err(error) => {
                        let reason = crate::error_text(&error);
                        if let Some(failed) = self.intake_failed(&mut book, reason) {
                            return failed;
                        }
                        let pause = outage_wait(&book);
                        self.wait(&results, &mut book, pause);
                        continue;
                    }
                };
                match taken {
                    Intake::Run(job) => {
                        book.backoffs.remove(&job.queue);
                        if self.settings.stop.load(Ordering::SeqCst) {
                            self.ledger.end(&job.id);
                            match worker::give_back(queues, *job) {
                                Ok(event) => on_event(event),
                                Err(error) => crate::log::warn(&crate::error_text(&error)),
                            }
                            continue;
                        }
                        let report_to = report_to.clone();
                        let finisher = &finisher;
                        scope.spawn(move || self.run_job(queues, *job, finisher, &report_to));
                    }
                    Intake::Settled(event) => {
                        if let Event::Refused {
                            queue,
                            never: false,
                            ..
                        } = &event
                        {
                            book.back_off(queue, Wait::Resources);
                        }
                        on_event(event);
                    }
                    Intake::Empty(left) => {
                        // The end of a pass that took nothing: what a test
                        // waits for before it asserts that nothing was taken.
                        tracing::debug!(
                            target: "runner",
                            "intake pass: nothing taken ({} waiting, {} never runnable here)",
                            left.waiting,
                            left.never.len()
                        );
                        self.report_never(&left, &mut book);
                        if self.options.once
                            && self.resources.running() == 0
                            && left.waiting == 0
                            && !book.waiting_out_failures()
                        {
                            say_left(&left);
                            return Served::Done;
                        }
                        self.wait(&results, &mut book, IDLE);
                    }
                }
            }
        });
        while let Ok(result) = results.try_recv() {
            self.settle(result, &mut book);
        }
        served
    }

    /// One pass over the queues if the state lets the runner take work
    /// (an empty pass when it does not); `None` when it is to exit.
    fn look<Q: Queues>(
        &self,
        queues: &Q,
        intaker: &Intaker<'_>,
        book: &Book,
    ) -> Option<Result<Intake<Q::Claim>, Q::Error>> {
        match self.control.state() {
            State::Running => {
                let now = Instant::now();
                let skip = |queue: &str| {
                    !self.control.serves(queue)
                        || book
                            .backoffs
                            .get(queue)
                            .is_some_and(|backoff| backoff.until > now)
                };
                Some(worker::take(queues, intaker, &skip, SystemTime::now()))
            }
            State::DrainAndTerminate if self.resources.running() == 0 => None,
            State::DrainAndSuspend | State::DrainAndTerminate => {
                Some(Ok(Intake::Empty(Left::default())))
            }
        }
    }

    /// Run one job on its own thread and send back how its message was settled.
    fn run_job<Q: Queues>(
        &self,
        queues: &Q,
        job: worker::Job<Q::Claim>,
        finisher: &Finisher<'_>,
        report_to: &mpsc::Sender<Done>,
    ) {
        let key = job.request.experiment.key.clone();
        let id = job.id.clone();
        self.control.started(&key);
        let result = catch_unwind(AssertUnwindSafe(|| {
            worker::finish(queues, job, finisher).map_err(|error| crate::error_text(&error))
        }))
        .unwrap_or_else(|_| {
            Err(format!(
                "experiment {key}: the runner failed (a bug) while settling its message"
            ))
        });
        self.ledger.end(&id);
        self.control.finished(&key);
        self.metrics.running.dec();
        let _ = report_to.send(result);
    }

    /// An experiment thread ended: report it, and adjust the back-offs (its
    /// resources are free, so refusals for want of them are lifted).
    fn settle(&self, result: Done, book: &mut Book) {
        book.backoffs
            .retain(|_, backoff| backoff.wait != Wait::Resources);
        match result {
            Ok(event) => {
                match &event {
                    Event::Requeued {
                        queue,
                        class: Some(Class::Transient | Class::Bug),
                        ..
                    } => book.back_off(queue, Wait::Transient),
                    Event::Finished { queue, .. } => {
                        book.backoffs.remove(queue);
                    }
                    _ => {}
                }
                report(event, self.metrics);
            }
            // The message could not be settled (the broker went away):
            // it comes back by itself, and the ledger knows if it was done.
            Err(error) => {
                crate::log::warn(&format!("{error} (the message will be delivered again)"));
            }
        }
    }

    fn intake_worked(&self, book: &mut Book) {
        if let Some((since, _, _)) = book.outage.take() {
            crate::log::info(&format!(
                "the queues answer again after {}s",
                since.elapsed().as_secs()
            ));
        }
        (self.on_intake)(None);
    }

    /// The queues failed: remember since when, say it once per new reason,
    /// and give up (`--once` only) after `unhealthy_after`.
    fn intake_failed(&self, book: &mut Book, reason: String) -> Option<Served> {
        (self.on_intake)(Some(&reason));
        let (since, delay) = if let Some((since, delay, last)) = book.outage.take() {
            if last != reason {
                crate::log::warn(&format!("the queues fail: {reason}"));
            }
            (since, (delay * 2).min(OUTAGE_BACKOFF_CAP))
        } else {
            crate::log::warn(&format!(
                "the queues fail: {reason}; retrying with back-off, running experiments go on"
            ));
            (Instant::now(), OUTAGE_BACKOFF)
        };
        if self.options.once && since.elapsed() >= self.options.unhealthy_after {
            return Some(Served::Failed(format!(
                "the queues failed for {}s: {reason}",
                since.elapsed().as_secs()
            )));
        }
        book.outage = Some((since, delay, reason));
        None
    }

    fn report_never(&self, left: &Left, book: &mut Book) {
        for text in &left.never {
            if book.reported.insert(text.clone()) {
                let queue = text.split(':').next().unwrap_or_default();
                report(
                    Event::Refused {
                        queue: queue.to_owned(),
                        reason: text[queue.len()..].trim_start_matches(": ").to_owned(),
                        never: true,
                    },
                    self.metrics,
                );
            }
        }
    }

    /// Wait up to `limit` for an experiment to end, noticing a stop request
    /// within 100 ms.
    fn wait(&self, results: &mpsc::Receiver<Done>, book: &mut Book, limit: Duration) {
        let waited = Instant::now();
        while waited.elapsed() < limit && !self.settings.stop.load(Ordering::SeqCst) {
            if let Ok(result) = results.recv_timeout(Duration::from_millis(100)) {
                self.settle(result, book);
                return;
            }
        }
    }
}

fn outage_wait(book: &Book) -> Duration {
    book.outage
        .as_ref()
        .map_or(OUTAGE_BACKOFF, |(_, delay, _)| *delay)
}

/// `--once` is done: say what stays queued and why.
fn say_left(left: &Left) {
    if left.never.is_empty() {
        crate::log::info("--once: every queue is empty");
        return;
    }
    crate::log::warn(&format!(
        "--once: nothing more can run here; left queued for other runners: {}",
        left.never.join("; ")
    ));
}

/// Count an event and log it.
pub fn report(event: Event, metrics: &Metrics) {
    let count = |queue: &str, result: &str| {
        metrics
            .messages
            .get_or_create(&MessageLabels {
                queue: queue.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    };
    match &event {
        Event::Started { .. } => {
            metrics.running.inc();
        }
        Event::Finished { queue, outcome, .. } => {
            count(queue, "acked");
            let outcome = match outcome {
                Outcome::Succeeded => "succeeded",
                Outcome::Failed(_) => "failed",
                Outcome::TimedOut => "timed_out",
                Outcome::Interrupted => "interrupted",
                Outcome::Aborted => "aborted",
            };
            metrics
                .experiments
                .get_or_create(&ExperimentLabels {
                    outcome: outcome.to_owned(),
                })
                .inc();
        }
        Event::AlreadyDone { queue, .. } => count(queue, "acked"),
        Event::Requeued { queue, .. } => count(queue, "requeued"),
        Event::Refused { queue, .. } => count(queue, "refused"),
        Event::DeadLettered { queue, .. } => count(queue, "dead_lettered"),
        Event::Recovered(_) => {}
    }
    log_event(event);
}

fn log_event(event: Event) {
    match event {
        Event::Started { queue, key } => crate::log::emit(
            crate::log::Level::Info,
            &format!("{queue}: experiment {key} started"),
            &[
                ("queue", &queue),
                ("experiment", &key),
                ("event", "started"),
            ],
        ),
        Event::Recovered(count) => {
            crate::log::info(&format!(
                "put back {count} message(s) a previous runner held"
            ));
        }
        Event::Finished {
            queue,
            key,
            outcome,
        } => crate::log::emit(
            crate::log::Level::Info,
            &format!("{queue}: experiment {key}: {outcome:?}"),
            &[
                ("queue", &queue),
                ("experiment", &key),
                ("event", "finished"),
                ("outcome", &format!("{outcome:?}")),
            ],
        ),
        Event::AlreadyDone { queue, key } => crate::log::info(&format!(
            "{queue}: experiment {key} was already run and its results stored: acked without running it again"
        )),
        Event::Requeued { queue, reason, .. } => {
            crate::log::warn(&format!("{queue}: requeued: {reason}"));
        }
        Event::Refused {
            queue,
            reason,
            never: true,
        } => crate::log::warn(&format!(
            "{queue}: refused, this runner can never run it (left for another runner): {reason}"
        )),
        Event::Refused { queue, reason, .. } => {
            crate::log::info(&format!("{queue}: waiting for resources: {reason}"));
        }
        Event::DeadLettered { queue, reason } => {
            crate::log::warn(&format!("{queue}: dead-lettered: {reason}"));
        }
    }
}
