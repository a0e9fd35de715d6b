//! `sgr push` against the real registries scripts/test.sh starts: an
//! htpasswd docker-registry (generic, and ECR's stand-in with moto's token),
//! a token-auth docker-registry behind the ACR-style token service, with the
//! Entra token from its managed-identity endpoint; moto for STS and ECR.
//! Images are built by `sgr build` in the test's own dockerd.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use predicates::prelude::*;
use predicates::str::contains;
use sgr_test_support::{FaultProxy, Service, service};

use crate::common::{Repo, TestResult};

type Failure = Box<dyn std::error::Error>;

/// A project with one image `<org>/project-tool` built in the test dockerd.
struct Fixture {
    repo: Repo,
    docker: String,
    org: String,
    /// Keeps Docker's config directory (empty: nothing may be written there).
    docker_config: tempfile::TempDir,
}

impl Fixture {
    /// Build `<org>/project-tool` with `tags` (patterns) and a unique label.
    fn new(test: &str, tags: &str) -> Result<Option<Self>, Failure> {
        let Some(docker) = service(Service::Docker) else {
            return Ok(None);
        };
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
        let org = format!("{}{}", test.replace('_', ""), nanos % 1_000_000);
        let repo = Repo::new("feature/push_test")?;
        repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
        let busybox =
            std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
        std::fs::create_dir_all(repo.file("bin"))?;
        std::fs::copy(Path::new(&busybox), repo.file("bin/busybox"))?;
        repo.write(
            "sgr.toml",
            format!("org = \"{org}\"\n[[image]]\nname = \"{{org}}/{{module}}-tool\"\ndockerfile = \"Dockerfile\"\ntags = [{tags}]\n"),
        )?;
        let fixture = Self {
            repo,
            docker,
            org,
            docker_config: tempfile::tempdir()?,
        };
        fixture.rebuild("first")?;
        Ok(Some(fixture))
    }

    /// Change the image's content and build it again.
    fn rebuild(&self, marker: &str) -> Result<(), Failure> {
        self.repo.write(
            "Dockerfile",
            format!(
                "FROM scratch\nCOPY bin/busybox /bin/busybox\nLABEL marker=\"{}-{marker}\"\n",
                self.org
            ),
        )?;
        self.repo.commit(marker)?;
        self.repo
            .sgr()
            .args(["build"])
            .env("DOCKER_HOST", &self.docker)
            .assert()
            .success();
        Ok(())
    }

    /// The repository the image gets in registries.
    fn remote(&self) -> String {
        format!("{}/project/tool", self.org)
    }

