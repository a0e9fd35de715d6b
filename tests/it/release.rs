//! `sgr release` against the fake GitHub of test-support: sgr's real
//! octocrab code talks HTTP to it (API and uploads on two hosts, as GitHub).

use predicates::prelude::*;
use predicates::str::contains;
use sgr_test_support::{FakeGitHub, Fault};

use crate::common::{Repo, TestResult};

const TOKEN: &str = "ghp_canary_token_8c1f2e";

/// A repository whose remote is github.com/leaf-ai/demo, version `version`, with `files`.
fn project(version: &str, files: &[(&str, &str)]) -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("main")?;
    repo.write(
        "README.md",
        format!("Version: <repo-version>{version}</repo-version>\n"),
    )?;
    repo.commit("first change")?;
    repo.git(&["tag", "1.0.0"])?;
    for (name, content) in files {
        repo.write(&format!("dist/{name}"), content)?;
    }
    repo.commit("add the binaries")?;
    repo.git(&["remote", "add", "origin", "git@github.com:leaf-ai/demo.git"])?;
    Ok(repo)
}

fn release(repo: &Repo, github: &FakeGitHub) -> assert_cmd::Command {
    let mut command = repo.sgr();
    command
        .arg("release")
        .args(["--api-url", &github.api_url()])
        .env("GITHUB_TOKEN", TOKEN)
        .env("PATH", "/usr/bin:/bin");
    command
}

