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
            "ARG PRIVATE_DOCKERFILE\n",
            "RUN [\"/bin/busybox\", \"sh\", \"-c\", \"",
            "/bin/busybox test -f /ctx/keep/important.log && ! /bin/busybox test -e /ctx/debug.log && ",
            "! /bin/busybox test -e /ctx/deep/er/x.tmp && ! /bin/busybox test -e /ctx/.git && ",
            // The rendered Dockerfile travels in the context: the classic builder leaves it
            // out of COPY (the .dockerignore sent lists it); BuildKit applies no .dockerignore
            // to a tar context, so there it is copied.
            "if /bin/busybox test -e /ctx/.sgr-dockerfile; then /bin/busybox test \\\"$PRIVATE_DOCKERFILE\\\" = copied; ",
            "else /bin/busybox test \\\"$PRIVATE_DOCKERFILE\\\" = left-out; fi && ",
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
    // scripts/test.sh's engine has no bridge network: RUN steps take the classic builder
    // there. An engine given by SGR_TEST_DOCKER_HOST may have one: then BuildKit.
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    if engine_has_bridge(&host)? {
        builds_several_images(
            &["--build-arg", "PRIVATE_DOCKERFILE=copied"],
            "sgr: building with BuildKit (the engine offers it",
        )
    } else {
        builds_several_images(
            &["--build-arg", "PRIVATE_DOCKERFILE=left-out"],
            "sgr: building with the classic builder (the engine has no bridge network",
        )
    }
}

/// Whether the engine at `host` has a network named `bridge`.
fn engine_has_bridge(host: &str) -> Result<bool, Box<dyn std::error::Error>> {
    runtime()?.block_on(async {
        let docker = bollard::Docker::connect_with_host(host)?
            .negotiate_version()
            .await?;
        Ok(docker
            .inspect_network(
                "bridge",
                None::<bollard::query_parameters::InspectNetworkOptions>,
            )
            .await
            .is_ok())
    })
}

#[test]
fn buildkit_builds_the_same_images_with_run_steps_and_ignore_rules() -> TestResult {
    // --network none lets BuildKit run RUN steps on an engine without a bridge.
    builds_several_images(
        &[
            "--network",
            "none",
            "--build-arg",
            "PRIVATE_DOCKERFILE=copied",
        ],
        "sgr: building with BuildKit (the engine offers it",
    )
}

fn builds_several_images(extra: &[&str], builder_line: &str) -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let repo = project(Path::new(&busybox))?;
    let module = module(&repo);
    let assert = repo
        .sgr()
        .args(["build", "--jobs", "2", "--output", "json"])
        .args(extra)
        .env("DOCKER_HOST", &host)
        .env("GITHUB_TOKEN", "ghp_never_in_history")
        .assert()
        .success();
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
    assert_eq!(stderr.matches(builder_line).count(), 2, "{stderr}");
    let output = assert.get_output().stdout.clone();
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
    // The same under BuildKit, whose RUN steps need --network none on this engine.
    repo.sgr()
        .args(["build", "--builder", "buildkit", "--network", "none"])
        .env("DOCKER_HOST", &host)
        .assert()
        .code(1)
        .stderr(
            contains("sgr: building with BuildKit (chosen)")
                .and(contains(" about-to-fail"))
                .and(contains("exit code: 3")),
        );
    // Without it, BuildKit cannot run the step on an engine without a bridge network (as
    // scripts/test.sh's), and says what to do.
    if !engine_has_bridge(&host)? {
        repo.sgr()
            .args(["build", "--builder", "buildkit"])
            .env("DOCKER_HOST", &host)
            .assert()
            .code(1)
            .stderr(contains("network bridge not found").and(contains(
                "hint: this engine has no bridge network: build with --network none or host, or with --builder classic",
            )));
    }
    repo.write("Dockerfile", "FROM scratch\nCOPY missing-file /x\n")?;
    for builder in ["classic", "buildkit"] {
        repo.sgr()
            .args(["build", "--builder", builder])
            .env("DOCKER_HOST", &host)
            .assert()
            .code(1)
            .stderr(contains("missing-file"));
    }
    Ok(())
}

