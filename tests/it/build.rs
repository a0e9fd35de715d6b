//! `sgr build` against the real dockerd that scripts/test.sh starts: fixtures
//! are `FROM scratch` with Debian's static busybox, since no base image can
//! be pulled. Checks that need no engine run everywhere.

use std::path::Path;

use predicates::prelude::*;
use predicates::str::contains;
use sgr_test_support::{Service, runtime, service};

use crate::common::{Repo, TestResult};

/// A project whose Dockerfile checks, inside the build, that `.dockerignore` was honoured.
fn project(busybox: &Path) -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write("README.md", "Version: <repo-version>0.9.9</repo-version>\n")?;
    std::fs::create_dir_all(repo.file("bin"))?;
    std::fs::copy(busybox, repo.file("bin/busybox"))?;
    repo.write(
        "Dockerfile",
        concat!(
            "FROM scratch\n",
            "COPY bin/busybox /bin/busybox\n",
            "COPY . /ctx\n",
            "ARG MODE\n",
            "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"",
            "/bin/busybox test -f /ctx/keep/important.log && ! /bin/busybox test -e /ctx/debug.log && ",
            "! /bin/busybox test -e /ctx/deep/er/x.tmp && ! /bin/busybox test -e /ctx/.git && ",
            "/bin/busybox test $(/bin/busybox ls /ctx/many | /bin/busybox wc -l) -eq 3000 && ",
            "/bin/busybox test \\\"$MODE\\\" = release\"]\n",
            "LABEL dev.test.branch={{ git.branch | quote }}\n",
        ),
    )?;
    repo.write(".dockerignore", "*.log\n!keep/*.log\n**/*.tmp\n")?;
    repo.write("debug.log", "x")?;
    repo.write("keep/important.log", "x")?;
    repo.write("deep/er/x.tmp", "x")?;
    for index in 0..3000 {
        repo.write(&format!("many/{index:04}.txt"), format!("{index}"))?;
    }
    repo.write(
        "sgr.toml",
        concat!(
            "org = \"sgrtest\"\n",
            "[[image]]\nname = \"{org}/{module}-a\"\ndockerfile = \"Dockerfile\"\ntags = [\"{branch}\", \"{version}\"]\n[image.build_args]\nMODE = \"release\"\n",
            "[[image]]\nname = \"{org}/{module}-b\"\ndockerfile = \"Dockerfile\"\n[image.build_args]\nMODE = \"release\"\n",
        ),
    )?;
    repo.commit("fixture")?;
    Ok(repo)
}

