//! Artifact storage: where an artifact's bytes live and how they move.
//! `file://` paths are read and written directly (a machine with no
//! services); `s3://host/bucket/key` objects go through aws-sdk-s3 with the
//! artifact's own credentials (else `config.env`'s AWS keys, else the
//! default chain) and its host as the endpoint. Archives are unpacked by
//! their content (tar, tar.gz, tar.bz2) and written back whole: a temporary
//! file renamed into place, or one PUT.

use std::fs;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use thiserror::Error;

use crate::cache::{Cache, CacheError, Pinned};
use crate::request::Artifact;
use crate::s3::{s3_download, s3_get, s3_head, s3_put};

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
    /// The S3 service refused or failed.
    #[error("artifact {label}: S3 {action} {target} failed: {message}")]
    S3 {
        /// The artifact's label.
        label: String,
        /// `GET` or `PUT`.
        action: &'static str,
        /// `s3://bucket/key at endpoint`.
        target: String,
        /// The service's answer.
        message: String,
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
        matches!(self, Self::Io { .. } | Self::S3 { .. })
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
        reason: format!("'{qualified}' is neither s3://host/bucket/key nor a file:// location"),
    })
}

/// An S3 object and how to reach it.
#[derive(Clone)]
pub struct S3Object {
    /// `http://host:port`, or `https://…` for AWS.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The key.
    pub key: String,
    pub(crate) access_key: Option<String>,
    pub(crate) secret_key: Option<String>,
    pub(crate) region: String,
}

impl std::fmt::Debug for S3Object {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("S3Object")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

/// Where an artifact lives.
#[derive(Debug)]
pub enum Location {
    /// A local file.
    File(PathBuf),
    /// An S3 object.
    S3(S3Object),
}

/// The artifact's location: `file://`, an absolute path, or `s3://host/bucket/key`
/// (the artifact's `bucket`/`key` fields win over the URL's path, as in the original).
///
/// # Errors
/// Another scheme, or an S3 URL without bucket or key.
pub fn location(
    label: &str,
    artifact: &Artifact,
    env: &BTreeMap<String, String>,
) -> Result<Location, StorageError> {
    let qualified = artifact.qualified.trim();
    let Some(rest) = qualified.strip_prefix("s3://") else {
        return file_location(label, artifact).map(Location::File);
    };
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_start_matches('/');
    let (path_bucket, path_key) = path.split_once('/').unwrap_or((path, ""));
    let bucket = if artifact.bucket.is_empty() {
        path_bucket
    } else {
        &artifact.bucket
    };
    let key = if artifact.key.is_empty() {
        path_key
    } else {
        &artifact.key
    };
    if host.is_empty() || bucket.is_empty() || key.is_empty() {
        return Err(StorageError::Unsupported {
            label: label.to_owned(),
            reason: format!("'{qualified}' does not name a host, a bucket and a key"),
        });
    }
    let aws = artifact
        .credentials
        .as_ref()
        .and_then(|credentials| credentials.aws.as_ref());
    let pick = |own: Option<&String>, variable: &str| {
        own.filter(|value| !value.is_empty())
            .cloned()
            .or_else(|| env.get(variable).filter(|value| !value.is_empty()).cloned())
    };
    Ok(Location::S3(S3Object {
        endpoint: if host.ends_with("amazonaws.com") {
            format!("https://{host}")
        } else {
            format!("http://{host}")
        },
        bucket: bucket.to_owned(),
        key: key.to_owned(),
        access_key: pick(aws.map(|aws| &aws.access_key), "AWS_ACCESS_KEY_ID"),
        secret_key: pick(
            aws.map(|aws| &aws.secret_access_key),
            "AWS_SECRET_ACCESS_KEY",
        ),
        region: pick(aws.map(|aws| &aws.region), "AWS_DEFAULT_REGION")
            .unwrap_or_else(|| "us-east-1".to_owned()),
    }))
}

pub(crate) fn io_failure(
    label: &str,
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> StorageError {
    let label = label.to_owned();
    let path = path.to_path_buf();
    move |source| StorageError::Io {
        label,
        action,
        path,
        source,
    }
}

/// Put the artifact into `directory`: unpacked when `unpack`, else copied
/// under its file name. A mutable artifact that does not exist yet is an
/// empty directory (it is an output).
///
/// # Errors
/// Unusable location, missing immutable artifact, I/O or S3 failures.
pub fn fetch(
    label: &str,
    artifact: &Artifact,
    env: &BTreeMap<String, String>,
    directory: &Path,
    cache: Option<&Cache>,
) -> Result<(), StorageError> {
    fs::create_dir_all(directory).map_err(io_failure(label, "create", directory))?;
    match location(label, artifact, env)? {
        Location::File(path) => {
            if !path.exists() {
                if artifact.mutable {
                    return Ok(());
                }
                return Err(StorageError::Missing {
                    label: label.to_owned(),
                    path,
                });
            }
            place(label, artifact, &path, directory)
        }
        Location::S3(object) => {
            let named = Artifact {
                qualified: object.key.clone(),
                ..artifact.clone()
            };
            if let Some(cache) = cache.filter(|_| !artifact.mutable) {
                let pinned = cached(label, &object, cache)?;
                return place(label, &named, pinned.path(), directory);
            }
            let parent = directory.parent().unwrap_or(directory);
            let download = tempfile::NamedTempFile::new_in(parent).map_err(io_failure(
                label,
                "create a file in",
                parent,
            ))?;
            if !s3_get(label, &object, download.path())? {
                if artifact.mutable {
                    return Ok(());
                }
                return Err(missing(label, &object));
            }
            place(label, &named, download.path(), directory)
        }
    }
}

fn missing(label: &str, object: &S3Object) -> StorageError {
    StorageError::Missing {
        label: label.to_owned(),
        path: PathBuf::from(format!("s3://{}/{}", object.bucket, object.key)),
    }
}

/// An immutable object through the cache: its `ETag` and size name it.
fn cached<'cache>(
    label: &str,
    object: &S3Object,
    cache: &'cache Cache,
) -> Result<Pinned<'cache>, StorageError> {
    let (etag, size) = s3_head(label, object)?.ok_or_else(|| missing(label, object))?;
    let name = crate::cache::file_name(&etag, size);
    cache
        .get(&name, |path: &Path| {
            s3_download(label, object, path, &etag, size)
        })
        .map_err(|error| match error {
            CacheError::Download(error) => error,
            CacheError::Io {
                action,
                path,
                source,
            } => StorageError::Io {
                label: label.to_owned(),
                action,
                path,
                source,
            },
        })
}