    /// `sgr push` with a clean credential environment.
    fn push(&self) -> assert_cmd::Command {
        let mut command = self.repo.sgr();
        command
            .arg("push")
            .env("DOCKER_HOST", &self.docker)
            .env("DOCKER_CONFIG", self.docker_config.path());
        for name in [
            "azure_registry_name",
            "IDENTITY_ENDPOINT",
            "IDENTITY_HEADER",
            "MSI_ENDPOINT",
            "AZURE_CLIENT_ID",
            "AZURE_CLIENT_SECRET",
            "AZURE_TENANT_ID",
            "AZURE_FEDERATED_TOKEN_FILE",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// The local image id.
    fn image_id(&self) -> Result<String, Failure> {
        let reference = format!("{}/project-tool:feature-push-test", self.org);
        let docker = self.docker.clone();
        sgr_test_support::runtime()?.block_on(async move {
            let engine = bollard::Docker::connect_with_host(&docker)?
                .negotiate_version()
                .await?;
            Ok(engine
                .inspect_image(&reference)
                .await?
                .id
                .unwrap_or_default())
        })
    }
}

fn registry_credentials() -> Option<(String, String, String)> {
    let host = service(Service::Registry)?;
    let user = sgr_test_support::service_setting(Service::Registry, "SGR_TEST_REGISTRY_USERNAME")?;
    let password =
        sgr_test_support::service_setting(Service::Registry, "SGR_TEST_REGISTRY_PASSWORD")?;
    Some((host, user, password))
}

/// The config digest of `repository:tag` in a basic-auth registry (`None`: no such tag).
fn remote_image(
    host: &str,
    user: &str,
    password: &str,
    repository: &str,
    tag: &str,
) -> Result<Option<String>, Failure> {
    sgr_test_support::runtime()?.block_on(async {
        let response = reqwest::Client::new()
            .get(format!("http://{host}/v2/{repository}/manifests/{tag}"))
            .basic_auth(user, Some(password))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let manifest: serde_json::Value = response.error_for_status()?.json().await?;
        Ok(manifest["config"]["digest"].as_str().map(str::to_owned))
    })
}

fn rows(stdout: &[u8]) -> Result<Vec<serde_json::Value>, Failure> {
    let value: serde_json::Value = serde_json::from_slice(stdout)?;
    Ok(value.as_array().cloned().unwrap_or_default())
}

fn uploads(proxy: &FaultProxy) -> usize {
    proxy
        .seen()
        .iter()
        .filter(|seen| matches!(seen.method.as_str(), "PUT" | "POST" | "PATCH"))
        .count()
}

#[test]
fn pushes_to_a_password_registry_and_a_rerun_uploads_nothing() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("rerun", "\"{branch}\", \"{version}\"")? else {
        return Ok(());
    };
    let proxy = FaultProxy::start(&registry)?;
    let output = fixture
        .push()
        .args(["--registry", &proxy.address(), "--output", "json"])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success()
        .stderr(contains("credentials from SGR_REGISTRY_USERNAME"))
        .get_output()
        .clone();
    let first = rows(&output.stdout)?;
    assert_eq!(first.len(), 2, "{first:?}");
    for row in &first {
        assert_eq!(row["result"], "pushed", "{row}");
        assert!(
            row["digest"]
                .as_str()
                .is_some_and(|digest| digest.starts_with("sha256:")),
            "{row}"
        );
    }
    assert!(uploads(&proxy) > 0, "the first push uploaded nothing");
    let id = fixture.image_id()?;
    for tag in ["feature-push-test", "1.0.0"] {
        assert_eq!(
            remote_image(&registry, &user, &password, &fixture.remote(), tag)?.as_deref(),
            Some(id.as_str()),
            "{tag}"
        );
    }
    assert!(
        std::fs::read_dir(fixture.docker_config.path())?
            .next()
            .is_none(),
        "sgr wrote into Docker's config directory"
    );

    proxy.clear();
    let output = fixture
        .push()
        .args(["--registry", &proxy.address(), "--output", "json"])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success()
        .get_output()
        .clone();
    let again = rows(&output.stdout)?;
    assert_eq!(again.len(), 2);
    for (row, before) in again.iter().zip(&first) {
        assert_eq!(row["result"], "up to date", "{row}");
        assert_eq!(row["digest"], before["digest"], "{row}");
    }
    assert_eq!(uploads(&proxy), 0, "a re-run uploaded: {:?}", proxy.seen());
    Ok(())
}

#[test]
fn a_version_tag_holding_another_image_is_refused_and_a_branch_tag_moves() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("conflict", "\"{branch}\", \"{version}\"")? else {
        return Ok(());
    };
    let push = || {
        let mut command = fixture.push();
        command
            .args(["--registry", &registry])
            .env("SGR_REGISTRY_USERNAME", &user)
            .env("SGR_REGISTRY_PASSWORD", &password);
        command
    };
    push().assert().success();
    let old = fixture.image_id()?;
    fixture.rebuild("second")?;
    let new = fixture.image_id()?;
    assert_ne!(old, new);
    push().assert().code(1).stderr(
        contains("already holds another image")
            .and(contains(old.as_str()))
            .and(contains(new.as_str()))
            .and(contains("hint: bump the version")),
    );
    assert_eq!(
        remote_image(&registry, &user, &password, &fixture.remote(), "1.0.0")?.as_deref(),
        Some(old.as_str()),
        "the version tag was overwritten"
    );
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(new.as_str()),
        "the branch tag did not move"
    );
    Ok(())
}

