//! The one place that prints.
//!
//! stdout carries only results (a line per result, or one JSON document with
//! `--output json`); warnings, notes and errors go to stderr, coloured only
//! on a terminal and never when `NO_COLOR` is set.

pub mod progress;

use std::io::{self, IsTerminal, Write};

use clap::ValueEnum;
use serde::Serialize;

/// How results are written to stdout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Plain lines for people and shell scripts.
    #[default]
    Human,
    /// One JSON document.
    Json,
}

/// When stderr messages are coloured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// On a terminal, unless `NO_COLOR` is set.
    #[default]
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// Rows as left-aligned columns two spaces apart (the first row is the
/// header), trailing spaces trimmed.
#[must_use]
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            row.iter()
                .zip(&widths)
                .map(|(cell, width)| format!("{cell:<width$}"))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes results and messages.
#[derive(Clone, Debug)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
    verbose: u8,
    color: bool,
}

impl Printer {
    /// A printer for the given choices; `no_color` is whether `NO_COLOR` is set.
    #[must_use]
    pub fn new(
        format: OutputFormat,
        quiet: bool,
        verbose: u8,
        color: ColorChoice,
        no_color: bool,
    ) -> Self {
        let color = match color {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => !no_color && io::stderr().is_terminal(),
        };
        Self {
            format,
            quiet,
            verbose,
            color,
        }
    }

    /// Whether progress bars belong on stderr: a terminal, and messages wanted.
    #[must_use]
    pub fn interactive(&self) -> bool {
        !self.quiet && io::stderr().is_terminal()
    }

    /// The output format.
    #[must_use]
    pub const fn format(&self) -> OutputFormat {
        self.format
    }

    /// Print a result: `human` as lines, or `value` as JSON.
    ///
    /// # Errors
    /// stdout cannot be written (other than a closed pipe, which is ignored).
    pub fn result<T: Serialize>(&self, human: &str, value: &T) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        let written = match self.format {
            OutputFormat::Human => writeln!(stdout, "{human}"),
            OutputFormat::Json => serde_json::to_writer_pretty(&mut stdout, value)
                .map_err(io::Error::other)
                .and_then(|()| writeln!(stdout)),
        };
        match written.and_then(|()| stdout.flush()) {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// Text on stdout as it is (a rendered template, a followed log), flushed at once.
    ///
    /// # Errors
    /// stdout cannot be written (other than a closed pipe, which is ignored).
    pub fn text(&self, text: &str) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// One event as a line of JSON (JSON Lines) on stdout, flushed at once:
    /// the stream `--output json` gives for long-running commands.
    ///
    /// # Errors
    /// stdout cannot be written (other than a closed pipe, which is ignored).
    pub fn json_line<T: Serialize>(&self, value: &T) -> io::Result<()> {
        let mut stdout = io::stdout().lock();
        let written = serde_json::to_writer(&mut stdout, value)
            .map_err(io::Error::other)
            .and_then(|()| writeln!(stdout))
            .and_then(|()| stdout.flush());
        match written {
            Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }

    /// A warning on stderr, unless `-q`.
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            self.label("warning", "33", message);
        }
    }

    /// A note about what happened, on stderr, unless `-q`.
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// Detail shown with `-v` only.
    pub fn detail(&self, message: &str) {
        if self.verbose > 0 && !self.quiet {
            eprintln!("{message}");
        }
    }

    /// An error and its hint; always shown, `-q` included.
    pub fn error(&self, message: &str, hint: Option<&str>) {
        self.label("error", "31", message);
        if let Some(hint) = hint {
            self.label("hint", "36", hint);
        }
    }

    fn label(&self, label: &str, color: &str, message: &str) {
        if self.color {
            eprintln!("\x1b[1;{color}m{label}:\x1b[0m {message}");
        } else {
            eprintln!("{label}: {message}");
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tables_align_columns_and_trim_trailing_space() {
        let rows = vec![
            vec!["IMAGE".to_owned(), "RESULT".to_owned()],
            vec!["leafai/sgr-build".to_owned(), "pushed".to_owned()],
            vec!["x".to_owned(), String::new()],
        ];
        assert_eq!(
            super::table(&rows),
            "IMAGE             RESULT\nleafai/sgr-build  pushed\nx"
        );
    }
}