/// Unpack (or copy) the local file `path` into `directory`.
fn place(
    label: &str,
    artifact: &Artifact,
    path: &Path,
    directory: &Path,
) -> Result<(), StorageError> {
    if !artifact.unpack {
        let name = Path::new(&artifact.qualified)
            .file_name()
            .map_or_else(|| label.into(), std::ffi::OsStr::to_os_string);
        fs::copy(path, directory.join(name)).map_err(io_failure(label, "copy", path))?;
        return Ok(());
    }
    let mut file = BufReader::new(fs::File::open(path).map_err(io_failure(label, "open", path))?);
    let mut magic = [0u8; 3];
    let read = file
        .read(&mut magic)
        .map_err(io_failure(label, "read", path))?;
    let rest = io::Cursor::new(magic[..read].to_vec()).chain(file);
    let reader: Box<dyn Read> = match &magic[..read] {
        [0x1f, 0x8b, ..] => Box::new(flate2::read::GzDecoder::new(rest)),
        [b'B', b'Z', b'h'] => Box::new(bzip2::read::BzDecoder::new(rest)),
        _ => Box::new(rest),
    };
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive
        .unpack(directory)
        .map_err(io_failure(label, "unpack", path))
}

/// Tar `directory` into `target` (gzipped when `gzip`).
fn pack(label: &str, directory: &Path, target: &Path, gzip: bool) -> Result<(), StorageError> {
    let file = fs::File::create(target).map_err(io_failure(label, "write", target))?;
    let write = |writer: Box<dyn io::Write>| -> io::Result<Box<dyn io::Write>> {
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        if directory.exists() {
            builder.append_dir_all(".", directory)?;
        }
        builder.into_inner()
    };
    let finished = if gzip {
        write(Box::new(flate2::write::GzEncoder::new(
            file,
            flate2::Compression::default(),
        )))
    } else {
        write(Box::new(file))
    };
    let mut inner = finished.map_err(io_failure(label, "write", target))?;
    inner.flush().map_err(io_failure(label, "write", target))
}