#[test]
fn a_wrong_password_fails_clearly_and_no_secret_is_ever_printed() -> TestResult {
    let Some((registry, user, _)) = registry_credentials() else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("canary", "\"{branch}\"")? else {
        return Ok(());
    };
    let canary = "canary-pw-5b0e1d7c";
    let never_printed = |output: &std::process::Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(!text.contains(canary), "the password was printed:\n{text}");
    };
    let output = fixture
        .push()
        .args(["-vv", "--registry", &registry])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", canary)
        .env("SGR_LOG", "debug")
        .assert()
        .code(1)
        .stderr(
            contains(format!("{registry} refused the credentials of user {user}"))
                .and(contains("hint: check the credentials")),
        )
        .stdout(contains("failed"))
        .get_output()
        .clone();
    never_printed(&output);
    for extra in [
        &["--dry-run"][..],
        &["--dry-run", "--output", "json"],
        &["--output", "json"],
    ] {
        let output = fixture
            .push()
            .args(["--registry", &registry])
            .args(extra)
            .env("SGR_REGISTRY_USERNAME", &user)
            .env("SGR_REGISTRY_PASSWORD", canary)
            .output()?;
        never_printed(&output);
    }
    Ok(())
}

#[test]
fn a_registry_answering_errors_is_retried() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("retry", "\"{branch}\"")? else {
        return Ok(());
    };
    let proxy = FaultProxy::start(&registry)?;
    // sgr's own manifest check meets two 500s.
    proxy.fail_next(
        2,
        500,
        Some("GET"),
        Some(&format!(
            "/v2/{}/manifests/feature-push-test",
            fixture.remote()
        )),
    );
    let output = fixture
        .push()
        .args(["-v", "--registry", &proxy.address()])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success()
        .stdout(contains("pushed"))
        .get_output()
        .clone();
    let injected = proxy
        .seen()
        .iter()
        .filter(|seen| seen.injected.is_some())
        .count();
    assert_eq!(injected, 2, "{:?}", proxy.seen());
    assert!(!String::from_utf8_lossy(&output.stderr).contains("error:"));

    fixture.rebuild("engine-retry")?;
    proxy.clear();
    // The engine's manifest upload meets a 500: the push fails inside the stream and is retried.
    proxy.fail_next(
        1,
        500,
        Some("PUT"),
        Some(&format!(
            "/v2/{}/manifests/feature-push-test",
            fixture.remote()
        )),
    );
    fixture
        .push()
        .args(["-v", "--registry", &proxy.address()])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success()
        .stderr(contains("retrying"))
        .stdout(contains("pushed"));
    assert_eq!(
        proxy
            .seen()
            .iter()
            .filter(|seen| seen.injected.is_some())
            .count(),
        1,
        "{:?}",
        proxy.seen()
    );
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(fixture.image_id()?.as_str())
    );
    Ok(())
}

/// The ACR look-alike: Entra token from the managed-identity endpoint,
/// exchanged at /oauth2/exchange, refresh token used as the null GUID.
fn azure_environment(command: &mut assert_cmd::Command) -> Option<String> {
    let endpoint = service(Service::IdentityEndpoint)?;
    let header =
        sgr_test_support::service_setting(Service::IdentityEndpoint, "SGR_TEST_IDENTITY_HEADER")?;
    command
        .env("IDENTITY_ENDPOINT", endpoint)
        .env("IDENTITY_HEADER", header);
    Some(String::new())
}

