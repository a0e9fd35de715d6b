//! The git adapter against real repositories made with the git CLI.

use sgr::git::{BranchSource, GitRepository};

use crate::common::{Repo, TestResult};

fn no_variables(_: &str) -> Option<String> {
    None
}

#[test]
fn metadata_of_a_repository() -> TestResult {
    let repo = Repo::new("feature/197_hybrid")?;
    repo.write("a.txt", "one")?;
    repo.commit("first")?;
    repo.git(&[
        "remote",
        "add",
        "origin",
        "git@github.com:leaf-ai/studio-go-runner.git",
    ])?;
    repo.git(&[
        "remote",
        "add",
        "aaa-first",
        "https://example.com/other/repo.git",
    ])?;
    repo.git(&["tag", "-a", "0.9.9", "-m", "annotated"])?;
    repo.git(&["tag", "0.9.9-rc.1"])?;
    repo.git(&["tag", "nonversion"])?;
    let opened = GitRepository::discover(&repo.path().join("."))?;
    let metadata = opened.metadata(&no_variables)?;
    let head = repo.git(&["rev-parse", "HEAD"])?;
    assert_eq!(metadata.commit.as_deref(), Some(head.as_str()));
    assert!(
        metadata
            .short_commit
            .as_deref()
            .is_some_and(|short| head.starts_with(short) && short.len() >= 7)
    );
    let branch = metadata
        .branch
        .as_ref()
        .map(|branch| (branch.name.as_str(), branch.source.clone()));
    assert_eq!(branch, Some(("feature/197_hybrid", BranchSource::Head)));
    assert_eq!(metadata.branch_slug.as_deref(), Some("feature-197-hybrid"));
    assert_eq!(
        metadata.branch_dns_label.as_deref(),
        Some("feature-197-hybrid")
    );
    assert_eq!(metadata.tag.as_deref(), Some("0.9.9"));
    let remote = metadata.remote.as_ref();
    assert_eq!(
        remote.map(|remote| remote.host.as_str()),
        Some("github.com")
    );
    assert_eq!(remote.and_then(|remote| remote.owner()), Some("leaf-ai"));
    assert_eq!(
        remote.and_then(|remote| remote.repository()),
        Some("studio-go-runner")
    );
    assert_eq!(metadata.top_dir, repo.path().canonicalize()?);
    assert!(!metadata.dirty);
    repo.write("untracked.txt", "x")?;
    assert!(
        !opened.is_dirty()?,
        "untracked files do not make the tree dirty"
    );
    repo.write("a.txt", "two")?;
    assert!(opened.is_dirty()?);
    Ok(())
}

#[test]
fn discovery_from_a_subdirectory_and_an_empty_repository() -> TestResult {
    let repo = Repo::new("main")?;
    repo.write("deep/er/file.txt", "x")?;
    let opened = GitRepository::discover(&repo.file("deep/er"))?;
    assert_eq!(opened.top_dir(), repo.path().canonicalize()?);
    let metadata = opened.metadata(&no_variables)?;
    assert_eq!(metadata.commit, None);
    assert_eq!(metadata.tag, None);
    assert_eq!(metadata.remote, None);
    assert_eq!(
        metadata.branch.map(|branch| branch.name),
        Some("main".to_owned())
    );
    Ok(())
}

#[test]
fn detached_head_branch_from_ci_variables_in_order() -> TestResult {
    let repo = Repo::new("main")?;
    repo.commit("first")?;
    repo.git(&["checkout", "-q", "--detach"])?;
    let opened = GitRepository::discover(repo.path())?;
    let lookup = |name: &str| match name {
        "CI_COMMIT_REF_NAME" => Some("gitlab/branch".to_owned()),
        "TRAVIS_BRANCH" => Some("travis".to_owned()),
        "GITHUB_HEAD_REF" => Some("   ".to_owned()),
        _ => None,
    };
    let branch = opened.branch(&lookup)?;
    assert_eq!(branch.name, "gitlab/branch");
    assert_eq!(branch.source, BranchSource::Variable("CI_COMMIT_REF_NAME"));
    let error = opened
        .branch(&no_variables)
        .err()
        .map(|error| error.to_string())
        .unwrap_or_default();
    assert!(error.contains("HEAD is detached at"), "{error}");
    assert!(opened.metadata(&no_variables)?.branch.is_none());
    Ok(())
}

#[test]
fn version_tags_sorted_by_precedence() -> TestResult {
    let repo = Repo::new("main")?;
    repo.commit("first")?;
    for tag in ["1.0.0", "1.0.0-rc.2", "1.0.0-rc.10", "v0.1", "x"] {
        repo.git(&["tag", tag])?;
    }
    let opened = GitRepository::discover(repo.path())?;
    let names: Vec<String> = opened
        .version_tags()?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    assert_eq!(names, ["v0.1", "1.0.0-rc.2", "1.0.0-rc.10", "1.0.0"]);
    Ok(())
}