fn gzip_name(name: &str) -> bool {
    Path::new(name).extension().is_some_and(|extension| {
        extension.eq_ignore_ascii_case("gz") || extension.eq_ignore_ascii_case("tgz")
    })
}

/// Write `directory` back to the artifact's location as a tar (gzipped when
/// the name ends in `.gz`/`.tgz`), whole or not at all.
///
/// # Errors
/// Unusable location, I/O or S3 failures.
pub fn store(
    label: &str,
    artifact: &Artifact,
    env: &BTreeMap<String, String>,
    directory: &Path,
) -> Result<(), StorageError> {
    match location(label, artifact, env)? {
        Location::File(path) => {
            let parent = path.parent().unwrap_or_else(|| Path::new("/"));
            fs::create_dir_all(parent).map_err(io_failure(label, "create", parent))?;
            let temporary = tempfile::NamedTempFile::new_in(parent).map_err(io_failure(
                label,
                "create a file in",
                parent,
            ))?;
            pack(
                label,
                directory,
                temporary.path(),
                gzip_name(&path.to_string_lossy()),
            )?;
            temporary
                .persist(&path)
                .map_err(|error| io_failure(label, "replace", &path)(error.error))?;
            Ok(())
        }
        Location::S3(object) => {
            let parent = directory.parent().unwrap_or(directory);
            let temporary = tempfile::NamedTempFile::new_in(parent).map_err(io_failure(
                label,
                "create a file in",
                parent,
            ))?;
            pack(label, directory, temporary.path(), gzip_name(&object.key))?;
            s3_put(label, &object, temporary.path())
        }
    }
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
            store("modeldir", &target, &BTreeMap::new(), &source)?;
            let back = root.path().join(format!("back-{name}"));
            fetch("modeldir", &target, &BTreeMap::new(), &back, None)?;
            assert_eq!(fs::read(back.join("sub/model.bin"))?, b"weights", "{name}");
        }
        Ok(())
    }

    #[test]
    fn a_missing_output_is_empty_but_a_missing_workspace_is_an_error()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let none = BTreeMap::new();
        fetch(
            "output",
            &artifact(&root.path().join("none.tar"), true),
            &none,
            &root.path().join("o"),
            None,
        )?;
        let missing = fetch(
            "workspace",
            &artifact(&root.path().join("none.tar"), false),
            &none,
            &root.path().join("w"),
            None,
        );
        assert!(matches!(missing, Err(StorageError::Missing { .. })));
        let other = Artifact {
            qualified: "gs://bucket/workspace.tar".to_owned(),
            ..Artifact::default()
        };
        assert!(matches!(
            fetch("workspace", &other, &none, root.path(), None),
            Err(StorageError::Unsupported { .. })
        ));
        Ok(())
    }

    #[test]
    fn s3_locations_prefer_the_artifact_fields_and_its_credentials() -> Result<(), StorageError> {
        let mut env = BTreeMap::new();
        env.insert("AWS_ACCESS_KEY_ID".to_owned(), "from-env".to_owned());
        env.insert("AWS_SECRET_ACCESS_KEY".to_owned(), "env-secret".to_owned());
        let artifact = Artifact {
            qualified: "s3://127.0.0.1:9000//bkt1/workspace.tar".to_owned(),
            bucket: "bkt1".to_owned(),
            key: "workspace.tar".to_owned(),
            ..Artifact::default()
        };
        let Location::S3(object) = location("workspace", &artifact, &env)? else {
            panic!("not S3")
        };
        assert_eq!(
            (
                object.endpoint.as_str(),
                object.bucket.as_str(),
                object.key.as_str()
            ),
            ("http://127.0.0.1:9000", "bkt1", "workspace.tar")
        );
        assert_eq!(object.access_key.as_deref(), Some("from-env"));
        assert!(!format!("{object:?}").contains("env-secret"));
        let parsed = Artifact {
            qualified: "s3://s3.us-west-2.amazonaws.com/bucket/dir/output.tar".to_owned(),
            ..Artifact::default()
        };
        let Location::S3(object) = location("output", &parsed, &BTreeMap::new())? else {
            panic!("not S3")
        };
        assert_eq!(
            (
                object.endpoint.as_str(),
                object.bucket.as_str(),
                object.key.as_str()
            ),
            (
                "https://s3.us-west-2.amazonaws.com",
                "bucket",
                "dir/output.tar"
            )
        );
        Ok(())
    }
}