fn token_service_post(path: &str, form: &[(&str, &str)]) -> Result<serde_json::Value, Failure> {
    let Some(base) = service(Service::TokenService) else {
        return Err(format!(
            "{path} needs the {} beside the token registry",
            Service::TokenService
        )
        .into());
    };
    sgr_test_support::runtime()?.block_on(async {
        let client = reqwest::Client::new();
        let response = if form.is_empty() {
            client.get(format!("{base}{path}")).send().await?
        } else {
            client
                .post(format!("{base}{path}"))
                .form(form)
                .send()
                .await?
        };
        Ok(response.error_for_status()?.json().await?)
    })
}

#[test]
fn pushes_to_an_acr_look_alike_and_renews_a_token_that_expires_mid_run() -> TestResult {
    let Some(registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("acr", "\"{branch}\", \"{short_hash}\", \"{version}\"")?
    else {
        return Ok(());
    };
    // Refresh tokens of this tenant work twice: the run must renew them.
    let tenant = format!("tenant-{}", fixture.org);
    token_service_post("/control/limit", &[("tenant", &tenant), ("uses", "2")])?;
    let mut command = fixture.push();
    if azure_environment(&mut command).is_none() {
        return Ok(());
    }
    let output = command
        .args(["--azure", "--azure-registry", &registry, "--output", "json"])
        .env("AZURE_TENANT_ID", &tenant)
        .assert()
        .success()
        .stderr(contains(format!(
            "{registry}: credentials from managed identity"
        )))
        .get_output()
        .clone();
    let pushed = rows(&output.stdout)?;
    assert_eq!(pushed.len(), 3, "{pushed:?}");
    for row in &pushed {
        assert_eq!(row["result"], "pushed", "{row}");
        assert_eq!(row["kind"], "azure", "{row}");
        assert!(
            row["target"].as_str().is_some_and(
                |target| target.starts_with(&format!("{registry}/{}:", fixture.remote()))
            ),
            "{row}"
        );
    }
    let stats = token_service_post("/control/stats", &[])?;
    let exchanges = stats["by_tenant"][&tenant].as_u64().unwrap_or(0);
    assert!(
        exchanges >= 2,
        "the expired refresh token was not renewed: {stats}"
    );
    Ok(())
}

#[test]
fn pushes_to_ecr_through_moto_creating_the_repository() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    if service(Service::Aws).is_none() {
        return Ok(());
    }
    let Some(fixture) = Fixture::new("ecr", "\"{branch}\"")? else {
        return Ok(());
    };
    // moto's proxyEndpoint is fake: the htpasswd registry, which knows moto's
    // token as user AWS, stands in for the account's ECR endpoint.
    fixture
        .push()
        .args(["--aws"])
        .env("SGR_ECR_REGISTRY_OVERRIDE", &registry)
        .assert()
        .success()
        .stderr(
            contains("credentials from AWS default credential chain")
                .and(contains(format!("created repository {}", fixture.remote()))),
        )
        .stdout(contains("pushed"));
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(fixture.image_id()?.as_str())
    );
    // The repository exists now: not created again, and the image is up to date.
    fixture
        .push()
        .args(["--aws"])
        .env("SGR_ECR_REGISTRY_OVERRIDE", &registry)
        .assert()
        .success()
        .stderr(contains("created repository").not())
        .stdout(contains("up to date"));
    Ok(())
}

#[test]
fn an_implied_provider_without_credentials_is_skipped() -> TestResult {
    let Some(registry) = service(Service::Registry) else {
        return Ok(());
    };
    let Some(token_registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    if service(Service::Aws).is_none() {
        return Ok(());
    }
    let Some(fixture) = Fixture::new("implied", "\"{branch}\"")? else {
        return Ok(());
    };
    // No flag: ACR because azure_registry_name is set (but no Azure credentials), ECR because AWS has some.
    fixture
        .push()
        .env("azure_registry_name", &token_registry)
        .env("SGR_ECR_REGISTRY_OVERRIDE", &registry)
        .env("PATH", "/usr/bin:/bin")
        .assert()
        .success()
        .stderr(contains(
            "warning: skipping azure: no usable Azure credentials",
        ))
        .stdout(contains("pushed").and(contains(token_registry.as_str()).not()));
    Ok(())
}

#[test]
fn an_asked_for_provider_without_credentials_fails_but_others_still_push() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(token_registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("explicit", "\"{branch}\"")? else {
        return Ok(());
    };
    fixture
        .push()
        .args([
            "--azure",
            "--azure-registry",
            &token_registry,
            "--registry",
            &registry,
        ])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .env("PATH", "/usr/bin:/bin")
        .assert()
        .code(1)
        .stderr(
            contains("no usable Azure credentials")
                .and(contains("managed identity"))
                .and(contains("hint: set SGR_ACR_USERNAME")),
        )
        .stdout(contains("pushed").and(contains("failed")));
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(fixture.image_id()?.as_str()),
        "the registry with credentials was not pushed to"
    );
    Ok(())
}