#[test]
fn the_builder_follows_the_flag_then_docker_buildkit() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    repo.write("Dockerfile", "FROM scratch\nCOPY README.md /\n")?;
    repo.commit("fixture")?;
    // A value the docker CLI would refuse too: exit 2 before any engine is contacted.
    repo.sgr()
        .args(["build"])
        .env("DOCKER_BUILDKIT", "maybe")
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .code(2)
        .stderr(contains("DOCKER_BUILDKIT=\"maybe\" is not a boolean"));
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    for (flag, environment, expected) in [
        (
            None,
            None,
            "sgr: building with BuildKit (the engine offers it (API 1.",
        ),
        (
            None,
            Some("0"),
            "sgr: building with the classic builder (chosen)",
        ),
        (None, Some("1"), "sgr: building with BuildKit (chosen)"),
        (
            Some("classic"),
            Some("1"),
            "sgr: building with the classic builder (chosen)",
        ),
        (
            Some("auto"),
            Some("0"),
            "sgr: building with BuildKit (the engine offers it",
        ),
    ] {
        let mut command = repo.sgr();
        command.args(["build"]).env("DOCKER_HOST", &host);
        if let Some(flag) = flag {
            command.args(["--builder", flag]);
        }
        match environment {
            Some(value) => command.env("DOCKER_BUILDKIT", value),
            None => command.env_remove("DOCKER_BUILDKIT"),
        };
        command.assert().success().stderr(contains(expected));
    }
    // BuildKit demanded where it cannot work: exit 2 before anything is built, naming what
    // demanded it, with the way out.
    repo.sgr()
        .args(["build", "--network", "my-net"])
        .env("DOCKER_HOST", &host)
        .env("DOCKER_BUILDKIT", "1")
        .assert()
        .code(2)
        .stderr(
            contains("cannot build with BuildKit, which DOCKER_BUILDKIT demands: BuildKit accepts the networks default, host and none, not my-net")
                .and(contains("hint: --builder auto")),
        );
    // The last build was BuildKit's: the labels are on the config, with no step for them.
    let reference = format!("leafai/{}-build:main", module(&repo));
    runtime()?.block_on(async {
        let docker = bollard::Docker::connect_with_host(&host)?
            .negotiate_version()
            .await?;
        let labels = docker
            .inspect_image(&reference)
            .await?
            .config
            .and_then(|config| config.labels)
            .unwrap_or_default();
        assert_eq!(
            labels
                .get("org.opencontainers.image.version")
                .map(String::as_str),
            Some("1.0.0"),
            "{reference}: {labels:?}"
        );
        assert!(labels.contains_key("dev.sgr.module"), "{labels:?}");
        let history = docker.image_history(&reference).await?;
        assert!(
            history
                .iter()
                .all(|layer| !layer.created_by.contains("dev.sgr.module")),
            "{reference}: a step for the labels: {history:#?}"
        );
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
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
                .and(contains(format!("leafai/{module}-runner:0.9.9")))
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
        values: [("cuda_base".to_owned(), "b".to_owned())]
            .into_iter()
            .collect(),
    };
    assert_eq!(
        keys(&schema["$defs"]["image"]["properties"]),
        keys(&serde_json::to_value(&full)?)
    );
    // Every top-level key the parser accepts, and no other.
    let config = sgr::build::plan::Config {
        org: Some("acme".into()),
        dialect: Some(sgr::build::plan::Dialect::Go),
        images: vec![full],
    };
    assert_eq!(
        keys(&schema["properties"]),
        keys(&serde_json::to_value(config)?)
    );
    Ok(())
}

