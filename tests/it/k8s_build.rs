//! `sgr k8s-build` against the fake Kubernetes API server of test-support:
//! sgr's real kube-rs code, a generated kubeconfig, the project's own
//! build.yaml, and a scripted job controller.

use std::time::Duration;

use base64::Engine as _;
use predicates::prelude::*;
use predicates::str::contains;
use sgr_test_support::{FakeKube, LogFaults, PodScript};

use crate::common::{Repo, TestResult};

const CANARY: &str = "ghp_k8s_canary_51f0c9";
const NAMESPACE: &str = "ci-build";
const JOB: &str = "build-project";

struct Cluster {
    repo: Repo,
    kube: FakeKube,
    kubeconfig: std::path::PathBuf,
}

fn cluster() -> Result<Cluster, Box<dyn std::error::Error>> {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    repo.write(
        "build.yaml",
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/build.yaml"))?,
    )?;
    repo.commit("fixture")?;
    let kube = FakeKube::start()?;
    let kubeconfig = repo.file("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig("fake-bearer"))?;
    Ok(Cluster {
        repo,
        kube,
        kubeconfig,
    })
}

impl Cluster {
    fn sgr(&self) -> assert_cmd::Command {
        let mut command = self.repo.sgr();
        command
            .arg("k8s-build")
            .args(["--namespace", NAMESPACE])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("GITHUB_TOKEN", CANARY)
            .timeout(Duration::from_mins(2));
        command
    }

    fn log_file(&self) -> String {
        std::fs::read_to_string(self.repo.file(&format!("{NAMESPACE}-{JOB}.log")))
            .unwrap_or_default()
    }
}

fn numbered(prefix: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| format!("{prefix} line {index:05}"))
        .collect()
}

