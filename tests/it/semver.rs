//! `sgr semver` end to end: every subcommand, every bad input, and the
//! byte-for-byte preservation of version files.

use predicates::prelude::*;
use predicates::str::contains;

use crate::common::{Repo, TestResult, sgr_command};

const README: &str = "# Project\n\nVersion: <repo-version>0.9.9</repo-version>\n";
/// 2019-01-25T19:10:44Z, the reference's worked example.
const EPOCH: &str = "1548443444";

fn repo_with(readme: &str) -> Result<Repo, Box<dyn std::error::Error>> {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write("README.md", readme)?;
    repo.commit("initial")?;
    Ok(repo)
}

fn readme_of(repo: &Repo) -> Result<String, Box<dyn std::error::Error>> {
    Ok(String::from_utf8(repo.read("README.md")?)?)
}

#[test]
fn extract_is_the_default() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .arg("semver")
        .assert()
        .success()
        .stdout("0.9.9\n")
        .stderr("");
    repo.sgr()
        .args(["semver", "extract"])
        .assert()
        .success()
        .stdout("0.9.9\n");
    assert_eq!(readme_of(&repo)?, README);
    Ok(())
}

#[test]
fn bumps_rewrite_every_tag_and_keep_the_v() -> TestResult {
    let repo = repo_with(
        "<repo-version>v1.2.3</repo-version>\nagain <repo-version>1.2.3</repo-version>\n",
    )?;
    repo.sgr()
        .args(["semver", "patch"])
        .assert()
        .success()
        .stdout("v1.2.4\n");
    assert_eq!(
        readme_of(&repo)?,
        "<repo-version>v1.2.4</repo-version>\nagain <repo-version>v1.2.4</repo-version>\n"
    );
    repo.sgr()
        .args(["semver", "minor"])
        .assert()
        .success()
        .stdout("v1.3.0\n");
    repo.sgr()
        .args(["semver", "major"])
        .assert()
        .success()
        .stdout("v2.0.0\n");
    repo.sgr()
        .args(["semver", "-p", "", "patch"])
        .assert()
        .success()
        .stdout("2.0.1\n");
    assert_eq!(
        readme_of(&repo)?,
        "<repo-version>2.0.1</repo-version>\nagain <repo-version>2.0.1</repo-version>\n"
    );
    Ok(())
}

#[test]
fn patch_releases_a_prerelease() -> TestResult {
    let repo = repo_with("<repo-version>1.2.3-feature-x-aaaagipajnu</repo-version>")?;
    repo.sgr()
        .args(["semver", "patch"])
        .assert()
        .success()
        .stdout("1.2.3\n");
    assert_eq!(readme_of(&repo)?, "<repo-version>1.2.3</repo-version>");
    Ok(())
}

#[test]
fn crlf_no_final_newline_and_a_long_line_survive_a_bump() -> TestResult {
    let long_line = "x".repeat(100 * 1024);
    let before = format!(
        "# Title\r\n{long_line}\r\nVersion: <repo-version>0.9.9</repo-version>\r\n\r\nend without newline"
    );
    let repo = repo_with(&before)?;
    repo.sgr()
        .args(["semver", "patch"])
        .assert()
        .success()
        .stdout("0.9.10\n");
    let expected = before.replace("<repo-version>0.9.9<", "<repo-version>0.9.10<");
    assert_eq!(repo.read("README.md")?, expected.into_bytes());
    Ok(())
}