/// `../shared/reference/studio-go-runner/<commit>`: real files of studio-go-runner, read in
/// place (see its README); never copied into the project.
fn reference_checkout(commit: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/studio-go-runner")
        .join(commit)
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The sgr.toml block of docs/migrating.md.
fn migrating_sgr_toml() -> Result<String, Box<dyn std::error::Error>> {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/migrating.md"))?;
    let after = text
        .split_once("<!-- sgr.toml: studio-go-runner 4f816e5c")
        .ok_or("docs/migrating.md lost its sgr.toml marker")?
        .1;
    let block = after
        .split_once("```toml\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .ok_or("docs/migrating.md: no toml block after the marker")?
        .0;
    Ok(format!("{block}\n"))
}

#[test]
fn migrating_md_reproduces_studio_go_runners_build_sh() -> TestResult {
    let reference = reference_checkout("4f816e5c");
    assert!(
        reference.join("build.sh").is_file(),
        "{} is missing: the reference files live in shared/ beside the checkout",
        reference.display()
    );
    // The branch the 2021 README's version was made on (feature-370-CUDA-11-0 in it).
    let repo = Repo::new("feature/370_CUDA_11_0")?;
    copy_tree(&reference, repo.path())?;
    // The reference files hold no tools/; build.sh built tools/serving-bridge/Dockerfile.
    repo.write("tools/serving-bridge/Dockerfile", "FROM scratch\n")?;
    repo.write("sgr.toml", migrating_sgr_toml()?)?;
    repo.commit("studio-go-runner 4f816e5c")?;
    let output = repo
        .sgr()
        .args(["build", "--dry-run", "--output", "json"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let plan: serde_json::Value = serde_json::from_slice(&output)?;
    let mut planned: Vec<String> = plan
        .as_array()
        .ok_or("the plan is not an array")?
        .iter()
        .flat_map(|image| {
            ["tags", "extra_tags"].into_iter().flat_map(move |key| {
                image[key]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|tag| tag.as_str().map(str::to_owned))
            })
        })
        .collect();
    planned.sort();
    let branch = "feature-370-CUDA-11-0";
    let semver = "0.12.1-feature-370-CUDA-11-0-aaaagpxwrcq";
    let mut tagged = vec![
        // build.sh:143 `docker tag studio-go-runner-dev-base:working $RepoImage`, where $RepoImage is
        // registry.repo:registry.version of Dockerfile_base:129-130
        "leafai/studio-go-runner-dev-base:0.0.6".to_owned(),
        // build.sh:146 `docker tag $RepoImage quay.io/leafai/$RepoBaseImage` (registry.base:registry.version)
        "quay.io/leafai/studio-go-runner-dev-base:0.0.6".to_owned(),
        // build.sh:155 `… | docker build -t leafai/studio-go-runner-developer-build:$GIT_BRANCH -`
        format!("leafai/studio-go-runner-developer-build:{branch}"),
        // build.sh:167 `docker build -t leafai/studio-go-runner-standalone-build:$GIT_BRANCH -f $working_file .`
        format!("leafai/studio-go-runner-standalone-build:{branch}"),
        // build.sh:169 `docker tag leafai/studio-go-runner-standalone-build:$GIT_BRANCH leafai/studio-go-runner-standalone-build`
        "leafai/studio-go-runner-standalone-build:latest".to_owned(),
        // build.sh:170 `docker tag … localhost:32000/leafai/studio-go-runner-standalone-build:latest`
        "localhost:32000/leafai/studio-go-runner-standalone-build:latest".to_owned(),
        // build.sh:171 `docker tag … localhost:32000/leafai/studio-go-runner-standalone-build:$GIT_BRANCH`
        format!("localhost:32000/leafai/studio-go-runner-standalone-build:{branch}"),
        // build.sh:204 `cd cmd/runner && docker build -f Dockerfile.stock -t leafai/studio-go-runner:$SEMVER .`
        format!("leafai/studio-go-runner:{semver}"),
        // build.sh:210 `cd cmd/runner && docker build -f Dockerfile.azure -t leafai/azure-studio-go-runner:$SEMVER .`
        format!("leafai/azure-studio-go-runner:{semver}"),
        // build.sh:216 `cd tools/serving-bridge && docker build -f Dockerfile -t leafai/studio-serving-bridge:$SEMVER .`
        format!("leafai/studio-serving-bridge:{semver}"),
        // build.sh:268 `docker tag leafai/studio-go-runner:$SEMVER quay.io/leafai/studio-go-runner:$SEMVER`
        format!("quay.io/leafai/studio-go-runner:{semver}"),
        // build.sh:269 `docker tag leafai/azure-studio-go-runner:$SEMVER quay.io/leafai/azure-studio-go-runner:$SEMVER`
        format!("quay.io/leafai/azure-studio-go-runner:{semver}"),
        // build.sh:270 `docker tag leafai/studio-serving-bridge:$SEMVER quay.io/leafai/studio-serving-bridge:$SEMVER`
        format!("quay.io/leafai/studio-serving-bridge:{semver}"),
    ];
    tagged.sort();
    assert_eq!(planned, tagged);
    // Dockerfiles and contexts as build.sh used them, and the standalone image after dev-base.
    let standalone = plan
        .as_array()
        .into_iter()
        .flatten()
        .find(|image| image["name"] == "leafai/studio-go-runner-standalone-build")
        .ok_or("no standalone image in the plan")?;
    assert_eq!(
        standalone["depends_on"][0],
        "leafai/studio-go-runner-dev-base"
    );
    let runner = plan
        .as_array()
        .into_iter()
        .flatten()
        .find(|image| image["name"] == "leafai/studio-go-runner")
        .ok_or("no runner image in the plan")?;
    assert_eq!(runner["dockerfile"], "cmd/runner/Dockerfile.stock");
    assert_eq!(runner["context"], "cmd/runner");
    // --only: the standalone image and what it depends on, nothing else.
    repo.sgr()
        .args([
            "build",
            "--dry-run",
            "--only",
            "leafai/studio-go-runner-standalone-build",
        ])
        .assert()
        .success()
        .stdout(
            contains("leafai/studio-go-runner-dev-base:0.0.6")
                .and(contains(format!(
                    "leafai/studio-go-runner-standalone-build:{branch}"
                )))
                .and(contains("after leafai/studio-go-runner-dev-base"))
                .and(contains("developer-build").not())
                .and(contains("leafai/studio-go-runner:").not()),
        );
    Ok(())
}

#[test]
fn unknown_dependencies_and_cycles_exit_2_naming_them() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("Dockerfile", "FROM scratch\n")?;
    repo.write(
        "sgr.toml",
        "[[image]]\nname = \"x/a\"\ndockerfile = \"Dockerfile\"\ndepends_on = [\"x/b\"]\n[[image]]\nname = \"x/b\"\ndockerfile = \"Dockerfile\"\ndepends_on = [\"x/a\"]\n",
    )?;
    repo.commit("fixture")?;
    repo.sgr()
        .args(["build", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains("depends_on forms a cycle: x/a -> x/b -> x/a"));
    repo.write(
        "sgr.toml",
        "[[image]]\nname = \"x/a\"\ndockerfile = \"Dockerfile\"\ndepends_on = [\"x/nope\"]\n",
    )?;
    repo.sgr()
        .args(["build", "--dry-run"])
        .assert()
        .code(2)
        .stderr(contains(
            "image x/a depends on x/nope, which is not an image of the plan",
        ));
    repo.write(
        "sgr.toml",
        "[[image]]\nname = \"x/a\"\ndockerfile = \"Dockerfile\"\n",
    )?;
    repo.sgr()
        .args(["build", "--dry-run", "--only", "x/missing"])
        .assert()
        .code(2)
        .stderr(contains("no image x/missing in the plan"));
    Ok(())
}

/// Names unique to this run: the engine is shared.
fn unique_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or_default();
    format!("sgrtest/dep{}x{nanos}", std::process::id())
}

/// A project of three images: `base`, `top` (FROM base, `depends_on` it) and `other`.
fn dependent_project(
    busybox: &Path,
    prefix: &str,
    base_fails: bool,
) -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/deps")?;
    repo.write("README.md", "Version: <repo-version>2.0.0</repo-version>\n")?;
    std::fs::create_dir_all(repo.file("bin"))?;
    std::fs::copy(busybox, repo.file("bin/busybox"))?;
    repo.write(
        "base/Dockerfile",
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo base > /base; exit {}\"]\n",
            u8::from(base_fails)
        ),
    )?;
    std::fs::copy(busybox, repo.file("base/busybox"))?;
    repo.write(
        "top/Dockerfile",
        format!(
            "FROM {prefix}-base:feature-deps\nRUN [\"/bin/busybox\", \"test\", \"-f\", \"/base\"]\n"
        ),
    )?;
    // Ends with a LABEL of its own: sgr's labels join it instead of adding a step.
    repo.write(
        "other/Dockerfile",
        "FROM scratch\nCOPY x /x\nLABEL keep=me \\\n  also=this\n",
    )?;
    repo.write("other/x", "x")?;
    repo.write(
        "sgr.toml",
        format!(
            concat!(
                "[[image]]\nname = \"{p}-top\"\ndockerfile = \"top/Dockerfile\"\ndepends_on = [\"{p}-base\"]\n",
                "[[image]]\nname = \"{p}-base\"\ndockerfile = \"base/Dockerfile\"\n",
                "extra_tags = [\"localhost:32000/{p}-base:{{branch}}\", \"registry.example.com/{p}/base\"]\n",
                "[[image]]\nname = \"{p}-other\"\ndockerfile = \"other/Dockerfile\"\n",
            ),
            p = prefix
        ),
    )?;
    repo.commit("fixture")?;
    Ok(repo)
}

