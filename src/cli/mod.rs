//! Command-line types (clap derive) and nothing else: commands turn these
//! into settings and call the library.

pub mod build;
pub mod k8s_build;
pub mod push;
pub mod release;
pub mod render;
pub mod runner;
pub mod semver;
pub mod shared;
pub mod stencil;
pub mod template;

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
/// input error (nothing was changed); 124 a --timeout expired; 130
/// interrupted. `sgr k8s-build` exits with the build container's code when
/// the build fails.
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
    /// Render the Dockerfile templates and build the images
    #[command(long_about = build::LONG_ABOUT, after_long_help = build::EXAMPLES)]
    Build(build::BuildArgs),
    /// Push the built images to ACR, ECR and other registries
    #[command(long_about = push::LONG_ABOUT, after_long_help = push::EXAMPLES)]
    Push(push::PushArgs),
    /// Publish the version as a GitHub release with assets and checksums
    #[command(long_about = release::LONG_ABOUT, after_long_help = release::EXAMPLES)]
    Release(release::ReleaseArgs),
    /// Run the GPU build Job on Kubernetes, follow its logs, return its result
    #[command(name = "k8s-build", long_about = k8s_build::LONG_ABOUT, after_long_help = k8s_build::EXAMPLES)]
    K8sBuild(k8s_build::K8sBuildArgs),
    /// Set and list the state of the GPU runners on Kubernetes
    #[command(long_about = runner::LONG_ABOUT, after_long_help = runner::EXAMPLES)]
    Runner(runner::RunnerArgs),
    /// Render a tera template with git, version and user variables
    #[command(long_about = render::LONG_ABOUT, after_long_help = render::EXAMPLES)]
    Render(render::RenderArgs),
    /// Render a template in duat's Go-template dialect
    #[command(long_about = stencil::LONG_ABOUT, after_long_help = stencil::EXAMPLES)]
    Stencil(stencil::StencilArgs),
}

/// duat's single-dash long flags per command, and the clap spelling each becomes.
const DUAT_FLAGS: &[(&str, &str, &str)] = &[
    ("semver", "-git", "--git"),
    ("semver", "-rc", "--rc"),
    ("stencil", "-input", "--input"),
    ("stencil", "-output", "--out"),
    ("stencil", "-values", "--values"),
    ("stencil", "-module", "--module"),
    ("stencil", "-supress-warnings", "--suppress-warnings"),
    ("stencil", "-suppress-warnings", "--suppress-warnings"),
    ("stencil", "-error-warnings", "--error-warnings"),
];

/// Rewrite duat's single-dash long flags (`-git DIR`, `-rc`, `-input F`,
/// `-values k=v`) into clap's spelling, so scripts written for duat keep
/// working. Only arguments after the command name are touched, and only
/// exact flag spellings (`-flag` or `-flag=value`).
#[must_use]
pub fn normalise_duat_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut command: Option<String> = None;
    args.into_iter()
        .map(|argument| {
            let Some(current) = &command else {
                if let Some(text) = argument
                    .to_str()
                    .filter(|text| DUAT_FLAGS.iter().any(|(name, _, _)| name == text))
                {
                    command = Some(text.to_owned());
                }
                return argument;
            };
            let Some(text) = argument.to_str() else {
                return argument;
            };
            let (flag, value) = text
                .split_once('=')
                .map_or((text, None), |(flag, value)| (flag, Some(value)));
            match DUAT_FLAGS
                .iter()
                .find(|(name, duat, _)| name == current && *duat == flag)
            {
                Some((_, _, replacement)) => match value {
                    Some(value) => OsString::from(format!("{replacement}={value}")),
                    None => OsString::from(*replacement),
                },
                None => argument,
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
    fn duat_flags_are_rewritten_after_their_command_only() {
        let args = [
            "sgr", "-git", "semver", "-git", "x", "-git=y", "-rc", "sort", "--git", "-input",
        ]
        .map(OsString::from);
        let expected = [
            "sgr", "-git", "semver", "--git", "x", "--git=y", "--rc", "sort", "--git", "-input",
        ]
        .map(OsString::from);
        assert_eq!(normalise_duat_flags(args), expected.to_vec());
        let args = [
            "sgr",
            "stencil",
            "-input",
            "a",
            "-output=b",
            "-values",
            "k=v",
            "-supress-warnings",
            "-git",
        ]
        .map(OsString::from);
        let expected = [
            "sgr",
            "stencil",
            "--input",
            "a",
            "--out=b",
            "--values",
            "k=v",
            "--suppress-warnings",
            "-git",
        ]
        .map(OsString::from);
        assert_eq!(normalise_duat_flags(args), expected.to_vec());
    }
}
