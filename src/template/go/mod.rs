//! duat's template dialect: Go's text/template syntax with sprig's functions,
//! interpreted directly (no translation to tera) so that output matches Go's
//! byte for byte, `<no value>` for missing keys included. The differential
//! tests in tests/it/stencil.rs compare it with Go itself.

mod exec;
pub mod format;
pub mod functions;
mod lexer;
mod parser;
mod printable;
pub mod value;
pub mod yaml;

use std::fmt;

use thiserror::Error;

pub use functions::Host;
pub use value::Value;

/// A 1-based line and column (in characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Position {
    fn of(source: &str, offset: usize) -> Self {
        let before = &source[..offset.min(source.len())];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |index| index + 1);
        Self {
            line,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// A template that cannot be parsed or executed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum TemplateError {
    /// Bad syntax, an unknown function or an undefined variable.
    #[error("{position}: {message}")]
    Parse {
        /// Where.
        position: Position,
        /// What.
        message: String,
    },
    /// The output grew past its limit (`--max-output`).
    #[error("the rendered output exceeds {limit} bytes (--max-output)")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A failure while executing (wrong argument type, bad index, `RaiseError`).
    #[error("{position}: {message}")]
    Execute {
        /// Where.
        position: Position,
        /// What.
        message: String,
    },
}

impl TemplateError {
    /// Where the error is.
    #[must_use]
    pub const fn position(&self) -> Position {
        match self {
            Self::Parse { position, .. } | Self::Execute { position, .. } => *position,
            Self::TooLarge { .. } => Position { line: 0, column: 0 },
        }
    }
}

/// A parsed template.
#[derive(Clone, Debug)]
pub struct Template {
    nodes: Vec<parser::Node>,
}

impl Template {
    /// Parse `source`.
    ///
    /// # Errors
    /// Syntax errors, unknown functions, undefined variables, with their position.
    pub fn parse(source: &str) -> Result<Self, TemplateError> {
        let tokens = lexer::lex(source)?;
        let end = Position::of(source, source.len());
        let nodes = parser::parse(tokens, end, &|name| functions::FUNCTIONS.contains(&name))?;
        Ok(Self { nodes })
    }

    /// Execute against `data`.
    ///
    /// # Errors
    /// Execution errors, and the first `RaiseError` message once rendering finished.
    pub fn render(&self, data: &Value, host: &dyn Host) -> Result<String, TemplateError> {
        self.render_with(data, host, false)
    }

    /// Execute against `data`; with `strict`, a missing key is an error
    /// instead of `<no value>`.
    ///
    /// # Errors
    /// Execution errors, and the first `RaiseError` message once rendering finished.
    pub fn render_with(
        &self,
        data: &Value,
        host: &dyn Host,
        strict: bool,
    ) -> Result<String, TemplateError> {
        self.render_limited(data, host, strict, usize::MAX)
    }

    /// Execute against `data`, refusing an output of more than `max_output` bytes.
    ///
    /// # Errors
    /// Execution errors, an output past `max_output`, and the first
    /// `RaiseError` message once rendering finished.
    pub fn render_limited(
        &self,
        data: &Value,
        host: &dyn Host,
        strict: bool,
        max_output: usize,
    ) -> Result<String, TemplateError> {
        let (output, raised) =
            exec::Execution::new(data, host, strict, max_output).run(&self.nodes)?;
        match raised {
            Some((position, message)) => Err(TemplateError::Execute { position, message }),
            None => Ok(output),
        }
    }
}

#[cfg(test)]
mod tests;
