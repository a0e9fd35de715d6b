//! The runner's operating state, set by operators: `Running` (take work),
//! `DrainAndSuspend` (take nothing new, finish what runs, stay up) and
//! `DrainAndTerminate` (take nothing new, finish what runs, then exit 0).
//! It comes from key/value maps: the Kubernetes config maps (the global
//! `studioml-go-runner` and the one named after the node, which wins key by
//! key; see [`crate::kube`]) or `--state-file`. Keys: `STATE`,
//! `QUEUE_MATCH`, `QUEUE_MISMATCH` (which override the flags). A value that
//! is not valid keeps the last good one, with a log line saying why.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use regex::Regex;

use crate::queue::QueueFilter;

// The protocol shared with sgr, re-exported so the runner's modules keep
// naming `state::State` and friends.
pub use runner_protocol::{GLOBAL_MAP, Report, STATUS_MAP, State};
use runner_protocol::{QUEUE_MATCH_KEY, QUEUE_MISMATCH_KEY, STATE_KEY, timestamp};

/// `node` over `global`, key by key.
#[must_use]
pub fn merge(
    global: Option<&BTreeMap<String, String>>,
    node: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let mut merged = global.cloned().unwrap_or_default();
    if let Some(node) = node {
        merged.extend(node.iter().map(|(key, value)| (key.clone(), value.clone())));
    }
    merged
}

/// Labels of the state gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// The state's name.
    pub state: String,
}

#[derive(Debug)]
struct Inner {
    state: State,
    since: SystemTime,
    matching: Option<(String, Regex)>,
    mismatching: Option<(String, Option<Regex>)>,
    running: BTreeMap<String, SystemTime>,
    version: u64,
}

/// The effective state and queue filter, shared by the intake loop, the
/// sources that change them, and the reporters.
#[derive(Debug)]
pub struct Control {
    flags: QueueFilter,
    inner: Mutex<Inner>,
    /// `runner_state{state}`: 1 for the effective state.
    pub gauge: Family<StateLabels, Gauge>,
}

impl Control {
    /// Running, with the flags' queue filter.
    #[must_use]
    pub fn new(flags: QueueFilter) -> Arc<Self> {
        let control = Self {
            flags,
            inner: Mutex::new(Inner {
                state: State::Running,
                since: SystemTime::now(),
                matching: None,
                mismatching: None,
                running: BTreeMap::new(),
                version: 0,
            }),
            gauge: Family::default(),
        };
        control.publish(State::Running);
        Arc::new(control)
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, state: State) {
        for each in State::ALL {
            self.gauge
                .get_or_create(&StateLabels {
                    state: each.to_string(),
                })
                .set(i64::from(each == state));
        }
    }

    /// The effective state.
    #[must_use]
    pub fn state(&self) -> State {
        self.lock().state
    }

    /// Bumped on every change of state or running experiments.
    #[must_use]
    pub fn version(&self) -> u64 {
        self.lock().version
    }

    /// Whether `queue` is served: the maps' expressions where given, else the flags'.
    #[must_use]
    pub fn serves(&self, queue: &str) -> bool {
        let inner = self.lock();
        let matched = match &inner.matching {
            Some((_, regex)) => regex.is_match(queue),
            None => self.flags.matches(queue),
        };
        let excluded = match &inner.mismatching {
            Some((_, regex)) => regex.as_ref().is_some_and(|regex| regex.is_match(queue)),
            None => self.flags.excludes(queue),
        };
        matched && !excluded
    }

    /// Take the keys of `data` (from `origin`, for the log). Returns the
    /// log lines saying what changed or was refused.
    pub fn apply(&self, data: &BTreeMap<String, String>, origin: &str) -> Vec<String> {
        let mut notes = Vec::new();
        let mut inner = self.lock();
        let wanted = data
            .get(STATE_KEY)
            .map_or(Ok(State::Running), |text| text.parse());
        match wanted {
            Ok(state) if state != inner.state => {
                notes.push(format!("state: {} -> {state} ({origin})", inner.state));
                inner.state = state;
                inner.since = SystemTime::now();
                inner.version += 1;
                self.publish(state);
            }
            Ok(_) => {}
            Err(reason) => notes.push(format!(
                "ignoring STATE from {origin}: {reason}; staying {}",
                inner.state
            )),
        }
        match data.get(QUEUE_MATCH_KEY).filter(|text| !text.is_empty()) {
            None => {
                if inner.matching.take().is_some() {
                    notes.push(format!("QUEUE_MATCH: back to the flag's ({origin})"));
                }
            }
            Some(text) if inner.matching.as_ref().is_some_and(|(old, _)| old == text) => {}
            Some(text) => match Regex::new(text) {
                Ok(regex) => {
                    notes.push(format!("QUEUE_MATCH: {text} ({origin})"));
                    inner.matching = Some((text.clone(), regex));
                }
                Err(error) => notes.push(format!(
                    "ignoring QUEUE_MATCH '{text}' from {origin}: not a regular expression: {error}"
                )),
            },
        }
        match data.get(QUEUE_MISMATCH_KEY) {
            None => {
                if inner.mismatching.take().is_some() {
                    notes.push(format!("QUEUE_MISMATCH: back to the flag's ({origin})"));
                }
            }
            Some(text) if inner.mismatching.as_ref().is_some_and(|(old, _)| old == text) => {}
            Some(text) if text.is_empty() => {
                notes.push(format!("QUEUE_MISMATCH: none ({origin})"));
                inner.mismatching = Some((String::new(), None));
            }
            Some(text) => match Regex::new(text) {
                Ok(regex) => {
                    notes.push(format!("QUEUE_MISMATCH: {text} ({origin})"));
                    inner.mismatching = Some((text.clone(), Some(regex)));
                }
                Err(error) => notes.push(format!(
                    "ignoring QUEUE_MISMATCH '{text}' from {origin}: not a regular expression: {error}"
                )),
            },
        }
        notes
    }

