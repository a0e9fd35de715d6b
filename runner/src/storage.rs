//! Artifact storage: where an artifact's bytes live and how they move.
//! `file://` paths are read and written directly (a machine with no
//! services); archives are unpacked by their content (tar, tar.gz,
//! tar.bz2) and written back atomically (temporary file, then rename).
//! S3 back-ends come with the next runner step.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::request::Artifact;

/// Storage failures.
#[derive(Debug, Error)]
pub enum StorageError {
    /// The artifact names no place sgr can use.
    #[error("artifact {label}: {reason}")]
    Unsupported {
        /// The artifact's label.
        label: String,
        /// Why.
        reason: String,
    },
    /// The object is not there.
    #[error("artifact {label}: {} does not exist", .path.display())]
    Missing {
        /// The artifact's label.
        label: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Reading or writing failed.
    #[error("artifact {label}: cannot {action} {}", .path.display())]
    Io {
        /// The artifact's label.
        label: String,
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl StorageError {
    /// Whether trying again later could help (an I/O failure), as opposed to
    /// a request that names nothing usable.
    #[must_use]
    pub const fn is_transient(&self) -> bool {
        matches!(self, Self::Io { .. })
    }
}

/// The file an artifact names (`file:///path`, or a bare absolute path).
///
/// # Errors
/// Any other scheme.
pub fn file_location(label: &str, artifact: &Artifact) -> Result<PathBuf, StorageError> {
    let qualified = artifact.qualified.trim();
    if let Some(path) = qualified.strip_prefix("file://") {
        return Ok(PathBuf::from(path));
    }
    if qualified.starts_with('/') {
        return Ok(PathBuf::from(qualified));
    }
    Err(StorageError::Unsupported {
        label: label.to_owned(),
        reason: format!(
            "'{qualified}' is not a file:// location (S3 is not built into this runner yet)"
        ),
    })
}

/// Put the artifact into `directory`: unpacked when `unpack`, else copied
/// under its file name. A mutable artifact that does not exist yet is an
/// empty directory (it is an output).
///
/// # Errors
/// Unusable location, missing immutable artifact, I/O.
pub fn fetch(label: &str, artifact: &Artifact, directory: &Path) -> Result<(), StorageError> {
    let io_error = |action: &'static str, path: &Path| {
        let label = label.to_owned();
        let path = path.to_path_buf();
        move |source| StorageError::Io {
            label,
            action,
            path,
            source,
        }
    };
    fs::create_dir_all(directory).map_err(io_error("create", directory))?;
    let path = file_location(label, artifact)?;
    if !path.exists() {
        if artifact.mutable {
            return Ok(());
        }
        return Err(StorageError::Missing {
            label: label.to_owned(),
            path,
        });
    }
    if !artifact.unpack {
        let name = path
            .file_name()
            .map_or_else(|| label.into(), std::ffi::OsStr::to_os_string);
        fs::copy(&path, directory.join(name)).map_err(io_error("copy", &path))?;
        return Ok(());
    }
    let mut file = BufReader::new(fs::File::open(&path).map_err(io_error("open", &path))?);
    let mut magic = [0u8; 3];
    let read = file.read(&mut magic).map_err(io_error("read", &path))?;
    let rest = io::Cursor::new(magic[..read].to_vec()).chain(file);
    let reader: Box<dyn Read> = match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(rest)),
        [b'B', b'Z', b'h'] => Box::new(bzip2::read::BzDecoder::new(rest)),
        _ => Box::new(rest),
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.unpack(directory).map_err(io_error("unpack", &path))
}

/// Write `directory` back to the artifact's location as a tar (gzipped when
/// the name ends in `.gz`/`.tgz`), atomically.
///
/// # Errors
/// Unusable location or I/O.
pub fn store(label: &str, artifact: &Artifact, directory: &Path) -> Result<(), StorageError> {
    let path = file_location(label, artifact)?;
    let io_error = |action: &'static str, path: &Path| {
        let label = label.to_owned();
        let path = path.to_path_buf();
        move |source| StorageError::Io {
            label,
            action,
            path,
            source,
        }
    };
    let parent = path.parent().unwrap_or_else(|| Path::new("/"));
    fs::create_dir_all(parent).map_err(io_error("create", parent))?;
    let temporary =
        tempfile::NamedTempFile::new_in(parent).map_err(io_error("create a file in", parent))?;
    let name = path.to_string_lossy();
    let gzip = name.ends_with(".gz") || name.ends_with(".tgz");
    let file = temporary
        .reopen()
        .map_err(io_error("write", temporary.path()))?;
    let write = |writer: Box<dyn io::Write>| -> io::Result<Box<dyn io::Write>> {
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        if directory.exists() {
            builder.append_dir_all(".", directory)?;
        }
        builder.into_inner()
    };
    if gzip {
        let encoder = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let inner = write(Box::new(encoder)).map_err(io_error("write", temporary.path()))?;
        drop(inner);
    } else {
        let mut inner = write(Box::new(file)).map_err(io_error("write", temporary.path()))?;
        inner.flush().map_err(io_error("write", temporary.path()))?;
    }
    temporary
        .persist(&path)
        .map_err(|error| io_error("replace", &path)(error.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(path: &Path, mutable: bool) -> Artifact {
        Artifact {
            qualified: format!("file://{}", path.display()),
            mutable,
            unpack: true,
            ..Artifact::default()
        }
    }

    #[test]
    fn directories_round_trip_through_tar_and_tar_gz() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let source = root.path().join("source");
        fs::create_dir_all(source.join("sub"))?;
        fs::write(source.join("sub/model.bin"), b"weights")?;
        for name in ["out.tar", "out.tar.gz"] {
            let target = artifact(&root.path().join(name), true);
            store("modeldir", &target, &source)?;
            let back = root.path().join(format!("back-{name}"));
            fetch("modeldir", &target, &back)?;
            assert_eq!(fs::read(back.join("sub/model.bin"))?, b"weights", "{name}");
        }
        Ok(())
    }

    #[test]
    fn a_missing_output_is_empty_but_a_missing_workspace_is_an_error()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        fetch(
            "output",
            &artifact(&root.path().join("none.tar"), true),
            &root.path().join("o"),
        )?;
        let missing = fetch(
            "workspace",
            &artifact(&root.path().join("none.tar"), false),
            &root.path().join("w"),
        );
        assert!(matches!(missing, Err(StorageError::Missing { .. })));
        let s3 = Artifact {
            qualified: "s3://127.0.0.1:9000/bucket/workspace.tar".to_owned(),
            ..Artifact::default()
        };
        assert!(matches!(
            fetch("workspace", &s3, root.path()),
            Err(StorageError::Unsupported { .. })
        ));
        Ok(())
    }
}
