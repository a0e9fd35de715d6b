//! `sgr render` (tera 2) from the command line.

use predicates::prelude::*;
use predicates::str::contains;

use crate::common::{Repo, TestResult};

fn checkout() -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write(
        "README.md",
        "Version: <repo-version>v0.9.9-rc.1+meta</repo-version>\n",
    )?;
    repo.commit("initial")?;
    Ok(repo)
}

#[test]
fn renders_the_context_and_filters() -> TestResult {
    let repo = checkout()?;
    repo.sgr()
        .args(["render", "-", "--set", "image.tag=1.0"])
        .env("SGR_RENDER_VALUE", "$HOME-less")
        .write_stdin(
            "{{ git.branch }} {{ git.branch | slug }} {{ git.branch | slug(kind=\"tag\") }} {{ version.full }} {{ version.original }} {{ version.pre }} {{ version.build }} {{ image.tag }} {{ env(name=\"SGR_RENDER_VALUE\") }} {{ \"x${SGR_RENDER_VALUE}\" | expandenv }} {{ git.branch | quote }}",
        )
        .assert()
        .success()
        .stdout("feature/197_hybrid feature-197-hybrid feature-197-hybrid 0.9.9-rc.1+meta v0.9.9-rc.1+meta rc.1 meta 1.0 $HOME-less x$HOME-less \"feature/197_hybrid\"");
    Ok(())
}

#[test]
fn undefined_variables_are_errors_unless_allowed() -> TestResult {
    let repo = checkout()?;
    repo.write("t.yaml", "a: 1\nb: {{ nope }}\n")?;
    repo.sgr()
        .args(["render", "t.yaml", "-o", "out.yaml"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(contains(
            "error: t.yaml:2:7: Variable `nope` is not defined",
        ));
    assert!(!repo.file("out.yaml").exists());
    repo.sgr()
        .args(["render", "t.yaml", "--allow-missing", "-o", "out.yaml"])
        .assert()
        .success();
    assert_eq!(repo.read("out.yaml")?, b"a: 1\nb: \n");
    repo.write("bad.yaml", "{% if %}")?;
    repo.sgr()
        .args(["render", "bad.yaml"])
        .assert()
        .code(2)
        .stderr(contains("bad.yaml:1:"));
    Ok(())
}

/// A value that doubles in a loop never reaches the output limit: it would exhaust memory and
/// abort. It renders in a child with a memory limit, and fails with exit 2 and a hint,
/// nothing written; the same construct used sanely still renders.
#[test]
fn a_value_growing_without_bound_is_stopped_with_a_clear_error() -> TestResult {
    let repo = checkout()?;
    repo.write(
        "grow.tera",
        "{% set_global s = \"xxxxxxxxxxxxxxxx\" %}{% for i in range(end=48) %}{% set_global s = s ~ s %}{% endfor %}{{ s | length }}\n",
    )?;
    repo.sgr()
        .args(["render", "grow.tera", "-o", "out.txt"])
        .assert()
        .code(2)
        .stderr(
            contains("grow.tera: rendering used more than 1536 MiB of memory")
                .and(contains("grew without bound"))
                .and(contains("hint: the limit is four times --max-output")),
        );
    assert!(!repo.file("out.txt").exists());
    repo.write(
        "small.tera",
        "{% set_global s = \"ab\" %}{% for i in range(end=3) %}{% set_global s = s ~ s %}{% endfor %}{{ s }}\n",
    )?;
    repo.sgr()
        .args(["render", "small.tera"])
        .assert()
        .success()
        .stdout("abababababababab\n");
    Ok(())
}

/// An isolated render whose error message is longer than a pipe holds still ends: the child's
/// stderr is drained while its stdout is read.
#[test]
fn a_long_error_of_an_isolated_render_is_reported() -> TestResult {
    let repo = checkout()?;
    repo.write(
        "long.tera",
        format!(
            "{{# set_global #}}{}{{{{ x | nosuchfilter }}}}\n",
            "x".repeat(200_000)
        ),
    )?;
    repo.sgr()
        .args(["render", "long.tera"])
        .timeout(std::time::Duration::from_mins(1))
        .assert()
        .code(2)
        .stderr(contains("long.tera:").and(contains("nosuchfilter")));
    Ok(())
}
