//! Rendering, in a child process with a memory limit, templates that can grow a value without
//! writing it.
//!
//! The output limit (`--max-output`) stops a template that writes too much, but a value can
//! double in a loop before anything is written (tera's `set_global s = s ~ s`, a Go
//! `$s = printf "%s%s" $s $s`, a `{% set x %}` or `{% filter %}` block whose body is built whole
//! before the output limit sees it, Go's `indent` with a huge width): the allocation that finally fails
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

/// Address space of the child beyond what the output and the context need: the program, its
/// stack and its allocator's arenas.
const BASE_ADDRESS_SPACE: u64 = 512 * 1024 * 1024;

/// The most bytes of the child's error output kept.
const ERROR_LIMIT: u64 = 1024 * 1024;

/// The end of the message of a child stopped by its memory limit.
pub const OUT_OF_MEMORY: &str = "a value grew without bound (a variable doubled in a loop, \
     a set or filter block built from a long loop, or an indent or repeat of a huge count)";

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
    /// The child's address-space limit: four times the output limit, four times the size of
    /// the context (it is parsed, then converted), and a base for the program.
    fn memory_limit(&self, context_bytes: u64) -> u64 {
        self.max_output
            .saturating_mul(4)
            .saturating_add(context_bytes.saturating_mul(4))
            .saturating_add(BASE_ADDRESS_SPACE)
    }
}

/// Whether `text` uses a construct that can grow a value without writing it.
#[must_use]
pub fn needs_isolation(dialect: Dialect, text: &str) -> bool {
    match dialect {
        Dialect::Tera => {
            text.contains("set_global") || text.contains("filter") || tera_set_block(text)
        }
        Dialect::Go => {
            go_assigns(text)
                || ["indent", "repeat", "nindent"]
                    .iter()
                    .any(|function| text.contains(function))
        }
    }
}

/// A tera `{% set name %}` block (its body is rendered whole into the variable).
fn tera_set_block(text: &str) -> bool {
    text.match_indices("{%").any(|(index, _)| {
        let rest = text[index + 2..].trim_start_matches(['-', ' ', '\t', '\n', '\r']);
        let Some(rest) = rest.strip_prefix("set") else {
            return false;
        };
        if !rest.starts_with(char::is_whitespace) {
            return false;
        }
        let rest = rest.trim_start();
        let name_end = rest
            .find(|character: char| !(character.is_alphanumeric() || character == '_'))
            .unwrap_or(rest.len());
        let after = rest[name_end..].trim_start();
        name_end > 0 && (after.starts_with("%}") || after.starts_with("-%}"))
    })
}

/// A Go-template variable assignment (`$x = …`, not `:=`, `==`, `!=`, `<=`, `>=`).
fn go_assigns(text: &str) -> bool {
    // One pass: whether a `$` came before, and the last byte that is not a blank.
    let bytes = text.as_bytes();
    let mut seen_dollar = false;
    let mut last_word_byte = false;
    for (index, byte) in bytes.iter().enumerate() {
        if *byte == b'=' && seen_dollar && last_word_byte && bytes.get(index + 1) != Some(&b'=') {
            return true;
        }
        if !byte.is_ascii_whitespace() {
            last_word_byte = byte.is_ascii_alphanumeric() || *byte == b'_' || *byte == b'$';
        }
        seen_dollar |= *byte == b'$';
    }
    false
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
    let limit = job.memory_limit(u64::try_from(input.len()).unwrap_or(u64::MAX));
    // stderr is drained on its own thread: a long error message must not fill its pipe while
    // this thread waits on stdout (both would wait for ever).
    let stderr = child.stderr.take();
    let errors = std::thread::spawn(move || {
        let mut errors = Vec::new();
        if let Some(stderr) = stderr {
            let _ = stderr.take(ERROR_LIMIT).read_to_end(&mut errors);
        }
        errors
    });
    // The child reads all of its input before it writes anything to stdout.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&input);
    }
    drop(input);
    let mut output = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        let _ = stdout
            .take(job.max_output.saturating_add(1))
            .read_to_end(&mut output);
    }
    let status = child
        .wait()
        .map_err(|error| format!("the isolated renderer: {error}"))?;
    let errors = errors.join().unwrap_or_default();
    let errors = String::from_utf8_lossy(&errors).trim().to_owned();
    if status.success() {
        return String::from_utf8(output)
            .map_err(|_| "the rendered output is not UTF-8".to_owned());
    }
    if status.code() == Some(2) && !errors.is_empty() {
        return Err(errors);
    }
    // Rust aborts (SIGABRT) with "memory allocation of N bytes failed" when the limit is hit.
    let out_of_memory = errors.contains("memory allocation of");
    if out_of_memory {
        return Err(format!(
            " rendering used more than {} MiB of memory and was stopped: {OUT_OF_MEMORY}",
            limit / (1024 * 1024)
        ));
    }
    Err(format!(
        " the isolated renderer stopped ({}){}",
        describe(status),
        if errors.is_empty() {
            String::new()
        } else {
            format!(": {errors}")
        }
    ))
}

/// How a child ended, for a message: its exit code or its signal (SIGKILL is also what the
/// kernel's out-of-memory killer sends).
fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(9)) => {
            "killed by signal 9, SIGKILL, perhaps by the system's out-of-memory killer".to_owned()
        }
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended without a status".to_owned(),
    }
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
    let limit = job.memory_limit(u64::try_from(input.len()).unwrap_or(u64::MAX));
    drop(input);
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
            "{% set x %}{% for i in range(end=9) %}a{% endfor %}{% endset %}"
        ));
        assert!(needs_isolation(
            Dialect::Tera,
            "{%- set  x -%}a{% endset %}"
        ));
        assert!(needs_isolation(
            Dialect::Tera,
            "{% filter upper %}a{% endfilter %}"
        ));
        assert!(!needs_isolation(Dialect::Tera, "{% set s = 1 %}{{ s }}"));
        // tera 2 has no macro tag: the word alone is no reason.
        assert!(!needs_isolation(Dialect::Tera, "{% set_x %}{{ macro }}"));
        assert!(needs_isolation(Dialect::Go, "{{ indent 4 .x }}"));
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