fn module(repo: &Repo) -> String {
    sgr::template::context::scrub_module(
        &repo
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

#[test]
fn builds_several_images_concurrently_with_labels_and_tags() -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let repo = project(Path::new(&busybox))?;
    let module = module(&repo);
    let output = repo
        .sgr()
        .args(["build", "--jobs", "2", "--output", "json"])
        .env("DOCKER_HOST", &host)
        .env("GITHUB_TOKEN", "ghp_never_in_history")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(rows.as_array().map(Vec::len), Some(2), "{rows}");
    assert_eq!(rows[0]["result"], "built");
    assert_eq!(
        rows[0]["context_files"].as_u64().map(|files| files >= 3000),
        Some(true)
    );
    let first = format!("sgrtest/{module}-a");
    runtime()?.block_on(async {
        let docker = bollard::Docker::connect_with_host(&host)?
            .negotiate_version()
            .await?;
        for tag in [
            format!("{first}:feature-197-hybrid"),
            format!("{first}:0.9.9"),
            format!("sgrtest/{module}-b:feature-197-hybrid"),
        ] {
            let image = docker.inspect_image(&tag).await?;
            let labels = image
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default();
            assert_eq!(
                labels.get("dev.test.branch").map(String::as_str),
                Some("feature/197_hybrid"),
                "{tag}"
            );
            assert_eq!(
                labels
                    .get("org.opencontainers.image.version")
                    .map(String::as_str),
                Some("0.9.9"),
                "{tag}"
            );
            assert!(
                labels
                    .get("org.opencontainers.image.revision")
                    .is_some_and(|revision| revision.len() == 40),
                "{tag}"
            );
            let history = docker.image_history(&tag).await?;
            let text = format!("{history:?}");
            assert!(
                !text.contains("ghp_never_in_history"),
                "{tag}: a secret is in the history"
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}

#[test]
fn a_failing_run_step_fails_the_build_with_its_output() -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    std::fs::create_dir_all(repo.file("bin"))?;
    std::fs::copy(&busybox, repo.file("bin/busybox"))?;
    repo.write(
        "Dockerfile",
        "FROM scratch\nCOPY bin/busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about-to-fail; exit 3\"]\n",
    )?;
    repo.commit("fixture")?;
    repo.sgr()
        .args(["build"])
        .env("DOCKER_HOST", &host)
        .assert()
        .code(1)
        .stderr(contains("failed").and(contains("about-to-fail")))
        .stdout(contains("failed"));
    repo.write("Dockerfile", "FROM scratch\nCOPY missing-file /x\n")?;
    repo.sgr()
        .args(["build"])
        .env("DOCKER_HOST", &host)
        .assert()
        .code(1)
        .stderr(contains("missing-file"));
    Ok(())
}

#[test]
fn dry_run_plans_without_an_engine() -> TestResult {
    let repo = Repo::new("feature/x_y")?;
    repo.write("README.md", "Version: <repo-version>0.9.9</repo-version>\n")?;
    repo.write("Dockerfile", "FROM scratch\nLABEL v={{ version.full }}\n")?;
    repo.write(
        "Dockerfile_standalone",
        "FROM scratch\nLABEL b={{.duat.gitBranch}}\n",
    )?;
    repo.write("runner/Dockerfile", "FROM scratch\n")?;
    repo.commit("fixture")?;
    let module = module(&repo);
    let out = repo.file("rendered");
    repo.sgr()
        .args(["build", "--dry-run", "--out-dir"])
        .arg(&out)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .success()
        .stdout(
            contains(format!("leafai/{module}-build:feature-x-y"))
                .and(contains(format!(
                    "leafai/{module}-standalone-build:feature-x-y"
                )))
                .and(contains(format!("leafai/{module}/runner:0.9.9")))
                .and(contains("USER_ID=")),
        );
    assert_eq!(
        std::fs::read_to_string(out.join(format!("leafai_{module}-build.Dockerfile")))?,
        "FROM scratch\nLABEL v=0.9.9\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.join(format!("leafai_{module}-standalone-build.Dockerfile")))?,
        "FROM scratch\nLABEL b=feature/x_y\n"
    );
    Ok(())
}

#[test]
fn bad_input_and_unreachable_engine_exit_2() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    repo.sgr()
        .args(["build"])
        .assert()
        .code(2)
        .stderr(contains("nothing to build"));
    repo.write("Dockerfile", "FROM scratch\n")?;
    repo.sgr()
        .args(["build"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .code(2)
        .stderr(
            contains("cannot reach the Docker engine at unix:///nonexistent/docker.sock")
                .and(contains("hint:").and(contains("DOCKER_HOST"))),
        );
    repo.sgr()
        .args(["build", "--dry-run", "--build-arg", "GITHUB_TOKEN"])
        .env("GITHUB_TOKEN", "ghp_x")
        .assert()
        .code(2)
        .stderr(contains("build arg GITHUB_TOKEN would store a secret"));
    repo.sgr()
        .args(["build", "--dry-run", "--build-arg", "INNOCENT=ghp_x"])
        .env("GITHUB_TOKEN", "ghp_x")
        .assert()
        .code(2)
        .stderr(contains("has the value of GITHUB_TOKEN"));
    repo.write("Dockerfile", "FROM scratch\nLABEL x={{ nope }}\n")?;
    repo.sgr()
        .args(["build", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("Dockerfile:2:"));
    repo.write("Dockerfile", "FROM scratch\n")?;
    repo.write("sgr.toml", "[[image]]\nname = \"x\"\n")?;
    repo.sgr()
        .args(["build", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("sgr.toml"));
    repo.sgr()
        .args(["build", "--dry-run", "--config", "missing.toml"])
        .assert()
        .code(2)
        .stderr(contains("missing.toml"));
    Ok(())
}

#[test]
fn the_json_schema_describes_the_config() -> TestResult {
    let schema: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/sgr.schema.json"),
    )?)?;
    let keys = |value: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|map| map.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    assert_eq!(keys(&schema["properties"]), ["image", "org"]);
    // Every field of [[image]] that the parser accepts, and no other.
    let full = sgr::build::plan::ImageConfig {
        name: "n".into(),
        dockerfile: "D".into(),
        context: Some(".".into()),
        tags: vec!["t".into()],
        extra_tags: vec!["localhost:32000/n:t".into()],
        depends_on: vec!["m".into()],
        build_args: [("A".to_owned(), "b".to_owned())].into_iter().collect(),
        target: Some("t".into()),
        dialect: Some(sgr::build::plan::Dialect::Go),
        remote: Some("{org}/{module}/n".into()),
    };
    assert_eq!(
        keys(&schema["$defs"]["image"]["properties"]),
        keys(&serde_json::to_value(full)?)
    );
    Ok(())
}