fn stdout_lines(output: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn happy_path_applies_everything_follows_the_log_and_exits_0() -> TestResult {
    let cluster = cluster()?;
    cluster
        .kube
        .script(JOB, vec![PodScript::lines(numbered("ok", 20), 0)]);
    let output = cluster
        .sgr()
        .assert()
        .success()
        .stderr(
            contains(format!("job {JOB} completed"))
                .and(contains("Pending (ContainerCreating)"))
                .and(contains("Succeeded")),
        )
        .get_output()
        .clone();
    assert_eq!(stdout_lines(&output), numbered("ok", 20));
    assert_eq!(
        cluster
            .log_file()
            .lines()
            .map(str::to_owned)
            .collect::<Vec<_>>(),
        numbered("ok", 20)
    );
    for (plural, namespace, name) in [
        ("namespaces", "", NAMESPACE),
        ("configmaps", NAMESPACE, "build-env"),
        ("serviceaccounts", NAMESPACE, "build"),
        ("roles", NAMESPACE, "build"),
        ("rolebindings", NAMESPACE, "build"),
        ("jobs", NAMESPACE, JOB),
        ("secrets", NAMESPACE, "build-github-token"),
    ] {
        assert!(
            cluster.kube.object(plural, namespace, name).is_some(),
            "{plural} {name} was not applied"
        );
    }
    // Server-side apply with field manager sgr, Namespace first.
    let received = cluster.kube.received();
    let patches: Vec<&(String, String, String)> = received
        .iter()
        .filter(|(method, ..)| method == "PATCH")
        .collect();
    assert!(
        patches
            .iter()
            .all(|(_, uri, _)| uri.contains("fieldManager=sgr")),
        "{patches:?}"
    );
    assert!(
        patches[0].1.contains("/namespaces/ci-build?"),
        "{:?}",
        patches[0]
    );
    // The Secret is owned by the Job, so it goes with it.
    let job_uid = cluster
        .kube
        .object("jobs", NAMESPACE, JOB)
        .map(|job| job["metadata"]["uid"].clone());
    let secret = cluster
        .kube
        .object("secrets", NAMESPACE, "build-github-token")
        .ok_or("no secret")?;
    assert_eq!(
        Some(secret["metadata"]["ownerReferences"][0]["uid"].clone()),
        job_uid
    );
    Ok(())
}

#[test]
fn the_token_is_only_ever_in_the_secret() -> TestResult {
    let cluster = cluster()?;
    let output = cluster
        .sgr()
        .args(["-vv", "--output", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let encoded = base64::engine::general_purpose::STANDARD.encode(CANARY);
    let everything = format!(
        "{}{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        cluster.log_file()
    );
    assert!(
        !everything.contains(CANARY) && !everything.contains(&encoded),
        "the token was printed"
    );
    let mut in_secret = 0;
    for (method, uri, body) in cluster.kube.received() {
        if uri.contains("/secrets/") {
            in_secret += usize::from(body.contains(&encoded));
            assert!(!body.contains(CANARY), "plain token sent");
            continue;
        }
        assert!(
            !body.contains(CANARY) && !body.contains(&encoded),
            "{method} {uri} carried the token"
        );
    }
    assert_eq!(in_secret, 1);
    // RBAC stays in the namespace: a Role and RoleBinding, never cluster-wide.
    let received = cluster.kube.received();
    assert!(
        received
            .iter()
            .all(|(_, uri, _)| !uri.contains("clusterrole")),
        "cluster-wide RBAC applied"
    );
    let binding = cluster
        .kube
        .object("rolebindings", NAMESPACE, "build")
        .ok_or("no binding")?;
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);
    Ok(())
}

#[test]
fn a_failing_job_exits_with_its_container_code() -> TestResult {
    let cluster = cluster()?;
    cluster.kube.script(
        JOB,
        vec![PodScript::lines(vec!["tests failed".to_owned()], 3)],
    );
    cluster
        .sgr()
        .assert()
        .code(3)
        .stdout(contains("tests failed"))
        .stderr(
            contains("Failed (exit code 3)")
                .and(contains(format!("job {JOB} failed (exit code 3)"))),
        );
    Ok(())
}

#[test]
fn a_restarted_pod_is_followed() -> TestResult {
    let cluster = cluster()?;
    cluster.kube.script(
        JOB,
        vec![
            PodScript::lines(numbered("first", 5), 1),
            PodScript::lines(numbered("second", 5), 0),
        ],
    );
    let output = cluster.sgr().assert().success().get_output().clone();
    let mut expected = numbered("first", 5);
    expected.extend(numbered("second", 5));
    assert_eq!(stdout_lines(&output), expected);
    Ok(())
}

#[test]
fn ten_dropped_connections_in_a_long_log_lose_and_repeat_nothing() -> TestResult {
    let cluster = cluster()?;
    cluster
        .kube
        .script(JOB, vec![PodScript::lines(numbered("long", 10_000), 0)]);
    cluster.kube.log_faults(LogFaults {
        cuts: 10,
        cut_after: 900,
        rotate_at: None,
    });
    let output = cluster.sgr().assert().success().get_output().clone();
    let lines = stdout_lines(&output);
    assert_eq!(lines.len(), 10_000);
    assert_eq!(lines, numbered("long", 10_000));
    let cuts = cluster
        .kube
        .received()
        .iter()
        .filter(|(_, uri, _)| uri.contains("/log?"))
        .count();
    assert!(
        cuts >= 11,
        "the stream was not resumed after each cut: {cuts} log requests"
    );
    Ok(())
}

#[test]
fn log_rotation_is_followed_through() -> TestResult {
    let cluster = cluster()?;
    let mut script = PodScript::lines(numbered("rot", 300), 0);
    script.burst = 50;
    script.pause = Duration::from_millis(20);
    cluster.kube.script(JOB, vec![script]);
    cluster.kube.log_faults(LogFaults {
        cuts: 0,
        cut_after: 0,
        rotate_at: Some(120),
    });
    let output = cluster.sgr().assert().success().get_output().clone();
    assert_eq!(stdout_lines(&output), numbered("rot", 300));
    Ok(())
}

#[test]
fn pending_reasons_are_reported_and_a_timeout_exits_124() -> TestResult {
    let cluster = cluster()?;
    let mut stuck = PodScript::lines(Vec::new(), 0);
    stuck.pending_reason = "Unschedulable".to_owned();
    stuck.stuck = true;
    cluster.kube.script(JOB, vec![stuck]);
    cluster
        .sgr()
        .args(["--timeout", "2s"])
        .assert()
        .code(124)
        .stderr(
            contains(
                "Pending (Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu.)",
            )
            .and(contains("did not finish within 2 s"))
            .and(contains("hint:")),
        );
    Ok(())
}

#[test]
fn delete_removes_what_the_manifest_made() -> TestResult {
    let cluster = cluster()?;
    cluster.sgr().assert().success();
    assert!(!cluster.kube.objects("pods").is_empty());
    cluster
        .sgr()
        .arg("delete")
        .assert()
        .success()
        .stderr(contains(format!("deleted Job {NAMESPACE}/{JOB}")));
    for plural in [
        "jobs",
        "pods",
        "secrets",
        "configmaps",
        "roles",
        "namespaces",
    ] {
        assert!(
            cluster.kube.objects(plural).is_empty(),
            "{plural} left: {:?}",
            cluster.kube.objects(plural)
        );
    }
    let deletes: Vec<String> = cluster
        .kube
        .received()
        .into_iter()
        .filter(|(method, ..)| method == "DELETE")
        .map(|(_, _, body)| body)
        .collect();
    assert!(
        deletes.iter().all(|body| body.contains("Background")),
        "{deletes:?}"
    );
    // --cleanup does the same after the run.
    cluster.sgr().arg("--cleanup").assert().success();
    assert!(cluster.kube.objects("jobs").is_empty());
    Ok(())
}

#[test]
fn attach_runs_one_gpu_job_from_an_image() -> TestResult {
    let cluster = cluster()?;
    cluster.kube.script(
        "build",
        vec![PodScript::lines(vec!["attached".to_owned()], 0)],
    );
    cluster
        .sgr()
        .args([
            "--attach",
            "--image",
            "leafai/sgr-standalone-build:main",
            "--node-selector",
            "leafai.affinity=production",
        ])
        .assert()
        .success()
        .stdout(contains("attached"));
    let job = cluster
        .kube
        .object("jobs", NAMESPACE, "build")
        .ok_or("no job")?;
    let pod = &job["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["image"],
        "leafai/sgr-standalone-build:main"
    );
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"],
        1
    );
    assert_eq!(
        pod["containers"][0]["resources"]["requests"]["nvidia.com/gpu"],
        1
    );
    assert_eq!(pod["imagePullSecrets"][0]["name"], "studioml-go-docker-key");
    assert_eq!(pod["nodeSelector"]["leafai.affinity"], "production");
    assert!(
        cluster
            .kube
            .object("secrets", NAMESPACE, "build-github-token")
            .is_some()
    );
    Ok(())
}

#[test]
fn dry_run_prints_masked_manifests_and_sends_nothing() -> TestResult {
    let cluster = cluster()?;
    let output = cluster
        .sgr()
        .args(["--dry-run", "--gpus", "2", "--memory", "20Gi"])
        .assert()
        .success()
        .stdout(
            contains("kind: Job").and(contains("kind: Secret")).and(
                contains("'***'")
                    .or(contains("\"***\""))
                    .or(contains("***")),
            ),
        )
        .get_output()
        .clone();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains(CANARY)
            && !text.contains(&base64::engine::general_purpose::STANDARD.encode(CANARY))
    );
    assert!(
        text.contains("nvidia.com/gpu: 2") && text.contains("memory: 20Gi"),
        "{text}"
    );
    assert!(
        cluster.kube.received().is_empty(),
        "the dry run talked to the cluster"
    );
    Ok(())
}

