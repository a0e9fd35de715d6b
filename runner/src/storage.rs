//! Artifact storage: where an artifact's bytes live and how they move.
//! `file://` paths are read and written directly (a machine with no
//! services); `s3://host/bucket/key` objects go through aws-sdk-s3 with the
//! artifact's own credentials (else `config.env`'s AWS keys, else the
//! default chain) and its host as the endpoint. Archives are unpacked by
//! their content (tar, tar.gz, tar.bz2) and written back whole: a temporary
//! file renamed into place, or one PUT.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use std::collections::BTreeMap;

use thiserror::Error;

use crate::cache::{Cache, CacheError, Pinned};
use crate::failure::{Class, Classify};
use crate::request::Artifact;
use crate::s3::{s3_download, s3_get, s3_head, s3_put};
use crate::unpack::{self, Budget, UnpackError, Unpacked};

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
        /// Its class: a refusal of the request's bucket or credentials is
        /// the request's fault, the rest is weather (see [`crate::s3`]).
        class: Class,
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
    /// The archive tries to leave its directory or make what it must not.
    #[error("artifact {label}: the archive is hostile: entry {}: {reason}", .entry.display())]
    Hostile {
        /// The artifact's label.
        label: String,
        /// The entry, as the archive names it.
        entry: PathBuf,
        /// What it tried.
        reason: String,
    },
    /// The archive is not a whole tar, tar.gz or tar.bz2.
    #[error("artifact {label}: the archive is corrupt: {source}")]
    Corrupt {
        /// The artifact's label.
        label: String,
        /// What the decoder or tar reader said.
        #[source]
        source: io::Error,
    },
    /// Unpacking would write more than the experiment's disk budget.
    #[error(
        "artifact {label}: unpacking needs more than the disk budget of {limit} bytes ({unpacked} bytes of this artifact written, {used} bytes of the experiment's artifacts in all)"
    )]
    OverBudget {
        /// The artifact's label.
        label: String,
        /// Bytes this artifact had taken from the budget.
        unpacked: u64,
        /// Bytes the budget had given out in all.
        used: u64,
        /// The budget (the request's `hdd`).
        limit: u64,
    },
}

impl Classify for StorageError {
    fn class(&self) -> Class {
        match self {
            Self::Unsupported { .. }
            | Self::Missing { .. }
            | Self::Hostile { .. }
            | Self::Corrupt { .. } => Class::Rejected,
            Self::OverBudget { .. } => Class::ExperimentFailed,
            Self::S3 { class, .. } => *class,
            Self::Io { .. } => Class::Transient,
        }
    }
}

