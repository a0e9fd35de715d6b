//! Git metadata for every command: branch, commit, tags, remote, top
//! directory, dirty flag and the current user, read with libgit2 (never by
//! running `git`). Each answer is computed only when asked, so that `semver
//! pre` in a repository with 100 000 commits reads HEAD and nothing else.

mod remote;
mod user;

use std::path::{Path, PathBuf};

use git2::{ErrorCode, Repository, StatusOptions};
use thiserror::Error;

pub use remote::RemoteUrl;
pub use user::CurrentUser;

use crate::env;
use crate::template::context::Needs;
use crate::version::{Version, branch};

/// Why git metadata could not be read.
#[derive(Debug, Error)]
pub enum GitError {
    /// No repository at or above the start directory.
    #[error("{} is not inside a git repository", .path.display())]
    NotARepository {
        /// Where the search started.
        path: PathBuf,
        /// libgit2's answer.
        #[source]
        source: git2::Error,
    },
    /// A bare repository has no work tree to build from.
    #[error("the git repository at {} is bare (it has no work tree)", .path.display())]
    Bare {
        /// The repository directory.
        path: PathBuf,
    },
    /// Reading part of the repository failed.
    #[error("cannot read the {what} of the git repository at {}", .top.display())]
    Read {
        /// What was being read.
        what: &'static str,
        /// The work tree.
        top: PathBuf,
        /// libgit2's answer.
        #[source]
        source: git2::Error,
    },
    /// HEAD is detached and no CI variable names the branch.
    #[error("cannot tell the branch of {}: HEAD is detached at {commit} and none of {} is set", .top.display(), env::CI_BRANCH_VARIABLES.join(", "))]
    NoBranch {
        /// The work tree.
        top: PathBuf,
        /// HEAD's short commit.
        commit: String,
    },
}

impl GitError {
    /// The fix, when it is known.
    #[must_use]
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::NotARepository { .. } => {
                Some("run sgr inside a git work tree, or point at one with --git DIR".to_owned())
            }
            Self::NoBranch { .. } => Some(format!(
                "check out a branch (git switch -c NAME), or set {} to the branch name",
                env::GIT_BRANCH
            )),
            Self::Bare { .. } | Self::Read { .. } => None,
        }
    }
}

/// Where the branch name came from.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "variable")]
pub enum BranchSource {
    /// HEAD points at `refs/heads/<branch>`.
    Head,
    /// An environment variable (an override, or the CI's, for a detached HEAD).
    Variable(&'static str),
}

/// The current branch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Branch {
    /// As git (or CI) names it: `feature/197_hybrid`.
    pub name: String,
    /// Where it came from.
    pub source: BranchSource,
}

impl Branch {
    /// The Docker tag form (`feature-197-hybrid`), as build.sh named images.
    #[must_use]
    pub fn slug(&self) -> String {
        branch::docker_tag(&self.name)
    }

    /// The DNS label form, for Kubernetes names.
    #[must_use]
    pub fn dns_label(&self) -> String {
        branch::dns_label(&self.name)
    }
}

/// Everything a template or plan wants to know about the work tree, at once.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GitMetadata {
    /// Absolute top directory of the work tree.
    pub top_dir: PathBuf,
    /// The branch, when it can be told.
    pub branch: Option<Branch>,
    /// Docker-tag form of the branch.
    pub branch_slug: Option<String>,
    /// DNS-label form of the branch.
    pub branch_dns_label: Option<String>,
    /// Full HEAD commit hash; `None` before the first commit.
    pub commit: Option<String>,
    /// Abbreviated HEAD commit hash.
    pub short_commit: Option<String>,
    /// A tag (lightweight or annotated) pointing at HEAD; the highest version when several do.
    pub tag: Option<String>,
    /// The `origin` remote (or the first one).
    pub remote: Option<RemoteUrl>,
    /// Whether tracked files differ from HEAD.
    pub dirty: bool,
    /// The current OS user.
    pub user: CurrentUser,
}

/// An open work tree.
pub struct GitRepository {
    repository: Repository,
    top: PathBuf,
}

impl std::fmt::Debug for GitRepository {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("GitRepository")
            .field("top", &self.top)
            .finish_non_exhaustive()
    }
}

impl GitRepository {
    /// Open the repository containing `start`, searching parent directories.
    ///
    /// # Errors
    /// No repository, or a bare one.
    pub fn discover(start: &Path) -> Result<Self, GitError> {
        let repository =
            Repository::discover(start).map_err(|source| GitError::NotARepository {
                path: start.to_path_buf(),
                source,
            })?;
        let top = repository
            .workdir()
            .map(Path::to_path_buf)
            .ok_or_else(|| GitError::Bare {
                path: repository.path().to_path_buf(),
            })?;
        let top = top.canonicalize().unwrap_or(top);
        Ok(Self { repository, top })
    }

