//! `sgr runner`: steer and watch the GPU runners deployed on Kubernetes.

use clap::{Args, Subcommand};
use runner_protocol::State;

/// Long help.
pub const LONG_ABOUT: &str = "\
Steer and watch the GPU runners deployed on Kubernetes (templates/runner-deployment.yaml).

Runners take their state from two config maps of their namespace: the global
`studioml-go-runner` and one named after their node; the node's keys win. `sgr runner state`
sets STATE in one of them (server-side apply: nothing else in the map changes):

  Running            take work
  DrainAndSuspend    take nothing new, finish what runs, stay up (idle)
  DrainAndTerminate  take nothing new, finish what runs, then exit 0

Runners see a change within about a second. `sgr runner status` lists what each runner reported
(its state, since when, its running experiments); an entry not refreshed for 2 minutes is
marked stale (a runner that died or lost the API server).

The cluster comes from KUBECONFIG, ~/.kube/config or the in-cluster service account;
--namespace defaults to the context's namespace.";

/// Examples shown after `--help`.
pub const EXAMPLES: &str = "\
Examples:
  sgr runner state DrainAndSuspend                # every runner: finish and idle
  sgr runner state --node gpu-node-3 DrainAndTerminate
  sgr runner state --node gpu-node-3 --clear      # the node follows the global state again
  sgr runner status --namespace studioml
  sgr runner status --output json";

/// `sgr runner` flags.
#[derive(Debug, Args)]
pub struct RunnerArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: RunnerCommand,
    /// The runners' namespace (default: the kubeconfig context's).
    #[arg(long, global = true, value_name = "NAMESPACE")]
    pub namespace: Option<String>,
    /// The kubeconfig context.
    #[arg(long, global = true, value_name = "CONTEXT")]
    pub context: Option<String>,
}

/// `sgr runner` subcommands.
#[derive(Debug, Subcommand)]
pub enum RunnerCommand {
    /// Set the state of every runner, or of one node's runners
    State {
        /// The state.
        #[arg(value_enum, required_unless_present = "clear")]
        state: Option<State>,
        /// Set it in this node's map instead of the global one.
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Remove STATE from the node's map, so the global state applies.
        #[arg(long, requires = "node", conflicts_with = "state")]
        clear: bool,
    },
    /// List the state each runner reported
    Status,
}

#[cfg(test)]
mod tests {
    use runner_protocol::{GLOBAL_MAP, STALE_AFTER};

    use super::LONG_ABOUT;

    #[test]
    fn the_help_names_the_protocols_map_and_staleness() {
        assert!(
            LONG_ABOUT.contains(&format!("`{GLOBAL_MAP}`")),
            "{LONG_ABOUT}"
        );
        assert!(
            LONG_ABOUT.contains(&format!(
                "not refreshed for {} minutes",
                STALE_AFTER.as_secs() / 60
            )),
            "{LONG_ABOUT}"
        );
    }
}