#[test]
fn several_containers_are_prefixed_and_json_lines_are_events() -> TestResult {
    let cluster = cluster()?;
    let mut script = PodScript::lines(vec!["compiling".to_owned()], 0);
    script
        .containers
        .push(("sidecar".to_owned(), vec!["watching".to_owned()]));
    cluster.kube.script(JOB, vec![script]);
    // The manifest's Job has one container: give it a second one.
    let manifest = std::fs::read_to_string(cluster.repo.file("build.yaml"))?.replace(
        "      containers:\n        - name: build\n",
        "      containers:\n        - name: sidecar\n          image: busybox\n        - name: build\n",
    );
    cluster.repo.write("build.yaml", manifest)?;
    let output = cluster.sgr().assert().success().get_output().clone();
    let mut lines = stdout_lines(&output);
    lines.sort();
    assert_eq!(lines, ["build | compiling", "sidecar | watching"]);
    let output = cluster
        .sgr()
        .args(["--output", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let kinds: Vec<&str> = events
        .iter()
        .filter_map(|event| event["event"].as_str())
        .collect();
    assert!(
        kinds.contains(&"applied") && kinds.contains(&"phase") && kinds.contains(&"log"),
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"finished"));
    assert_eq!(
        events.last().map(|event| event["succeeded"].clone()),
        Some(serde_json::json!(true))
    );
    Ok(())
}

/// studio-go-runner's files at a 2019 and a 2021 commit, read in place.
fn reference(commit: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/studio-go-runner")
        .join(commit)
}

/// The namespace studio-go-runner's build.yaml makes for `USER=ci`.
const REFERENCE_NAMESPACE: &str = "build-studio-go-runner-ci";

fn encoded(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn assert_no_token(text: &str) {
    assert!(
        !text.contains(CANARY) && !text.contains(&encoded(CANARY)),
        "the token is shown:\n{text}"
    );
}

#[test]
fn dry_run_renders_the_reference_build_yaml_in_duat_dialect_with_its_secret_masked() -> TestResult {
    // The checkouts have no .git: the git values come from a repository beside them.
    let git = Repo::new("feature/ci_x")?;
    git.write(
        "README.md",
        "Version: <repo-version>0.12.1</repo-version>\n",
    )?;
    git.commit("fixture")?;
    for commit in ["19b9df9e", "4f816e5c"] {
        let output = crate::common::sgr_command()
            .current_dir(reference(commit))
            .args(["k8s-build", "--dry-run", "--git"])
            .arg(git.path())
            .env("USER", "ci")
            .env("GITHUB_TOKEN", CANARY)
            .env_remove("KUBECONFIG")
            .assert()
            .success()
            .stderr(contains("extensions/v1beta1").and(contains("apps/v1")))
            .get_output()
            .clone();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_no_token(&stdout);
        assert_no_token(&String::from_utf8_lossy(&output.stderr));
        assert!(
            stdout.contains(&format!("name: {REFERENCE_NAMESPACE}"))
                && stdout.contains("image: leafai/")
                && stdout.contains("-standalone-build:feature-ci-x")
                && stdout.contains("github_token: \"***\""),
            "{commit}:\n{stdout}"
        );
    }
    Ok(())
}

/// A kubeconfig-holding repository with the 2021 build.yaml, `edit` applied to a copy.
fn reference_cluster(edit: fn(&str) -> String) -> Result<Cluster, Box<dyn std::error::Error>> {
    let repo = Repo::new("main")?;
    repo.write(
        "README.md",
        "Version: <repo-version>0.12.1</repo-version>\n",
    )?;
    let original = std::fs::read_to_string(reference("4f816e5c").join("build.yaml"))?;
    repo.write("build.yaml", edit(&original))?;
    repo.commit("fixture")?;
    let kube = FakeKube::start()?;
    let kubeconfig = repo.file("kubeconfig");
    std::fs::write(&kubeconfig, kube.kubeconfig("fake-bearer"))?;
    Ok(Cluster {
        repo,
        kube,
        kubeconfig,
    })
}

fn reference_command(cluster: &Cluster) -> assert_cmd::Command {
    let mut command = cluster.repo.sgr();
    command
        .arg("k8s-build")
        .env("KUBECONFIG", &cluster.kubeconfig)
        .env("USER", "ci")
        .env("GITHUB_TOKEN", CANARY)
        .timeout(Duration::from_mins(2));
    command
}

#[test]
fn the_2021_build_yaml_with_apps_v1_runs_to_exit_0_and_fills_its_own_secret() -> TestResult {
    let cluster = reference_cluster(|text| text.replace("extensions/v1beta1", "apps/v1"))?;
    cluster
        .kube
        .script("build", vec![PodScript::lines(numbered("ref", 5), 0)]);
    let output = reference_command(&cluster)
        .assert()
        .success()
        .stderr(contains("job build completed"))
        .get_output()
        .clone();
    assert_eq!(stdout_lines(&output), numbered("ref", 5));
    assert_no_token(&String::from_utf8_lossy(&output.stderr));
    for (plural, namespace, name) in [
        ("namespaces", "", REFERENCE_NAMESPACE),
        ("clusterrolebindings", "", "run-cluster-admin"),
        (
            "persistentvolumeclaims",
            REFERENCE_NAMESPACE,
            "minio-pv-claim",
        ),
        ("deployments", REFERENCE_NAMESPACE, "minio-deployment"),
        (
            "replicationcontrollers",
            REFERENCE_NAMESPACE,
            "rabbitmq-controller",
        ),
        ("jobs", REFERENCE_NAMESPACE, "build"),
    ] {
        assert!(
            cluster.kube.object(plural, namespace, name).is_some(),
            "{plural} {name} was not applied"
        );
    }
    // The file's own Secret, filled by `expandenv "$GITHUB_TOKEN" | b64enc`; sgr adds none.
    let secret = cluster
        .kube
        .object(
            "secrets",
            REFERENCE_NAMESPACE,
            "studioml-runner-github-token",
        )
        .ok_or("the file's Secret was not applied")?;
    assert_eq!(secret["data"]["github_token"], encoded(CANARY));
    assert_eq!(cluster.kube.objects("secrets").len(), 1);
    Ok(())
}

#[test]
fn a_removed_api_version_is_refused_before_anything_is_written() -> TestResult {
    let cluster = reference_cluster(str::to_owned)?;
    let output = reference_command(&cluster)
        .assert()
        .code(2)
        .stderr(
            contains("line 75 of the rendered build.yaml")
                .and(contains(
                    "Deployment build-studio-go-runner-ci/minio-deployment",
                ))
                .and(contains("extensions/v1beta1 is removed in Kubernetes 1.16"))
                .and(contains("use apiVersion: apps/v1"))
                .and(contains("nothing was applied")),
        )
        .get_output()
        .clone();
    assert_no_token(&String::from_utf8_lossy(&output.stderr));
    let writes: Vec<_> = cluster
        .kube
        .received()
        .into_iter()
        .filter(|(method, ..)| method != "GET")
        .collect();
    assert!(writes.is_empty(), "the cluster was written to: {writes:?}");
    Ok(())
}

#[test]
fn an_unreachable_cluster_is_exit_2_naming_the_server_in_every_command() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    repo.write(
        "build.yaml",
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/build.yaml"))?,
    )?;
    repo.commit("fixture")?;
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let server = format!("http://127.0.0.1:{port}");
    let kubeconfig = repo.file("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: {server}\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\ncurrent-context: gone\nusers:\n- name: gone\n  user:\n    token: t\n"
        ),
    )?;
    for args in [
        vec!["k8s-build", "--namespace", NAMESPACE],
        vec!["runner", "status"],
    ] {
        repo.sgr()
            .args(&args)
            .env("KUBECONFIG", &kubeconfig)
            .env("GITHUB_TOKEN", CANARY)
            .timeout(Duration::from_mins(2))
            .assert()
            .code(2)
            .stderr(
                contains(format!(
                    "cannot reach the Kubernetes API server at {server}"
                ))
                .and(contains("hint:"))
                .and(contains("KUBECONFIG")),
            );
    }
    Ok(())
}