    /// The top directory of the work tree.
    #[must_use]
    pub fn top_dir(&self) -> &Path {
        &self.top
    }

    /// The repository's own directory (`.git`, or a worktree's directory under it): where
    /// sgr keeps what it learns about this checkout without touching the work tree.
    #[must_use]
    pub fn git_dir(&self) -> &Path {
        self.repository.path()
    }

    fn read_error(&self, what: &'static str) -> impl FnOnce(git2::Error) -> GitError + '_ {
        move |source| GitError::Read {
            what,
            top: self.top.clone(),
            source,
        }
    }

    /// The current branch: `SGR_GIT_BRANCH` when set, else HEAD's branch
    /// (also before the first commit), else for a detached HEAD the first
    /// CI variable that is set (GitHub, GitLab, Buildkite, Travis, Jenkins).
    ///
    /// # Errors
    /// A detached HEAD with no variable, or an unreadable HEAD.
    pub fn branch(&self, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Branch, GitError> {
        let variable = |name: &'static str| {
            lookup(name)
                .filter(|value| !value.trim().is_empty())
                .map(|value| Branch {
                    name: value.trim().to_owned(),
                    source: BranchSource::Variable(name),
                })
        };
        if let Some(branch) = variable(env::GIT_BRANCH) {
            return Ok(branch);
        }
        let head = self
            .repository
            .find_reference("HEAD")
            .map_err(self.read_error("HEAD"))?;
        let target = head.symbolic_target().map_err(self.read_error("HEAD"))?;
        if let Some(name) = target.and_then(|target| target.strip_prefix("refs/heads/")) {
            return Ok(Branch {
                name: name.to_owned(),
                source: BranchSource::Head,
            });
        }
        if let Some(branch) = env::CI_BRANCH_VARIABLES
            .iter()
            .find_map(|name| variable(name))
        {
            return Ok(branch);
        }
        Err(GitError::NoBranch {
            top: self.top.clone(),
            commit: self
                .short_commit()?
                .unwrap_or_else(|| "an unborn commit".to_owned()),
        })
    }

    fn head_oid(&self) -> Result<Option<git2::Oid>, GitError> {
        match self.repository.head() {
            Ok(head) => Ok(head.target()),
            Err(error) if matches!(error.code(), ErrorCode::UnbornBranch | ErrorCode::NotFound) => {
                Ok(None)
            }
            Err(error) => Err(self.read_error("HEAD")(error)),
        }
    }

    /// The full HEAD commit hash, `None` before the first commit.
    ///
    /// # Errors
    /// An unreadable HEAD.
    pub fn commit(&self) -> Result<Option<String>, GitError> {
        Ok(self.head_oid()?.map(|oid| oid.to_string()))
    }

    /// The shortest unambiguous abbreviation of HEAD (at least 7 characters).
    ///
    /// # Errors
    /// An unreadable HEAD.
    pub fn short_commit(&self) -> Result<Option<String>, GitError> {
        let Some(oid) = self.head_oid()? else {
            return Ok(None);
        };
        let object = self
            .repository
            .find_object(oid, None)
            .map_err(self.read_error("HEAD commit"))?;
        let short = object.short_id().map_err(self.read_error("HEAD commit"))?;
        Ok(short.as_str().ok().map(str::to_owned))
    }

    /// The commits reachable from HEAD but not from the tag `since` (all
    /// when `None`), newest first, at most `limit`: `(short hash, subject)`.
    ///
    /// # Errors
    /// Unreadable history or an unknown tag.
    pub fn commit_subjects(
        &self,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, String)>, GitError> {
        let Some(head) = self.head_oid()? else {
            return Ok(Vec::new());
        };
        let mut walk = self
            .repository
            .revwalk()
            .map_err(self.read_error("history"))?;
        walk.push(head).map_err(self.read_error("history"))?;
        if let Some(tag) = since {
            let commit = self
                .repository
                .revparse_single(&format!("refs/tags/{tag}"))
                .and_then(|object| object.peel_to_commit())
                .map_err(self.read_error("tags"))?;
            walk.hide(commit.id()).map_err(self.read_error("history"))?;
        }
        let mut subjects = Vec::new();
        for oid in walk.take(limit) {
            let oid = oid.map_err(self.read_error("history"))?;
            let commit = self
                .repository
                .find_commit(oid)
                .map_err(self.read_error("history"))?;
            let subject = commit
                .summary()
                .ok()
                .flatten()
                .unwrap_or_default()
                .to_owned();
            let short = oid.to_string().chars().take(7).collect();
            subjects.push((short, subject));
        }
        Ok(subjects)
    }

    /// The names of every tag (`refs/tags/*`), without the prefix.
    ///
    /// # Errors
    /// Unreadable references.
    pub fn tag_names(&self) -> Result<Vec<String>, GitError> {
        let names = self
            .repository
            .tag_names(None)
            .map_err(self.read_error("tags"))?;
        // Names that are not UTF-8 cannot be versions and are skipped.
        Ok(names
            .iter()
            .filter_map(|name| name.ok().flatten())
            .map(str::to_owned)
            .collect())
    }

    /// Tags that parse as versions, in ascending precedence (ties by name).
    ///
    /// # Errors
    /// Unreadable references.
    pub fn version_tags(&self) -> Result<Vec<(String, Version)>, GitError> {
        let mut tags: Vec<(String, Version)> = self
            .tag_names()?
            .into_iter()
            .filter_map(|name| Version::parse(&name).ok().map(|version| (name, version)))
            .collect();
        tags.sort_by(|(left_name, left), (right_name, right)| {
            left.precedence(right)
                .then_with(|| left_name.cmp(right_name))
        });
        Ok(tags)
    }

    /// A tag pointing at HEAD, lightweight or annotated (peeled to its
    /// commit); the highest version when several do, else the first by name.
    ///
    /// # Errors
    /// Unreadable references.
    pub fn tag_at_head(&self) -> Result<Option<String>, GitError> {
        let Some(head) = self.head_oid()? else {
            return Ok(None);
        };
        let references = self
            .repository
            .references_glob("refs/tags/*")
            .map_err(self.read_error("tags"))?;
        let mut matching: Vec<String> = Vec::new();
        for reference in references {
            let reference = reference.map_err(self.read_error("tags"))?;
            let points_at_head = reference
                .peel_to_commit()
                .is_ok_and(|commit| commit.id() == head);
            if points_at_head && let Ok(name) = reference.shorthand() {
                matching.push(name.to_owned());
            }
        }
        matching.sort();
        let highest_version = matching
            .iter()
            .filter_map(|name| Version::parse(name).ok().map(|version| (name, version)))
            .max_by(|(_, left), (_, right)| left.precedence(right))
            .map(|(name, _)| name.clone());
        Ok(highest_version.or_else(|| matching.into_iter().next()))
    }

    /// The `origin` remote's URL, else the first remote's; `None` without remotes.
    ///
    /// # Errors
    /// Unreadable configuration.
    pub fn remote(&self) -> Result<Option<RemoteUrl>, GitError> {
        let names = self
            .repository
            .remotes()
            .map_err(self.read_error("remotes"))?;
        let mut candidates: Vec<&str> = names
            .iter()
            .filter_map(|name| name.ok().flatten())
            .collect();
        candidates.sort_by_key(|name| *name != "origin");
        for name in candidates {
            let remote = self
                .repository
                .find_remote(name)
                .map_err(self.read_error("remotes"))?;
            if let Ok(url) = remote.url() {
                return Ok(Some(RemoteUrl::parse(url)));
            }
        }
        Ok(None)
    }

    /// Whether any tracked file differs from HEAD (untracked files do not count).
    ///
    /// # Errors
    /// An unreadable index or work tree.
    pub fn is_dirty(&self) -> Result<bool, GitError> {
        let mut options = StatusOptions::new();
        options
            .include_untracked(false)
            .include_ignored(false)
            .exclude_submodules(true);
        let statuses = self
            .repository
            .statuses(Some(&mut options))
            .map_err(self.read_error("status"))?;
        Ok(statuses
            .iter()
            .any(|entry| entry.status() != git2::Status::CURRENT))
    }

    /// Everything at once, for templates and plans. A branch that cannot be
    /// told is `None` here, not an error.
    ///
    /// # Errors
    /// Unreadable repository data.
    pub fn metadata(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<GitMetadata, GitError> {
        self.metadata_for(lookup, Needs::ALL)
    }

    /// The parts of the metadata `needs` names, and only those: the others
    /// keep their empty defaults (`dirty` false, no tag, no remote), so a
    /// template that does not ask pays for no status scan or tag walk.
    ///
    /// # Errors
    /// Unreadable repository data.
    pub fn metadata_for(
        &self,
        lookup: &dyn Fn(&str) -> Option<String>,
        needs: Needs,
    ) -> Result<GitMetadata, GitError> {
        let branch = if needs.branch {
            match self.branch(lookup) {
                Ok(branch) => Some(branch),
                Err(GitError::NoBranch { .. }) => None,
                Err(error) => return Err(error),
            }
        } else {
            None
        };
        Ok(GitMetadata {
            top_dir: self.top.clone(),
            branch_slug: branch.as_ref().map(Branch::slug),
            branch_dns_label: branch.as_ref().map(Branch::dns_label),
            branch,
            commit: if needs.commit { self.commit()? } else { None },
            short_commit: if needs.commit {
                self.short_commit()?
            } else {
                None
            },
            tag: if needs.tag { self.tag_at_head()? } else { None },
            remote: if needs.remote { self.remote()? } else { None },
            dirty: needs.dirty && self.is_dirty()?,
            user: if needs.user {
                CurrentUser::current()
            } else {
                CurrentUser::default()
            },
        })
    }
}
