//! Rendering, in a child process with a memory limit, templates that can grow a value without
//! writing it.
//!
//! The output limit (`--max-output`) stops a template that writes too much, but a value can
//! double in a loop before anything is written (tera's `set_global s = s ~ s`, a Go
//! `$s = printf "%s%s" $s $s`, a macro calling itself twice): the allocation that finally fails
//! aborts the process, with no message sgr can shape and exit code 134. Such templates are
//! rendered by a child (`sgr __render-isolated`, not a user command) whose address space is
//! limited; its abort becomes one clear error with exit 2. Templates without those constructs,
//! nearly all, render in process: no second process start.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use serde::{Deserialize, Serialize};

use super::dialect::Dialect;

/// The first argument that makes `sgr` the isolated renderer.
pub const CHILD_ARGUMENT: &str = "__render-isolated";

/// Address space of the child beyond four times the output limit: the program, its stack and
/// the context.
const BASE_ADDRESS_SPACE: u64 = 512 * 1024 * 1024;

/// The end of the message of a child stopped by its memory limit.
pub const OUT_OF_MEMORY: &str =
    "a value grew without bound (a variable doubled in a loop, or a macro calling itself)";

/// One render, as the parent hands it to the child.
#[derive(Debug, Deserialize, Serialize)]
pub struct Job {
    /// The dialect.
    pub dialect: Dialect,
    /// The template's path (for messages).
    pub path: PathBuf,
    /// The template.
    pub text: String,
    /// The context.
    pub context: serde_json::Value,
    /// Go: a missing key is an error.
    pub strict: bool,
    /// tera: undefined variables render empty.
    pub allow_missing: bool,
    /// The most bytes the output may hold.
    pub max_output: u64,
}

impl Job {
    /// The child's address-space limit.
    fn memory_limit(&self) -> u64 {
        self.max_output
            .saturating_mul(4)
            .saturating_add(BASE_ADDRESS_SPACE)
    }
}

/// Whether `text` uses a construct that can grow a value without writing it.
#[must_use]
pub fn needs_isolation(dialect: Dialect, text: &str) -> bool {
    match dialect {
        Dialect::Tera => text.contains("set_global") || text.contains("macro"),
        Dialect::Go => go_assigns(text),
    }
}

/// A Go-template variable assignment (`$x = …`, not `:=`, `==`, `!=`, `<=`, `>=`).
fn go_assigns(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.iter().enumerate().any(|(index, byte)| {
        *byte == b'='
            && bytes.get(index + 1) != Some(&b'=')
            && bytes[..index]
                .iter()
                .rev()
                .find(|previous| !previous.is_ascii_whitespace())
                .is_some_and(|previous| {
                    previous.is_ascii_alphanumeric() || *previous == b'_' || *previous == b'$'
                })
            && bytes[..index].contains(&b'$')
    })
}

/// Render `job` in a child process; `render` is what the child runs. The error is a message
/// for the template error.
///
/// # Errors
/// The template's own error, the child over its memory limit, or the child not starting.
pub fn render(job: &Job) -> Result<String, String> {
    let program =
        std::env::current_exe().map_err(|error| format!("cannot find sgr itself: {error}"))?;
    let mut child = Command::new(program)
        .arg(CHILD_ARGUMENT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start the isolated renderer: {error}"))?;
    let input = serde_json::to_vec(job).map_err(|error| error.to_string())?;
    // The child reads all of its input before it writes anything: no deadlock.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout
            .take(job.max_output.saturating_add(1))
            .read_to_end(&mut output);
    }
    let mut errors = Vec::new();
    if let Some(stderr) = child.stderr.take() {
        let _ = stderr.take(64 * 1024).read_to_end(&mut errors);
    }
    let status = child
        .wait()
        .map_err(|error| format!("the isolated renderer: {error}"))?;
    let errors = String::from_utf8_lossy(&errors).trim().to_owned();
    if status.success() {
        return String::from_utf8(output)
            .map_err(|_| "the rendered output is not UTF-8".to_owned());
    }
    if status.code() == Some(2) && !errors.is_empty() {
        return Err(errors);
    }
    Err(format!(
        " rendering used more than {} MiB of memory and was stopped: {OUT_OF_MEMORY}",
        job.memory_limit() / (1024 * 1024)
    ))
}

/// The child: read a [`Job`] from stdin, limit the address space, render with `render`, write
/// the output to stdout. Exit 0, or 2 with the template's error on stderr.
#[must_use]
pub fn child_main(render: impl FnOnce(&Job) -> Result<String, String>) -> ExitCode {
    let mut input = Vec::new();
    if std::io::stdin().read_to_end(&mut input).is_err() {
        return ExitCode::from(2);
    }
    let job: Job = match serde_json::from_slice(&input) {
        Ok(job) => job,
        Err(error) => {
            eprintln!("the isolated renderer got no job: {error}");
            return ExitCode::from(2);
        }
    };
    drop(input);
    let limit = job.memory_limit();
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    );
    match render(&job) {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            if stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .is_err()
            {
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("{message}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_growing_constructs_are_isolated() {
        assert!(needs_isolation(Dialect::Tera, "{% set_global s = s ~ s %}"));
        assert!(needs_isolation(
            Dialect::Tera,
            "{% macro m() %}{% endmacro %}"
        ));
        assert!(!needs_isolation(Dialect::Tera, "{% set s = 1 %}{{ s }}"));
        assert!(needs_isolation(
            Dialect::Go,
            "{{ $s = printf \"%s%s\" $s $s }}"
        ));
        assert!(!needs_isolation(
            Dialect::Go,
            "{{ $s := 1 }}{{ if eq $s 1 }}{{ end }}"
        ));
        assert!(!needs_isolation(
            Dialect::Go,
            "{{ if ne .a \"b\" }}x=y{{ end }}"
        ));
        assert!(!needs_isolation(Dialect::Go, "a == b, c <= d"));
    }
}
