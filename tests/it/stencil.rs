//! `sgr stencil`: differential tests against Go's text/template with sprig
//! (the reference program built by scripts/test.sh), and every bad input.

use std::path::{Path, PathBuf};
use std::process::Command;

use predicates::prelude::*;
use predicates::str::contains;
use sgr_test_support::{Service, service};

use crate::common::{Repo, TestResult, sgr_command, studio_checkout};

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stencil")
}

/// A repository like studio-go-runner's, tagged with its version.
fn checkout() -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = studio_checkout()?;
    repo.git(&["tag", "0.9.9"])?;
    Ok(repo)
}

/// sgr stencil in `repo` with the corpus values and a fixed environment.
fn stencil(repo: &Repo) -> assert_cmd::Command {
    let mut command = repo.sgr();
    command
        .arg("stencil")
        .arg("--suppress-warnings")
        .arg("--values-file")
        .arg(corpus().join("values.yaml"))
        .env("SGR_DIFF_VALUE", "value-1")
        .env("SGR_DIFF_GPUS", "1")
        .env("GITHUB_TOKEN", "ghp_example")
        .env("RUNNER_BUILD_LOG", "build-feature.log")
        .env("USER", "kmutch")
        .env_remove("SGR_DIFF_UNSET")
        .env_remove("NVIDIA_VISIBLE_DEVICES");
    command
}

#[test]
fn the_corpus_renders_byte_for_byte_as_go() -> TestResult {
    let Some(reference) = service(Service::StencilReference) else {
        return Ok(());
    };
    let repo = checkout()?;
    let context = stencil(&repo)
        .arg("--print-context")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let context_file = repo.file("context.json");
    std::fs::write(&context_file, &context)?;
    let mut templates: Vec<PathBuf> = std::fs::read_dir(corpus())?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    templates.retain(|path| {
        path.extension()
            .is_some_and(|extension| extension == "tmpl")
    });
    templates.sort();
    assert!(templates.len() >= 8, "the corpus is missing: {templates:?}");
    for template in templates {
        // The context for this template (duat.awsecr is only looked up when a template mentions it).
        let context = stencil(&repo)
            .arg("--print-context")
            .arg(&template)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        std::fs::write(&context_file, &context)?;
        let ours = stencil(&repo).arg(&template).output()?;
        let mut go = Command::new(&reference);
        go.arg(&template)
            .arg(&context_file)
            .current_dir(repo.path())
            .env("SGR_DIFF_VALUE", "value-1")
            .env("SGR_DIFF_GPUS", "1")
            .env("GITHUB_TOKEN", "ghp_example")
            .env("RUNNER_BUILD_LOG", "build-feature.log")
            .env("USER", "kmutch")
            .env_remove("SGR_DIFF_UNSET")
            .env_remove("NVIDIA_VISIBLE_DEVICES");
        let theirs = go.output()?;
        let name = template.display();
        let expect_failure = template.to_string_lossy().ends_with(".fail.tmpl");
        assert_eq!(
            theirs.status.success(),
            !expect_failure,
            "{name}: Go: {}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        assert_eq!(
            ours.status.success(),
            theirs.status.success(),
            "{name}: sgr: {}",
            String::from_utf8_lossy(&ours.stderr)
        );
        if expect_failure {
            assert_eq!(ours.status.code(), Some(2), "{name}");
            assert!(
                ours.stdout.is_empty(),
                "{name}: a failed render prints nothing"
            );
        } else {
            assert!(!theirs.stdout.is_empty(), "{name}: Go printed nothing");
            assert_eq!(
                String::from_utf8_lossy(&ours.stdout),
                String::from_utf8_lossy(&theirs.stdout),
                "{name}: sgr and Go differ"
            );
            assert_eq!(ours.stdout, theirs.stdout, "{name}: bytes differ");
        }
    }
    Ok(())
}

