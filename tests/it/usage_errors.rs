//! The input and usage errors that need nothing but a checkout: each is
//! exit 2 with its reason on stderr, so they are one table, where a new
//! case is one line and no case can drift from the others' checks.

use predicates::str::contains;

use crate::common::{TestResult, studio_checkout};

/// One invocation that must be refused.
struct Case {
    args: Vec<String>,
    /// What to write to stdin (`-` reads it), if anything.
    stdin: Option<&'static str>,
    /// Variables to set (`Some`) or remove (`None`).
    environment: &'static [(&'static str, Option<&'static str>)],
    /// Every one of these must be on stderr.
    stderr: &'static [&'static str],
}

fn case(
    args: &[&str],
    stdin: Option<&'static str>,
    environment: &'static [(&'static str, Option<&'static str>)],
    stderr: &'static [&'static str],
) -> Case {
    Case {
        args: args.iter().map(|&arg| arg.to_owned()).collect(),
        stdin,
        environment,
        stderr,
    }
}

#[test]
fn usage_and_input_errors_exit_2_with_their_reason() -> TestResult {
    let repo = studio_checkout()?;
    let deep_key = format!("--set={}=1", vec!["a"; 20_000].join("."));
    let cases = [
        // render
        case(
            &["render", "-"],
            Some("{{ env(name=\"SGR_SURELY_UNSET\") }}"),
            &[],
            &["environment variable SGR_SURELY_UNSET is not set"],
        ),
        case(
            &["render", "-", "--max-output", "lots"],
            Some("x"),
            &[],
            &[],
        ),
        // stencil
        case(
            &["stencil", "missing.tmpl"],
            None,
            &[],
            &["cannot read the template missing.tmpl"],
        ),
        case(
            &["stencil", "-values", "Namespace", "-"],
            Some("x"),
            &[],
            &["'Namespace' has no '='"],
        ),
        case(
            &["stencil", "--strict", "-"],
            Some("{{ .duat.version }}\n{{ .Namespace }}"),
            &[],
            &["<stdin>:2:4: undefined variable: . has no entry for key \"Namespace\""],
        ),
        case(
            &["stencil", "-", &deep_key],
            Some("x"),
            &[],
            &["20000 levels deep; the limit is 64"],
        ),
        // semver
        case(
            &[
                "semver",
                "stamp",
                "--decode",
                "aaaagipajnl",
                "--encoding",
                "base25",
            ],
            None,
            &[],
            &["'l', which is not a base25 digit"],
        ),
        case(
            &["semver", "stamp"],
            None,
            &[("SOURCE_DATE_EPOCH", Some("yesterday"))],
            &["SOURCE_DATE_EPOCH is 'yesterday'"],
        ),
        // runner
        case(
            &["runner", "status"],
            None,
            &[
                ("KUBECONFIG", Some("/nonexistent/kubeconfig")),
                ("HOME", Some("/nonexistent")),
                ("KUBERNETES_SERVICE_HOST", None),
            ],
            &["no Kubernetes cluster configured", "hint: check KUBECONFIG"],
        ),
    ];
    for case in &cases {
        let mut command = repo.sgr();
        command.args(&case.args);
        for (name, value) in case.environment {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        if let Some(stdin) = case.stdin {
            command.write_stdin(stdin);
        }
        let refused = command.assert().code(2);
        case.stderr.iter().fold(refused, |refused, fragment| {
            refused.stderr(contains(*fragment))
        });
    }
    Ok(())
}