    /// An experiment started.
    pub fn started(&self, key: &str) {
        let mut inner = self.lock();
        inner.running.insert(key.to_owned(), SystemTime::now());
        inner.version += 1;
    }

    /// An experiment ended (or was given back).
    pub fn finished(&self, key: &str) {
        let mut inner = self.lock();
        inner.running.remove(key);
        inner.version += 1;
    }

    /// The report for the status map.
    #[must_use]
    pub fn report(&self) -> Report {
        let inner = self.lock();
        Report {
            state: inner.state,
            since: timestamp(inner.since),
            running: inner
                .running
                .iter()
                .map(|(key, since)| (key.clone(), timestamp(*since)))
                .collect(),
            updated: timestamp(SystemTime::now()),
        }
    }
}

/// Parse a state file: `KEY=VALUE` lines (`#` comments); a line that is
/// only a word is the `STATE`.
#[must_use]
pub fn parse_state_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| match line.split_once('=') {
            Some((key, value)) => (key.trim().to_owned(), value.trim().to_owned()),
            None => (STATE_KEY.to_owned(), line.to_owned()),
        })
        .collect()
}

/// Follow `--state-file`: read it every half second; a missing file is an
/// empty map (Running).
pub fn follow_file(path: PathBuf, control: Arc<Control>) {
    std::thread::spawn(move || {
        let mut last: Option<BTreeMap<String, String>> = None;
        loop {
            let data = std::fs::read_to_string(&path)
                .map(|text| parse_state_file(&text))
                .unwrap_or_default();
            if last.as_ref() != Some(&data) {
                for note in control.apply(&data, &format!("state file {}", path.display())) {
                    crate::log::info(&note);
                }
                last = Some(data);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn control() -> Arc<Control> {
        Control::new(QueueFilter::new(
            Regex::new("^local_").unwrap_or_else(|error| panic!("{error}")),
            Some(Regex::new("_slow$").unwrap_or_else(|error| panic!("{error}"))),
        ))
    }

    #[test]
    fn the_node_map_wins_key_by_key() {
        let global = map(&[("STATE", "DrainAndSuspend"), ("QUEUE_MATCH", "^a")]);
        let node = map(&[("STATE", "Running")]);
        assert_eq!(
            merge(Some(&global), Some(&node)),
            map(&[("STATE", "Running"), ("QUEUE_MATCH", "^a")])
        );
        assert_eq!(merge(Some(&global), None), global);
        assert_eq!(merge(None, None), BTreeMap::new());
    }

    #[test]
    fn an_invalid_value_keeps_the_last_good_one() {
        let control = control();
        let notes = control.apply(&map(&[("STATE", "DrainAndSuspend")]), "test");
        assert_eq!(notes, ["state: Running -> DrainAndSuspend (test)"]);
        let notes = control.apply(&map(&[("STATE", "Paused")]), "test");
        assert!(
            notes[0].contains("ignoring STATE from test: 'Paused' is not a state"),
            "{notes:?}"
        );
        assert_eq!(control.state(), State::DrainAndSuspend);
        // No STATE at all is Running (the original's Unknown, treated as Running).
        control.apply(&BTreeMap::new(), "test");
        assert_eq!(control.state(), State::Running);
        assert_eq!(
            control
                .gauge
                .get_or_create(&StateLabels {
                    state: "Running".to_owned()
                })
                .get(),
            1
        );
    }

    #[test]
    fn queue_expressions_override_the_flags_and_fall_back() {
        let control = control();
        assert!(
            control.serves("local_a") && !control.serves("local_slow") && !control.serves("rmq_a")
        );
        control.apply(
            &map(&[("QUEUE_MATCH", "^rmq_"), ("QUEUE_MISMATCH", "")]),
            "test",
        );
        assert!(control.serves("rmq_a") && !control.serves("local_a"));
        let notes = control.apply(&map(&[("QUEUE_MATCH", "(")]), "test");
        assert!(
            notes
                .iter()
                .any(|note| note.contains("not a regular expression")),
            "{notes:?}"
        );
        assert!(control.serves("rmq_a"), "the last good expression stays");
        control.apply(&BTreeMap::new(), "test");
        assert!(control.serves("local_a") && !control.serves("local_slow"));
    }

    #[test]
    fn state_files() {
        assert_eq!(
            parse_state_file("DrainAndSuspend\n"),
            map(&[("STATE", "DrainAndSuspend")])
        );
        assert_eq!(
            parse_state_file("# steer\nSTATE = Running\nQUEUE_MATCH=^rmq_\n"),
            map(&[("STATE", "Running"), ("QUEUE_MATCH", "^rmq_")])
        );
    }

    #[test]
    fn reports_list_running_experiments() {
        let control = control();
        let before = control.version();
        control.started("exp-1");
        assert!(control.version() > before);
        let report = control.report();
        assert_eq!(report.state, State::Running);
        assert!(report.running.contains_key("exp-1"));
        control.finished("exp-1");
        assert!(control.report().running.is_empty());
    }
}