fn sha256(text: &str) -> String {
    use sha2::Digest as _;
    use std::fmt::Write as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .fold(String::from("sha256:"), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

fn uploads(github: &FakeGitHub) -> usize {
    github
        .log()
        .iter()
        .filter(|(method, path)| method == "POST" && path.ends_with("/assets"))
        .count()
}

fn text_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn first_release_then_a_rerun_uploads_nothing() -> TestResult {
    let repo = project("1.2.0", &[("a.bin", "alpha"), ("b.bin", "bravo")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    let output = release(&repo, &github)
        .args(["-vv", "dist/*.bin"])
        .assert()
        .success()
        .stdout(
            contains("a.bin")
                .and(contains("uploaded"))
                .and(contains("SHA256SUMS")),
        )
        .get_output()
        .clone();
    assert!(!text_of(&output).contains(TOKEN), "the token was printed");
    let releases = github.releases();
    assert_eq!(releases.len(), 1);
    let made = &releases[0];
    assert_eq!(made.tag_name, "1.2.0");
    assert_eq!(made.target_commitish, repo.git(&["rev-parse", "HEAD"])?);
    assert!(!made.draft && !made.prerelease);
    assert!(
        made.body.contains("Changes since 1.0.0") && made.body.contains("add the binaries"),
        "{}",
        made.body
    );
    assert!(!made.body.contains("first change"), "{}", made.body);
    let names: Vec<&str> = made
        .assets
        .iter()
        .map(|asset| asset.name.as_str())
        .collect();
    assert_eq!(names, ["a.bin", "b.bin", "SHA256SUMS"]);
    for (name, content) in [("a.bin", "alpha"), ("b.bin", "bravo")] {
        let asset = made
            .assets
            .iter()
            .find(|asset| asset.name == name)
            .ok_or("asset missing")?;
        assert_eq!(asset.digest, sha256(content), "{name}");
    }
    let sums = made
        .assets
        .iter()
        .find(|asset| asset.name == "SHA256SUMS")
        .ok_or("no SHA256SUMS")?;
    let expected = format!(
        "{}  a.bin\n{}  b.bin\n",
        sha256("alpha").trim_start_matches("sha256:"),
        sha256("bravo").trim_start_matches("sha256:")
    );
    assert_eq!(sums.digest, sha256(&expected));
    assert_eq!(made.assets.len(), 3);

    github.clear_log();
    release(&repo, &github)
        .arg("dist/*.bin")
        .assert()
        .success()
        .stdout(contains("up to date").and(contains("uploaded").not()));
    assert_eq!(uploads(&github), 0, "{:?}", github.log());
    assert!(
        github.log().iter().all(|(method, _)| method == "GET"),
        "{:?}",
        github.log()
    );
    assert_eq!(github.releases().len(), 1);
    Ok(())
}

#[test]
fn a_failure_after_two_of_four_assets_is_resumed_by_running_again() -> TestResult {
    let repo = project(
        "2.0.0",
        &[("1.bin", "one"), ("2.bin", "two"), ("3.bin", "three")],
    )?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    github.fault(Fault::UploadsFailAfter(2));
    release(&repo, &github)
        .arg("dist/*")
        .assert()
        .code(1)
        .stderr(
            contains("upload")
                .and(contains("500"))
                .and(contains("hint: run the same command again")),
        );
    assert_eq!(github.releases()[0].assets.len(), 2);
    github.fault(Fault::UploadsFailAfter(100));
    github.clear_log();
    release(&repo, &github).arg("dist/*").assert().success();
    assert_eq!(
        uploads(&github),
        2,
        "only the missing assets: {:?}",
        github.log()
    );
    let releases = github.releases();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].assets.len(), 4);
    Ok(())
}

#[test]
fn a_draft_is_published_only_after_every_asset() -> TestResult {
    let repo = project("3.0.0", &[("x.bin", "x"), ("y.bin", "y")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    github.fault(Fault::UploadsFailAfter(1));
    release(&repo, &github)
        .args(["--draft", "dist/*"])
        .assert()
        .code(1);
    let releases = github.releases();
    assert!(releases[0].draft, "published before its assets were up");
    github.fault(Fault::UploadsFailAfter(100));
    // The draft is found again (the by-tag lookup would not see it), not duplicated.
    release(&repo, &github)
        .args(["--draft", "dist/*"])
        .assert()
        .success()
        .stderr(contains("found release 3.0.0").and(contains("published 3.0.0")));
    let releases = github.releases();
    assert_eq!(releases.len(), 1);
    assert!(!releases[0].draft);
    assert_eq!(releases[0].assets.len(), 3);
    Ok(())
}

#[test]
fn a_prerelease_version_makes_a_prerelease_with_the_tag_prefix() -> TestResult {
    let repo = project("4.1.0-rc.2", &[])?;
    let notes = repo.file("NOTES.md");
    std::fs::write(&notes, "Hand-written notes.\n")?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    release(&repo, &github)
        .args(["--tag-prefix", "v", "--notes-file"])
        .arg(&notes)
        .assert()
        .success();
    let releases = github.releases();
    assert_eq!(releases[0].tag_name, "v4.1.0-rc.2");
    assert!(releases[0].prerelease);
    assert_eq!(releases[0].body, "Hand-written notes.\n");
    assert!(releases[0].assets.is_empty());
    Ok(())
}

#[test]
fn a_different_asset_is_refused_unless_replace() -> TestResult {
    let repo = project("5.0.0", &[("tool", "old build")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    release(&repo, &github).arg("dist/tool").assert().success();
    repo.write("dist/tool", "new build")?;
    github.clear_log();
    release(&repo, &github)
        .arg("dist/tool")
        .assert()
        .code(1)
        .stderr(
            contains("differ from the local files: tool, SHA256SUMS")
                .and(contains("hint: re-run with --replace")),
        );
    assert!(
        github.log().iter().all(|(method, _)| method == "GET"),
        "changed something: {:?}",
        github.log()
    );
    release(&repo, &github)
        .args(["--replace", "dist/tool"])
        .assert()
        .success()
        .stdout(contains("replaced"));
    let releases = github.releases();
    let tool = releases[0]
        .assets
        .iter()
        .find(|asset| asset.name == "tool")
        .ok_or("no tool")?;
    assert_eq!(tool.digest, sha256("new build"));
    assert_eq!(releases[0].assets.len(), 2);
    Ok(())
}

#[test]
fn rate_limits_and_server_errors_are_waited_out() -> TestResult {
    let repo = project("6.0.0", &[("r.bin", "r")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    github.fault(Fault::RateLimited(1));
    release(&repo, &github)
        .arg("dist/r.bin")
        .assert()
        .success()
        .stderr(contains("rate limited"));
    let second = project("6.0.1", &[("r.bin", "r")])?;
    let other = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    other.fault(Fault::ServerErrors(2));
    release(&second, &other)
        .arg("dist/r.bin")
        .assert()
        .success();
    assert_eq!(other.releases().len(), 1);
    let listings = other
        .log()
        .iter()
        .filter(|(method, path)| method == "GET" && path.ends_with("/releases"))
        .count();
    assert!(
        listings >= 3,
        "the two 500s were not retried: {:?}",
        other.log()
    );
    Ok(())
}

#[test]
fn a_missing_or_wrong_token_fails_without_printing_it() -> TestResult {
    let repo = project("7.0.0", &[("t.bin", "t")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    release(&repo, &github)
        .arg("dist/t.bin")
        .env_remove("GITHUB_TOKEN")
        .assert()
        .code(2)
        .stderr(contains("no GitHub token").and(contains("hint: export GITHUB_TOKEN")));
    let token_file = repo.file("token.txt");
    std::fs::write(&token_file, "ghp_wrong_canary_77\n")?;
    let output = release(&repo, &github)
        .args(["-vv", "dist/t.bin", "--token-file"])
        .arg(&token_file)
        .env_remove("GITHUB_TOKEN")
        .assert()
        .code(1)
        .stderr(contains("401").and(contains("hint: the token was refused")))
        .get_output()
        .clone();
    assert!(!text_of(&output).contains("ghp_wrong_canary_77"));
    assert!(github.authorization_failures() > 0);
    assert!(github.releases().is_empty());
    Ok(())
}

#[test]
fn a_remote_that_is_not_github_shaped_is_a_usage_error() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "Version: <repo-version>1.0.0</repo-version>\n")?;
    repo.commit("c")?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    release(&repo, &github)
        .assert()
        .code(2)
        .stderr(contains("has no remote").and(contains("hint: name it with --repo")));
    repo.git(&[
        "remote",
        "add",
        "origin",
        "https://gitlab.example/group/sub/demo.git",
    ])?;
    release(&repo, &github)
        .assert()
        .code(2)
        .stderr(contains("'group/sub/demo' is not OWNER/NAME"));
    release(&repo, &github)
        .args(["--repo", "leaf-ai/demo"])
        .assert()
        .success();
    assert_eq!(github.releases().len(), 1);
    Ok(())
}

#[test]
fn dry_run_lists_the_release_without_github() -> TestResult {
    let repo = project("8.0.0", &[("d.bin", "dry")])?;
    repo.sgr()
        .args([
            "release",
            "--dry-run",
            "--api-url",
            "http://127.0.0.1:9",
            "dist/d.bin",
        ])
        .env_remove("GITHUB_TOKEN")
        .env("PATH", "/usr/bin:/bin")
        .assert()
        .success()
        .stdout(
            contains("release 8.0.0 of leaf-ai/demo at")
                .and(contains(format!(
                    "d.bin  3 B  {}",
                    sha256("dry").trim_start_matches("sha256:")
                )))
                .and(contains("SHA256SUMS")),
        );
    repo.sgr()
        .args(["release", "dist/none-*"])
        .assert()
        .code(2)
        .stderr(contains("dist/none-*: matches no file"));
    Ok(())
}

/// `--images`: the image built for the pre-release goes out under the release
/// version, the GitHub release is made for it, and README.md changes last.
#[test]
fn images_are_promoted_and_the_version_file_changes_only_after_success() -> TestResult {
    let Some(docker) = sgr_test_support::service(sgr_test_support::Service::Docker) else {
        return Ok(());
    };
    let Some(registry) = sgr_test_support::service(sgr_test_support::Service::Registry) else {
        return Ok(());
    };
    let user = std::env::var("SGR_TEST_REGISTRY_USERNAME")?;
    let password = std::env::var("SGR_TEST_REGISTRY_PASSWORD")?;
    let repo = project("1.4.0-main-aaaa", &[("tool.bin", "tool")])?;
    let busybox = std::env::var("SGR_TEST_BUSYBOX").unwrap_or_else(|_| "/bin/busybox".to_owned());
    std::fs::create_dir_all(repo.file("bin"))?;
    std::fs::copy(&busybox, repo.file("bin/busybox"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    let org = format!("promote{}", nanos % 1_000_000);
    repo.write(
        "Dockerfile",
        format!("FROM scratch\nCOPY bin/busybox /bin/busybox\nLABEL marker={org}\n"),
    )?;
    repo.write(
        "sgr.toml",
        format!("org = \"{org}\"\n[[image]]\nname = \"{{org}}/{{module}}-runner\"\ndockerfile = \"Dockerfile\"\ntags = [\"{{version}}\"]\n"),
    )?;
    repo.commit("image")?;
    repo.sgr()
        .arg("build")
        .env("DOCKER_HOST", &docker)
        .assert()
        .success();
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;

    // A push that fails (wrong password): no release, README untouched.
    release(&repo, &github)
        .args(["--images", "--registry", &registry, "dist/tool.bin"])
        .env("DOCKER_HOST", &docker)
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", "wrong-password")
        .assert()
        .code(1);
    assert!(
        github.releases().is_empty(),
        "released although the push failed"
    );
    assert!(String::from_utf8(repo.read("README.md")?)?.contains("1.4.0-main-aaaa"));

    release(&repo, &github)
        .args(["--images", "--registry", &registry, "dist/tool.bin"])
        .env("DOCKER_HOST", &docker)
        .env("SGR_REGISTRY_USERNAME", &user)
        .env("SGR_REGISTRY_PASSWORD", &password)
        .assert()
        .success()
        .stderr(contains(format!(
            "tagged {org}/project-runner:1.4.0-main-aaaa as {org}/project-runner:1.4.0"
        )))
        .stdout(contains(format!("{registry}/{org}/project/runner:1.4.0")));
    let releases = github.releases();
    assert_eq!(releases.len(), 1);
    assert_eq!(releases[0].tag_name, "1.4.0");
    assert!(!releases[0].prerelease);
    assert_eq!(
        String::from_utf8(repo.read("README.md")?)?,
        "Version: <repo-version>1.4.0</repo-version>\n"
    );
    let manifest = sgr_test_support::runtime()?.block_on(async {
        reqwest::Client::new()
            .get(format!(
                "http://{registry}/v2/{org}/project/runner/manifests/1.4.0"
            ))
            .basic_auth(&user, Some(&password))
            .header(
                "Accept",
                "application/vnd.docker.distribution.manifest.v2+json",
            )
            .send()
            .await
    })?;
    assert_eq!(manifest.status(), reqwest::StatusCode::OK);
    Ok(())
}

fn downloads(github: &FakeGitHub) -> Vec<String> {
    github
        .log()
        .into_iter()
        .filter(|(method, path)| method == "GET" && path.contains("/releases/assets/"))
        .map(|(_, path)| path)
        .collect()
}

#[test]
fn assets_without_a_digest_are_recognised_by_sha256sums_then_by_size_and_hash() -> TestResult {
    let repo = project("2.0.0", &[("a.bin", "alpha"), ("b.bin", "bravo")])?;
    let github = FakeGitHub::start("leaf-ai", "demo", TOKEN)?;
    // GitHub before June 2025, or GitHub Enterprise Server: no `digest`.
    github.omit_digests(true);
    release(&repo, &github).arg("dist/*.bin").assert().success();

    // The release's own SHA256SUMS decides: it is the only download.
    github.clear_log();
    release(&repo, &github)
        .arg("dist/*.bin")
        .assert()
        .success()
        .stdout(contains("up to date").and(contains("uploaded").not()));
    assert_eq!(uploads(&github), 0, "{:?}", github.log());
    assert_eq!(downloads(&github).len(), 1, "{:?}", github.log());

    // Same size, other bytes: told apart.
    repo.write("dist/b.bin", "bravX")?;
    release(&repo, &github)
        .arg("dist/*.bin")
        .assert()
        .code(1)
        .stderr(contains("differ from the local files: b.bin, SHA256SUMS"));
    repo.write("dist/b.bin", "bravo")?;

    // Without SHA256SUMS on the release: size, then a downloaded hash.
    github.remove_asset("SHA256SUMS");
    repo.write("dist/a.bin", "alphA")?;
    github.clear_log();
    release(&repo, &github)
        .arg("dist/*.bin")
        .assert()
        .code(1)
        .stderr(contains("differ from the local files: a.bin").and(contains("b.bin").not()));
    assert_eq!(downloads(&github).len(), 2, "{:?}", github.log());
    repo.write("dist/a.bin", "alpha")?;
    github.clear_log();
    release(&repo, &github)
        .arg("dist/*.bin")
        .assert()
        .success()
        .stdout(contains("uploaded").and(contains("SHA256SUMS")));
    assert_eq!(uploads(&github), 1, "only SHA256SUMS: {:?}", github.log());
    Ok(())
}
