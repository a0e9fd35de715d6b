//! Templates on real and hostile input: the dialect chosen alike by every
//! command, the context gathered only as far as the template needs it,
//! secrets masked when the context is shown, outputs that must be regular
//! files, and bounded nesting and output size.

use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use predicates::prelude::PredicateBooleanExt as _;
use predicates::str::contains;

use crate::common::{Repo, TestResult};

fn checkout() -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write("README.md", "Version: <repo-version>0.9.9</repo-version>\n")?;
    repo.commit("initial")?;
    Ok(repo)
}

/// A file of studio-go-runner in the reference checkouts beside the clone.
fn reference(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/studio-go-runner")
        .join(relative)
}

#[test]
fn build_renders_duat_dockerfiles_in_the_go_dialect() -> TestResult {
    let repo = checkout()?;
    let standalone = std::fs::read_to_string(reference("4f816e5c/Dockerfile_standalone"))?;
    assert!(standalone.contains("{{now}}"));
    repo.write("Dockerfile", &standalone)?;
    repo.commit("duat's Dockerfile")?;
    repo.sgr()
        .args(["build", "--dry-run", "-v", "--out-dir", "rendered"])
        .assert()
        .success()
        .stderr(contains("dialect go (line 67: a Go function called bare"));
    let rendered = String::from_utf8(repo.read("rendered/leafai_project-build.Dockerfile")?)?;
    assert!(!rendered.contains("{{"), "{rendered}");
    // Forcing tera, by flag or sgr.toml, gives tera's error back.
    repo.sgr()
        .args(["build", "--dry-run", "--dialect", "tera"])
        .assert()
        .code(2)
        .stderr(contains("Variable `now` is not defined"));
    repo.write("sgr.toml", "dialect = \"tera\"\n")?;
    repo.sgr()
        .args(["build", "--dry-run", "-v"])
        .assert()
        .code(2)
        .stderr(contains("dialect tera (sgr.toml's dialect)"));
    repo.sgr()
        .args(["build", "--dry-run", "--dialect", "go"])
        .assert()
        .success();
    Ok(())
}

#[test]
fn render_and_stencil_take_a_dialect() -> TestResult {
    let repo = checkout()?;
    repo.sgr()
        .args(["render", "-", "--dialect", "auto", "-v"])
        .write_stdin("{{ .duat.gitBranch | replace \"/\" \"-\" }}")
        .assert()
        .success()
        .stdout("feature-197_hybrid")
        .stderr(contains("dialect go (line 1: a Go field reference"));
    repo.sgr()
        .args(["stencil", "-", "--dialect", "auto"])
        .write_stdin("{{ git.branch | slug }}")
        .assert()
        .success()
        .stdout("feature-197-hybrid");
    repo.sgr()
        .args(["stencil", "-", "--dialect", "tera"])
        .write_stdin("{{ module }}-{{ git.branch | slug }}")
        .assert()
        .success()
        .stdout("project-feature-197-hybrid");
    Ok(())
}

