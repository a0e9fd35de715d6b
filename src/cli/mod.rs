//! Command-line types (clap derive) and nothing else: commands turn these
//! into settings and call the library.

pub mod semver;

use std::ffi::OsString;

use clap::{Args, Parser, Subcommand};

use crate::env;
use crate::output::{ColorChoice, OutputFormat};

/// Build, render, push and release GPU/ML images.
///
/// sgr replaces studio-go-runner's build.sh and duat's semver, stencil,
/// github-release and image-release with one program.
///
/// Exit codes: 0 success; 1 the operation failed; 2 usage, configuration or
/// input error (nothing was changed); 130 interrupted.
#[derive(Debug, Parser)]
#[command(name = "sgr", version, about, long_about, max_term_width = 100)]
pub struct Cli {
    /// Flags every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes, before or after the command name.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Print nothing but results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail on stderr (repeat for diagnostics logs).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Format of the results on stdout.
    #[arg(long, global = true, value_enum, default_value_t, env = env::OUTPUT, value_name = "FORMAT")]
    pub output: OutputFormat,
    /// Print what would be changed and change nothing.
    #[arg(long, global = true)]
    pub dry_run: bool,
    /// Colour of messages on stderr (`NO_COLOR` is honoured with `auto`).
    #[arg(long, global = true, value_enum, default_value_t, env = env::COLOR, value_name = "WHEN")]
    pub color: ColorChoice,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read, bump and propagate the version kept in README.md
    #[command(long_about = semver::LONG_ABOUT, after_long_help = semver::EXAMPLES)]
    Semver(semver::SemverArgs),
}

/// Rewrite duat's single-dash long flags (`-git DIR`, `-rc`) into clap's
/// spelling, so scripts written for duat keep working. Only arguments after
/// the `semver` command are touched, and only exact flag spellings.
#[must_use]
pub fn normalise_duat_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut in_semver = false;
    args.into_iter()
        .map(|argument| {
            if !in_semver {
                in_semver = argument == "semver";
                return argument;
            }
            match argument.to_str() {
                Some("-git") => OsString::from("--git"),
                Some("-rc") => OsString::from("--rc"),
                Some(text) if text.starts_with("-git=") => OsString::from(format!("-{text}")),
                _ => argument,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn duat_flags_are_rewritten_after_semver_only() {
        let args = [
            "sgr", "-git", "semver", "-git", "x", "-git=y", "-rc", "sort", "--git",
        ]
        .map(OsString::from);
        let expected = [
            "sgr", "-git", "semver", "--git", "x", "--git=y", "--rc", "sort", "--git",
        ]
        .map(OsString::from);
        assert_eq!(normalise_duat_flags(args), expected.to_vec());
    }
}