#[test]
fn atomic_applies_version_tags_only_after_every_push() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(token_registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("atomic", "\"{branch}\", \"{version}\"")? else {
        return Ok(());
    };
    // One registry cannot be used: no version tag anywhere, the branch tag is pushed.
    fixture
        .push()
        .args([
            "--atomic",
            "--azure",
            "--azure-registry",
            &token_registry,
            "--registry",
            &registry,
        ])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .env("PATH", "/usr/bin:/bin")
        .assert()
        .code(1)
        .stdout(contains("skipped"));
    assert_eq!(
        remote_image(&registry, &user, &password, &fixture.remote(), "1.0.0")?,
        None
    );
    let id = fixture.image_id()?;
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(id.as_str())
    );
    // All good: the version tag is copied from the pushed manifest.
    fixture
        .push()
        .args(["--atomic", "--registry", &registry])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success();
    assert_eq!(
        remote_image(&registry, &user, &password, &fixture.remote(), "1.0.0")?.as_deref(),
        Some(id.as_str())
    );
    Ok(())
}

#[test]
fn dry_run_contacts_neither_engine_nor_registry() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>2.1.0</repo-version>\n")?;
    repo.write("Dockerfile", "FROM scratch\n")?;
    repo.write("runner/Dockerfile", "FROM scratch\n")?;
    repo.commit("fixture")?;
    let output = repo
        .sgr()
        .args([
            "push",
            "--dry-run",
            "--registry",
            "127.0.0.1:9",
            "--azure",
            "--azure-registry",
            "leafai",
            "--output",
            "json",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .env("SGR_REGISTRY_PASSWORD", "canary-dry-77")
        .assert()
        .success()
        .get_output()
        .clone();
    let text = String::from_utf8(output.stdout)?;
    assert!(!text.contains("canary-dry-77"));
    let plan: serde_json::Value = serde_json::from_str(&text)?;
    let targets: Vec<&str> = plan["targets"]
        .as_array()
        .map(|targets| {
            targets
                .iter()
                .filter_map(serde_json::Value::as_str)
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        targets,
        [
            "leafai/project-build:main -> leafai.azurecr.io/leafai/project/build:main",
            "leafai/project-runner:2.1.0 -> leafai.azurecr.io/leafai/project/runner:2.1.0",
            "leafai/project-build:main -> 127.0.0.1:9/leafai/project/build:main",
            "leafai/project-runner:2.1.0 -> 127.0.0.1:9/leafai/project/runner:2.1.0",
        ]
    );
    repo.sgr()
        .args([
            "push",
            "--dry-run",
            "--registry",
            "r.example",
            "--tag",
            "{short_hash}",
            "--tag",
            "nightly",
        ])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .success()
        .stdout(
            contains("r.example/leafai/project/build:nightly")
                .and(contains("r.example/leafai/project/runner:nightly")),
        );
    Ok(())
}

/// build.sh's Docker Hub layout, `leafai/studio-go-runner:<version>`, in one `remote` line.
#[test]
fn the_docker_hub_layout_of_build_sh_is_expressible() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write(
        "README.md",
        "Version: <repo-version>0.13.1</repo-version>\n",
    )?;
    repo.write("cmd/runner/Dockerfile.stock", "FROM scratch\n")?;
    repo.write(
        "sgr.toml",
        "[[image]]\nname = \"leafai/studio-go-runner\"\nremote = \"leafai/studio-go-runner\"\ndockerfile = \"cmd/runner/Dockerfile.stock\"\ncontext = \"cmd/runner\"\ntags = [\"{version}\"]\n",
    )?;
    repo.commit("fixture")?;
    repo.sgr()
        .args(["push", "--dry-run", "--registry", "docker.io"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .success()
        .stdout(contains(
            "leafai/studio-go-runner:0.13.1 -> docker.io/leafai/studio-go-runner:0.13.1",
        ));
    Ok(())
}

#[test]
fn bad_input_is_a_usage_error() {
    let Ok(repo) = Repo::new("main") else {
        panic!("no scratch repository")
    };
    assert!(repo.write("Dockerfile", "FROM scratch\n").is_ok());
    assert!(repo.commit("fixture").is_ok());
    repo.sgr()
        .args(["push", "--azure"])
        .env_remove("azure_registry_name")
        .assert()
        .code(2)
        .stderr(contains("--azure needs the registry").and(contains("hint:")));
    repo.sgr()
        .args(["push", "--registry", "r.example", "--tag", "{nope}"])
        .assert()
        .code(2)
        .stderr(contains("unknown placeholder {nope}"));
    repo.sgr()
        .args(["push", "--registry", "r.example", "no-such-image"])
        .assert()
        .code(2)
        .stderr(contains("no image no-such-image in the plan"));
    repo.sgr()
        .args(["push", "--registry", "r.example"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .assert()
        .code(2)
        .stderr(contains("cannot reach the Docker engine").and(contains("hint:")));
}

#[test]
fn two_registries_get_the_image_once_through_the_engine_and_once_copied() -> TestResult {
    let Some((registry, user, password)) = registry_credentials() else {
        return Ok(());
    };
    let Some(token_registry) = service(Service::TokenRegistry) else {
        return Ok(());
    };
    let Some(fixture) = Fixture::new("mirror", "\"{branch}\"")? else {
        return Ok(());
    };
    // The token service's admin user has the htpasswd registry's password.
    let output = fixture
        .push()
        .args([
            "--registry",
            &registry,
            "--azure",
            "--azure-registry",
            &token_registry,
            "--output",
            "json",
        ])
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .env("SGR_ACR_USERNAME", "sgrtest")
        .env("SGR_ACR_PASSWORD", &password)
        .assert()
        .success()
        .stderr(contains(
            "credentials from registry user from SGR_ACR_USERNAME",
        ))
        .get_output()
        .clone();
    let pushed = rows(&output.stdout)?;
    assert_eq!(pushed.len(), 2, "{pushed:?}");
    assert!(
        pushed.iter().all(|row| row["result"] == "pushed"),
        "{pushed:?}"
    );
    assert_eq!(
        pushed[0]["digest"], pushed[1]["digest"],
        "the manifests differ"
    );
    // Only the registry the engine pushed to has a local tag; the other got a copy.
    let targets: Vec<String> = pushed
        .iter()
        .filter_map(|row| row["target"].as_str().map(str::to_owned))
        .collect();
    let docker = fixture.docker.clone();
    let tagged = sgr_test_support::runtime()?.block_on(async move {
        let engine = bollard::Docker::connect_with_host(&docker)?
            .negotiate_version()
            .await?;
        let mut tagged = 0;
        for target in &targets {
            if engine.inspect_image(target).await.is_ok() {
                tagged += 1;
            }
        }
        Ok::<_, Failure>(tagged)
    })?;
    assert_eq!(tagged, 1, "the engine pushed to both registries");
    assert_eq!(
        remote_image(
            &registry,
            &user,
            &password,
            &fixture.remote(),
            "feature-push-test"
        )?
        .as_deref(),
        Some(fixture.image_id()?.as_str())
    );
    Ok(())
}
