//! The chain the product exists for, end to end on the real engine and registry:
//! `sgr build` (the project's own runner/Dockerfile on a base made here) → `sgr push` →
//! `sgr render` of build.yaml and the runner templates, whose images must be exactly the
//! pushed references, pinned by digest → the pushed runner image pulled back and run on an
//! experiment from a directory queue, its result stored.
//!
//! No CUDA base can be pulled here, so the base is assembled from the host's Python
//! (Debian's `/usr/bin/python3.X` with its standard library, ensurepip's wheels, the shared libraries
//! `ldd` names, and a static busybox as `/bin/sh`), and the runner is the host's build.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use sgr_test_support::{Service, service, services_expected};

use crate::common::{Repo, TestResult};

type Failure = Box<dyn std::error::Error>;

/// The project's own files, read in place.
fn project_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// The runner binary of this build (built beside sgr by `cargo test --workspace`).
fn runner_binary() -> Option<PathBuf> {
    let sgr = assert_cmd::cargo::cargo_bin("sgr");
    let runner = sgr.parent()?.join("runner");
    runner.is_file().then_some(runner)
}

/// Copy `source` to `root` + the same absolute path, following a symbolic link.
fn copy_into(root: &Path, source: &Path) -> Result<(), Failure> {
    let target = root.join(source.strip_prefix("/")?);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(source, &target)?;
    Ok(())
}

/// Copy the tree `source` into `root`, leaving out tests, caches and GUI modules.
fn copy_tree(root: &Path, source: &Path) -> Result<(), Failure> {
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if ["test", "__pycache__", "idlelib", "tkinter", "turtledemo"].contains(&name.as_ref()) {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(root, &path)?;
        } else if kind.is_file() {
            copy_into(root, &path)?;
        }
    }
    Ok(())
}

/// The shared libraries `ldd` names for `binary`.
fn libraries(binary: &Path) -> Result<Vec<PathBuf>, Failure> {
    let output = Command::new("ldd").arg(binary).output()?;
    let text = String::from_utf8_lossy(&output.stdout);
    Ok(text
        .lines()
        .filter_map(|line| {
            line.split_whitespace()
                .find(|word| word.starts_with('/'))
                .map(PathBuf::from)
        })
        .collect())
}

/// The version (`3.11`) of Debian's `/usr/bin/python3`.
fn system_python_version() -> Result<String, Failure> {
    let target = std::fs::read_link("/usr/bin/python3")?;
    let name = target.to_string_lossy();
    Ok(name
        .strip_prefix("python")
        .ok_or_else(|| format!("/usr/bin/python3 points at {name}"))?
        .to_owned())
}

/// A root file system with the host's Python, busybox and the C libraries a distribution base
/// holds (those `program` needs among them), for `FROM scratch`.
fn python_root(root: &Path, busybox: &Path, program: &Path, version: &str) -> Result<(), Failure> {
    let python = PathBuf::from(format!("/usr/bin/python{version}"));
    let library = PathBuf::from(format!("/usr/lib/python{version}"));
    copy_into(root, &python)?;
    std::os::unix::fs::symlink(format!("python{version}"), root.join("usr/bin/python3"))?;
    copy_tree(root, &library)?;
    if Path::new("/usr/share/python-wheels").is_dir() {
        copy_tree(root, Path::new("/usr/share/python-wheels"))?;
    }
    let mut binaries = vec![python.clone(), program.to_path_buf()];
    for entry in std::fs::read_dir(library.join("lib-dynload"))? {
        binaries.push(entry?.path());
    }
    let mut wanted = std::collections::BTreeSet::new();
    for binary in &binaries {
        wanted.extend(libraries(binary)?);
    }
    for library in wanted {
        copy_into(root, &library)?;
    }
    std::fs::create_dir_all(root.join("bin"))?;
    std::fs::copy(busybox, root.join("bin/busybox"))?;
    for applet in ["sh", "mkdir", "chown", "ls", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))?;
    }
    for directory in ["tmp", "etc"] {
        std::fs::create_dir_all(root.join(directory))?;
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n")?;
    Ok(())
}

/// `docker` with the test engine and a private client configuration.
fn docker(host: &str, config: &Path) -> Command {
    let mut command = Command::new("docker");
    command
        .env("DOCKER_HOST", host)
        .env("DOCKER_CONFIG", config)
        .env_remove("DOCKER_BUILDKIT");
    command
}

