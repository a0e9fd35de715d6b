//! Reading and writing version files (the filesystem side of
//! [`crate::version::document`]).
//! Writes are atomic (duat copied over the original in place).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::version::Version;
use crate::version::document::{self, DocumentError, Format, Replacement};

/// A version file failure, naming the file.
#[derive(Debug, Error)]
pub enum VersionFileError {
    /// The file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The file's content has no usable version.
    #[error("{}{}", .path.display(), .source.line().map(|line| format!(":{line}")).unwrap_or_default())]
    Content {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        #[source]
        source: DocumentError,
    },
    /// The new content could not be written; the file is unchanged.
    #[error("cannot write {} (the file is unchanged)", .path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A file that holds (or receives) a version, read whole.
#[derive(Debug)]
pub struct VersionFile {
    /// The path as given.
    pub path: PathBuf,
    /// How the file stores the version.
    pub format: Format,
    text: Vec<u8>,
}

impl VersionFile {
    /// Read `path`.
    ///
    /// # Errors
    /// The file cannot be read.
    pub fn read(path: &Path) -> Result<Self, VersionFileError> {
        let text = fs::read(path).map_err(|source| VersionFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            format: Format::for_path(path),
            text,
        })
    }

    /// The version the file holds and its line.
    ///
    /// # Errors
    /// No version, an invalid one, or tags that disagree.
    pub fn version(&self) -> Result<(Version, usize), VersionFileError> {
        document::read_version(&self.text, self.format).map_err(|source| {
            VersionFileError::Content {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Refuse nested or conflicting tags (a rewrite would lose one).
    ///
    /// # Errors
    /// The first such line.
    pub fn check_markers(&self) -> Result<(), VersionFileError> {
        document::check_markers(&self.text, self.format).map_err(|source| {
            VersionFileError::Content {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// How many places hold a version (placeholders included).
    #[must_use]
    pub fn marker_count(&self) -> usize {
        document::occurrences(&self.text, self.format).len()
    }

    /// The content with every marker holding `value`, and whether it differs from now.
    #[must_use]
    pub fn rewritten(&self, value: &str, replacement: Replacement) -> (Vec<u8>, bool) {
        let (text, _) = document::rewrite(&self.text, self.format, value, replacement);
        let changed = text != self.text;
        (text, changed)
    }
}

/// Replace `path` by `contents` atomically (see [`crate::atomic::write`]).
///
/// # Errors
/// Any failure; the original file is then untouched.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<(), VersionFileError> {
    crate::atomic::write(path, contents).map_err(|source| VersionFileError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn atomic_write_keeps_permissions_and_leaves_no_temporary_file()
    -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let path = directory.path().join("README.md");
        fs::write(&path, "old")?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640))?;
        write_atomic(&path, b"new")?;
        assert_eq!(fs::read_to_string(&path)?, "new");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o640);
        assert_eq!(fs::read_dir(directory.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn atomic_write_follows_symbolic_links() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let real = directory.path().join("real.md");
        let link = directory.path().join("README.md");
        fs::write(&real, "old")?;
        std::os::unix::fs::symlink(&real, &link)?;
        write_atomic(&link, b"new")?;
        assert!(fs::symlink_metadata(&link)?.file_type().is_symlink());
        assert_eq!(fs::read_to_string(&real)?, "new");
        Ok(())
    }

    #[test]
    fn content_errors_name_file_and_line() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let path = directory.path().join("README.md");
        fs::write(&path, "x\n<repo-version>nope</repo-version>\n")?;
        let error = VersionFile::read(&path)?.version().err();
        let shown = error.map(|error| error.to_string()).unwrap_or_default();
        assert_eq!(shown, format!("{}:2", path.display()));
        Ok(())
    }
}
