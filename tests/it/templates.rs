//! The project's own templates (Dockerfiles, build.yaml, templates/) rendered
//! with fixed values: insta snapshots of the output, and every Kubernetes
//! manifest checked by kubernetes-validate (offline schemas, --strict).

use std::path::{Path, PathBuf};
use std::process::Command;

use sgr_test_support::{Service, service};

use crate::common::{Repo, TestResult};

const TEMPLATES: &[&str] = &[
    "Dockerfile",
    "Dockerfile_standalone",
    "Dockerfile_workstation",
    "build.yaml",
    "templates/runner-deployment.yaml",
    "templates/runner-configmaps.yaml",
];

fn project_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

/// Render a project template in a checkout on `feature/197_hybrid` at 0.9.9,
/// with the user and revision fixed so the output is the same on every machine.
fn render(repo: &Repo, name: &str, extra: &[&str]) -> Result<String, Box<dyn std::error::Error>> {
    let output = repo
        .sgr()
        .args(["render", "-q", "--module"])
        .arg(repo.file("sgr"))
        .arg(project_file(name))
        .args([
            "--set",
            "user.name=kmutch",
            "--set",
            "user.uid=1000",
            "--set",
            "user.gid=1000",
            "--set",
            "git.hash=eaa596f4bca9d5e4b5e2b9a8b5a7a2c1d3e4f5a6",
        ])
        .args(extra)
        .output()?;
    if !output.status.success() {
        return Err(format!("{name}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

fn checkout() -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write("README.md", "Version: <repo-version>0.9.9</repo-version>\n")?;
    repo.write("sgr/.keep", "")?;
    repo.commit("initial")?;
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://github.com/leaf-ai/sgr.git",
    ])?;
    Ok(repo)
}

#[test]
fn project_templates_render_as_snapshotted() -> TestResult {
    let repo = checkout()?;
    for name in TEMPLATES {
        let rendered = render(&repo, name, &["--set", "node=gpu-node-1"])?;
        let snapshot = name.replace('/', "__");
        insta::assert_snapshot!(snapshot, rendered);
    }
    Ok(())
}

#[test]
fn values_change_the_manifests() -> TestResult {
    let repo = checkout()?;
    let rendered = render(
        &repo,
        "templates/runner-deployment.yaml",
        &[
            "--set",
            "namespace=gpu",
            "--set",
            "image=registry.example.com/runner:1.2.3",
            "--set",
            "affinity=staging",
            "--set",
            "replicas=4",
        ],
    )?;
    for expected in [
        "namespace: \"gpu\"",
        "image: \"registry.example.com/runner:1.2.3\"",
        "leafai.affinity: \"staging\"",
        "replicas: 4",
    ] {
        assert!(
            rendered.contains(expected),
            "{expected} missing from:\n{rendered}"
        );
    }
    // The runner's rights stay in its namespace: read config maps, patch its status map.
    assert!(rendered.contains("kind: Role\n") && !rendered.contains("ClusterRole"));
    assert!(rendered.contains("resourceNames: [\"studioml-go-runner-status\"]"));
    assert!(rendered.contains("terminationGracePeriodSeconds: 3630"));
    assert!(
        !rendered.contains("amqp://"),
        "the broker URL comes from a Secret"
    );
    // Message privacy is opt-in: the keys' Secrets are mounted and the flags point at them.
    assert!(!rendered.contains("ENCRYPT_DIR") && !rendered.contains("volumes:"));
    let private = render(
        &repo,
        "templates/runner-deployment.yaml",
        &["--set", "message_privacy=true"],
    )?;
    for expected in [
        "name: ENCRYPT_DIR\n              value: \"/runner/certs/message\"",
        "name: REQUEST_SIGNATURES_DIR\n              value: \"/runner/certs/queues/signing\"",
        "name: CLEAR_TEXT_MESSAGES\n              value: \"false\"",
        "mountPath: /runner/certs/message/encryption",
        "mountPath: /runner/certs/message/passphrase",
        "secretName: studioml-runner-key-secret",
        "secretName: studioml-runner-passphrase-secret",
        "secretName: studioml-signing",
    ] {
        assert!(
            private.contains(expected),
            "{expected} missing from:\n{private}"
        );
    }
    assert!(
        !private.contains("subPath:"),
        "Secret updates must reach the pod"
    );
    let without_node = render(&repo, "templates/runner-configmaps.yaml", &[])?;
    assert_eq!(without_node.matches("kind: ConfigMap").count(), 2);
    assert!(without_node.contains("name: studioml-go-runner-status"));
    let build = render(&repo, "build.yaml", &[])?;
    assert!(!build.contains("ghp_"), "no token is ever rendered");
    assert!(build.contains("secretKeyRef"));
    assert!(!build.contains("ClusterRoleBinding"));
    Ok(())
}

#[test]
fn manifests_pass_kubernetes_validate() -> TestResult {
    let Some(venv) = service(Service::PythonVenv) else {
        return Ok(());
    };
    let repo = checkout()?;
    for (name, value) in [
        ("build.yaml", "node=gpu-node-1"),
        ("templates/runner-deployment.yaml", "node=gpu-node-1"),
        ("templates/runner-deployment.yaml", "message_privacy=true"),
        ("templates/runner-configmaps.yaml", "node=gpu-node-1"),
    ] {
        let rendered = render(&repo, name, &["--set", value])?;
        let file = repo.file("rendered.yaml");
        std::fs::write(&file, &rendered)?;
        let output = Command::new(Path::new(&venv).join("kubernetes-validate"))
            .args(["--strict", "-k", "1.33"])
            .arg(&file)
            .output()?;
        assert!(
            output.status.success(),
            "{name} fails kubernetes-validate:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let documents =
            rendered.matches("\nkind: ").count() + usize::from(rendered.starts_with("kind: "));
        let passed = String::from_utf8_lossy(&output.stdout)
            .matches("passed")
            .count()
            + String::from_utf8_lossy(&output.stderr)
                .matches("passed")
                .count();
        assert_eq!(passed, documents, "{name}: every document is validated");
    }
    Ok(())
}
