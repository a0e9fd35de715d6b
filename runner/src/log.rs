//! The runner's log: one line per event on stderr, as text for people
//! (`runner: …`, the message alone) or as JSON objects for log collectors (`{"ts":…,
//! "level":…,"msg":…, fields…}`). `--log-format auto` picks JSON when
//! stdout is not a terminal (a container, a service, a pipe).
//!
//! Lines go through `tracing`, so that the diagnostics of the libraries the
//! runner is built on (kube, the AWS SDK, lapin, hyper) reach the same
//! stream in the same format when asked for (`RUNNER_LOG=debug`), and one
//! filter (`--log-level`, env-filter syntax) decides what is written. The
//! runner's own lines are the ones it always wrote, byte for byte; a
//! library's line also names its target.

use std::fmt::Write as _;
use std::io::{IsTerminal as _, Write as _};

use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::util::SubscriberInitExt as _;

/// The filter when none is given: the runner's own lines from `info`, its
/// libraries' only from `warn`.
pub const DEFAULT_FILTER: &str = "warn,runner=info";

/// The target of the runner's own events.
const TARGET: &str = "runner";

/// The event field that carries [`emit`]'s fields (JSON-encoded: `tracing`
/// field names are fixed at compile time, the runner's are not).
const FIELDS: &str = "runner.fields";

/// How lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// JSON when stdout is not a terminal, else text.
    Auto,
    /// `runner: message`.
    Text,
    /// One JSON object per line.
    Json,
}

/// How serious a line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Normal operation.
    Info,
    /// Something the operator may want to fix.
    Warn,
    /// A failure.
    Error,
}

impl Level {
    const fn tracing(self) -> tracing::Level {
        match self {
            Self::Info => tracing::Level::INFO,
            Self::Warn => tracing::Level::WARN,
            Self::Error => tracing::Level::ERROR,
        }
    }
}

/// The log could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The filter is not env-filter syntax.
    #[error(
        "--log-level (RUNNER_LOG) '{directives}' is not a log filter (e.g. info, debug, runner=debug,kube=info)"
    )]
    Filter {
        /// The filter given.
        directives: String,
        /// Why it does not parse.
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

/// The filter for `directives`: `--log-level`/`RUNNER_LOG` when given, else
/// `RUST_LOG`, else [`DEFAULT_FILTER`].
///
/// # Errors
/// The directives given are not env-filter syntax.
pub fn filter(directives: Option<&str>) -> Result<EnvFilter, LogError> {
    let directives = directives
        .map(str::to_owned)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .filter(|text| !text.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_owned());
    EnvFilter::try_new(&directives).map_err(|source| LogError::Filter { directives, source })
}

/// Choose the format and the filter once, at start-up (`Auto` is resolved
/// here), and install the subscriber that writes the lines to stderr
/// (`log` crate records included). A filter that does not parse is
/// reported, and the default one used.
///
/// # Errors
/// The filter does not parse (the log is set up with [`DEFAULT_FILTER`]).
pub fn init(format: Format, directives: Option<&str>) -> Result<(), LogError> {
    let resolved = match format {
        Format::Auto if std::io::stdout().is_terminal() => Format::Text,
        Format::Auto => Format::Json,
        other => other,
    };
    let (filter, result) = match filter(directives) {
        Ok(filter) => (filter, Ok(())),
        Err(error) => (EnvFilter::new(DEFAULT_FILTER), Err(error)),
    };
    // Already set (a second call): the first one stands.
    let _ = subscriber(resolved, filter, std::io::stderr).try_init();
    result
}

/// The subscriber [`init`] installs, writing to `writer`; for tests.
pub fn subscriber<W>(format: Format, filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(filter)
        .with(Lines { format, writer })
}

/// The line for `message` with `fields`, without the newline.
#[must_use]
pub fn line(format: Format, level: Level, message: &str, fields: &[(&str, &str)]) -> String {
    let fields = fields
        .iter()
        .map(|(key, value)| ((*key).to_owned(), serde_json::Value::from(*value)))
        .collect::<Vec<_>>();
    render(format, level.tracing(), TARGET, message, &fields)
}

/// The line of one event: the runner's own (`target` `runner` or below)
/// as it always was; a library's with its target, and in text with its
/// fields (they are its whole story).
fn render(
    format: Format,
    level: tracing::Level,
    target: &str,
    message: &str,
    fields: &[(String, serde_json::Value)],
) -> String {
    let own = target == TARGET || target.starts_with("runner::");
    if format == Format::Json {
        let mut object = serde_json::Map::new();
        object.insert("ts".to_owned(), jiff::Timestamp::now().to_string().into());
        object.insert("level".to_owned(), level_name(level).into());
        object.insert("msg".to_owned(), message.into());
        if !own {
            object.insert("target".to_owned(), target.into());
        }
        for (key, value) in fields {
            object.insert(key.clone(), value.clone());
        }
        return serde_json::Value::Object(object).to_string();
    }
    let prefix = match level {
        tracing::Level::ERROR => "error: ",
        tracing::Level::WARN => "runner: warning: ",
        tracing::Level::INFO => "runner: ",
        tracing::Level::DEBUG => "runner: debug: ",
        tracing::Level::TRACE => "runner: trace: ",
    };
    if own {
        // For people the message says it all; the fields are for collectors.
        return format!("{prefix}{message}");
    }
    let mut text = format!("{prefix}{target}: {message}");
    for (key, value) in fields {
        // Strings bare, the rest as JSON (numbers, booleans).
        let _ = match value {
            serde_json::Value::String(value) => write!(text, " {key}={value}"),
            other => write!(text, " {key}={other}"),
        };
    }
    text
}

const fn level_name(level: tracing::Level) -> &'static str {
    match level {
        tracing::Level::ERROR => "error",
        tracing::Level::WARN => "warn",
        tracing::Level::INFO => "info",
        tracing::Level::DEBUG => "debug",
        tracing::Level::TRACE => "trace",
    }
}

