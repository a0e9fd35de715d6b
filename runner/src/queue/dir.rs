//! The local directory queue: a directory per queue under a root, a file
//! per message, oldest first.
//!
//! The original deleted a message file as soon as it read it, so a runner
//! killed mid-experiment lost the message. Here a message is claimed by an
//! atomic rename into the queue's `.inflight/<owner>/` directory, deleted
//! only on ack, moved back on nack, and moved back at start-up if a previous
//! runner of the same owner died holding it (at-least-once). Several runners
//! may share one root, each with its own owner name, so a runner starting
//! never takes back what another live runner holds. Unusable messages go to
//! `.dead/` with a `.reason` file next to them, never requeued for ever.
//!
//! Other programs write into these directories, so the queue is lenient
//! about what it finds: dot files and the `StudioML` client's `lock.lock`
//! are never messages; a file that is not JSON yet and was modified in the
//! last [`SETTLING`] is left alone (its writer may not be done); and a
//! queue directory deleted while one of its messages runs only costs that
//! message (the experiment's results are stored either way): settling it
//! logs a warning instead of failing the runner, and the queue is not
//! created again, since deleting it was the operator's decision.
//!
//! The runner is often root and the writers are not, so nothing a writer
//! plants is followed: every operation goes through directory descriptors
//! opened with `O_NOFOLLOW` (a symbolic link as `.inflight`, `.dead` or a
//! queue directory stops that queue, with a warning, instead of moving or
//! writing files elsewhere), a message is opened non-blocking and read only
//! if it is a regular file (a FIFO or link swapped in reads as empty and is
//! dead-lettered as unreadable), and the `.reason` file is created afresh,
//! never written through what was there.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use thiserror::Error;

use super::QueueFilter;
use crate::failure::{Class, Classify};

const INFLIGHT: &str = ".inflight";
const DEAD: &str = ".dead";
/// The `StudioML` client's lock file for its local queue: never a message.
const CLIENT_LOCK: &str = "lock.lock";
/// The owner of [`DirQueues::new`]: runners that share a root must each
/// give their own with [`DirQueues::with_owner`].
pub const DEFAULT_OWNER: &str = "runner";

/// How long a file that is not JSON yet is given to be finished by its
/// writer before it is taken (and dead-lettered as unreadable).
pub const SETTLING: Duration = Duration::from_secs(5);

/// Directory queue failures.
#[derive(Debug, Error)]
pub enum DirQueueError {
    /// A file or directory operation failed.
    #[error("{action} {}", .path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Something that must be a directory of the queue is a symbolic link
    /// or another kind of file: the queue is not served until it is removed.
    #[error(
        "{} is a symbolic link or not a directory: its queue is not served until it is removed",
        .path.display()
    )]
    NotADirectory {
        /// The entry.
        path: PathBuf,
    },
}

impl Classify for DirQueueError {
    /// Local file system trouble (a full disk, permissions, a vanished
    /// directory, an entry an operator must remove) may pass.
    fn class(&self) -> Class {
        match self {
            Self::Io { .. } | Self::NotADirectory { .. } => Class::Transient,
        }
    }
}

/// Whether a file named `name` in a queue directory may be a message.
fn is_message_name(name: &str) -> bool {
    !name.starts_with('.') && name != CLIENT_LOCK
}

