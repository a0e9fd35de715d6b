//! Integration tests of the `sgr` package: the CLI (`assert_cmd`), the git
//! adapter against real repositories, and the local services that
//! scripts/test.sh starts.

mod build;
mod common;
mod git;
mod k8s_build;
mod pipeline;
mod push;
mod release;
mod render;
mod runner;
mod semver;
mod services;
mod stencil;
mod stencil_printf;
mod template_input;
mod templates;
mod test_script;
mod transfer;
mod usage_errors;