#[test]
fn k8s_build_renders_duat_build_yaml_in_the_go_dialect() -> TestResult {
    let repo = checkout()?;
    repo.write(
        "build.yaml",
        concat!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: build-{{ expandenv \"$USER\" }}-{{ .duat.gitBranch | replace \"_\" \"-\" | replace \"/\" \"-\" }}\n",
            "---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: build\n  namespace: build-{{ expandenv \"$USER\" }}\n",
            "spec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: build\n        image: leafai/{{ .duat.module }}-standalone-build:{{ .duat.gitBranch | replace \"_\" \"-\" | replace \"/\" \"-\" }}\n",
        ),
    )?;
    repo.sgr()
        .args(["k8s-build", "--dry-run", "-v", "--no-github-token"])
        .env("USER", "kmutch")
        .assert()
        .success()
        .stdout(contains("build-kmutch-feature-197-hybrid"))
        .stderr(contains("dialect go"));
    Ok(())
}

#[test]
fn only_what_the_template_uses_is_gathered() -> TestResult {
    let repo = checkout()?;
    // An index git cannot read: the status scan behind git.dirty fails.
    repo.write(".git/index", "not an index")?;
    repo.sgr()
        .args(["stencil", "-", "--error-warnings"])
        .write_stdin("{{.duat.gitBranch}} {{.duat.version}}")
        .assert()
        .success()
        .stdout("feature/197_hybrid 0.9.9");
    repo.sgr()
        .args(["stencil", "-", "--error-warnings"])
        .write_stdin("{{.git.dirty}}")
        .assert()
        .code(2)
        .stderr(contains("the git variables are not set"));
    repo.sgr()
        .args(["render", "-", "--error-warnings"])
        .write_stdin("{% for key, value in git %}{{ key }} {% endfor %}")
        .assert()
        .code(2);
    Ok(())
}

#[test]
fn print_context_masks_secrets() -> TestResult {
    let repo = checkout()?;
    repo.sgr()
        .args(["stencil", "--print-context", "--set", "api_token=tk-1"])
        .write_stdin("")
        .env("AMQP_URL", "amqp://runner:s3cr3t-a@rabbit:5672/%2f")
        .env("DATABASE_URL", "postgres://app:s3cr3t-d@db/app")
        .env("HTTPS_PROXY", "http://me:s3cr3t-p@proxy:3128")
        .env("GH_PAT", "ghp_pat_value")
        .env("SIGNING_KEY", "key-value")
        .env("CLOUD_CREDENTIALS", "cred-value")
        .assert()
        .success()
        .stdout(
            contains("amqp://runner:***@rabbit:5672/%2f")
                .and(contains("postgres://app:***@db/app"))
                .and(contains("http://me:***@proxy:3128"))
                .and(contains("\"GH_PAT\": \"***\""))
                .and(contains("\"api_token\": \"***\""))
                .and(contains("s3cr3t").not())
                .and(contains("ghp_pat_value").not())
                .and(contains("key-value").not())
                .and(contains("cred-value").not())
                .and(contains("tk-1").not()),
        );
    Ok(())
}

#[test]
fn build_args_are_refused_by_the_same_names() -> TestResult {
    let repo = checkout()?;
    repo.write("Dockerfile", "FROM scratch\n")?;
    repo.commit("Dockerfile")?;
    for name in [
        "GH_PAT=x",
        "SIGNING_KEY=x",
        "CLOUD_CREDENTIALS=x",
        "GITHUB_TOKEN=x",
    ] {
        repo.sgr()
            .args(["build", "--dry-run", "--build-arg", name])
            .assert()
            .code(2)
            .stderr(contains("would store a secret"));
    }
    Ok(())
}

#[test]
fn outputs_must_be_regular_files() -> TestResult {
    let repo = checkout()?;
    repo.sgr()
        .args(["stencil", "-", "-o", "/dev/null"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(
            contains("/dev/null is a character device").and(contains("hint: use - for stdout")),
        );
    assert!(std::fs::metadata("/dev/null")?.file_type().is_char_device());
    let fifo = repo.file("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status()?;
    assert!(made.success());
    repo.sgr()
        .args(["render", "-", "-o"])
        .arg(&fifo)
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("is a FIFO"));
    assert!(std::fs::symlink_metadata(&fifo)?.file_type().is_fifo());
    // `-o -` is stdout; a symbolic link is followed, the link kept.
    repo.sgr()
        .args(["render", "-", "-o", "-"])
        .write_stdin("to stdout")
        .assert()
        .success()
        .stdout("to stdout");
    repo.write("target.txt", "old")?;
    std::os::unix::fs::symlink(repo.file("target.txt"), repo.file("link.txt"))?;
    repo.sgr()
        .args(["render", "-", "-o", "link.txt"])
        .write_stdin("new")
        .assert()
        .success();
    assert!(
        std::fs::symlink_metadata(repo.file("link.txt"))?
            .file_type()
            .is_symlink()
    );
    assert_eq!(repo.read("target.txt")?, b"new");
    Ok(())
}

#[test]
fn nesting_is_bounded() -> TestResult {
    let repo = checkout()?;
    repo.write("deep.yaml", format!("{}1\n", "- ".repeat(20_000)))?;
    repo.sgr()
        .args(["render", "-", "--values-file", "deep.yaml"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("deep.yaml"));
    repo.write(
        "deep.json",
        format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100)),
    )?;
    repo.sgr()
        .args(["render", "-", "--values-file", "deep.json"])
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(contains("101 levels deep; the limit is 64"));
    Ok(())
}

#[test]
fn rendered_size_is_bounded_in_both_dialects() -> TestResult {
    let repo = checkout()?;
    repo.write(
        "list.yaml",
        format!("items: [{}]\n", vec!["1"; 100].join(",")),
    )?;
    repo.sgr()
        .args([
            "stencil",
            "-",
            "--values-file",
            "list.yaml",
            "--max-output",
            "1KiB",
            "-o",
            "out",
        ])
        .write_stdin("{{ range .items }}{{ range $.items }}0123456789{{ end }}{{ end }}")
        .assert()
        .code(2)
        .stderr(contains("exceeds 1024 bytes (--max-output)"));
    assert!(!repo.file("out").exists());
    repo.sgr()
        .args([
            "render",
            "-",
            "--values-file",
            "list.yaml",
            "--max-output",
            "1KiB",
        ])
        .write_stdin("{% for a in items %}{% for b in items %}0123456789{% endfor %}{% endfor %}")
        .assert()
        .code(2)
        .stderr(contains("exceeds 1024 bytes (--max-output)"));
    repo.sgr()
        .args([
            "render",
            "-",
            "--values-file",
            "list.yaml",
            "--max-output",
            "2MiB",
        ])
        .write_stdin("{% for a in items %}{% for b in items %}0123456789{% endfor %}{% endfor %}")
        .assert()
        .success();
    // A variable doubled in a loop is stopped when it passes the limit, not when memory runs out.
    repo.write("forty.yaml", format!("l: [{}]\n", vec!["1"; 40].join(",")))?;
    repo.sgr()
        .args(["stencil", "-", "--values-file", "forty.yaml", "--max-output", "1MiB"])
        .write_stdin("{{ $s := \"0123456789\" }}{{ range .l }}{{ $s = printf \"%s%s\" $s $s }}{{ end }}{{ len $s }}")
        .assert()
        .code(2)
        .stderr(contains("exceeds 1048576 bytes (--max-output)"));
    Ok(())
}