#[test]
fn duat_variables_from_the_checkout() -> TestResult {
    let repo = checkout()?;
    let head = repo.git(&["rev-parse", "HEAD"])?;
    let template = "{{.duat.version}}|{{.duat.gitBranch}}|{{.duat.gitTag}}|{{.duat.gitHash}}|{{.duat.gitURL}}|{{.git.branch_slug}}|{{.git.owner}}/{{.git.repository}}|{{.version.major}}.{{.version.minor}}|{{.duat.userName}}";
    let expected = format!(
        "0.9.9|feature/197_hybrid|0.9.9|{head}|git@github.com:leaf-ai/studio-go-runner.git|feature-197-hybrid|leaf-ai/studio-go-runner|0.9|"
    );
    let output = repo
        .sgr()
        .args(["stencil", "-"])
        .write_stdin(template)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let output = String::from_utf8(output)?;
    assert!(output.starts_with(&expected), "{output}");
    let module = repo
        .path()
        .file_name()
        .map(|name| name.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    repo.sgr()
        .args(["stencil", "-"])
        .write_stdin("{{.duat.module}}")
        .assert()
        .success()
        .stdout(module);
    repo.write("sub dir/My Module/x", "")?;
    repo.sgr()
        .args(["stencil", "-module", "sub dir/My Module", "-"])
        .write_stdin("{{.duat.module}} {{.module}}")
        .assert()
        .success()
        .stdout("my-module my-module");
    Ok(())
}

#[test]
fn values_set_and_values_files() -> TestResult {
    let repo = checkout()?;
    repo.write(
        "values.json",
        r#"{"image": {"tag": "from-json", "name": "runner"}, "Namespace": "json"}"#,
    )?;
    repo.sgr()
        .args([
            "stencil",
            "--values-file",
            "values.json",
            "-values",
            "Namespace=ci,Quoted='a b'",
            "--set",
            "image.tag=2.0",
            "-",
        ])
        .write_stdin("{{.Namespace}} {{.Quoted}} {{.image.name}}:{{.image.tag}}")
        .assert()
        .success()
        .stdout("ci a b runner:2.0");
    repo.write("list.yaml", "- not\n- a mapping\n")?;
    repo.sgr()
        .args(["stencil", "--values-file", "list.yaml", "-"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains(
            "values file list.yaml: the document is not a mapping",
        ));
    Ok(())
}

#[test]
fn output_file_is_written_atomically_and_only_on_success() -> TestResult {
    let repo = checkout()?;
    repo.write("good.tmpl", "v={{.duat.version}}\n")?;
    repo.write("bad.tmpl", "v={{.duat.version\n")?;
    repo.sgr()
        .args(["stencil", "-input", "good.tmpl", "-output", "out.txt"])
        .assert()
        .success()
        .stdout("");
    assert_eq!(repo.read("out.txt")?, b"v=0.9.9\n");
    repo.sgr()
        .args(["stencil", "-input", "bad.tmpl", "-output", "out.txt"])
        .assert()
        .code(2)
        .stderr(contains("bad.tmpl:1:3: unclosed action"));
    assert_eq!(repo.read("out.txt")?, b"v=0.9.9\n");
    repo.sgr()
        .args(["stencil", "bad.tmpl", "-o", "new.txt"])
        .assert()
        .code(2);
    assert!(!repo.file("new.txt").exists());
    repo.sgr()
        .args(["stencil", "good.tmpl", "-o", "dry.txt", "--dry-run"])
        .assert()
        .success()
        .stderr(contains("would write 8 bytes to dry.txt"));
    assert!(!repo.file("dry.txt").exists());
    Ok(())
}

#[test]
fn bad_input_is_named_with_line_and_column() -> TestResult {
    let repo = checkout()?;
    for (template, message) in [
        ("a\n  {{ .x ", "t.tmpl:2:3: unclosed action"),
        (
            "{{ nosuch . }}",
            "t.tmpl:1:4: function \"nosuch\" not defined",
        ),
        (
            "x\n{{ .missing | replace \"a\" \"b\" }}",
            "t.tmpl:2:15: error calling replace: invalid value; expected string",
        ),
        ("{{ if . }}", "t.tmpl:1:7: unexpected EOF"),
        ("{{ RaiseError \"refused\" }}", "t.tmpl:1:4: refused"),
    ] {
        repo.write("t.tmpl", template)?;
        repo.sgr()
            .args(["stencil", "t.tmpl"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains(format!("error: {message}")));
    }
    Ok(())
}

#[test]
fn warnings_and_error_warnings() -> TestResult {
    let directory = tempfile::tempdir()?;
    sgr_command()
        .current_dir(directory.path())
        .env(
            "GIT_CEILING_DIRECTORIES",
            directory.path().parent().unwrap_or(directory.path()),
        )
        .args(["stencil", "-"])
        .write_stdin("[{{.duat.gitBranch}}]")
        .assert()
        .success()
        .stdout("[<no value>]")
        .stderr(contains("warning: ").and(contains("not inside a git repository")));
    sgr_command()
        .current_dir(directory.path())
        .env(
            "GIT_CEILING_DIRECTORIES",
            directory.path().parent().unwrap_or(directory.path()),
        )
        .args(["stencil", "-supress-warnings", "-"])
        .write_stdin("x")
        .assert()
        .success()
        .stderr("");
    sgr_command()
        .current_dir(directory.path())
        .env(
            "GIT_CEILING_DIRECTORIES",
            directory.path().parent().unwrap_or(directory.path()),
        )
        .args(["stencil", "-error-warnings", "-o", "out", "-"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("--error-warnings"));
    assert!(!directory.path().join("out").exists());
    let repo = checkout()?;
    repo.sgr()
        .args(["stencil", "-error-warnings", "-"])
        .write_stdin("{{.duat.version}}")
        .assert()
        .success()
        .stdout("0.9.9");
    Ok(())
}

#[test]
fn print_context_masks_secrets() -> TestResult {
    let repo = checkout()?;
    let output = repo
        .sgr()
        .args(["stencil", "--print-context"])
        .env("GITHUB_TOKEN", "ghp_supersecret")
        .env("SGR_DIFF_VALUE", "shown")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let text = String::from_utf8(output)?;
    assert!(!text.contains("ghp_supersecret"), "{text}");
    let context: serde_json::Value = serde_json::from_str(&text)?;
    assert_eq!(context["Env"]["GITHUB_TOKEN"], "***");
    assert_eq!(context["Env"]["SGR_DIFF_VALUE"], "shown");
    assert_eq!(context["duat"]["version"], "0.9.9");
    assert_eq!(context["git"]["branch_slug"], "feature-197-hybrid");
    Ok(())
}

#[test]
fn awsecr_comes_from_sts_only_when_used() -> TestResult {
    let Some(endpoint) = service(Service::Aws) else {
        return Ok(());
    };
    let repo = checkout()?;
    repo.sgr()
        .args(["stencil", "-error-warnings", "-"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .env("AWS_REGION", "eu-west-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .write_stdin("{{.duat.awsecr}}")
        .assert()
        .success()
        .stdout("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
    // Not mentioned: no lookup, so an unreachable endpoint does not matter.
    repo.sgr()
        .args(["stencil", "-error-warnings", "-"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_REGION", "eu-west-1")
        .write_stdin("{{.duat.version}}")
        .assert()
        .success()
        .stdout("0.9.9");
    Ok(())
}