/// The layer that writes each event as one line.
struct Lines<W> {
    format: Format,
    writer: W,
}

impl<S, W> Layer<S> for Lines<W>
where
    S: Subscriber,
    W: for<'writer> MakeWriter<'writer> + 'static,
{
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        let mut collected = Collected::default();
        event.record(&mut collected);
        let metadata = event.metadata();
        // A `log` crate record names its target in a field.
        let target = collected
            .log_target
            .as_deref()
            .unwrap_or_else(|| metadata.target());
        let mut text = render(
            self.format,
            *metadata.level(),
            target,
            &collected.message,
            &collected.fields,
        );
        text.push('\n');
        // One write per line, so lines of concurrent experiments never mix.
        let _ = self
            .writer
            .make_writer_for(metadata)
            .write_all(text.as_bytes());
    }
}

/// An event's message and fields.
#[derive(Default)]
struct Collected {
    message: String,
    fields: Vec<(String, serde_json::Value)>,
    log_target: Option<String>,
}

impl Collected {
    fn add(&mut self, field: &Field, value: serde_json::Value) {
        match field.name() {
            "message" => {
                self.message = match value {
                    serde_json::Value::String(text) => text,
                    other => other.to_string(),
                };
            }
            FIELDS => {
                if let Some(text) = value.as_str()
                    && let Ok(serde_json::Value::Object(fields)) = serde_json::from_str(text)
                {
                    self.fields.extend(fields);
                }
            }
            "log.target" => self.log_target = value.as_str().map(str::to_owned),
            // The rest of a `log` record's origin (module, file, line).
            name if name.starts_with("log.") => {}
            name => self.fields.push((name.to_owned(), value)),
        }
    }
}

impl Visit for Collected {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, value.into());
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.add(field, value.into());
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.add(field, value.into());
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.add(field, value.into());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format!("{value:?}").into());
    }
}

/// Write one line.
pub fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let no_subscriber = tracing::dispatcher::get_default(|dispatch| {
        dispatch.is::<tracing::subscriber::NoSubscriber>()
    });
    if no_subscriber {
        // Before `init` (a library user, a test): text on stderr, as always.
        let mut text = line(Format::Text, level, message, fields);
        text.push('\n');
        let _ = std::io::stderr().write_all(text.as_bytes());
        return;
    }
    let encoded = if fields.is_empty() {
        String::new()
    } else {
        let object = fields
            .iter()
            .map(|(key, value)| ((*key).to_owned(), serde_json::Value::from(*value)))
            .collect::<serde_json::Map<_, _>>();
        serde_json::Value::Object(object).to_string()
    };
    let encoded = encoded.as_str();
    match level {
        Level::Info => {
            tracing::event!(target: "runner", tracing::Level::INFO, runner.fields = encoded, "{message}");
        }
        Level::Warn => {
            tracing::event!(target: "runner", tracing::Level::WARN, runner.fields = encoded, "{message}");
        }
        Level::Error => {
            tracing::event!(target: "runner", tracing::Level::ERROR, runner.fields = encoded, "{message}");
        }
    }
}

/// An informational line.
pub fn info(message: &str) {
    emit(Level::Info, message, &[]);
}

/// A warning.
pub fn warn(message: &str) {
    emit(Level::Warn, message, &[]);
}

