//! What `sgr` and the runner must agree on, defined once so they cannot
//! drift apart: operators steer runners with `sgr runner state` by writing
//! config maps the runners watch, and read back with `sgr runner status`
//! what the runners report into another map. Both binaries depend on this
//! crate; neither depends on the other.
//!
//! - the maps: the global [`GLOBAL_MAP`], one per node named by
//!   [`node_map`] (its keys win key by key), and the status map
//!   [`STATUS_MAP`] with one [`Report`] (JSON) per runner;
//! - the keys operators set: [`STATE_KEY`], [`QUEUE_MATCH_KEY`],
//!   [`QUEUE_MISMATCH_KEY`];
//! - the [`State`]s and their names;
//! - the timing: runners rewrite their report at least every
//!   [`REPORT_EVERY`], and a report older than [`STALE_AFTER`] is shown as
//!   stale (a runner that died or lost the API server);
//! - and [`error_chain`], how both write an error with its causes on one
//!   line, so their messages read alike.
//!
//! Small on purpose (serde, jiff and thiserror only; clap behind the `clap` feature for
//! sgr's argument), so depending on it costs neither binary anything.

use std::collections::BTreeMap;
use std::error::Error as StdError;
use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The global state config map of a namespace: every runner reads it.
pub const GLOBAL_MAP: &str = "studioml-go-runner";

/// The config map runners report to: one key per runner (its pod's name,
/// else its node's), the value a [`Report`] as JSON.
pub const STATUS_MAP: &str = "studioml-go-runner-status";

/// The key holding the [`State`] in the global and node maps.
pub const STATE_KEY: &str = "STATE";
/// The key holding the regular expression of the queues to serve (overrides
/// the runner's flag).
pub const QUEUE_MATCH_KEY: &str = "QUEUE_MATCH";
/// The key holding the regular expression of the queues not to serve
/// (overrides the runner's flag; empty: none excluded).
pub const QUEUE_MISMATCH_KEY: &str = "QUEUE_MISMATCH";

/// How often a runner rewrites its report when nothing changed (it writes
/// at once on every change).
pub const REPORT_EVERY: Duration = Duration::from_secs(30);

/// A report not rewritten for this long is stale: four missed refreshes.
pub const STALE_AFTER: Duration = Duration::from_mins(2);

/// The name of the config map of the runners on `node`: the node's own name
/// (so `kubectl get configmap <node>` finds it). Its keys win over the
/// global map's, key by key.
#[must_use]
pub const fn node_map(node: &str) -> &str {
    node
}

/// What a runner may do, as operators set it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum State {
    /// Take work.
    #[default]
    #[cfg_attr(feature = "clap", value(name = "Running"))]
    Running,
    /// Take nothing new; finish what runs; stay up.
    #[cfg_attr(feature = "clap", value(name = "DrainAndSuspend"))]
    DrainAndSuspend,
    /// Take nothing new; finish what runs; exit.
    #[cfg_attr(feature = "clap", value(name = "DrainAndTerminate"))]
    DrainAndTerminate,
}

impl State {
    /// Every state, for help and errors.
    pub const ALL: [Self; 3] = [
        Self::Running,
        Self::DrainAndSuspend,
        Self::DrainAndTerminate,
    ];

    /// The name in the maps and the report (also its JSON form).
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Running => "Running",
            Self::DrainAndSuspend => "DrainAndSuspend",
            Self::DrainAndTerminate => "DrainAndTerminate",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A map value that is not a [`State`] (the value as found).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("'{0}' is not a state (Running, DrainAndSuspend, DrainAndTerminate)")]
pub struct NotAState(pub String);

impl FromStr for State {
    type Err = NotAState;

    /// A state's name, in any case, with surrounding blanks ignored (as
    /// operators type it into a map).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.name().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| NotAState(text.to_owned()))
    }
}

/// What a runner reports about itself: the value under its key in
/// [`STATUS_MAP`], as JSON. Times are RFC 3339 ([`timestamp`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The effective state.
    pub state: State,
    /// Since when (RFC 3339).
    #[serde(default)]
    pub since: String,
    /// Running experiments: key → started (RFC 3339).
    #[serde(default)]
    pub running: BTreeMap<String, String>,
    /// When this report was written (RFC 3339).
    #[serde(default)]
    pub updated: String,
}

impl Report {
    /// Whether the report is stale at `now`: written more than
    /// [`STALE_AFTER`] before it, or with no readable time at all.
    #[must_use]
    pub fn is_stale(&self, now: jiff::Timestamp) -> bool {
        self.updated
            .parse::<jiff::Timestamp>()
            .map_or(true, |updated| {
                let age = now.duration_since(updated);
                age.is_positive() && age.unsigned_abs() > STALE_AFTER
            })
    }
}

/// `time` as a report writes it (RFC 3339, UTC); empty when it is out of
/// the representable range.
#[must_use]
pub fn timestamp(time: SystemTime) -> String {
    jiff::Timestamp::try_from(time).map_or_else(|_| String::new(), |time| time.to_string())
}

/// An error and its causes on one line (`outer: cause: root cause`), each
/// cause left out when the text before already ends with it.
#[must_use]
pub fn error_chain(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
