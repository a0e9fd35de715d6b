//! The build context as a tar stream, written file by file to any sink so
//! that it is never held in memory: the directory walk (sorted, `.dockerignore`
//! applied, `.git` left out unless asked), and the rendered Dockerfile added
//! under a private name. As the docker CLI does for a Dockerfile it adds to a
//! context, the `.dockerignore` sent lists that name (and itself, when the
//! project has none): the classic builder then leaves the private Dockerfile
//! out of what `COPY .` copies. (BuildKit applies no `.dockerignore` to a tar
//! context: there it is copied; docs/config.md says so.)

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::dockerignore::{DockerIgnore, PatternError};

/// The name the rendered Dockerfile has inside the context.
pub const DOCKERFILE_NAME: &str = ".sgr-dockerfile";

/// What was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContextSummary {
    /// Regular files sent.
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
}

/// Why the context could not be sent.
#[derive(Debug, Error)]
pub enum ContextError {
    /// The `.dockerignore` is invalid.
    #[error("{}", .path.display())]
    Ignore {
        /// The file.
        path: PathBuf,
        /// The bad pattern.
        #[source]
        source: PatternError,
    },
    /// A file or directory could not be read, or the sink failed.
    #[error("cannot add {} to the build context", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Read `<context>/.dockerignore` (absent means no rules).
///
/// # Errors
/// Unreadable file or invalid pattern.
pub fn read_ignore(context: &Path) -> Result<DockerIgnore, ContextError> {
    let path = context.join(".dockerignore");
    match fs::read_to_string(&path) {
        Ok(text) => {
            DockerIgnore::parse(&text).map_err(|source| ContextError::Ignore { path, source })
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(DockerIgnore::default()),
        Err(source) => Err(ContextError::Io { path, source }),
    }
}

/// The name of the ignore file.
const IGNORE_FILE: &str = ".dockerignore";

/// Write the context of `directory` as a tar archive to `sink`, followed by
/// the `.dockerignore` the engine sees (the project's, when it is sent, with
/// [`DOCKERFILE_NAME`] added) and the rendered Dockerfile as [`DOCKERFILE_NAME`].
///
/// # Errors
/// A file that cannot be read, or a failing sink.
pub fn write_context(
    directory: &Path,
    ignore: &DockerIgnore,
    include_git: bool,
    dockerfile: &[u8],
    sink: impl Write,
) -> Result<ContextSummary, ContextError> {
    let mut archive = tar::Builder::new(sink);
    archive.follow_symlinks(false);
    let mut summary = ContextSummary::default();
    let prune = !ignore.has_exclusions();
    walk(
        directory,
        "",
        ignore,
        include_git,
        prune,
        &mut archive,
        &mut summary,
    )?;
    append_ignore_file(directory, ignore, &mut archive, &mut summary)?;
    let mut header = tar::Header::new_gnu();
    header.set_size(dockerfile.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    archive
        .append_data(&mut header, DOCKERFILE_NAME, dockerfile)
        .map_err(|source| ContextError::Io {
            path: PathBuf::from(DOCKERFILE_NAME),
            source,
        })?;
    archive
        .into_inner()
        .and_then(|mut sink| sink.flush())
        .map_err(|source| ContextError::Io {
            path: directory.to_path_buf(),
            source,
        })?;
    Ok(summary)
}

/// The `.dockerignore` the engine sees: the project's (when it is a regular file that its
/// own rules do not leave out) followed by the private Dockerfile's name, else one that
/// names itself and the private Dockerfile.
fn append_ignore_file<W: Write>(
    directory: &Path,
    ignore: &DockerIgnore,
    archive: &mut tar::Builder<W>,
    summary: &mut ContextSummary,
) -> Result<(), ContextError> {
    let path = directory.join(IGNORE_FILE);
    let io_error = |source| ContextError::Io {
        path: path.clone(),
        source,
    };
    let project = match fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_file() && !ignore.is_ignored(IGNORE_FILE) => {
            Some((fs::read(&path).map_err(io_error)?, metadata))
        }
        Ok(_) => None,
        Err(error) if error.kind() == io::ErrorKind::NotFound => None,
        Err(error) => return Err(io_error(error)),
    };
    let mut header = tar::Header::new_gnu();
    let mut content = if let Some((content, metadata)) = project {
        header.set_metadata(&metadata);
        summary.files += 1;
        summary.bytes += metadata.len();
        content
    } else {
        header.set_mode(0o644);
        header.set_mtime(0);
        format!("{IGNORE_FILE}\n").into_bytes()
    };
    content.extend_from_slice(format!("\n{DOCKERFILE_NAME}\n").as_bytes());
    header.set_size(content.len() as u64);
    header.set_cksum();
    archive
        .append_data(&mut header, IGNORE_FILE, content.as_slice())
        .map_err(io_error)
}

fn walk<W: Write>(
    directory: &Path,
    prefix: &str,
    ignore: &DockerIgnore,
    include_git: bool,
    prune: bool,
    archive: &mut tar::Builder<W>,
    summary: &mut ContextSummary,
) -> Result<(), ContextError> {
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ContextError::Io { path, source }
    };
    let mut entries: Vec<fs::DirEntry> = fs::read_dir(directory)
        .map_err(io_error(directory))?
        .collect::<Result<_, _>>()
        .map_err(io_error(directory))?;
    entries.sort_by_key(fs::DirEntry::file_name);
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let relative = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if prefix.is_empty() && (name == ".git" && !include_git || name == IGNORE_FILE) {
            // .git is left out; the ignore file is sent after the walk (append_ignore_file).
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error(&path))?;
        let ignored = ignore.is_ignored(&relative);
        if file_type.is_dir() {
            if ignored && prune {
                continue;
            }
            if !ignored {
                archive
                    .append_dir(&relative, &path)
                    .map_err(io_error(&path))?;
            }
            walk(
                &path,
                &relative,
                ignore,
                include_git,
                prune,
                archive,
                summary,
            )?;
        } else if ignored {
        } else if file_type.is_file() {
            let mut file = fs::File::open(&path).map_err(io_error(&path))?;
            let metadata = file.metadata().map_err(io_error(&path))?;
            let mut header = tar::Header::new_gnu();
            header.set_metadata(&metadata);
            header.set_size(metadata.len());
            archive
                .append_data(&mut header, &relative, &mut file)
                .map_err(io_error(&path))?;
            summary.files += 1;
            summary.bytes += metadata.len();
        } else if file_type.is_symlink() {
            archive
                .append_path_with_name(&path, &relative)
                .map_err(io_error(&path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(archive: &[u8]) -> Vec<String> {
        let mut reader = tar::Archive::new(archive);
        let mut names: Vec<String> = reader
            .entries()
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .filter_map(|entry| entry.path().ok().map(|path| path.display().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    fn file(archive: &[u8], wanted: &str) -> Option<String> {
        let mut reader = tar::Archive::new(archive);
        let entries = reader.entries().ok()?;
        for entry in entries {
            let mut entry = entry.ok()?;
            if entry.path().ok()?.to_string_lossy() == wanted {
                let mut text = String::new();
                io::Read::read_to_string(&mut entry, &mut text).ok()?;
                return Some(text);
            }
        }
        None
    }

    #[test]
    fn without_a_dockerignore_one_leaves_the_private_dockerfile_out()
    -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        fs::write(directory.path().join("a"), "a")?;
        let mut archive = Vec::new();
        write_context(
            directory.path(),
            &DockerIgnore::default(),
            false,
            b"FROM x\n",
            &mut archive,
        )?;
        assert_eq!(
            file(&archive, ".dockerignore").as_deref(),
            Some(".dockerignore\n\n.sgr-dockerfile\n")
        );
        // A project whose rules leave its own .dockerignore out gets the same.
        fs::write(
            directory.path().join(".dockerignore"),
            ".dockerignore\nsecret\n",
        )?;
        let ignore = read_ignore(directory.path())?;
        let mut archive = Vec::new();
        let summary = write_context(directory.path(), &ignore, false, b"FROM x\n", &mut archive)?;
        assert_eq!(
            file(&archive, ".dockerignore").as_deref(),
            Some(".dockerignore\n\n.sgr-dockerfile\n")
        );
        assert_eq!(summary.files, 1);
        Ok(())
    }

    #[test]
    fn context_honours_dockerignore_and_leaves_git_out() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let root = directory.path();
        for (name, content) in [
            ("Dockerfile", "FROM scratch"),
            (".dockerignore", "*.log\ndata\n!data/keep.txt\n"),
            ("app.log", "x"),
            ("src/main.rs", "fn main() {}"),
            ("data/drop.bin", "drop"),
            ("data/keep.txt", "keep"),
            (".git/HEAD", "ref: refs/heads/main"),
        ] {
            let path = root.join(name);
            fs::create_dir_all(path.parent().unwrap_or(root))?;
            fs::write(path, content)?;
        }
        let ignore = read_ignore(root)?;
        let mut archive = Vec::new();
        let summary = write_context(root, &ignore, false, b"FROM scratch\n", &mut archive)?;
        assert_eq!(
            names(&archive),
            [
                ".dockerignore",
                ".sgr-dockerfile",
                "Dockerfile",
                "data/keep.txt",
                "src",
                "src/main.rs"
            ]
        );
        assert_eq!(summary.files, 4);
        assert_eq!(
            file(&archive, ".dockerignore").as_deref(),
            Some("*.log\ndata\n!data/keep.txt\n\n.sgr-dockerfile\n")
        );
        let mut with_git = Vec::new();
        write_context(root, &ignore, true, b"", &mut with_git)?;
        assert!(names(&with_git).contains(&".git/HEAD".to_owned()));
        Ok(())
    }

    #[test]
    fn a_bad_pattern_names_the_file() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        fs::write(directory.path().join(".dockerignore"), "ok\nbad[\n")?;
        let error = read_ignore(directory.path()).err().map(|error| {
            crate::error::Failure::new(error, crate::error::ExitStatus::Usage, None).message()
        });
        assert!(
            error.is_some_and(
                |message| message.contains(".dockerignore") && message.contains("line 2")
            )
        );
        Ok(())
    }
}