/// An error.
pub fn error(message: &str) {
    emit(Level::Error, message, &[]);
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A writer into a shared buffer, for reading what was logged.
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Buffer {
        fn text(&self) -> String {
            String::from_utf8_lossy(
                &self
                    .0
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            )
            .into_owned()
        }
    }

    /// What `body` logs under `format` and `directives`.
    fn logged(format: Format, directives: &str, body: impl FnOnce()) -> String {
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let filter = filter(Some(directives)).unwrap_or_else(|error| panic!("{error}"));
        let subscriber = subscriber(format, filter, move || writer.clone());
        tracing::subscriber::with_default(subscriber, body);
        buffer.text()
    }

    #[test]
    fn text_and_json_lines() -> Result<(), serde_json::Error> {
        assert_eq!(
            line(
                Format::Text,
                Level::Info,
                "experiment x started",
                &[("queue", "q")]
            ),
            "runner: experiment x started"
        );
        assert_eq!(
            line(Format::Text, Level::Warn, "slow", &[]),
            "runner: warning: slow"
        );
        let json: serde_json::Value = serde_json::from_str(&line(
            Format::Json,
            Level::Error,
            "a \"quoted\" failure",
            &[("queue", "q")],
        ))?;
        assert_eq!(json["level"], "error");
        assert_eq!(json["msg"], "a \"quoted\" failure");
        assert_eq!(json["queue"], "q");
        assert!(json["ts"].as_str().is_some_and(|ts| ts.ends_with('Z')));
        Ok(())
    }

    #[test]
    fn the_runners_events_are_written_as_they_always_were() -> Result<(), serde_json::Error> {
        let text = logged(Format::Text, DEFAULT_FILTER, || {
            emit(
                Level::Info,
                "local_a: experiment x started",
                &[("queue", "local_a")],
            );
            warn("slow \"disk\"");
            error("it broke\nbadly");
        });
        assert_eq!(
            text,
            "runner: local_a: experiment x started\nrunner: warning: slow \"disk\"\nerror: it broke\nbadly\n"
        );
        let json = logged(Format::Json, DEFAULT_FILTER, || {
            emit(
                Level::Warn,
                "a \"quoted\"\tline\n",
                &[
                    ("queue", "q\"1"),
                    ("experiment", "e\\x"),
                    ("event", "started"),
                ],
            );
            info("plain");
        });
        let lines = json.lines().collect::<Vec<_>>();
        assert_eq!(lines.len(), 2, "{json}");
        let first: serde_json::Value = serde_json::from_str(lines[0])?;
        let expected = serde_json::json!({
            "ts": first["ts"].clone(),
            "level": "warn",
            "msg": "a \"quoted\"\tline\n",
            "queue": "q\"1",
            "experiment": "e\\x",
            "event": "started",
        });
        assert_eq!(first, expected);
        // Byte for byte today's object (built the same way as before).
        let second: serde_json::Value = serde_json::from_str(lines[1])?;
        let mut object = serde_json::Map::new();
        object.insert("ts".to_owned(), second["ts"].clone());
        object.insert("level".to_owned(), "info".into());
        object.insert("msg".to_owned(), "plain".into());
        assert_eq!(lines[1], serde_json::Value::Object(object).to_string());
        Ok(())
    }

    #[test]
    fn a_librarys_events_name_their_target_and_fields() -> Result<(), serde_json::Error> {
        let text = logged(Format::Text, DEFAULT_FILTER, || {
            tracing::warn!(target: "lapin::channels", attempt = 3, "connection \"lost\"");
        });
        assert_eq!(
            text,
            "runner: warning: lapin::channels: connection \"lost\" attempt=3\n"
        );
        let json = logged(Format::Json, DEFAULT_FILTER, || {
            tracing::error!(target: "kube_runtime::watcher", resource = "ConfigMap", "watch \"failed\"");
        });
        let record: serde_json::Value = serde_json::from_str(json.trim_end())?;
        assert_eq!(record["level"], "error");
        assert_eq!(record["target"], "kube_runtime::watcher");
        assert_eq!(record["msg"], "watch \"failed\"");
        assert_eq!(record["resource"], "ConfigMap");
        Ok(())
    }

    #[test]
    fn a_librarys_debug_events_appear_only_with_a_debug_filter() {
        let dependency = || {
            tracing::debug!(target: "aws_smithy_runtime::client", "sending request");
            info("the runner's own line");
        };
        let quiet = logged(Format::Text, DEFAULT_FILTER, dependency);
        assert_eq!(quiet, "runner: the runner's own line\n");
        let loud = logged(Format::Text, "debug", dependency);
        assert_eq!(
            loud,
            "runner: debug: aws_smithy_runtime::client: sending request\nrunner: the runner's own line\n"
        );
        let runner_only = logged(Format::Text, "warn", dependency);
        assert_eq!(runner_only, "");
    }

    #[test]
    fn a_bad_filter_is_an_error_naming_it() {
        let error = filter(Some("runner=loud"))
            .err()
            .map(|error| error.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|text| text.contains("'runner=loud'")),
            "{error:?}"
        );
    }
}