fn run_ok(command: &mut Command, what: &str) -> Result<String, Failure> {
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Every `image:` value of rendered manifests.
fn images_of(manifests: &str) -> Vec<String> {
    manifests
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("image:"))
        .map(|value| value.trim().trim_matches('"').to_owned())
        .collect()
}

#[test]
#[allow(clippy::too_many_lines)]
fn build_push_render_and_run_the_runner_image() -> TestResult {
    let (Some(host), Some(registry)) = (service(Service::Docker), service(Service::Registry))
    else {
        return Ok(());
    };
    let user = std::env::var("SGR_TEST_REGISTRY_USERNAME")?;
    let password = std::env::var("SGR_TEST_REGISTRY_PASSWORD")?;
    let Some(runner) = runner_binary() else {
        assert!(
            !services_expected(),
            "no runner binary beside sgr: the test command builds the workspace"
        );
        eprintln!("SKIPPED: no runner binary beside sgr (cargo build -p runner)");
        return Ok(());
    };
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let org = format!("chain{}", nanos % 1_000_000_000);

    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.4.0</repo-version>\n")?;
    repo.write(".gitignore", "base/rootfs/\nctx/\nstandalone/busybox\n")?;
    let python_version = system_python_version()?;
    python_root(
        &repo.file("base/rootfs"),
        Path::new(&busybox),
        &runner,
        &python_version,
    )?;
    repo.write("base/Dockerfile", "FROM scratch\nCOPY rootfs/ /\n")?;
    std::fs::create_dir_all(repo.file("ctx"))?;
    // Without its debug sections when strip is there: a smaller image to push.
    let stripped = Command::new("strip")
        .args(["--strip-debug", "-o"])
        .arg(repo.file("ctx/runner"))
        .arg(&runner)
        .status()
        .is_ok_and(|status| status.success());
    if !stripped {
        std::fs::copy(&runner, repo.file("ctx/runner"))?;
    }
    // The project's own runner Dockerfile and templates, as a user's checkout holds them.
    repo.write(
        "runner/Dockerfile",
        std::fs::read(project_file("runner/Dockerfile"))?,
    )?;
    repo.write(
        "standalone/Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\n",
    )?;
    std::fs::copy(&busybox, repo.file("standalone/busybox"))?;
    repo.write(
        "sgr.toml",
        format!(
            r#"org = "{org}"

[[image]]
name = "{{org}}/pybase"
dockerfile = "base/Dockerfile"
context = "base"

[[image]]
name = "{{org}}/{{module}}-runner"
dockerfile = "runner/Dockerfile"
context = "ctx"
tags = ["{{version}}"]
depends_on = ["{{org}}/pybase"]
[image.values]
cuda_base = "{{org}}/pybase:{{branch}}"
install_python = "false"
runner_binary = "runner"

[[image]]
name = "{{org}}/{{module}}-standalone-build"
dockerfile = "standalone/Dockerfile"
context = "standalone"
"#
        ),
    )?;
    repo.commit("fixture")?;
    let module = sgr::template::context::scrub_module(
        &repo
            .path()
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );

    repo.sgr()
        .args(["build"])
        .env("DOCKER_HOST", &host)
        .assert()
        .success();
    let docker_config = tempfile::tempdir()?;
    let runner_name = format!("{org}/{module}-runner");
    let standalone_name = format!("{org}/{module}-standalone-build");
    repo.sgr()
        .args([
            "push",
            "--registry",
            &registry,
            &runner_name,
            &standalone_name,
        ])
        .env("DOCKER_HOST", &host)
        .env("DOCKER_CONFIG", docker_config.path())
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success();

    // The templates name exactly what was pushed, pinned by digest.
    let runner_prefix = format!("{registry}/{org}/{module}/runner:1.4.0@sha256:");
    let standalone_prefix = format!("{registry}/{org}/{module}/standalone-build:main@sha256:");
    let mut runner_reference = None;
    for template in ["templates/runner-deployment.yaml", "build.yaml"] {
        let output = repo
            .sgr()
            .args(["render"])
            .arg(project_file(template))
            .env_remove("GITHUB_TOKEN")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        let text = String::from_utf8(output)?;
        let ours: Vec<String> = images_of(&text)
            .into_iter()
            .filter(|image| !image.starts_with("rabbitmq:") && !image.starts_with("chrislusf/"))
            .collect();
        assert!(!ours.is_empty(), "{template}: no image in {text}");
        for image in &ours {
            let expected = if template == "build.yaml" {
                &standalone_prefix
            } else {
                &runner_prefix
            };
            assert!(
                image.starts_with(expected.as_str())
                    && image.len() == expected.len() + 64
                    && image[expected.len()..]
                        .chars()
                        .all(|character| character.is_ascii_hexdigit()),
                "{template}: image {image} is not the pushed reference {expected}<digest>"
            );
            if template != "build.yaml" {
                runner_reference = Some(image.clone());
            }
        }
    }
    let runner_reference = runner_reference.ok_or("no runner image rendered")?;

    // The pushed runner image, pulled back by digest, runs an experiment.
    let mut login = docker(&host, docker_config.path());
    login
        .args(["login", "--username", &user, "--password-stdin", &registry])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = login.spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(password.as_bytes())?;
    }
    let login = child.wait_with_output()?;
    assert!(
        login.status.success(),
        "docker login: {}",
        String::from_utf8_lossy(&login.stderr)
    );
    // Pulled from the registry, not found locally under another name.
    let _ = docker(&host, docker_config.path())
        .args(["rmi", &format!("{registry}/{org}/{module}/runner:1.4.0")])
        .output();
    run_ok(
        docker(&host, docker_config.path()).args(["pull", &runner_reference]),
        "docker pull",
    )?;

    let work = tempfile::tempdir()?;
    let store = work.path().join("store");
    let queues = work.path().join("queues/local_chain");
    std::fs::create_dir_all(store.join("blobstore"))?;
    std::fs::create_dir_all(&queues)?;
    run_ok(
        Command::new("tar")
            .arg("-C")
            .arg(project_file("examples/runner/workspace"))
            .arg("-cf")
            .arg(store.join("blobstore/workspace.tar"))
            .arg("."),
        "tar",
    )?;
    let request = std::fs::read_to_string(project_file("examples/runner/request.json"))?
        .replace("@STORE@", "/store")
        .replace("@PYTHONVER@", &python_version);
    std::fs::write(queues.join("request-1"), request)?;
    for directory in [
        work.path().to_path_buf(),
        store.clone(),
        store.join("blobstore"),
        queues.clone(),
    ] {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&directory, std::fs::Permissions::from_mode(0o777))?;
    }
    let output = docker(&host, docker_config.path())
        .args(["run", "--rm", "--network", "none", "-v"])
        .arg(format!("{}:/store", store.display()))
        .arg("-v")
        .arg(format!("{}:/queues", work.path().join("queues").display()))
        .args([
            &runner_reference,
            "--queue-root",
            "/queues",
            "--once",
            "--log-format",
            "text",
        ])
        .output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the runner container failed: {log}"
    );
    let key = "1796017734_0d3c6a4e-demo-4c1b-9d5e-7a1f2b3c4d5e";
    let stored = store.join(format!("experiments/{key}/output.tar"));
    assert!(
        stored.is_file(),
        "no {} after the run: {log}",
        stored.display()
    );
    let listing = run_ok(
        Command::new("tar").arg("-xOf").arg(&stored),
        "tar -xOf output.tar",
    )?;
    assert!(
        listing.contains("\"epoch\": 4") && listing.contains("saved ../modeldir/model.json"),
        "the experiment's output is not in the stored output: {listing}\n{log}"
    );
    // The image runs the runner as a user, not root.
    let user_of = run_ok(
        docker(&host, docker_config.path()).args([
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}}",
            &runner_reference,
        ]),
        "docker image inspect",
    )?;
    assert_eq!(user_of.trim(), "10001:10001 [\"/usr/local/bin/runner\"]");
    // The user has a passwd entry: experiments that ask who they run as get an answer.
    let who = run_ok(
        docker(&host, docker_config.path()).args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/usr/bin/python3",
            &runner_reference,
            "-c",
            "import getpass, os, pwd; print(getpass.getuser(), pwd.getpwuid(os.getuid()).pw_name, os.path.expanduser('~'))",
        ]),
        "docker run python3",
    )?;
    assert_eq!(who.trim(), "runner runner /home/runner");
    Ok(())
}
