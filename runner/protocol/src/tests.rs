//! The protocol pinned to literal values: a change of a name, a key, the
//! report's JSON or the timing fails here, not in a cluster.

use std::time::{Duration, SystemTime};

use super::*;

/// A report as runners write it today (field names, order and time format).
const REPORT_JSON: &str = r#"{"state":"DrainAndSuspend","since":"2026-11-28T13:02:11.25Z","running":{"exp-1":"2026-11-28T13:03:00Z","exp-2":"2026-11-28T13:04:30.5Z"},"updated":"2026-11-28T13:05:40Z"}"#;

fn report() -> Report {
    Report {
        state: State::DrainAndSuspend,
        since: "2026-11-28T13:02:11.25Z".to_owned(),
        running: [
            ("exp-1".to_owned(), "2026-11-28T13:03:00Z".to_owned()),
            ("exp-2".to_owned(), "2026-11-28T13:04:30.5Z".to_owned()),
        ]
        .into(),
        updated: "2026-11-28T13:05:40Z".to_owned(),
    }
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse()
        .unwrap_or_else(|error| panic!("{text} is a timestamp: {error}"))
}

#[test]
fn the_maps_and_keys_have_the_names_runners_and_operators_use() {
    assert_eq!(GLOBAL_MAP, "studioml-go-runner");
    assert_eq!(STATUS_MAP, "studioml-go-runner-status");
    assert_eq!(node_map("gpu-node-3"), "gpu-node-3");
    assert_eq!(
        [STATE_KEY, QUEUE_MATCH_KEY, QUEUE_MISMATCH_KEY],
        ["STATE", "QUEUE_MATCH", "QUEUE_MISMATCH"]
    );
}

#[test]
fn states_print_as_the_maps_hold_them_and_parse_back() {
    let names: Vec<String> = State::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["Running", "DrainAndSuspend", "DrainAndTerminate"]);
    for state in State::ALL {
        assert_eq!(state.name(), state.to_string());
        assert_eq!(state.name().parse::<State>(), Ok(state));
        assert_eq!(
            serde_json::to_string(&state).ok(),
            Some(format!("\"{}\"", state.name()))
        );
        assert_eq!(
            serde_json::from_str::<State>(&format!("\"{state}\"")).ok(),
            Some(state)
        );
    }
    assert_eq!(State::default(), State::Running);
}

#[test]
fn map_values_parse_in_any_case_with_blanks_around() {
    assert_eq!(
        "drainandsuspend".parse::<State>(),
        Ok(State::DrainAndSuspend)
    );
    assert_eq!(
        " DRAINANDTERMINATE\n".parse::<State>(),
        Ok(State::DrainAndTerminate)
    );
    assert_eq!("running".parse::<State>(), Ok(State::Running));
}

#[test]
fn other_values_are_refused_with_the_value_and_the_choices() {
    let error = "Paused".parse::<State>().err();
    assert_eq!(error, Some(NotAState("Paused".to_owned())));
    assert_eq!(
        error.map(|error| error.to_string()).as_deref(),
        Some("'Paused' is not a state (Running, DrainAndSuspend, DrainAndTerminate)")
    );
    assert!("".parse::<State>().is_err());
    assert!("Drain And Suspend".parse::<State>().is_err());
}

#[test]
fn a_report_is_written_exactly_in_the_wire_format() -> Result<(), serde_json::Error> {
    assert_eq!(serde_json::to_string(&report())?, REPORT_JSON);
    Ok(())
}

#[test]
fn a_report_in_the_wire_format_reads_back_whole() -> Result<(), serde_json::Error> {
    let read: Report = serde_json::from_str(REPORT_JSON)?;
    assert_eq!(read, report());
    assert_eq!(serde_json::to_string(&read)?, REPORT_JSON);
    Ok(())
}

#[test]
fn a_report_without_times_or_experiments_still_reads() -> Result<(), serde_json::Error> {
    let read: Report = serde_json::from_str(r#"{"state":"Running"}"#)?;
    assert_eq!(
        read,
        Report {
            state: State::Running,
            ..Report::default()
        }
    );
    Ok(())
}

#[test]
fn a_report_with_an_unknown_or_missing_state_is_refused() {
    for text in [
        r#"{"state":"Paused","since":"","running":{},"updated":""}"#,
        r#"{"state":"running","since":"","running":{},"updated":""}"#,
        r#"{"since":"","running":{},"updated":""}"#,
        "not json",
    ] {
        assert!(serde_json::from_str::<Report>(text).is_err(), "{text}");
    }
}

#[test]
fn the_timing_is_a_refresh_every_30_s_and_stale_after_2_min() {
    assert_eq!(REPORT_EVERY, Duration::from_secs(30));
    assert_eq!(STALE_AFTER, Duration::from_mins(2));
    assert!(
        STALE_AFTER >= REPORT_EVERY * 4,
        "a runner must miss several refreshes before it shows as stale"
    );
}

#[test]
fn a_report_is_stale_after_two_minutes_or_without_a_readable_time() {
    let mut report = report();
    let updated = at("2026-11-28T13:05:40Z");
    assert!(!report.is_stale(updated));
    assert!(
        !report.is_stale(at("2026-11-28T13:07:40Z")),
        "exactly 2 min"
    );
    assert!(report.is_stale(at("2026-11-28T13:07:40.001Z")));
    assert!(
        !report.is_stale(at("2026-11-28T13:00:00Z")),
        "written after now (clock skew): not stale"
    );
    report.updated = "yesterday".to_owned();
    assert!(report.is_stale(updated));
    report.updated = String::new();
    assert!(report.is_stale(updated));
}

#[test]
fn timestamps_are_rfc_3339_utc_and_read_back() {
    let time = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_334_931_250);
    let text = timestamp(time);
    assert_eq!(text, "2025-11-28T13:02:11.25Z");
    assert_eq!(
        SystemTime::from(at(&text)),
        time,
        "sgr reads back what the runner wrote"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Layer {
    message: &'static str,
    #[source]
    source: Option<Box<Layer>>,
}

fn layers(messages: &[&'static str]) -> Option<Box<Layer>> {
    messages.iter().rev().fold(None, |source, message| {
        Some(Box::new(Layer { message, source }))
    })
}

#[test]
fn an_error_chain_is_one_line_outer_to_root() {
    let error = layers(&["reading config map", "connecting", "refused"]);
    assert_eq!(
        error.map(|error| error_chain(&*error)).as_deref(),
        Some("reading config map: connecting: refused")
    );
    let single = layers(&["alone"]);
    assert_eq!(
        single.map(|error| error_chain(&*error)).as_deref(),
        Some("alone")
    );
}

#[test]
fn a_cause_already_at_the_end_of_the_message_is_not_repeated() {
    let error = layers(&["cannot connect: refused", "refused", "os error 111"]);
    assert_eq!(
        error.map(|error| error_chain(&*error)).as_deref(),
        Some("cannot connect: refused: os error 111")
    );
}

#[cfg(feature = "clap")]
#[test]
fn the_command_line_takes_the_names_the_maps_hold() {
    use clap::ValueEnum as _;
    for state in State::ALL {
        let value = state.to_possible_value();
        assert_eq!(
            value.as_ref().map(clap::builder::PossibleValue::get_name),
            Some(state.name())
        );
        assert_eq!(
            <State as clap::ValueEnum>::from_str(state.name(), false),
            Ok(state)
        );
    }
    assert!(
        <State as clap::ValueEnum>::from_str("running", false).is_err(),
        "exact names on the command line"
    );
}