impl StorageError {
    /// Whether trying again later could help (an I/O or S3 failure, a full
    /// disk), as opposed to a request that names nothing usable.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        self.class() == Class::Transient
    }

    /// `error`, met while placing the artifact `label` from `path`.
    fn unpacking(label: &str, path: &Path, error: UnpackError) -> Self {
        let label = label.to_owned();
        match error {
            UnpackError::Hostile { entry, reason } => Self::Hostile {
                label,
                entry,
                reason,
            },
            UnpackError::Corrupt { source } => Self::Corrupt { label, source },
            UnpackError::OverBudget {
                unpacked,
                used,
                limit,
            } => Self::OverBudget {
                label,
                unpacked,
                used,
                limit,
            },
            UnpackError::Read { source } => Self::Io {
                label,
                action: "read",
                path: path.to_path_buf(),
                source,
            },
            UnpackError::Io {
                action,
                path,
                source,
            } => Self::Io {
                label,
                action,
                path,
                source,
            },
        }
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

/// Put the artifact into `directory` (made, after its parents, if it is not
/// a directory; a link there is replaced, never followed): unpacked when
/// `unpack`, else copied under the last component of its name. A mutable
/// artifact that does not exist yet is an empty directory (it is an output).
/// What is written is taken from `budget`, shared by the experiment's
/// artifacts.
///
/// # Errors
/// Unusable location, missing immutable artifact, hostile or corrupt
/// archive, budget exceeded, I/O or S3 failures.
pub fn fetch(
    label: &str,
    artifact: &Artifact,
    env: &BTreeMap<String, String>,
    directory: &Path,
    cache: Option<&Cache>,
    budget: &Budget,
) -> Result<Unpacked, StorageError> {
    if let Some(parent) = directory.parent() {
        fs::create_dir_all(parent).map_err(io_failure(label, "create", parent))?;
    }
    unpack::ensure_directory(directory).map_err(io_failure(label, "create", directory))?;
    match location(label, artifact, env)? {
        Location::File(path) => {
            if !path.exists() {
                if artifact.mutable {
                    return Ok(Unpacked::default());
                }
                return Err(StorageError::Missing {
                    label: label.to_owned(),
                    path,
                });
            }
            place(label, artifact, &path, directory, budget)
        }
        Location::S3(object) => {
            let named = Artifact {
                qualified: object.key.clone(),
                ..artifact.clone()
            };
            if let Some(cache) = cache.filter(|_| !artifact.mutable) {
                let pinned = cached(label, &object, cache)?;
                return place(label, &named, pinned.path(), directory, budget);
            }
            let parent = directory.parent().unwrap_or(directory);
            let download = tempfile::NamedTempFile::new_in(parent).map_err(io_failure(
                label,
                "create a file in",
                parent,
            ))?;
            if !s3_get(label, &object, download.path())? {
                if artifact.mutable {
                    return Ok(Unpacked::default());
                }
                return Err(missing(label, &object));
            }
            place(label, &named, download.path(), directory, budget)
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
    budget: &Budget,
) -> Result<Unpacked, StorageError> {
    let file = fs::File::open(path).map_err(io_failure(label, "open", path))?;
    if !artifact.unpack {
        // The last component only: a name, never a path.
        let name = Path::new(artifact.qualified.trim())
            .file_name()
            .ok_or_else(|| StorageError::Unsupported {
                label: label.to_owned(),
                reason: format!("'{}' names no file to copy", artifact.qualified),
            })?;
        let target = directory.join(name);
        let bytes = unpack::copy(file, &target, budget)
            .map_err(|error| StorageError::unpacking(label, path, error))?;
        return Ok(Unpacked {
            bytes,
            files: 1,
            ..Unpacked::default()
        });
    }
    unpack::unpack(file, directory, budget)
        .map_err(|error| StorageError::unpacking(label, path, error))
}

/// Tar `directory` into `target` (gzipped when `gzip`).
fn pack(label: &str, directory: &Path, target: &Path, gzip: bool) -> Result<(), StorageError> {
    let file = fs::File::create(target).map_err(io_failure(label, "write", target))?;
    let write = |writer: Box<dyn io::Write>| -> io::Result<Box<dyn io::Write>> {
        let mut builder = tar::Builder::new(writer);
        builder.follow_symlinks(false);
        if fs::symlink_metadata(directory).is_ok_and(|metadata| metadata.is_dir()) {
            append_tree(&mut builder, directory)?;
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

/// Append `directory` and what is under it as `./…`: directories, regular
/// files and symbolic links (as links, never followed); sockets, FIFOs and
/// device nodes are left out. A file is opened with `O_NOFOLLOW` and
/// described by what was opened, so a file swapped for a link meanwhile is
/// not followed either.
fn append_tree<W: Write>(builder: &mut tar::Builder<W>, directory: &Path) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let mut pending = vec![PathBuf::from(".")];
    while let Some(relative) = pending.pop() {
        let path = directory.join(&relative);
        let metadata = fs::symlink_metadata(&path)?;
        let kind = metadata.file_type();
        let mut header = tar::Header::new_gnu();
        if kind.is_dir() {
            header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
            builder.append_data(&mut header, &relative, io::empty())?;
            let mut children = fs::read_dir(&path)?
                .map(|child| child.map(|child| relative.join(child.file_name())))
                .collect::<io::Result<Vec<_>>>()?;
            children.sort_unstable_by(|left, right| right.cmp(left));
            pending.extend(children);
        } else if kind.is_symlink() {
            header.set_metadata_in_mode(&metadata, tar::HeaderMode::Complete);
            let target = fs::read_link(&path)?;
            builder.append_link(&mut header, &relative, &target)?;
        } else if kind.is_file() {
            let file = fs::OpenOptions::new()
                .read(true)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
                .open(&path)?;
            let opened = file.metadata()?;
            if !opened.is_file() {
                continue;
            }
            header.set_metadata_in_mode(&opened, tar::HeaderMode::Complete);
            let size = opened.len();
            // Exactly `size` bytes, whether the file shrank or grew meanwhile.
            let data = file.take(size).chain(io::repeat(0).take(size));
            builder.append_data(&mut header, &relative, data.take(size))?;
        }
    }
    Ok(())
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
    use std::io::Read;

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
            fetch(
                "modeldir",
                &target,
                &BTreeMap::new(),
                &back,
                None,
                &Budget::unlimited(),
            )?;
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
            &Budget::unlimited(),
        )?;
        let missing = fetch(
            "workspace",
            &artifact(&root.path().join("none.tar"), false),
            &none,
            &root.path().join("w"),
            None,
            &Budget::unlimited(),
        );
        assert!(matches!(missing, Err(StorageError::Missing { .. })));
        let other = Artifact {
            qualified: "gs://bucket/workspace.tar".to_owned(),
            ..Artifact::default()
        };
        assert!(matches!(
            fetch(
                "workspace",
                &other,
                &none,
                &root.path().join("x"),
                None,
                &Budget::unlimited()
            ),
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

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, link) in entries {
            let mut header = tar::Header::new_old();
            header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, io::empty())?;
        }
        builder.into_inner()
    }

    #[test]
    fn an_output_archive_cannot_make_the_log_overwrite_a_file_outside()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let victim = root.path().join("victim");
        fs::write(&victim, b"precious")?;
        let experiment = root.path().join("experiment");
        fs::create_dir(&experiment)?;
        let output = experiment.join("output");
        let none = BTreeMap::new();
        let victim_name = victim.display().to_string();
        for target in [victim_name.as_str(), "../../victim"] {
            let archive = root.path().join("output.tar");
            fs::write(
                &archive,
                tar_of(&[("output", tar::EntryType::Symlink, target)])?,
            )?;
            let result = fetch(
                "output",
                &artifact(&archive, true),
                &none,
                &output,
                None,
                &Budget::unlimited(),
            );
            let Err(error) = result else {
                panic!("{target}: not refused")
            };
            assert_eq!(error.class(), Class::Rejected, "{target}: {error}");
            assert!(
                error
                    .to_string()
                    .starts_with("artifact output: the archive is hostile"),
                "{error}"
            );
        }
        // Had a link got there anyway (the experiment may make one), the log
        // replaces it.
        let log = output.join("output");
        let _ = fs::remove_file(&log);
        std::os::unix::fs::symlink(&victim, &log)?;
        unpack::ensure_directory(&output)?;
        unpack::create_file_no_follow(&log)?.write_all(b"log")?;
        assert_eq!(fs::read(&victim)?, b"precious");
        Ok(())
    }

    #[test]
    fn failures_are_classified() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let none = BTreeMap::new();
        let corrupt = root.path().join("corrupt.tar.gz");
        fs::write(&corrupt, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3])?;
        let Err(error) = fetch(
            "workspace",
            &artifact(&corrupt, false),
            &none,
            &root.path().join("w"),
            None,
            &Budget::unlimited(),
        ) else {
            panic!("a corrupt archive unpacked")
        };
        assert_eq!(error.class(), Class::Rejected);
        assert!(
            error
                .to_string()
                .starts_with("artifact workspace: the archive is corrupt: "),
            "{error}"
        );
        let big = root.path().join("big.tar");
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(4096);
        builder.append_data(&mut header, "data", io::repeat(0).take(4096))?;
        fs::write(&big, builder.into_inner()?)?;
        let Err(error) = fetch(
            "data",
            &artifact(&big, false),
            &none,
            &root.path().join("d"),
            None,
            &Budget::new(1000),
        ) else {
            panic!("over the budget")
        };
        assert_eq!(error.class(), Class::ExperimentFailed);
        let text = error.to_string();
        assert!(
            text.starts_with("artifact data: ") && text.contains("budget of 1000 bytes"),
            "{text}"
        );
        let full = StorageError::Io {
            label: "data".to_owned(),
            action: "write",
            path: root.path().join("d/data"),
            source: io::Error::from_raw_os_error(28),
        };
        assert!(full.is_transient());
        let s3 = StorageError::S3 {
            label: "data".to_owned(),
            action: "GET",
            target: "s3://b/k".to_owned(),
            message: "timeout".to_owned(),
            class: Class::Transient,
        };
        assert_eq!(s3.class(), Class::Transient);
        let refused = StorageError::S3 {
            label: "data".to_owned(),
            action: "GET",
            target: "s3://b/k".to_owned(),
            message: "403 AccessDenied".to_owned(),
            class: Class::Rejected,
        };
        assert_eq!(refused.class(), Class::Rejected);
        Ok(())
    }

    #[test]
    fn a_copied_artifact_is_named_by_its_last_component_only()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let none = BTreeMap::new();
        let source = root.path().join("model.bin");
        fs::write(&source, b"weights")?;
        let copied = Artifact {
            unpack: false,
            ..artifact(&source, false)
        };
        let target = root.path().join("m");
        let placed = fetch("model", &copied, &none, &target, None, &Budget::new(100))?;
        assert_eq!(fs::read(target.join("model.bin"))?, b"weights");
        assert_eq!(placed.bytes, 7);
        let dots = Artifact {
            qualified: format!("file://{}/..", root.path().display()),
            unpack: false,
            ..Artifact::default()
        };
        assert!(matches!(
            fetch(
                "model",
                &dots,
                &none,
                &root.path().join("n"),
                None,
                &Budget::unlimited()
            ),
            Err(StorageError::Unsupported { .. })
        ));
        Ok(())
    }

    #[test]
    fn packing_keeps_links_as_links_and_leaves_special_files_out()
    -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let secret = root.path().join("secret");
        fs::write(&secret, b"do not upload")?;
        let source = root.path().join("source");
        fs::create_dir_all(source.join("sub"))?;
        fs::write(source.join("sub/result"), b"42")?;
        std::os::unix::fs::symlink(&secret, source.join("link"))?;
        rustix::fs::mknodat(
            rustix::fs::CWD,
            source.join("pipe"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )?;
        let _socket = std::os::unix::net::UnixListener::bind(source.join("socket"))?;
        let target = root.path().join("out.tar");
        store(
            "output",
            &artifact(&target, true),
            &BTreeMap::new(),
            &source,
        )?;
        let mut archive = tar::Archive::new(fs::File::open(&target)?);
        let mut seen = Vec::new();
        for entry in archive.entries()? {
            let mut entry = entry?;
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            assert!(!data.starts_with(b"do not upload"));
            seen.push((
                entry.path()?.display().to_string(),
                entry.header().entry_type(),
            ));
        }
        seen.sort_by(|left, right| left.0.cmp(&right.0));
        let names: Vec<&str> = seen.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, [".", "link", "sub", "sub/result"], "{seen:?}");
        assert_eq!(seen[1].1, tar::EntryType::Symlink);
        Ok(())
    }
}
