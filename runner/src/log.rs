//! The runner's log: one line per event on stderr, as text for people
//! (`runner: …`, the message alone) or as JSON objects for log collectors (`{"ts":…,
//! "level":…,"msg":…, fields…}`). `--log-format auto` picks JSON when
//! stdout is not a terminal (a container, a service, a pipe).

use std::io::{IsTerminal as _, Write as _};
use std::sync::OnceLock;

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
    const fn name(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }
}

static FORMAT: OnceLock<Format> = OnceLock::new();

/// Choose the format once, at start-up (`Auto` is resolved here).
pub fn init(format: Format) {
    let resolved = match format {
        Format::Auto if std::io::stdout().is_terminal() => Format::Text,
        Format::Auto => Format::Json,
        other => other,
    };
    let _ = FORMAT.set(resolved);
}

/// The line for `message` with `fields`, without the newline.
#[must_use]
pub fn line(format: Format, level: Level, message: &str, fields: &[(&str, &str)]) -> String {
    if format == Format::Json {
        let mut object = serde_json::Map::new();
        object.insert("ts".to_owned(), jiff::Timestamp::now().to_string().into());
        object.insert("level".to_owned(), level.name().into());
        object.insert("msg".to_owned(), message.into());
        for (key, value) in fields {
            object.insert((*key).to_owned(), (*value).into());
        }
        return serde_json::Value::Object(object).to_string();
    }
    // For people the message says it all; the fields are for collectors.
    match level {
        Level::Info => format!("runner: {message}"),
        Level::Warn => format!("runner: warning: {message}"),
        Level::Error => format!("error: {message}"),
    }
}

/// Write one line.
pub fn emit(level: Level, message: &str, fields: &[(&str, &str)]) {
    let format = *FORMAT.get().unwrap_or(&Format::Text);
    let mut text = line(format, level, message, fields);
    text.push('\n');
    // One write per line, so lines of concurrent experiments never mix.
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
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
    use super::*;

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
}