#[test]
fn permissions_survive_a_bump() -> TestResult {
    use std::os::unix::fs::PermissionsExt;
    let repo = repo_with(README)?;
    std::fs::set_permissions(
        repo.file("README.md"),
        std::fs::Permissions::from_mode(0o600),
    )?;
    repo.sgr().args(["semver", "minor"]).assert().success();
    assert_eq!(
        std::fs::metadata(repo.file("README.md"))?
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    Ok(())
}

#[test]
fn pre_makes_duats_version() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .args(["semver", "pre"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .assert()
        .success()
        .stdout("0.9.9-feature-197-hybrid-aaaagipajnu\n");
    assert!(
        readme_of(&repo)?
            .contains("<repo-version>0.9.9-feature-197-hybrid-aaaagipajnu</repo-version>")
    );
    Ok(())
}

#[test]
fn pre_keeps_metadata_and_works_without_remote_or_tags() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.md", "<repo-version>1.0.0-pre+build</repo-version>")?;
    repo.sgr()
        .args(["semver", "prerelease"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .assert()
        .success()
        .stdout("1.0.0-main-aaaagipajnu+build\n");
    Ok(())
}

#[test]
fn pre_on_a_detached_head_uses_the_ci_branch() -> TestResult {
    let repo = repo_with(README)?;
    repo.git(&["checkout", "-q", "--detach"])?;
    repo.sgr()
        .args(["semver", "pre"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("GITHUB_REF_NAME", "release/2.x")
        .env("BRANCH_NAME", "ignored")
        .assert()
        .success()
        .stdout("0.9.9-release-2-x-aaaagipajnu\n");
    Ok(())
}

#[test]
fn pre_on_a_detached_head_without_ci_is_an_error() -> TestResult {
    let repo = repo_with(README)?;
    repo.git(&["checkout", "-q", "--detach"])?;
    repo.sgr()
        .args(["semver", "pre"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            contains("error: cannot tell the branch of")
                .and(contains("HEAD is detached"))
                .and(contains("hint: check out a branch")),
        );
    assert_eq!(readme_of(&repo)?, README);
    Ok(())
}

#[test]
fn branch_override_wins() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .args(["semver", "pre"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("SGR_GIT_BRANCH", "Feature/ABC_Ü")
        .assert()
        .success()
        .stdout("0.9.9-Feature-ABC---aaaagipajnu\n");
    Ok(())
}

#[test]
fn pre_outside_git_is_an_error() -> TestResult {
    let directory = tempfile::tempdir()?;
    std::fs::write(directory.path().join("README.md"), README)?;
    sgr_command()
        .current_dir(directory.path())
        .env(
            "GIT_CEILING_DIRECTORIES",
            directory.path().parent().unwrap_or(directory.path()),
        )
        .args(["semver", "pre"])
        .assert()
        .code(2)
        .stderr(contains("is not inside a git repository").and(contains("hint:")));
    assert_eq!(
        std::fs::read_to_string(directory.path().join("README.md"))?,
        README
    );
    Ok(())
}

#[test]
fn rc_counts_from_the_tags() -> TestResult {
    let repo = repo_with(README)?;
    for tag in [
        "0.9.9-rc.1",
        "0.9.9-rc.3",
        "v0.9.9-rc.4",
        "0.9.9-rc1",
        "0.9.10-rc.7",
        "junk",
    ] {
        repo.git(&["tag", tag])?;
    }
    repo.sgr()
        .args(["semver", "rc"])
        .assert()
        .success()
        .stdout("0.9.9-rc.5\n");
    assert!(readme_of(&repo)?.contains("<repo-version>0.9.9-rc.5</repo-version>"));
    repo.sgr()
        .args(["semver", "releasecandidate", "--output", "json"])
        .assert()
        .success()
        .stdout(contains("\"version\": \"0.9.9-rc.5\""));
    Ok(())
}

#[test]
fn rc_without_tags_starts_at_one() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .args(["semver", "rc"])
        .assert()
        .success()
        .stdout("0.9.9-rc.1\n");
    Ok(())
}

#[test]
fn git_tags_give_the_version_and_the_order() -> TestResult {
    let repo = repo_with(README)?;
    for tag in [
        "0.10.0",
        "0.2.2",
        "v0.9.1",
        "0.9.10-rc.2",
        "not-semver",
        "0.17.0-rc.8",
        "0.3.0",
    ] {
        repo.git(&["tag", "-a", tag, "-m", tag])?;
    }
    repo.sgr()
        .args(["semver", "-g", "extract"])
        .assert()
        .success()
        .stdout("0.17.0-rc.8\n");
    repo.sgr()
        .args(["semver", "sort"])
        .assert()
        .success()
        .stdout("0.2.2\n0.3.0\nv0.9.1\n0.10.0\n");
    repo.sgr()
        .args(["semver", "-g", "-rc", "sort"])
        .assert()
        .success()
        .stdout("0.2.2\n0.3.0\nv0.9.1\n0.9.10-rc.2\n0.10.0\n0.17.0-rc.8\n");
    let json = repo
        .sgr()
        .args(["semver", "sort", "--output", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&json)?;
    assert_eq!(value["tags"][2]["name"], "v0.9.1");
    assert_eq!(value["tags"][2]["version"], "0.9.1");
    Ok(())
}

#[test]
fn git_tags_missing_is_an_error() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .args(["semver", "-g"])
        .assert()
        .code(2)
        .stderr(contains("is a version").and(contains("hint: tag a release first")));
    Ok(())
}

#[test]
fn apply_writes_every_target() -> TestResult {
    let repo = repo_with(README)?;
    repo.write(
        "Dockerfile",
        "FROM scratch\nLABEL version=<repo-version></repo-version>\n",
    )?;
    repo.write("docs/index.adoc", "= Docs\n:Revision: 0.0.1\n")?;
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile,docs/index.adoc"])
        .assert()
        .success()
        .stdout("0.9.9\n");
    assert_eq!(
        repo.read("Dockerfile")?,
        b"FROM scratch\nLABEL version=<repo-version>0.9.9</repo-version>\n"
    );
    assert_eq!(repo.read("docs/index.adoc")?, b"= Docs\n:Revision: 0.9.9\n");
    repo.sgr()
        .args(["semver", "apply", "--substitute", "-t", "Dockerfile"])
        .assert()
        .success();
    assert_eq!(
        repo.read("Dockerfile")?,
        b"FROM scratch\nLABEL version=0.9.9\n"
    );
    assert_eq!(readme_of(&repo)?, README);
    Ok(())
}

#[test]
fn apply_bad_targets_change_nothing() -> TestResult {
    let repo = repo_with(README)?;
    repo.write(
        "Dockerfile",
        "LABEL version=<repo-version></repo-version>\n",
    )?;
    repo.write("plain.txt", "no tag here\n")?;
    repo.sgr()
        .args(["semver", "apply"])
        .assert()
        .code(2)
        .stderr(contains("apply needs target files"));
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile,"])
        .assert()
        .code(2)
        .stderr(contains("empty entry"));
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile,missing.md"])
        .assert()
        .code(2)
        .stderr(contains("cannot read missing.md"));
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile,plain.txt"])
        .assert()
        .code(2)
        .stderr(contains("plain.txt has no <repo-version>"));
    assert_eq!(
        repo.read("Dockerfile")?,
        b"LABEL version=<repo-version></repo-version>\n"
    );
    Ok(())
}

#[test]
fn version_file_candidates_and_asciidoc() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("README.adoc", "= Project\n:Revision: 2.1\n")?;
    repo.sgr()
        .arg("semver")
        .assert()
        .success()
        .stdout("2.1.0\n");
    repo.sgr()
        .args(["semver", "minor"])
        .assert()
        .success()
        .stdout("2.2.0\n");
    assert_eq!(repo.read("README.adoc")?, b"= Project\n:Revision: 2.2.0\n");
    repo.write("VERSION.md", "<repo-version>7.0.0</repo-version>")?;
    repo.sgr()
        .args(["semver", "-f", "missing.md,VERSION.md,README.adoc"])
        .assert()
        .success()
        .stdout("7.0.0\n");
    repo.sgr()
        .arg("semver")
        .env("SGR_VERSION_FILES", "VERSION.md")
        .assert()
        .success()
        .stdout("7.0.0\n");
    Ok(())
}

#[test]
fn flags_work_after_the_command_and_in_duat_spelling() -> TestResult {
    let repo = repo_with(README)?;
    let other = tempfile::tempdir()?;
    repo.sgr()
        .args(["semver", "patch", "-f", "README.md"])
        .assert()
        .success()
        .stdout("0.9.10\n");
    sgr_command()
        .current_dir(other.path())
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .args(["semver", "-git", &repo.path().display().to_string(), "-f"])
        .arg(repo.file("README.md"))
        .arg("pre")
        .assert()
        .success()
        .stdout("0.9.10-feature-197-hybrid-aaaagipajnu\n");
    Ok(())
}

#[test]
fn bad_files_are_named_and_untouched() -> TestResult {
    for (content, message) in [
        (
            "# no tag at all\n",
            "README.md: no version found: the file has no <repo-version>…</repo-version> tag with a version",
        ),
        (
            "a\n\nVersion: <repo-version>1.x</repo-version>\n",
            "README.md:3: invalid version: '1.x' is not a semantic version",
        ),
        (
            "<repo-version>1.0.0</repo-version>\n<repo-version>1.0.1</repo-version>\n",
            "README.md:2: version '1.0.1' disagrees with '1.0.0' on line 1",
        ),
    ] {
        let repo = repo_with(content)?;
        for command in ["extract", "patch", "pre", "rc"] {
            let assert = repo
                .sgr()
                .args(["semver", command])
                .assert()
                .code(2)
                .stdout("");
            let stderr = String::from_utf8_lossy(&assert.get_output().stderr).into_owned();
            let first = stderr.lines().next().unwrap_or_default();
            assert!(
                first.starts_with("error: ") && first.contains(message),
                "{command}: {stderr}"
            );
            assert!(
                stderr
                    .lines()
                    .nth(1)
                    .is_some_and(|line| line.starts_with("hint: ")),
                "{stderr}"
            );
            assert_eq!(stderr.lines().count(), 2, "{stderr}");
        }
        assert_eq!(readme_of(&repo)?, content);
    }
    Ok(())
}

#[test]
fn missing_file_and_unknown_command_exit_2() -> TestResult {
    let repo = Repo::new("main")?;
    repo.sgr()
        .args(["semver", "patch"])
        .assert()
        .code(2)
        .stderr(contains(
            "no version file found: looked for README.md, README.adoc in",
        ));
    repo.write("README.md", README)?;
    repo.sgr()
        .args(["semver", "frobnicate"])
        .assert()
        .code(2)
        .stderr(contains("unrecognized subcommand 'frobnicate'"));
    repo.sgr()
        .args(["semver", "-p", "release-", "extract"])
        .assert()
        .code(2)
        .stderr(contains("prefix 'release-' is not supported"));
    assert_eq!(readme_of(&repo)?, README);
    Ok(())
}

#[test]
fn dry_run_writes_nothing() -> TestResult {
    let repo = repo_with(README)?;
    repo.sgr()
        .args(["semver", "major", "--dry-run"])
        .assert()
        .success()
        .stdout("1.0.0\n")
        .stderr(contains("would write 1.0.0 to README.md"));
    assert_eq!(readme_of(&repo)?, README);
    Ok(())
}

#[test]
fn json_output() -> TestResult {
    let repo = repo_with(README)?;
    let output = repo
        .sgr()
        .args(["--output", "json", "semver"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(value["version"], "0.9.9");
    assert_eq!(value["command"], "extract");
    assert_eq!(value["written"], serde_json::json!([]));
    let output = repo
        .sgr()
        .args(["semver", "pre", "--output", "json"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(value["version"], "0.9.9-feature-197-hybrid-aaaagipajnu");
    assert_eq!(value["previous"], "0.9.9");
    assert_eq!(value["prerelease"], "feature-197-hybrid-aaaagipajnu");
    assert_eq!(value["written"], serde_json::json!(["README.md"]));
    Ok(())
}

#[test]
fn stamps_decode_and_encode() -> TestResult {
    sgr_command()
        .args(["semver", "stamp", "--decode", "aaaagipajnu"])
        .assert()
        .success()
        .stdout("2019-01-25T19:10:44Z\n");
    sgr_command()
        .args([
            "semver",
            "stamp",
            "--decode",
            "0.7.1-feature-35-travis-and-git-1fGphq",
        ])
        .assert()
        .success()
        .stdout("2018-05-10T17:50:18Z\n");
    sgr_command()
        .args(["semver", "stamp"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .assert()
        .success()
        .stdout("aaaagipajnu\n");
    sgr_command()
        .args(["semver", "stamp", "--encoding", "base62"])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .assert()
        .success()
        .stdout("1gn6sG\n");
    let output = sgr_command()
        .args(["semver", "stamp", "--decode", "1gn6sG", "--output", "json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let value: serde_json::Value = serde_json::from_slice(&output)?;
    assert_eq!(value["encoding"], "base62");
    assert_eq!(value["seconds"], 1_548_443_444);
    Ok(())
}

#[test]
fn help_teaches() -> TestResult {
    // The release-candidate command is taught by its short name `rc` (listed
    // and in the examples); duat's spelling `releasecandidate` still works
    // (rc_counts_from_the_tags runs it) but is a hidden alias.
    sgr_command()
        .args(["semver", "--help"])
        .assert()
        .success()
        .stdout(
            contains("<repo-version>")
                .and(contains("Examples:"))
                .and(contains("SOURCE_DATE_EPOCH"))
                .and(predicates::str::is_match(
                    r"(?m)^  rc +Make the next release candidate ",
                )?)
                .and(contains("\n  sgr semver rc "))
                .and(contains("releasecandidate").not()),
        );
    sgr_command()
        .arg("--help")
        .assert()
        .success()
        .stdout(contains("Exit codes"));
    Ok(())
}

#[test]
fn sort_without_version_tags_prints_nothing() -> TestResult {
    let repo = repo_with(README)?;
    repo.git(&["tag", "junk"])?;
    repo.sgr()
        .args(["semver", "sort"])
        .assert()
        .success()
        .stdout("")
        .stderr(contains("warning: no git tag of"));
    repo.sgr()
        .args(["semver", "sort", "--output", "json"])
        .assert()
        .success()
        .stdout(contains("\"tags\": []"));
    repo.sgr()
        .args(["-q", "semver", "sort"])
        .assert()
        .success()
        .stderr("");
    Ok(())
}

#[test]
fn a_failed_write_exits_1_and_leaves_the_file() -> TestResult {
    // The temporary file's name (".<name>.XXXXXX.sgr-tmp") is too long for the filesystem even
    // though the file's own name is not: the write fails for every user, root included.
    let name = format!("{}.md", "v".repeat(240));
    let repo = repo_with(README)?;
    repo.write(&name, README)?;
    repo.sgr()
        .args(["semver", "patch", "-f", &name])
        .assert()
        .code(1)
        .stdout("")
        .stderr(contains("error: cannot write").and(contains("(the file is unchanged)")));
    assert_eq!(String::from_utf8(repo.read(&name)?)?, README);
    assert_eq!(
        std::fs::read_dir(repo.path())?.count(),
        3,
        "no temporary file is left behind"
    );
    Ok(())
}

#[test]
fn a_bump_past_the_largest_component_is_refused_and_writes_nothing() -> TestResult {
    let max = u64::MAX;
    let readme = format!("<repo-version>{max}.0.{max}</repo-version>\n");
    let repo = repo_with(&readme)?;
    for command in ["patch", "major"] {
        repo.sgr()
            .args(["semver", command])
            .assert()
            .code(2)
            .stdout("")
            .stderr(contains(format!(
                "cannot bump the {command} of {max}.0.{max}"
            )));
    }
    assert_eq!(readme_of(&repo)?, readme);
    repo.sgr()
        .args(["semver", "minor"])
        .assert()
        .success()
        .stdout(format!("{max}.1.0\n"));
    Ok(())
}

#[test]
fn nested_or_conflicting_tags_are_refused_with_their_line() -> TestResult {
    for readme in [
        "# P\n\nVersion: <repo-version><repo-version>1.0.0</repo-version></repo-version>\n",
        "# P\n\nVersion: <repo-version>1.0.0</repo-version>1.0.0</repo-version>\n",
    ] {
        let repo = repo_with(readme)?;
        repo.sgr()
            .args(["semver", "patch"])
            .assert()
            .code(2)
            .stderr(contains("README.md:3").and(contains("nested or conflicting")));
        assert_eq!(readme_of(&repo)?, readme);
    }
    // An apply target is checked too.
    let repo = repo_with(README)?;
    repo.write(
        "Dockerfile",
        "LABEL v=<repo-version>1<repo-version>2</repo-version></repo-version>\n",
    )?;
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile"])
        .assert()
        .code(2)
        .stderr(contains("Dockerfile:1"));
    Ok(())
}

#[test]
fn leading_zeros_are_kept_byte_for_byte_as_duat_did() -> TestResult {
    let readme = "Version: <repo-version>01.2.3</repo-version>\n";
    let repo = repo_with(readme)?;
    repo.sgr()
        .args(["semver", "extract"])
        .assert()
        .success()
        .stdout("01.2.3\n");
    repo.write("Dockerfile", "LABEL v=<repo-version></repo-version>\n")?;
    repo.sgr()
        .args(["semver", "apply", "-t", "Dockerfile"])
        .assert()
        .success()
        .stdout("01.2.3\n");
    assert_eq!(
        String::from_utf8(repo.read("Dockerfile")?)?,
        "LABEL v=<repo-version>01.2.3</repo-version>\n"
    );
    assert_eq!(readme_of(&repo)?, readme);
    // A changed version is printed normalised, as duat's String() did.
    repo.sgr()
        .args(["semver", "patch"])
        .assert()
        .success()
        .stdout("1.2.4\n");
    Ok(())
}