fn row<'a>(rows: &'a serde_json::Value, name: &str) -> Result<&'a serde_json::Value, String> {
    rows.as_array()
        .into_iter()
        .flatten()
        .find(|row| row["image"] == name)
        .ok_or_else(|| format!("no row for {name} in {rows}"))
}

#[test]
#[allow(clippy::too_many_lines)]
fn depends_on_orders_builds_without_delaying_others_and_labels_cost_one_step() -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let prefix = unique_prefix();
    let repo = dependent_project(Path::new(&busybox), &prefix, false)?;
    // top is listed first in sgr.toml: only depends_on can make it wait. The classic builder:
    // it is the one where labels cost a step (BuildKit sets them on the config).
    let output = repo
        .sgr()
        .args([
            "build",
            "--jobs",
            "2",
            "--output",
            "json",
            "--builder",
            "classic",
        ])
        .env("DOCKER_HOST", &host)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&output)?;
    let times = |name: &str| -> Result<(f64, f64), Box<dyn std::error::Error>> {
        let found = row(&rows, name)?;
        assert_eq!(found["result"], "built", "{found}");
        let started = found["started"].as_f64().ok_or("no start")?;
        Ok((
            started,
            started + found["seconds"].as_f64().ok_or("no time")?,
        ))
    };
    let (base_start, base_end) = times(&format!("{prefix}-base"))?;
    let (top_start, _) = times(&format!("{prefix}-top"))?;
    let (other_start, _) = times(&format!("{prefix}-other"))?;
    assert!(
        top_start >= base_end,
        "top began at {top_start} s, before base ended at {base_end} s"
    );
    assert!(
        other_start < base_end,
        "other began at {other_start} s, only after base ended at {base_end} s"
    );
    assert!(base_start < base_end);
    runtime()?.block_on(async {
        let docker = bollard::Docker::connect_with_host(&host)?
            .negotiate_version()
            .await?;
        for extra in [
            format!("localhost:32000/{prefix}-base:feature-deps"),
            format!("registry.example.com/{prefix}/base:latest"),
        ] {
            let extra_id = docker.inspect_image(&extra).await?.id;
            let base_id = docker
                .inspect_image(&format!("{prefix}-base:feature-deps"))
                .await?
                .id;
            assert_eq!(extra_id, base_id, "{extra}");
        }
        for (image, expected_label_steps) in [("base", 1), ("other", 1), ("top", 2)] {
            let reference = format!("{prefix}-{image}:feature-deps");
            let inspected = docker.inspect_image(&reference).await?;
            let labels = inspected
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default();
            for key in [
                "org.opencontainers.image.version",
                "org.opencontainers.image.revision",
                "org.opencontainers.image.created",
                "dev.sgr.module",
                "dev.sgr.branch",
            ] {
                assert!(
                    labels.contains_key(key),
                    "{reference}: no label {key}: {labels:?}"
                );
            }
            assert_eq!(labels["dev.sgr.branch"], "feature/deps");
            assert_eq!(labels["org.opencontainers.image.version"], "2.0.0");
            if image == "other" {
                assert_eq!(
                    (labels["keep"].as_str(), labels["also"].as_str()),
                    ("me", "this")
                );
            }
            // top inherits base's LABEL step; each image adds exactly one of its own, and
            // other's own final LABEL takes them (one step, not two).
            let history = docker.image_history(&reference).await?;
            let label_steps: Vec<&str> = history
                .iter()
                .map(|layer| layer.created_by.as_str())
                .filter(|created_by| created_by.contains("LABEL"))
                .collect();
            assert_eq!(
                label_steps.len(),
                expected_label_steps,
                "{reference}: {label_steps:#?}"
            );
            assert!(
                history[0].created_by.contains("LABEL")
                    && history[0]
                        .created_by
                        .contains("org.opencontainers.image.revision")
                    && history[0].created_by.contains("dev.sgr.module"),
                "{reference}: the newest step is not the one LABEL: {}",
                history[0].created_by
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    // --only: top and what it depends on; an IMAGE argument: that image alone.
    let output = repo
        .sgr()
        .args([
            "build",
            "--output",
            "json",
            "--only",
            &format!("{prefix}-top"),
        ])
        .env("DOCKER_HOST", &host)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&output)?;
    let names: Vec<&str> = rows
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|row| row["image"].as_str())
        .collect();
    assert_eq!(names, [format!("{prefix}-base"), format!("{prefix}-top")]);
    let output = repo
        .sgr()
        .args(["build", "--output", "json", &format!("{prefix}-top")])
        .env("DOCKER_HOST", &host)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(rows.as_array().map(Vec::len), Some(1), "{rows}");
    assert_eq!(rows[0]["image"], format!("{prefix}-top"));
    Ok(())
}

#[test]
fn a_failed_dependency_skips_its_dependents_only() -> TestResult {
    let Some(host) = service(Service::Docker) else {
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let prefix = unique_prefix();
    let repo = dependent_project(Path::new(&busybox), &prefix, true)?;
    let output = repo
        .sgr()
        .args(["build", "--output", "json"])
        .env("DOCKER_HOST", &host)
        .assert()
        .code(1)
        .stderr(contains(
            "1 skipped because an image they depend on was not built",
        ))
        .get_output()
        .stdout
        .clone();
    let rows: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(row(&rows, &format!("{prefix}-base"))?["result"], "failed");
    assert_eq!(row(&rows, &format!("{prefix}-top"))?["result"], "skipped");
    assert_eq!(row(&rows, &format!("{prefix}-other"))?["result"], "built");
    Ok(())
}