/// An owner name safe as a directory name: letters, digits, `-` and `_`
/// kept, anything else `_`, at most 64 characters; [`DEFAULT_OWNER`] if
/// nothing is left.
fn owner_name(owner: &str) -> String {
    let name: String = owner
        .chars()
        .take(64)
        .map(|character| {
            if character.is_ascii_alphanumeric() || character == '-' || character == '_' {
                character
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        DEFAULT_OWNER.to_owned()
    } else {
        name
    }
}

/// Whether `body`, last modified at `modified`, may still be being written
/// at `now`: it is not JSON, and it changed less than [`SETTLING`] ago (a
/// time in the future counts only as far as [`SETTLING`] ahead, so a
/// skewed clock cannot hold a file for ever).
fn settling(body: &[u8], modified: SystemTime, now: SystemTime) -> bool {
    let recent = match now.duration_since(modified) {
        Ok(age) => age < SETTLING,
        Err(ahead) => ahead.duration() < SETTLING,
    };
    recent && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err()
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DirQueueError {
    let path = path.to_path_buf();
    move |source| DirQueueError::Io {
        action,
        path,
        source,
    }
}

/// `error` with its causes, for a log line.
fn described(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// When a file was last modified, from its status.
fn modified(stat: &Stat) -> SystemTime {
    let seconds = u64::try_from(stat.st_mtime).unwrap_or(0);
    let nanoseconds = u32::try_from(stat.st_mtime_nsec).unwrap_or(0);
    UNIX_EPOCH + Duration::new(seconds, nanoseconds)
}

fn is_regular(stat: &Stat) -> bool {
    FileType::from_raw_mode(stat.st_mode) == FileType::RegularFile
}

/// The directory `name` in `at`, never through a symbolic link.
fn open_directory(at: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    rustix::fs::openat(
        at,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io::Error::from)
}

/// Whether opening a directory failed because something else is there (a
/// symbolic link gives `ELOOP`, another file `ENOTDIR`).
fn planted(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error().map(Errno::from_raw_os_error),
        Some(Errno::LOOP | Errno::NOTDIR)
    )
}

/// The directory `name` in `at`, made if missing, never through a link.
fn make_directory(at: &OwnedFd, name: &str) -> io::Result<OwnedFd> {
    match rustix::fs::mkdirat(at, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(errno) => return Err(errno.into()),
    }
    open_directory(at, name)
}

/// The names in the directory `directory`, without `.` and `..`.
fn names(directory: &OwnedFd) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(directory)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().to_str() else {
            continue;
        };
        if name != "." && name != ".." {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// A message's bytes (at most one more than a request may have, so an
/// oversized file is refused as such without being read whole) and when it
/// was modified. The file is opened without following a link and without
/// blocking, and read only if it is a regular file: anything else (a FIFO,
/// a device, a link swapped in) reads as empty, so it is left to settle and
/// then dead-lettered, never waited on.
fn look(directory: &OwnedFd, name: &str) -> io::Result<(Vec<u8>, SystemTime)> {
    use std::io::Read as _;
    let stat = rustix::fs::statat(directory, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if !is_regular(&stat) {
        return Ok((Vec::new(), modified(&stat)));
    }
    let descriptor = match rustix::fs::openat(
        directory,
        name,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    ) {
        Ok(descriptor) => descriptor,
        // Swapped for a link since: not followed.
        Err(Errno::LOOP) => return Ok((Vec::new(), modified(&stat))),
        Err(errno) => return Err(errno.into()),
    };
    let stat = rustix::fs::fstat(&descriptor)?;
    if !is_regular(&stat) {
        return Ok((Vec::new(), modified(&stat)));
    }
    let limit = u64::try_from(crate::request::MAX_BODY)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut body = Vec::new();
    fs::File::from(descriptor)
        .take(limit)
        .read_to_end(&mut body)?;
    Ok((body, modified(&stat)))
}

/// A message taken from a queue, held until ack, nack or dead-letter.
#[derive(Debug)]
pub struct Claimed {
    /// The queue's name.
    pub queue: String,
    /// The message's file name.
    pub name: String,
    /// Its bytes.
    pub body: Vec<u8>,
    /// Whether this runner recovered it at start-up (it may have run).
    pub redelivered: bool,
    inflight: PathBuf,
}

/// The queues under one root directory.
#[derive(Debug)]
pub struct DirQueues {
    root: PathBuf,
    filter: QueueFilter,
    /// The name of this runner's directory in each `.inflight/`.
    owner: String,
    /// Files left alone since the last listing because they are still
    /// being written (so `--once` waits for them).
    settling: AtomicUsize,
    /// The messages (queue, name) [`DirQueues::recover`] returned, until
    /// they are acked or dead-lettered.
    recovered: Mutex<HashSet<(String, String)>>,
    /// Names already warned about as symbolic links to directories.
    warned: Mutex<HashSet<String>>,
}

impl DirQueues {
    /// The queues under `root` that `filter` selects, claimed as
    /// [`DEFAULT_OWNER`]: for a runner alone on its root.
    #[must_use]
    pub fn new(root: &Path, filter: QueueFilter) -> Self {
        Self::with_owner(root, filter, DEFAULT_OWNER)
    }

    /// The queues under `root` that `filter` selects, claimed into
    /// `.inflight/<owner>/`: runners sharing a root each give a stable
    /// `owner` of their own (e.g. a hash of the host name and work
    /// directory), so that one starting recovers only what it held itself.
    /// Characters other than ASCII letters, digits, `-` and `_` become `_`.
    #[must_use]
    pub fn with_owner(root: &Path, filter: QueueFilter, owner: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            filter,
            owner: owner_name(owner),
            settling: AtomicUsize::new(0),
            recovered: Mutex::new(HashSet::new()),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// How many files the claims since the last [`DirQueues::queues`] left
    /// alone because they were still being written.
    #[must_use]
    pub fn settling(&self) -> usize {
        self.settling.load(Ordering::Relaxed)
    }

    /// The queue names, sorted. A symbolic link to a directory is not a
    /// queue (it is never followed); it is warned about once.
    ///
    /// # Errors
    /// The root cannot be read.
    pub fn queues(&self) -> Result<Vec<String>, DirQueueError> {
        self.settling.store(0, Ordering::Relaxed);
        let mut names = Vec::new();
        let mut links = Vec::new();
        for entry in fs::read_dir(&self.root)
            .map_err(io_error("reading the queue root", &self.root))?
            .filter_map(Result::ok)
        {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            match entry.file_type() {
                Ok(kind) if kind.is_dir() => names.push(name),
                Ok(kind) if kind.is_symlink() && entry.path().is_dir() => links.push(name),
                _ => {}
            }
        }
        for name in self.filter.select(links) {
            let first = self
                .warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(name.clone());
            if first {
                crate::log::warn(&format!(
                    "{}: a symbolic link, not served as a queue (links are never followed)",
                    self.root.join(&name).display()
                ));
            }
        }
        Ok(self.filter.select(names))
    }

    /// The directory of `queue`, never through a symbolic link.
    fn open_queue(&self, queue: &str) -> io::Result<OwnedFd> {
        rustix::fs::open(
            self.root.join(queue),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io::Error::from)
    }

    /// The sub-directory `name` of `queue` (opened as `at`), made if `make`,
    /// never through a link: `None` if it (or the queue) is gone.
    fn subdirectory(
        at: &OwnedFd,
        name: &str,
        path: &Path,
        make: bool,
    ) -> Result<Option<OwnedFd>, DirQueueError> {
        let opened = if make {
            make_directory(at, name)
        } else {
            open_directory(at, name)
        };
        match opened {
            Ok(descriptor) => Ok(Some(descriptor)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) if planted(&error) => Err(DirQueueError::NotADirectory {
                path: path.to_path_buf(),
            }),
            Err(error) => Err(io_error("opening", path)(error)),
        }
    }

    /// Put messages this owner (a runner that died) was holding back in
    /// their queues, and messages in the previous layout (files directly in
    /// `.inflight/`, which only an older runner made). Another owner's
    /// messages are never touched. What cannot be returned (a queue whose
    /// `.inflight` is a link, a name taken by a directory) is skipped with a
    /// warning. Returns how many were recovered; later claims of those say
    /// [`Claimed::redelivered`].
    ///
    /// # Errors
    /// The root cannot be read.
    pub fn recover(&self) -> Result<usize, DirQueueError> {
        let mut recovered = 0;
        for queue in self.queues()? {
            match self.recover_queue(&queue) {
                Ok(count) => recovered += count,
                Err(error) => crate::log::warn(&format!(
                    "{queue}: held messages not recovered: {}",
                    described(&error)
                )),
            }
        }
        Ok(recovered)
    }

    fn recover_queue(&self, queue: &str) -> Result<usize, DirQueueError> {
        let directory = self.root.join(queue);
        let queue_descriptor = match self.open_queue(queue) {
            Ok(descriptor) => descriptor,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(io_error("opening", &directory)(error)),
        };
        let inflight_path = directory.join(INFLIGHT);
        let Some(inflight) =
            Self::subdirectory(&queue_descriptor, INFLIGHT, &inflight_path, false)?
        else {
            return Ok(0);
        };
        let mut recovered = 0;
        // The previous layout: messages directly in `.inflight/`.
        recovered += self.return_files(queue, &inflight, &inflight_path, &queue_descriptor)?;
        let owner_path = inflight_path.join(&self.owner);
        if let Some(owned) = Self::subdirectory(&inflight, &self.owner, &owner_path, false)? {
            recovered += self.return_files(queue, &owned, &owner_path, &queue_descriptor)?;
        }
        Ok(recovered)
    }

    /// Move the files (not directories) of `from` back into the queue.
    fn return_files(
        &self,
        queue: &str,
        from: &OwnedFd,
        from_path: &Path,
        queue_descriptor: &OwnedFd,
    ) -> Result<usize, DirQueueError> {
        let mut recovered = 0;
        for name in names(from).map_err(io_error("reading", from_path))? {
            let held = from_path.join(&name);
            match rustix::fs::statat(from, name.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    continue;
                }
                Ok(_) => {}
                Err(_) => continue,
            }
            match rustix::fs::renameat(from, name.as_str(), queue_descriptor, name.as_str()) {
                Ok(()) => {
                    recovered += 1;
                    self.recovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((queue.to_owned(), name));
                }
                // The queue was deleted meanwhile, or another runner recovered it.
                Err(Errno::NOENT) => {}
                Err(errno) => crate::log::warn(&format!(
                    "{queue}: held message {} not returned to {}: {}",
                    held.display(),
                    self.root.join(queue).display(),
                    io::Error::from(errno)
                )),
            }
        }
        Ok(recovered)
    }

    /// Add a message (written beside, then renamed in: it appears whole).
    ///
    /// # Errors
    /// The queue cannot be written.
    pub fn publish(&self, queue: &str, name: &str, body: &[u8]) -> Result<PathBuf, DirQueueError> {
        let directory = self.root.join(queue);
        fs::create_dir_all(&directory).map_err(io_error("creating", &directory))?;
        let staging = directory.join(format!(".{name}.partial"));
        fs::write(&staging, body).map_err(io_error("writing", &staging))?;
        let target = directory.join(name);
        fs::rename(&staging, &target).map_err(io_error("publishing", &target))?;
        Ok(target)
    }

    /// Claim the oldest message of `queue`, if any. Several runners may share
    /// the root: the rename decides who gets a message. A queue deleted
    /// since it was listed holds no message; a file still being written
    /// (see [`SETTLING`]) is left where it is.
    ///
    /// # Errors
    /// The queue cannot be read, or its `.inflight` is not a directory.
    pub fn claim(&self, queue: &str) -> Result<Option<Claimed>, DirQueueError> {
        self.claim_at(queue, SystemTime::now())
    }

    fn claim_at(&self, queue: &str, now: SystemTime) -> Result<Option<Claimed>, DirQueueError> {
        let directory = self.root.join(queue);
        let queue_descriptor = match self.open_queue(queue) {
            Ok(descriptor) => descriptor,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if planted(&error) => {
                return Err(DirQueueError::NotADirectory { path: directory });
            }
            Err(error) => return Err(io_error("reading the queue", &directory)(error)),
        };
        let mut files: Vec<(SystemTime, String)> = names(&queue_descriptor)
            .map_err(io_error("reading the queue", &directory))?
            .into_iter()
            .filter(|name| is_message_name(name))
            .filter_map(|name| {
                // Links and special files are never messages.
                let stat =
                    rustix::fs::statat(&queue_descriptor, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .ok()?;
                is_regular(&stat).then(|| (modified(&stat), name))
            })
            .collect();
        if files.is_empty() {
            return Ok(None);
        }
        files.sort();
        let inflight_path = directory.join(INFLIGHT);
        // Made relative to the queue's descriptor: a queue deleted meanwhile is not made again.
        let Some(inflight) = Self::subdirectory(&queue_descriptor, INFLIGHT, &inflight_path, true)?
        else {
            return Ok(None);
        };
        let owner_path = inflight_path.join(&self.owner);
        let Some(owned) = Self::subdirectory(&inflight, &self.owner, &owner_path, true)? else {
            return Ok(None);
        };
        for (modified, name) in files {
            // A fresh file is looked at where it is, so a half-written one is never moved.
            if now
                .duration_since(modified)
                .map_or(true, |age| age < SETTLING)
                && look(&queue_descriptor, &name)
                    .is_ok_and(|(body, modified)| settling(&body, modified, now))
            {
                self.settling.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let held = owner_path.join(&name);
            match rustix::fs::renameat(&queue_descriptor, name.as_str(), &owned, name.as_str()) {
                Ok(()) => {
                    let (body, modified) =
                        look(&owned, &name).map_err(io_error("reading", &held))?;
                    // It changed since it was looked at: give it back to its writer.
                    if settling(&body, modified, now) {
                        rustix::fs::renameat(
                            &owned,
                            name.as_str(),
                            &queue_descriptor,
                            name.as_str(),
                        )
                        .map_err(|errno| {
                            io_error("returning", &directory.join(&name))(errno.into())
                        })?;
                        self.settling.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let redelivered = self
                        .recovered
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .contains(&(queue.to_owned(), name.clone()));
                    return Ok(Some(Claimed {
                        queue: queue.to_owned(),
                        name,
                        body,
                        redelivered,
                        inflight: held,
                    }));
                }
                // Another runner took it first.
                Err(Errno::NOENT) => {}
                Err(errno) => return Err(io_error("claiming", &held)(errno.into())),
            }
        }
        Ok(None)
    }

    /// The queue's directory and this owner's in-flight directory of a held
    /// message, never through links; `None` if either is gone.
    fn held_directories(
        &self,
        claimed_queue: &str,
    ) -> Result<Option<(OwnedFd, OwnedFd)>, DirQueueError> {
        let directory = self.root.join(claimed_queue);
        let queue_descriptor = match self.open_queue(claimed_queue) {
            Ok(descriptor) => descriptor,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) if planted(&error) => {
                return Err(DirQueueError::NotADirectory { path: directory });
            }
            Err(error) => return Err(io_error("opening", &directory)(error)),
        };
        let inflight_path = directory.join(INFLIGHT);
        let Some(inflight) =
            Self::subdirectory(&queue_descriptor, INFLIGHT, &inflight_path, false)?
        else {
            return Ok(None);
        };
        let owner_path = inflight_path.join(&self.owner);
        let Some(owned) = Self::subdirectory(&inflight, &self.owner, &owner_path, false)? else {
            return Ok(None);
        };
        Ok(Some((queue_descriptor, owned)))
    }

    fn forget(&self, queue: &str, name: &str) {
        self.recovered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(queue.to_owned(), name.to_owned()));
    }

    /// Done with it: the message is gone. A message file already gone
    /// (its queue deleted) is only worth a warning.
    ///
    /// # Errors
    /// The file cannot be removed.
    pub fn ack(&self, claimed: Claimed) -> Result<(), DirQueueError> {
        let Claimed {
            queue,
            name,
            inflight,
            ..
        } = claimed;
        self.forget(&queue, &name);
        let removed = match self.held_directories(&queue)? {
            // The link itself, if one was swapped in: never what it points to.
            Some((_, owned)) => rustix::fs::unlinkat(&owned, name.as_str(), AtFlags::empty()),
            None => Err(Errno::NOENT),
        };
        match removed {
            Ok(()) => Ok(()),
            Err(Errno::NOENT) => {
                self.vanished(&queue, &name, "removed (it was done)");
                Ok(())
            }
            Err(errno) => Err(io_error("acknowledging", &inflight)(errno.into())),
        }
    }

    /// Not now: the message goes back, as the newest of its queue. A
    /// message whose queue (or file) was deleted meanwhile is dropped with a
    /// warning.
    ///
    /// # Errors
    /// The file cannot be moved.
    pub fn nack(&self, claimed: Claimed) -> Result<(), DirQueueError> {
        let Claimed { queue, name, .. } = claimed;
        let target = self.root.join(&queue).join(&name);
        let Some((queue_descriptor, owned)) = self.held_directories(&queue)? else {
            self.vanished(&queue, &name, "returned to its queue (dropped)");
            return Ok(());
        };
        match rustix::fs::renameat(&owned, name.as_str(), &queue_descriptor, name.as_str()) {
            Ok(()) => {}
            Err(Errno::NOENT) => {
                self.vanished(&queue, &name, "returned to its queue (dropped)");
                return Ok(());
            }
            Err(errno) => return Err(io_error("returning", &target)(errno.into())),
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let times = Timestamps {
            last_access: Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: Timespec {
                tv_sec: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                tv_nsec: i64::from(now.subsec_nanos()),
            },
        };
        // Without opening it, and never through a link.
        match rustix::fs::utimensat(
            &queue_descriptor,
            name.as_str(),
            &times,
            AtFlags::SYMLINK_NOFOLLOW,
        ) {
            // Taken by another runner, or its queue deleted, this instant.
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(io_error("touching", &target)(errno.into())),
        }
    }

    /// Never runnable: kept in `.dead/` with the reason beside it. A
    /// message whose queue was deleted meanwhile is dropped with a warning
    /// that gives the reason (`None`).
    ///
    /// # Errors
    /// The files cannot be written, or `.dead` is not a directory.
    pub fn dead_letter(
        &self,
        claimed: Claimed,
        reason: &str,
    ) -> Result<Option<PathBuf>, DirQueueError> {
        use std::io::Write as _;
        let Claimed { queue, name, .. } = claimed;
        self.forget(&queue, &name);
        let dropped = format!("dead-lettered (dropped; the reason: {reason})");
        let Some((queue_descriptor, owned)) = self.held_directories(&queue)? else {
            self.vanished(&queue, &name, &dropped);
            return Ok(None);
        };
        let directory = self.root.join(&queue).join(DEAD);
        // Relative to the queue's descriptor: a deleted queue is not made again.
        let Some(dead) = Self::subdirectory(&queue_descriptor, DEAD, &directory, true)? else {
            self.vanished(&queue, &name, &dropped);
            return Ok(None);
        };
        let target = directory.join(&name);
        match rustix::fs::renameat(&owned, name.as_str(), &dead, name.as_str()) {
            Ok(()) => {}
            Err(Errno::NOENT) => {
                self.vanished(&queue, &name, &dropped);
                return Ok(None);
            }
            Err(errno) => return Err(io_error("dead-lettering", &target)(errno.into())),
        }
        let reason_name = format!("{name}.reason");
        let reason_file = directory.join(&reason_name);
        // Whatever is there (a link planted by a writer) is removed, never written through.
        match rustix::fs::unlinkat(&dead, reason_name.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(errno) => return Err(io_error("replacing", &reason_file)(errno.into())),
        }
        let descriptor = rustix::fs::openat(
            &dead,
            reason_name.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o644),
        )
        .map_err(|errno| io_error("writing", &reason_file)(errno.into()))?;
        fs::File::from(descriptor)
            .write_all(format!("{reason}\n").as_bytes())
            .map_err(io_error("writing", &reason_file))?;
        Ok(Some(target))
    }

    /// The warning for a message whose file or queue was deleted while it
    /// was held: `settled` says what was being done with it.
    fn vanished(&self, queue: &str, name: &str, settled: &str) {
        let queue_directory = self.root.join(queue);
        let what = if queue_directory.is_dir() {
            "its file was removed"
        } else {
            "its queue directory was deleted"
        };
        crate::log::emit(
            crate::log::Level::Warn,
            &format!("{queue}: message {name} not {settled}: {what} while it was held"),
            &[("queue", queue), ("message", name)],
        );
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileTypeExt as _;
    use std::time::Duration;

    use super::*;

    fn queues(root: &Path) -> DirQueues {
        DirQueues::new(
            root,
            QueueFilter::new(
                regex::Regex::new("^(rmq|sqs|local)_.*$").unwrap_or_else(|error| panic!("{error}")),
                Some(regex::Regex::new("_skip$").unwrap_or_else(|error| panic!("{error}"))),
            ),
        )
    }

    fn age(path: &Path, seconds_ago: u64) {
        let file = fs::File::options()
            .write(true)
            .open(path)
            .unwrap_or_else(|error| panic!("{error}"));
        let when = SystemTime::now() - Duration::from_secs(seconds_ago);
        file.set_modified(when)
            .unwrap_or_else(|error| panic!("{error}"));
    }

    #[test]
    fn queues_are_filtered_and_messages_come_oldest_first() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let newer = queues.publish("local_a", "newer", b"2")?;
        let older = queues.publish("local_a", "older", b"1")?;
        age(&newer, 10);
        age(&older, 100);
        queues.publish("local_b_skip", "x", b"x")?;
        queues.publish("other", "x", b"x")?;
        assert_eq!(queues.queues()?, ["local_a"]);
        let first = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", &older)(io::ErrorKind::NotFound.into()))?;
        assert_eq!(first.body, b"1");
        let second = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", &newer)(io::ErrorKind::NotFound.into()))?;
        assert_eq!(second.body, b"2");
        assert!(queues.claim("local_a")?.is_none());
        queues.ack(first)?;
        queues.nack(second)?;
        let again = queues.claim("local_a")?.map(|claimed| claimed.body);
        assert_eq!(again.as_deref(), Some(&b"2"[..]));
        Ok(())
    }

    #[test]
    fn an_oversized_file_is_read_only_past_the_request_limit() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let huge = vec![b' '; crate::request::MAX_BODY * 3];
        let path = queues.publish("local_a", "huge", &huge)?;
        age(&path, 60);
        let claimed = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", &path)(io::ErrorKind::NotFound.into()))?;
        assert_eq!(claimed.body.len(), crate::request::MAX_BODY + 1);
        assert!(matches!(
            crate::request::Request::parse(&claimed.body),
            Err(crate::request::RequestError::TooLarge { .. })
        ));
        Ok(())
    }

    #[test]
    fn a_message_held_by_a_dead_runner_is_delivered_again() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        queues.publish("local_a", "job", br#"{"run": "me"}"#)?;
        let claimed = queues.claim("local_a")?;
        assert!(claimed.is_some());
        // The runner dies: nothing acked. A new runner starts.
        drop(claimed);
        let restarted = self::queues(root.path());
        assert!(restarted.claim("local_a")?.is_none());
        assert_eq!(restarted.recover()?, 1);
        let body = restarted.claim("local_a")?.map(|claimed| claimed.body);
        assert_eq!(body.as_deref(), Some(&br#"{"run": "me"}"#[..]));
        Ok(())
    }

    #[test]
    fn unusable_messages_are_dead_lettered_with_their_reason() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let broken = queues.publish("local_a", "broken", b"{not json")?;
        // Long enough ago that it is not being written any more.
        age(&broken, 60);
        let claimed = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", root.path())(io::ErrorKind::NotFound.into()))?;
        let dead = queues
            .dead_letter(claimed, "the message is not a StudioML request")?
            .ok_or_else(|| {
                io_error("dead-lettering", root.path())(io::ErrorKind::NotFound.into())
            })?;
        assert_eq!(
            fs::read(&dead).map_err(io_error("reading", &dead))?,
            b"{not json"
        );
        let reason = dead.with_file_name("broken.reason");
        assert!(
            fs::read_to_string(&reason)
                .map_err(io_error("reading", &reason))?
                .contains("not a StudioML request")
        );
        assert!(queues.claim("local_a")?.is_none());
        assert_eq!(queues.recover()?, 0);
        Ok(())
    }

    fn modified(path: &Path) -> SystemTime {
        fs::metadata(path)
            .and_then(|metadata| metadata.modified())
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    #[test]
    fn a_file_still_being_written_is_left_until_it_has_settled() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let directory = root.path().join("local_a");
        fs::create_dir(&directory).map_err(io_error("creating", &directory))?;
        let partial = directory.join("partial.json");
        fs::write(&partial, br#"{"experiment": {"ke"#).map_err(io_error("writing", &partial))?;
        let written = modified(&partial);
        // A second after it was written: left in place, not moved.
        assert!(
            queues
                .claim_at("local_a", written + Duration::from_secs(1))?
                .is_none()
        );
        assert!(partial.is_file());
        assert!(
            !directory
                .join(INFLIGHT)
                .join(DEFAULT_OWNER)
                .join("partial.json")
                .exists()
        );
        // A fresh file that is whole JSON is taken at once.
        let whole = queues.publish("local_a", "whole.json", br#"{"experiment": {}}"#)?;
        let taken = queues.claim_at("local_a", modified(&whole) + Duration::from_secs(1))?;
        assert_eq!(
            taken.map(|claimed| claimed.name).as_deref(),
            Some("whole.json")
        );
        // Unchanged for longer than SETTLING: taken, and dead-lettered as any unreadable message.
        let claimed = queues
            .claim_at("local_a", written + SETTLING + Duration::from_secs(1))?
            .ok_or_else(|| io_error("claiming", &partial)(io::ErrorKind::NotFound.into()))?;
        assert_eq!(claimed.name, "partial.json");
        let dead = queues
            .dead_letter(claimed, "the message is not JSON: EOF while parsing")?
            .ok_or_else(|| io_error("dead-lettering", &partial)(io::ErrorKind::NotFound.into()))?;
        assert_eq!(
            fs::read(&dead).map_err(io_error("reading", &dead))?,
            br#"{"experiment": {"ke"#
        );
        // The same through the real clock: an old half-written file goes to the dead letters.
        let old = directory.join("old.json");
        fs::write(&old, b"{").map_err(io_error("writing", &old))?;
        age(&old, 60);
        let claimed = queues.claim("local_a")?.map(|claimed| claimed.name);
        assert_eq!(claimed.as_deref(), Some("old.json"));
        // An empty file just created, through the real clock: left alone.
        let empty = directory.join("empty.json");
        fs::write(&empty, b"").map_err(io_error("writing", &empty))?;
        assert!(queues.claim("local_a")?.is_none());
        assert!(empty.is_file());
        Ok(())
    }

    #[test]
    fn a_file_dated_far_in_the_future_is_not_held_for_ever() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let directory = root.path().join("local_a");
        fs::create_dir(&directory).map_err(io_error("creating", &directory))?;
        let skewed = directory.join("skewed.json");
        fs::write(&skewed, b"not json").map_err(io_error("writing", &skewed))?;
        let written = modified(&skewed);
        let now = written - Duration::from_hours(1);
        let claimed = queues.claim_at("local_a", now)?.map(|claimed| claimed.name);
        assert_eq!(claimed.as_deref(), Some("skewed.json"));
        Ok(())
    }

    #[test]
    fn dot_files_the_client_lock_and_directories_are_never_messages() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let directory = root.path().join("local_a");
        fs::create_dir_all(directory.join("nested")).map_err(io_error("creating", &directory))?;
        for name in [".hidden", "lock.lock", ".message.json.partial"] {
            let path = directory.join(name);
            fs::write(&path, b"{}").map_err(io_error("writing", &path))?;
            age(&path, 60);
        }
        assert!(queues.claim("local_a")?.is_none());
        let request = queues.publish("local_a", "request.json", b"{}")?;
        age(&request, 30);
        let claimed = queues.claim("local_a")?.map(|claimed| claimed.name);
        assert_eq!(claimed.as_deref(), Some("request.json"));
        assert!(queues.claim("local_a")?.is_none());
        for name in [".hidden", "lock.lock", ".message.json.partial", "nested"] {
            assert!(directory.join(name).exists(), "{name} was taken");
        }
        Ok(())
    }

    #[test]
    fn a_queue_deleted_while_its_message_is_held_fails_nothing() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        for name in ["acked", "nacked", "dead"] {
            queues.publish("local_gone", name, b"{}")?;
        }
        let mut held = Vec::new();
        while let Some(claimed) = queues.claim("local_gone")? {
            held.push(claimed);
        }
        assert_eq!(held.len(), 3);
        let directory = root.path().join("local_gone");
        fs::remove_dir_all(&directory).map_err(io_error("removing", &directory))?;
        assert_eq!(queues.queues()?, Vec::<String>::new());
        assert!(queues.claim("local_gone")?.is_none());
        for claimed in held {
            match claimed.name.as_str() {
                "acked" => queues.ack(claimed)?,
                "nacked" => queues.nack(claimed)?,
                _ => assert_eq!(queues.dead_letter(claimed, "unreadable")?, None),
            }
        }
        // Dropped, and the queue the operator deleted is not made again.
        assert!(!directory.exists());
        assert_eq!(queues.recover()?, 0);
        Ok(())
    }

    #[test]
    fn a_message_file_removed_while_held_is_acked_without_error() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        queues.publish("local_a", "job", b"{}")?;
        let claimed = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", root.path())(io::ErrorKind::NotFound.into()))?;
        let inflight = root
            .path()
            .join("local_a")
            .join(INFLIGHT)
            .join(DEFAULT_OWNER)
            .join("job");
        fs::remove_file(&inflight).map_err(io_error("removing", &inflight))?;
        queues.ack(claimed)?;
        assert!(root.path().join("local_a").is_dir());
        Ok(())
    }

    fn fails(action: &'static str, path: &Path) -> DirQueueError {
        io_error(action, path)(io::ErrorKind::NotFound.into())
    }

    fn symlink(target: &Path, link: &Path) {
        std::os::unix::fs::symlink(target, link).unwrap_or_else(|error| panic!("{error}"));
    }

    #[test]
    fn a_linked_inflight_directory_is_never_followed() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let victim = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let precious = victim.path().join("precious");
        fs::write(&precious, b"mine").map_err(io_error("writing", &precious))?;
        let queues = queues(root.path());
        let message = queues.publish("local_a", "job", b"{}")?;
        age(&message, 60);
        symlink(victim.path(), &root.path().join("local_a").join(INFLIGHT));
        // Start-up: nothing is taken out of the victim directory.
        assert_eq!(queues.recover()?, 0);
        assert!(precious.is_file());
        assert!(!root.path().join("local_a").join("precious").exists());
        // Claiming refuses the queue instead of moving the message there.
        assert!(matches!(
            queues.claim("local_a"),
            Err(DirQueueError::NotADirectory { .. })
        ));
        assert!(message.is_file());
        assert_eq!(
            fs::read_dir(victim.path())
                .map_err(io_error("reading", victim.path()))?
                .count(),
            1
        );
        Ok(())
    }

    #[test]
    fn dead_letters_never_write_through_planted_links() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let victim = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let passwd = victim.path().join("passwd");
        fs::write(&passwd, b"root:x:0:0").map_err(io_error("writing", &passwd))?;
        let queues = queues(root.path());
        let dead = root.path().join("local_b").join(DEAD);
        fs::create_dir_all(&dead).map_err(io_error("creating", &dead))?;
        symlink(&passwd, &dead.join("x.reason"));
        let message = queues.publish("local_b", "x", b"{bad")?;
        age(&message, 60);
        let claimed = queues
            .claim("local_b")?
            .ok_or_else(|| fails("claiming", &message))?;
        let target = queues
            .dead_letter(claimed, "not JSON")?
            .ok_or_else(|| fails("dead-lettering", &message))?;
        assert_eq!(target, dead.join("x"));
        assert_eq!(
            fs::read(&passwd).map_err(io_error("reading", &passwd))?,
            b"root:x:0:0"
        );
        let reason = dead.join("x.reason");
        assert!(
            fs::symlink_metadata(&reason)
                .map_err(io_error("reading", &reason))?
                .is_file()
        );
        assert_eq!(
            fs::read(&reason).map_err(io_error("reading", &reason))?,
            b"not JSON\n"
        );
        // A `.dead` that is a link: refused, nothing moved into the victim.
        let other = queues.publish("local_c", "y", b"{bad")?;
        age(&other, 60);
        symlink(victim.path(), &root.path().join("local_c").join(DEAD));
        let claimed = queues
            .claim("local_c")?
            .ok_or_else(|| fails("claiming", &other))?;
        assert!(matches!(
            queues.dead_letter(claimed, "not JSON"),
            Err(DirQueueError::NotADirectory { .. })
        ));
        assert!(!victim.path().join("y").exists());
        assert!(!victim.path().join("y.reason").exists());
        Ok(())
    }

    fn fifo(path: &Path, seconds_ago: u64) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap_or_else(|error| panic!("{error}"));
        let then = SystemTime::now() - Duration::from_secs(seconds_ago);
        let since = then.duration_since(UNIX_EPOCH).unwrap_or_default();
        let time = Timespec {
            tv_sec: i64::try_from(since.as_secs()).unwrap_or(0),
            tv_nsec: 0,
        };
        rustix::fs::utimensat(
            rustix::fs::CWD,
            path,
            &Timestamps {
                last_access: time,
                last_modification: time,
            },
            AtFlags::empty(),
        )
        .unwrap_or_else(|error| panic!("{error}"));
    }

    #[test]
    fn a_fifo_is_read_as_empty_without_blocking() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let directory = root.path().join("local_a");
        fs::create_dir(&directory).map_err(io_error("creating", &directory))?;
        let pipe = directory.join("pipe");
        fifo(&pipe, 60);
        // As a message swapped in after the listing would be opened.
        let descriptor = rustix::fs::open(
            &directory,
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(|errno| io_error("opening", &directory)(errno.into()))?;
        let (body, _) = look(&descriptor, "pipe").map_err(io_error("reading", &pipe))?;
        assert!(body.is_empty());
        // Listed, it is no message: left where it is, never opened.
        let queues = queues(root.path());
        assert!(queues.claim("local_a")?.is_none());
        assert!(
            fs::symlink_metadata(&pipe)
                .map_err(io_error("reading", &pipe))?
                .file_type()
                .is_fifo()
        );
        Ok(())
    }

    #[test]
    fn a_runner_recovers_only_what_it_held_itself() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let filter = QueueFilter::all();
        let first = DirQueues::with_owner(root.path(), filter.clone(), "host-a/work");
        first.publish("local_a", "theirs", b"{}")?;
        let held = first
            .claim("local_a")?
            .ok_or_else(|| fails("claiming", root.path()))?;
        // A file of an older runner, in the previous layout.
        let legacy = root.path().join("local_a").join(INFLIGHT).join("legacy");
        fs::write(&legacy, b"{}").map_err(io_error("writing", &legacy))?;
        let second = DirQueues::with_owner(root.path(), filter, "host-b");
        assert_eq!(second.recover()?, 1);
        let taken = second
            .claim("local_a")?
            .ok_or_else(|| fails("claiming", &legacy))?;
        assert_eq!(taken.name, "legacy");
        assert!(taken.redelivered);
        assert!(second.claim("local_a")?.is_none());
        // The first runner's message is still its own.
        assert_eq!(held.name, "theirs");
        assert!(!held.redelivered);
        first.ack(held)?;
        second.ack(taken)?;
        assert!(
            fs::read_dir(
                root.path()
                    .join("local_a")
                    .join(INFLIGHT)
                    .join("host-a_work")
            )
            .map_err(io_error("reading", root.path()))?
            .next()
            .is_none()
        );
        Ok(())
    }

    #[test]
    fn an_entry_that_cannot_be_returned_is_skipped() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        let queue = root.path().join("local_x");
        for directory in [
            queue.join(INFLIGHT).join("blocker"),
            queue.join("blocker").join("sub"),
            queue.join("held").join("sub"),
            queue.join(INFLIGHT).join(DEFAULT_OWNER),
        ] {
            fs::create_dir_all(&directory).map_err(io_error("creating", &directory))?;
        }
        // A held file whose name is taken in the queue by a non-empty directory.
        let stuck = queue.join(INFLIGHT).join(DEFAULT_OWNER).join("held");
        fs::write(&stuck, b"{}").map_err(io_error("writing", &stuck))?;
        let fine = queue.join(INFLIGHT).join(DEFAULT_OWNER).join("fine");
        fs::write(&fine, b"{}").map_err(io_error("writing", &fine))?;
        assert_eq!(queues.recover()?, 1);
        assert!(queue.join("fine").is_file());
        assert!(stuck.is_file());
        assert!(queue.join(INFLIGHT).join("blocker").is_dir());
        Ok(())
    }

    #[test]
    fn only_recovered_messages_are_redeliveries() -> Result<(), DirQueueError> {
        use super::super::Queues as _;
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        queues.publish("local_a", "job", b"{}")?;
        let (_, fresh) = super::super::Queues::claim(&queues, "local_a")?
            .ok_or_else(|| fails("claiming", root.path()))?;
        assert!(!queues.redelivered(&fresh));
        drop(fresh);
        let restarted = self::queues(root.path());
        assert_eq!(restarted.recover()?, 1);
        let (_, again) = super::super::Queues::claim(&restarted, "local_a")?
            .ok_or_else(|| fails("claiming", root.path()))?;
        assert!(restarted.redelivered(&again));
        restarted.ack(again)?;
        // The same file queued again on purpose runs again.
        restarted.publish("local_a", "job", b"{}")?;
        let (_, queued_again) = super::super::Queues::claim(&restarted, "local_a")?
            .ok_or_else(|| fails("claiming", root.path()))?;
        assert!(!restarted.redelivered(&queued_again));
        Ok(())
    }

    #[test]
    fn a_linked_queue_directory_is_not_served() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let elsewhere = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let message = elsewhere.path().join("job");
        fs::write(&message, b"{}").map_err(io_error("writing", &message))?;
        age(&message, 60);
        symlink(elsewhere.path(), &root.path().join("local_link"));
        let queues = queues(root.path());
        assert!(queues.queues()?.is_empty());
        assert!(queues.queues()?.is_empty());
        assert_eq!(
            queues
                .warned
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len(),
            1
        );
        assert!(matches!(
            queues.claim("local_link"),
            Err(DirQueueError::NotADirectory { .. })
        ));
        assert!(message.is_file());
        Ok(())
    }

    #[test]
    fn local_file_system_failures_are_transient() {
        let error = io_error("reading the queue", Path::new("/q"))(io::Error::from(
            io::ErrorKind::PermissionDenied,
        ));
        assert_eq!(error.class(), Class::Transient);
    }
}
