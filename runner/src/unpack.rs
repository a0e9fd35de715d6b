//! Unpacking artifacts that come from outside, so that an experiment's files
//! stay inside its directory and within its disk budget.
//!
//! An archive is untrusted input: its paths, links, modes and sizes are
//! chosen by whoever made it. `tar::Archive::unpack` trusts too much of that
//! (it keeps setuid bits, makes device nodes, writes through symlinks it made
//! itself and has no byte limit), so entries are walked one by one and written
//! here relative to a directory descriptor:
//!
//! - every path component is opened with `O_NOFOLLOW`, so nothing is ever
//!   created or written through a symbolic link, whoever made the link;
//! - absolute paths, `..`, symlinks that point outside (absolute, climbing
//!   out, or out through another link of the archive) and hard links to
//!   anything but a file unpacked before them make the archive hostile;
//! - device nodes and FIFOs are skipped, setuid, setgid and sticky bits
//!   cleared, and the owner keeps the rights to clean up;
//! - each entry costs its header (512 bytes) plus the bytes written, taken
//!   from a [`Budget`] shared by the experiment's artifacts before anything is
//!   written, so a compression bomb stops at the budget.
//!
//! [`ensure_directory`] and [`create_file_no_follow`] do the same for the
//! runner's own files inside a directory an archive may have filled.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use thiserror::Error;

/// What one tar header costs against the budget: a stand-in for the inode,
/// the directory entry and the partly used block each entry makes (a file
/// system block), so that many tiny files cost what they take on disk and
/// millions of empty entries cannot be had for free.
pub const ENTRY_COST: u64 = 4096;

/// Bytes read in one piece: what is written before the budget is asked again.
const CHUNK: usize = 64 * 1024;

/// How many bytes of headers, long names, pax records and skipped data an
/// archive may hold before one entry; the `tar` crate keeps long names and
/// pax records in memory.
const METADATA_LIMIT: u64 = 4 * 1024 * 1024;

/// How many symbolic links a path may pass through (Linux's `MAXSYMLINKS`).
const LINK_HOPS: usize = 40;

/// Bytes an experiment may still write while its artifacts are unpacked,
/// shared by all of them (and by threads, if they are fetched in parallel).
#[derive(Debug)]
pub struct Budget {
    limit: u64,
    used: AtomicU64,
}

/// A request for more bytes than a [`Budget`] has left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverBudget {
    /// Bytes taken before this request.
    pub used: u64,
    /// Bytes this request asked for.
    pub wanted: u64,
    /// The budget.
    pub limit: u64,
}

impl Budget {
    /// A budget of `limit` bytes, none used.
    #[must_use]
    pub const fn new(limit: u64) -> Self {
        Self {
            limit,
            used: AtomicU64::new(0),
        }
    }

    /// A budget that never runs out.
    #[must_use]
    pub const fn unlimited() -> Self {
        Self::new(u64::MAX)
    }

    /// The budget.
    #[must_use]
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes taken so far.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Bytes left.
    #[must_use]
    pub fn remaining(&self) -> u64 {
        self.limit.saturating_sub(self.used())
    }

    /// Take `bytes`, all or none.
    ///
    /// # Errors
    /// Fewer than `bytes` are left; nothing is taken.
    pub fn take(&self, bytes: u64) -> Result<(), OverBudget> {
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .map(|_| ())
            .map_err(|used| OverBudget {
                used,
                wanted: bytes,
                limit: self.limit,
            })
    }
}

/// What an archive held.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unpacked {
    /// File bytes written.
    pub bytes: u64,
    /// Regular files written.
    pub files: u64,
    /// Directories made.
    pub directories: u64,
    /// Symbolic and hard links made.
    pub links: u64,
    /// Entries left out: device nodes, FIFOs, global pax headers, unknown kinds.
    pub skipped: u64,
}

/// Why an archive was not (wholly) unpacked.
#[derive(Debug, Error)]
pub enum UnpackError {
    /// The archive tries to leave its directory or make what it must not.
    #[error("the archive is hostile: entry {}: {reason}", .entry.display())]
    Hostile {
        /// The entry, as the archive names it.
        entry: PathBuf,
        /// What it tried.
        reason: String,
    },
    /// The archive is not a whole tar (or tar.gz, tar.bz2).
    #[error("the archive is corrupt: {source}")]
    Corrupt {
        /// What the decoder or the tar reader said.
        #[source]
        source: io::Error,
    },
    /// The budget ran out.
    #[error(
        "unpacking needs more than the disk budget of {limit} bytes ({unpacked} bytes of this artifact written, {used} bytes of the experiment's artifacts in all)"
    )]
    OverBudget {
        /// Bytes this archive had taken.
        unpacked: u64,
        /// Bytes the budget had given out in all.
        used: u64,
        /// The budget.
        limit: u64,
    },
    /// Reading the archive's own file failed.
    #[error("cannot read the archive")]
    Read {
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Writing into the directory failed (a full disk among others).
    #[error("cannot {action} {}", .path.display())]
    Io {
        /// What was done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// What the readers around the archive's file saw: whether a failure came
/// from the file itself (the disk) or from decoding it (the archive).
#[derive(Debug, Default)]
struct Tap {
    source_failed: Cell<bool>,
    in_data: Cell<bool>,
    metadata: Cell<u64>,
}

/// The archive's file, marking its own failures.
struct Source<R> {
    inner: R,
    tap: Rc<Tap>,
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buffer).inspect_err(|error| {
            if error.kind() != io::ErrorKind::Interrupted {
                self.tap.source_failed.set(true);
            }
        })
    }
}

/// The decoded tar stream, limiting what is read outside file data.
struct Stream<R> {
    inner: R,
    tap: Rc<Tap>,
}

impl<R: Read> Read for Stream<R> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if !self.tap.in_data.get() {
            let metadata = self.tap.metadata.get().saturating_add(read as u64);
            self.tap.metadata.set(metadata);
            if metadata > METADATA_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "more than {METADATA_LIMIT} bytes of headers, names or skipped data before one entry"
                    ),
                ));
            }
        }
        Ok(read)
    }
}

/// Unpack the tar, tar.gz or tar.bz2 read from `source` (told apart by its
/// first bytes) into `directory`, which must exist, taking what is written
/// from `budget`.
///
/// # Errors
/// A hostile or corrupt archive, the budget exceeded (it stops at once:
/// never more than the budget is written), or I/O.
pub fn unpack(
    source: impl Read,
    directory: &Path,
    budget: &Budget,
) -> Result<Unpacked, UnpackError> {
    let tap = Rc::new(Tap::default());
    let mut buffered = BufReader::new(Source {
        inner: source,
        tap: Rc::clone(&tap),
    });
    let magic = buffered
        .fill_buf()
        .map_err(|source| UnpackError::Read { source })?;
    let decoded: Box<dyn Read> = match magic {
        [0x1f, 0x8b, ..] => Box::new(flate2::bufread::GzDecoder::new(buffered)),
        [b'B', b'Z', b'h', ..] => Box::new(bzip2::bufread::BzDecoder::new(buffered)),
        _ => Box::new(buffered),
    };
    let mut archive = tar::Archive::new(Stream {
        inner: decoded,
        tap: Rc::clone(&tap),
    });
    let mut extractor = Extractor::open(directory, budget, &tap)?;
    let entries = archive
        .entries()
        .map_err(|error| extractor.read_failure(error))?;
    for entry in entries {
        let mut entry = entry.map_err(|error| extractor.read_failure(error))?;
        tap.metadata.set(0);
        extractor.entry(&mut entry)?;
    }
    extractor.check_links()?;
    Ok(extractor.unpacked)
}

struct Extractor<'run> {
    directory: &'run Path,
    root: OwnedFd,
    budget: &'run Budget,
    tap: &'run Tap,
    unpacked: Unpacked,
    /// Bytes this archive took from the budget.
    taken: u64,
    /// Regular files unpacked so far (hard links may point to them).
    files: HashSet<PathBuf>,
    /// Symbolic links unpacked so far, with their targets.
    links: HashMap<PathBuf, PathBuf>,
    /// The last parent directory opened, kept for its siblings.
    parent: Option<(PathBuf, OwnedFd)>,
}

impl<'run> Extractor<'run> {
    fn open(
        directory: &'run Path,
        budget: &'run Budget,
        tap: &'run Tap,
    ) -> Result<Self, UnpackError> {
        let root = rustix::fs::open(
            directory,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|errno| UnpackError::Io {
            action: "open",
            path: directory.to_path_buf(),
            source: errno.into(),
        })?;
        Ok(Self {
            directory,
            root,
            budget,
            tap,
            unpacked: Unpacked::default(),
            taken: 0,
            files: HashSet::new(),
            links: HashMap::new(),
            parent: None,
        })
    }

    fn read_failure(&self, error: io::Error) -> UnpackError {
        if self.tap.source_failed.get() {
            UnpackError::Read { source: error }
        } else {
            UnpackError::Corrupt { source: error }
        }
    }

    fn take(&mut self, bytes: u64) -> Result<(), UnpackError> {
        self.budget
            .take(bytes)
            .map_err(|over| UnpackError::OverBudget {
                unpacked: self.taken,
                used: over.used,
                limit: over.limit,
            })?;
        self.taken += bytes;
        Ok(())
    }

    /// Where `relative` lands, for messages.
    fn full(&self, relative: &Path) -> PathBuf {
        self.directory.join(relative)
    }

    /// A failure of a call on `relative`: the archive's fault when the
    /// kernel refuses its names or shapes, else the environment's.
    fn failure(
        &self,
        entry: &Path,
        action: &'static str,
        relative: &Path,
        errno: Errno,
    ) -> UnpackError {
        match errno {
            Errno::NAMETOOLONG
            | Errno::LOOP
            | Errno::NOTDIR
            | Errno::ISDIR
            | Errno::MLINK
            | Errno::EXIST
            | Errno::NOTEMPTY
            | Errno::INVAL => UnpackError::Hostile {
                entry: entry.to_path_buf(),
                reason: format!(
                    "cannot {action} {}: {}",
                    relative.display(),
                    io::Error::from(errno)
                ),
            },
            _ => UnpackError::Io {
                action,
                path: self.full(relative),
                source: errno.into(),
            },
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        let named = entry
            .path()
            .map_err(|source| UnpackError::Corrupt { source })?
            .into_owned();
        let relative = inside(&named).map_err(|reason| UnpackError::Hostile {
            entry: named.clone(),
            reason: reason.to_owned(),
        })?;
        self.take(ENTRY_COST)?;
        match kind {
            tar::EntryType::Directory => self.directory_entry(&named, &relative, entry),
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file_entry(&named, &relative, entry)
            }
            tar::EntryType::Symlink => self.symlink_entry(&named, &relative, entry),
            tar::EntryType::Link => self.hard_link_entry(&named, &relative, entry),
            _ => {
                self.unpacked.skipped += 1;
                Ok(())
            }
        }
    }

    fn directory_entry<R: Read>(
        &mut self,
        named: &Path,
        relative: &Path,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let Some(name) = relative.file_name() else {
            // The archive's root (`./`): the directory exists and keeps its mode.
            return Ok(());
        };
        let parent = self.parent_of(named, relative)?;
        let directory = open_directory(&parent, name, true)
            .map_err(|errno| self.component_failure(named, relative, errno, &parent, name))?;
        self.forget(relative);
        let mode = entry
            .header()
            .mode()
            .map_err(|source| UnpackError::Corrupt { source })?;
        rustix::fs::fchmod(&directory, Mode::from_raw_mode(directory_mode(mode)))
            .map_err(|errno| self.failure(named, "set the mode of", relative, errno))?;
        self.unpacked.directories += 1;
        Ok(())
    }

    fn file_entry<R: Read>(
        &mut self,
        named: &Path,
        relative: &Path,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let name = relative
            .file_name()
            .ok_or_else(|| hostile(named, "a file needs a name"))?;
        let size = entry.size();
        if size > self.budget.remaining() {
            return Err(UnpackError::OverBudget {
                unpacked: self.taken,
                used: self.budget.used(),
                limit: self.budget.limit(),
            });
        }
        let parent = self.parent_of(named, relative)?;
        self.remove(named, relative, &parent, name)?;
        let descriptor = rustix::fs::openat(
            &parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|errno| self.failure(named, "create", relative, errno))?;
        let mut file = File::from(descriptor);
        let mut buffer = vec![0u8; CHUNK];
        let mut written = 0u64;
        loop {
            self.tap.in_data.set(true);
            let read = entry.read(&mut buffer);
            self.tap.in_data.set(false);
            let read = match read {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(self.read_failure(error)),
            };
            self.take(read as u64)?;
            file.write_all(&buffer[..read])
                .map_err(|source| UnpackError::Io {
                    action: "write",
                    path: self.full(relative),
                    source,
                })?;
            written += read as u64;
        }
        if entry.header().entry_type() != tar::EntryType::GNUSparse && written < size {
            return Err(UnpackError::Corrupt {
                source: io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends after {written} of its {size} bytes",
                        named.display()
                    ),
                ),
            });
        }
        let header = entry.header();
        let mode = header
            .mode()
            .map_err(|source| UnpackError::Corrupt { source })?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(file_mode(mode)))
            .map_err(|errno| self.failure(named, "set the mode of", relative, errno))?;
        if let Ok(mtime) = header.mtime() {
            let time = Timespec {
                tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
                tv_nsec: 0,
            };
            rustix::fs::futimens(
                &file,
                &Timestamps {
                    last_access: time,
                    last_modification: time,
                },
            )
            .map_err(|errno| self.failure(named, "set the time of", relative, errno))?;
        }
        self.forget(relative);
        self.files.insert(relative.to_path_buf());
        self.unpacked.files += 1;
        self.unpacked.bytes += written;
        Ok(())
    }

    fn symlink_entry<R: Read>(
        &mut self,
        named: &Path,
        relative: &Path,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let name = relative
            .file_name()
            .ok_or_else(|| hostile(named, "a link needs a name"))?;
        let target = entry
            .link_name()
            .map_err(|source| UnpackError::Corrupt { source })?
            .ok_or_else(|| hostile(named, "a symbolic link without a target"))?
            .into_owned();
        if target.as_os_str().is_empty() {
            return Err(hostile(named, "a symbolic link without a target"));
        }
        if target.has_root() {
            return Err(hostile(
                named,
                &format!("a symbolic link to the absolute path {}", target.display()),
            ));
        }
        let mut depth = relative.components().count() - 1;
        for component in target.components() {
            match component {
                Component::ParentDir => {
                    depth = depth.checked_sub(1).ok_or_else(|| {
                        hostile(
                            named,
                            &format!("a symbolic link out of the artifact ({})", target.display()),
                        )
                    })?;
                }
                Component::Normal(_) => depth += 1,
                _ => {}
            }
        }
        let parent = self.parent_of(named, relative)?;
        self.remove(named, relative, &parent, name)?;
        rustix::fs::symlinkat(&target, &parent, name)
            .map_err(|errno| self.failure(named, "create", relative, errno))?;
        self.forget(relative);
        self.links.insert(relative.to_path_buf(), target);
        self.unpacked.links += 1;
        Ok(())
    }

    fn hard_link_entry<R: Read>(
        &mut self,
        named: &Path,
        relative: &Path,
        entry: &tar::Entry<'_, R>,
    ) -> Result<(), UnpackError> {
        let name = relative
            .file_name()
            .ok_or_else(|| hostile(named, "a link needs a name"))?;
        let target_named = entry
            .link_name()
            .map_err(|source| UnpackError::Corrupt { source })?
            .ok_or_else(|| hostile(named, "a hard link without a target"))?
            .into_owned();
        let target = inside(&target_named).map_err(|reason| {
            hostile(
                named,
                &format!("a hard link to {}: {reason}", target_named.display()),
            )
        })?;
        if target == relative {
            return Ok(());
        }
        if !self.files.contains(&target) {
            return Err(hostile(
                named,
                &format!(
                    "a hard link to {}, which is not a file unpacked before it",
                    target_named.display()
                ),
            ));
        }
        let target_name = target
            .file_name()
            .ok_or_else(|| hostile(named, "a hard link to the root"))?;
        let target_parent = self.parent_of(named, &target)?;
        let parent = self.parent_of(named, relative)?;
        self.remove(named, relative, &parent, name)?;
        rustix::fs::linkat(&target_parent, target_name, &parent, name, AtFlags::empty())
            .map_err(|errno| self.failure(named, "link", relative, errno))?;
        self.forget(relative);
        self.files.insert(relative.to_path_buf());
        self.unpacked.links += 1;
        Ok(())
    }

    /// The directory that holds `relative`, made where missing, never
    /// reached through a symbolic link.
    fn parent_of(&mut self, named: &Path, relative: &Path) -> Result<OwnedFd, UnpackError> {
        let parent = relative.parent().unwrap_or_else(|| Path::new(""));
        if let Some((path, descriptor)) = &self.parent
            && path == parent
        {
            return descriptor.try_clone().map_err(|source| UnpackError::Io {
                action: "open",
                path: self.full(parent),
                source,
            });
        }
        let mut descriptor = self.root.try_clone().map_err(|source| UnpackError::Io {
            action: "open",
            path: self.directory.to_path_buf(),
            source,
        })?;
        let mut walked = PathBuf::new();
        for component in parent.components() {
            let name = component.as_os_str();
            walked.push(name);
            let next = open_directory(&descriptor, name, true).map_err(|errno| {
                self.component_failure(named, &walked, errno, &descriptor, name)
            })?;
            descriptor = next;
        }
        let kept = descriptor.try_clone().map_err(|source| UnpackError::Io {
            action: "open",
            path: self.full(parent),
            source,
        })?;
        self.parent = Some((parent.to_path_buf(), kept));
        Ok(descriptor)
    }

    /// Why the directory `walked` could not be opened or made.
    fn component_failure(
        &self,
        named: &Path,
        walked: &Path,
        errno: Errno,
        parent: &OwnedFd,
        name: &OsStr,
    ) -> UnpackError {
        if matches!(errno, Errno::LOOP | Errno::NOTDIR | Errno::EXIST) {
            let kind = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)
                .map(|stat| FileType::from_raw_mode(stat.st_mode));
            let what = if matches!(kind, Ok(FileType::Symlink)) {
                "a symbolic link: nothing is written through one"
            } else {
                "not a directory"
            };
            return hostile(named, &format!("{} is {what}", walked.display()));
        }
        self.failure(named, "create", walked, errno)
    }

    /// Make room for a new `name` in `parent`: anything but a directory there
    /// is unlinked (never followed), so nothing is written through an old
    /// link or into another name of the same file.
    fn remove(
        &self,
        named: &Path,
        relative: &Path,
        parent: &OwnedFd,
        name: &OsStr,
    ) -> Result<(), UnpackError> {
        match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(errno) => Err(self.failure(named, "inspect", relative, errno)),
            Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                Err(hostile(
                    named,
                    &format!("{} is already a directory", relative.display()),
                ))
            }
            Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(|errno| self.failure(named, "replace", relative, errno)),
        }
    }

    fn forget(&mut self, relative: &Path) {
        self.files.remove(relative);
        self.links.remove(relative);
    }

    /// Refuse links that leave the directory through other links of the
    /// archive (`a/b -> ..` and `c -> a/b/..`), which each look harmless.
    fn check_links(&self) -> Result<(), UnpackError> {
        for (link, target) in &self.links {
            let parent = link.parent().unwrap_or_else(|| Path::new(""));
            if let Err(reason) = resolve(parent, target, &self.links) {
                return Err(hostile(link, &reason));
            }
        }
        Ok(())
    }
}

/// Follow `target` from `parent` through the archive's own links, in the
/// archive alone; an error says how it leaves.
fn resolve(parent: &Path, target: &Path, links: &HashMap<PathBuf, PathBuf>) -> Result<(), String> {
    let names = |path: &Path| -> Vec<OsString> {
        path.components()
            .map(|component| component.as_os_str().to_owned())
            .collect()
    };
    let mut position = names(parent);
    let mut pending = names(target);
    pending.reverse();
    let mut hops = 0;
    while let Some(component) = pending.pop() {
        if component == ".." {
            if position.pop().is_none() {
                return Err(format!(
                    "a symbolic link out of the artifact through other links ({})",
                    target.display()
                ));
            }
        } else if component != "." && !component.is_empty() {
            position.push(component);
            let here: PathBuf = position.iter().collect();
            if let Some(next) = links.get(&here) {
                hops += 1;
                if hops > LINK_HOPS {
                    return Err(format!("more than {LINK_HOPS} symbolic links in a row"));
                }
                position.pop();
                pending.extend(names(next).into_iter().rev());
            }
        }
    }
    Ok(())
}

fn hostile(entry: &Path, reason: &str) -> UnpackError {
    UnpackError::Hostile {
        entry: entry.to_path_buf(),
        reason: reason.to_owned(),
    }
}

/// The entry's path as plain names under the directory (`./` dropped), or
/// why it is not one.
fn inside(path: &Path) -> Result<PathBuf, &'static str> {
    let mut relative = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => relative.push(name),
            Component::CurDir => {}
            Component::ParentDir => return Err("the path climbs out with `..`"),
            Component::RootDir | Component::Prefix(_) => return Err("the path is absolute"),
        }
    }
    Ok(relative)
}

/// A file's mode: permission bits only, and the owner may read and write.
const fn file_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o600
}

/// A directory's mode: permission bits only, and the owner may do anything.
const fn directory_mode(mode: u32) -> u32 {
    (mode & 0o777) | 0o700
}

/// Open the directory `name` in `parent` without following a link, making
/// it first when `create` and it is missing.
fn open_directory(parent: &impl AsFd, name: &OsStr, create: bool) -> Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(parent, name, flags, Mode::empty()) {
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(errno) => return Err(errno),
            }
            rustix::fs::openat(parent, name, flags, Mode::empty())
        }
        other => other,
    }
}

/// The directory at `path`, opened without following a link in its last
/// component.
fn open_parent(path: &Path) -> io::Result<(OwnedFd, &OsStr)> {
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", path.display()),
        )
    })?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let descriptor = rustix::fs::open(
        parent,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|errno| {
        io::Error::new(
            io::Error::from(errno).kind(),
            format!(
                "{} is not a directory or is a symbolic link ({})",
                parent.display(),
                io::Error::from(errno)
            ),
        )
    })?;
    Ok((descriptor, name))
}

/// Make the directory `path` if it is not one: a symbolic link or any other
/// file in its place is removed first, never followed. Its parent must be a
/// directory, not a symbolic link (the components above it are the caller's).
///
/// # Errors
/// The parent is missing, a link or not a directory; I/O.
pub fn ensure_directory(path: &Path) -> io::Result<()> {
    let (parent, name) = open_parent(path)?;
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => return Ok(()),
        Ok(_) => rustix::fs::unlinkat(&parent, name, AtFlags::empty())?,
        Err(Errno::NOENT) => {}
        Err(errno) => return Err(errno.into()),
    }
    match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) => Ok(()),
        Err(Errno::EXIST) => {
            let stat = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
                Ok(())
            } else {
                Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{} appeared meanwhile and is not a directory",
                        path.display()
                    ),
                ))
            }
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Create `path` empty for writing, as `File::create` would, except that a
/// symbolic link, special file or other name of a file already there is
/// removed first and never followed or written through. Its parent must be a
/// directory, not a symbolic link.
///
/// # Errors
/// A directory at `path`; the parent is missing, a link or not a directory; I/O.
pub fn create_file_no_follow(path: &Path) -> io::Result<File> {
    let (parent, name) = open_parent(path)?;
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
            return Err(io::Error::new(
                io::ErrorKind::IsADirectory,
                format!("{} is a directory", path.display()),
            ));
        }
        Ok(_) => rustix::fs::unlinkat(&parent, name, AtFlags::empty())?,
        Err(Errno::NOENT) => {}
        Err(errno) => return Err(errno.into()),
    }
    let descriptor = rustix::fs::openat(
        &parent,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    Ok(File::from(descriptor))
}

/// Copy `source` into the new file `target` (as [`create_file_no_follow`]),
/// taking what is written from `budget`; returns the bytes written.
///
/// # Errors
/// Reading (`Read`), writing (`Io`) or the budget (`OverBudget`).
pub fn copy(mut source: impl Read, target: &Path, budget: &Budget) -> Result<u64, UnpackError> {
    let io_failure = |action, source| UnpackError::Io {
        action,
        path: target.to_path_buf(),
        source,
    };
    let mut file = create_file_no_follow(target).map_err(|source| io_failure("create", source))?;
    let mut buffer = vec![0u8; CHUNK];
    let mut written = 0u64;
    loop {
        let read = match source.read(&mut buffer) {
            Ok(0) => return Ok(written),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(UnpackError::Read { source }),
        };
        budget
            .take(read as u64)
            .map_err(|over| UnpackError::OverBudget {
                unpacked: written,
                used: over.used,
                limit: over.limit,
            })?;
        file.write_all(&buffer[..read])
            .map_err(|source| io_failure("write", source))?;
        written += read as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    type Outcome = Result<(), Box<dyn std::error::Error>>;

    /// One entry, its name and link name written raw, so that paths the
    /// `tar` crate refuses to write (`..`, absolute) can be had.
    struct Raw<'entry> {
        kind: tar::EntryType,
        name: &'entry str,
        link: &'entry str,
        mode: u32,
        data: &'entry [u8],
    }

    fn file<'entry>(name: &'entry str, data: &'entry [u8]) -> Raw<'entry> {
        Raw {
            kind: tar::EntryType::Regular,
            name,
            link: "",
            mode: 0o644,
            data,
        }
    }

    fn link<'entry>(kind: tar::EntryType, name: &'entry str, target: &'entry str) -> Raw<'entry> {
        Raw {
            kind,
            name,
            link: target,
            mode: 0o777,
            data: b"",
        }
    }

    fn directory(name: &str, mode: u32) -> Raw<'_> {
        Raw {
            kind: tar::EntryType::Directory,
            name,
            link: "",
            mode,
            data: b"",
        }
    }

    fn archive(entries: &[Raw<'_>]) -> io::Result<Vec<u8>> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in entries {
            let mut header = tar::Header::new_old();
            let old = header.as_old_mut();
            old.name[..entry.name.len()].copy_from_slice(entry.name.as_bytes());
            old.linkname[..entry.link.len()].copy_from_slice(entry.link.as_bytes());
            header.set_entry_type(entry.kind);
            header.set_mode(entry.mode);
            header.set_size(entry.data.len() as u64);
            header.set_mtime(1_600_000_000);
            header.set_cksum();
            builder.append(&header, entry.data)?;
        }
        builder.into_inner()
    }

    /// A work directory with the artifact's directory `a/` in it (and room
    /// beside it for what must stay untouched).
    struct Scene {
        root: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> io::Result<Self> {
            let root = tempfile::tempdir()?;
            fs::create_dir(root.path().join("a"))?;
            Ok(Self { root })
        }

        fn artifact(&self) -> PathBuf {
            self.root.path().join("a")
        }

        fn unpack(&self, bytes: &[u8], budget: &Budget) -> Result<Unpacked, UnpackError> {
            unpack(bytes, &self.artifact(), budget)
        }

        fn outside(&self) -> PathBuf {
            self.root.path().join("outside")
        }
    }

    fn assert_hostile(result: Result<Unpacked, UnpackError>, says: &str) {
        match result {
            Err(UnpackError::Hostile { reason, .. }) => {
                assert!(reason.contains(says), "'{reason}' does not say '{says}'");
            }
            other => panic!("not refused as hostile: {other:?}"),
        }
    }

    /// Everything under `path`, not followed: (relative path, bytes of files).
    fn tree(path: &Path) -> io::Result<Vec<(PathBuf, u64)>> {
        let mut found = Vec::new();
        let mut pending = vec![path.to_path_buf()];
        while let Some(directory) = pending.pop() {
            for child in fs::read_dir(&directory)? {
                let child = child?.path();
                let metadata = fs::symlink_metadata(&child)?;
                if metadata.is_dir() {
                    pending.push(child.clone());
                }
                let relative = child.strip_prefix(path).map_err(io::Error::other)?;
                found.push((relative.to_path_buf(), metadata.len()));
            }
        }
        found.sort();
        Ok(found)
    }

    #[test]
    fn absolute_and_climbing_paths_are_refused() -> Outcome {
        let scene = Scene::new()?;
        let outside = scene.outside();
        let absolute = outside.display().to_string();
        assert_hostile(
            scene.unpack(&archive(&[file(&absolute, b"x")])?, &Budget::unlimited()),
            "absolute",
        );
        assert_hostile(
            scene.unpack(&archive(&[file("../outside", b"x")])?, &Budget::unlimited()),
            "`..`",
        );
        assert_hostile(
            scene.unpack(
                &archive(&[file("./sub/../../outside", b"x")])?,
                &Budget::unlimited(),
            ),
            "`..`",
        );
        assert!(!outside.exists());
        Ok(())
    }

    #[test]
    fn symlinks_out_of_the_directory_are_refused() -> Outcome {
        let scene = Scene::new()?;
        fs::create_dir(scene.outside())?;
        let outside = scene.outside().display().to_string();
        for (target, says) in [
            (outside.as_str(), "absolute"),
            ("/etc", "absolute"),
            ("../..", "out of the artifact"),
            ("sub/../../outside", "out of the artifact"),
        ] {
            let bytes = archive(&[
                link(tar::EntryType::Symlink, "s", target),
                file("s/passwd", b"owned"),
            ])?;
            assert_hostile(scene.unpack(&bytes, &Budget::unlimited()), says);
        }
        // Each harmless alone, out together: `b/c -> ..` is the artifact,
        // and `d -> b/c/..` its parent.
        let chained = archive(&[
            directory("b", 0o755),
            link(tar::EntryType::Symlink, "d", "b/c/.."),
            link(tar::EntryType::Symlink, "b/c", ".."),
        ])?;
        assert_hostile(
            scene.unpack(&chained, &Budget::unlimited()),
            "through other links",
        );
        assert!(tree(&scene.outside())?.is_empty());
        Ok(())
    }

    #[test]
    fn nothing_is_written_through_a_symlink_even_one_inside() -> Outcome {
        let scene = Scene::new()?;
        let bytes = archive(&[
            directory("sub", 0o755),
            link(tar::EntryType::Symlink, "s", "sub"),
            file("s/x", b"through"),
        ])?;
        assert_hostile(scene.unpack(&bytes, &Budget::unlimited()), "symbolic link");
        assert!(!scene.artifact().join("sub/x").exists());
        // A link to a file inside is fine, and a file of the same name later
        // replaces the link rather than writing through it.
        let scene = Scene::new()?;
        let bytes = archive(&[
            file("real", b"kept"),
            link(tar::EntryType::Symlink, "alias", "real"),
            file("alias", b"new"),
        ])?;
        scene.unpack(&bytes, &Budget::unlimited())?;
        assert_eq!(fs::read(scene.artifact().join("real"))?, b"kept");
        assert_eq!(fs::read(scene.artifact().join("alias"))?, b"new");
        Ok(())
    }

    #[test]
    fn a_symlink_put_there_before_is_not_followed() -> Outcome {
        let scene = Scene::new()?;
        fs::create_dir(scene.outside())?;
        std::os::unix::fs::symlink(scene.outside(), scene.artifact().join("d"))?;
        std::os::unix::fs::symlink(scene.outside().join("f"), scene.artifact().join("f"))?;
        assert_hostile(
            scene.unpack(&archive(&[file("d/x", b"x")])?, &Budget::unlimited()),
            "symbolic link",
        );
        scene.unpack(&archive(&[file("f", b"x")])?, &Budget::unlimited())?;
        assert!(tree(&scene.outside())?.is_empty());
        assert!(fs::symlink_metadata(scene.artifact().join("f"))?.is_file());
        Ok(())
    }

    #[test]
    fn hard_links_only_to_files_unpacked_before() -> Outcome {
        let scene = Scene::new()?;
        fs::write(scene.outside(), b"secret")?;
        let outside = scene.outside().display().to_string();
        for (target, says) in [
            (outside.as_str(), "absolute"),
            ("../outside", "`..`"),
            ("later", "not a file unpacked before it"),
        ] {
            let bytes = archive(&[link(tar::EntryType::Link, "h", target), file("later", b"x")])?;
            assert_hostile(scene.unpack(&bytes, &Budget::unlimited()), says);
        }
        let scene = Scene::new()?;
        let bytes = archive(&[
            file("dir/original", b"shared"),
            link(tar::EntryType::Link, "copy", "dir/original"),
        ])?;
        let unpacked = scene.unpack(&bytes, &Budget::unlimited())?;
        let original = fs::metadata(scene.artifact().join("dir/original"))?;
        let copy = fs::metadata(scene.artifact().join("copy"))?;
        assert_eq!((original.ino(), original.nlink()), (copy.ino(), 2));
        assert_eq!((unpacked.files, unpacked.links), (1, 1));
        Ok(())
    }

    #[test]
    fn devices_and_fifos_are_skipped_and_modes_are_tamed() -> Outcome {
        let scene = Scene::new()?;
        let special = |kind, name| Raw {
            kind,
            name,
            link: "",
            mode: 0o666,
            data: b"",
        };
        let bytes = archive(&[
            special(tar::EntryType::Char, "null"),
            special(tar::EntryType::Block, "disk"),
            special(tar::EntryType::Fifo, "pipe"),
            Raw {
                mode: 0o4755,
                ..file("setuid", b"#!/bin/sh\n")
            },
            Raw {
                mode: 0o2000,
                ..file("setgid-unreadable", b"x")
            },
            directory("sticky", 0o1777),
            directory("closed", 0o2000),
        ])?;
        let unpacked = scene.unpack(&bytes, &Budget::unlimited())?;
        assert_eq!(unpacked.skipped, 3);
        let mode = |name: &str| -> io::Result<u32> {
            Ok(fs::symlink_metadata(scene.artifact().join(name))?
                .permissions()
                .mode()
                & 0o7777)
        };
        for name in ["null", "disk", "pipe"] {
            assert!(!scene.artifact().join(name).exists(), "{name}");
        }
        assert_eq!(mode("setuid")?, 0o755);
        assert_eq!(mode("setgid-unreadable")?, 0o600);
        assert_eq!(mode("sticky")?, 0o777);
        assert_eq!(mode("closed")?, 0o700);
        Ok(())
    }

    /// A tar.gz of `count` files of `size` zero bytes, made as it is compressed.
    fn zeros(count: usize, size: u64) -> io::Result<Vec<u8>> {
        let encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(encoder);
        for index in 0..count {
            let mut header = tar::Header::new_gnu();
            header.set_size(size);
            header.set_mode(0o644);
            builder.append_data(
                &mut header,
                format!("zeros-{index}"),
                io::repeat(0).take(size),
            )?;
        }
        builder.into_inner()?.finish()
    }

    const MIB: u64 = 1024 * 1024;

    fn bytes_on_disk(path: &Path) -> io::Result<u64> {
        Ok(tree(path)?
            .iter()
            .filter(|(name, _)| {
                fs::symlink_metadata(path.join(name)).is_ok_and(|metadata| metadata.is_file())
            })
            .map(|(_, size)| size)
            .sum())
    }

    #[test]
    fn a_compression_bomb_stops_at_the_budget() -> Outcome {
        let budget_bytes = 10 * MIB;
        // 200 files of 1 MiB: each fits what is left until the budget runs out.
        let many = zeros(200, MIB)?;
        assert!(
            u64::try_from(many.len())? < 2 * MIB,
            "{} bytes compressed",
            many.len()
        );
        let scene = Scene::new()?;
        let budget = Budget::new(budget_bytes);
        let result = scene.unpack(&many, &budget);
        assert!(
            matches!(result, Err(UnpackError::OverBudget { limit, .. }) if limit == budget_bytes),
            "{result:?}"
        );
        let written = bytes_on_disk(&scene.artifact())?;
        assert!(
            written <= budget_bytes && written >= budget_bytes - 2 * MIB,
            "{written}"
        );
        assert!(budget.used() <= budget_bytes);
        // One file of 200 MiB: refused by its header, before a byte is written.
        let one = zeros(1, 200 * MIB)?;
        let scene = Scene::new()?;
        let result = scene.unpack(&one, &Budget::new(budget_bytes));
        assert!(
            matches!(result, Err(UnpackError::OverBudget { .. })),
            "{result:?}"
        );
        assert_eq!(tree(&scene.artifact())?, Vec::new());
        Ok(())
    }

    #[test]
    fn the_budget_is_shared_and_a_copy_stops_mid_file() -> Outcome {
        let scene = Scene::new()?;
        let budget = Budget::new(10 * MIB);
        scene.unpack(&zeros(6, MIB)?, &budget)?;
        assert_eq!(budget.used(), 6 * MIB + 6 * ENTRY_COST);
        let target = scene.artifact().join("copied");
        let result = copy(io::repeat(7).take(20 * MIB), &target, &budget);
        assert!(
            matches!(result, Err(UnpackError::OverBudget { .. })),
            "{result:?}"
        );
        let copied = fs::metadata(&target)?.len();
        assert!(copied > 0 && copied <= 4 * MIB, "{copied}");
        assert!(bytes_on_disk(&scene.artifact())? <= 10 * MIB);
        Ok(())
    }

    #[test]
    fn corrupt_and_truncated_archives_are_corrupt_not_io() -> Outcome {
        let good = archive(&[file("a", &[1u8; 5000]), file("b", &[2u8; 5000])])?;
        let mut gzip = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gzip.write_all(&good)?;
        let gzip = gzip.finish()?;
        let mut bzip = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
        bzip.write_all(&good)?;
        let bzip = bzip.finish()?;
        let mut flipped_bzip = bzip.clone();
        let middle = flipped_bzip.len() / 2;
        flipped_bzip[middle] ^= 0xff;
        let mut bad_checksum = good.clone();
        bad_checksum[0] = b'z';
        let cases: [(&str, &[u8]); 6] = [
            ("tar cut in a file", &good[..512 + 2000]),
            ("tar cut after a header", &good[..512]),
            ("tar with a bad checksum", &bad_checksum),
            ("gzip cut in half", &gzip[..gzip.len() / 2]),
            ("bzip2 cut in half", &bzip[..bzip.len() / 2]),
            ("bzip2 with a flipped byte", &flipped_bzip),
        ];
        for (case, bytes) in cases {
            let scene = Scene::new()?;
            let result = scene.unpack(bytes, &Budget::unlimited());
            assert!(
                matches!(result, Err(UnpackError::Corrupt { .. })),
                "{case}: {result:?}"
            );
        }
        Ok(())
    }

    #[test]
    fn huge_long_names_are_refused_without_reading_them_into_memory() -> Outcome {
        let scene = Scene::new()?;
        let name = vec![b'n'; usize::try_from(METADATA_LIMIT)? + 1024];
        let bytes = archive(&[Raw {
            kind: tar::EntryType::GNULongName,
            name: "././@LongLink",
            link: "",
            mode: 0o644,
            data: &name,
        }])?;
        let result = scene.unpack(&bytes, &Budget::unlimited());
        assert!(
            matches!(result, Err(UnpackError::Corrupt { .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn a_failing_archive_file_is_a_read_failure() -> Outcome {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::from_raw_os_error(5))
            }
        }
        let root = tempfile::tempdir()?;
        let result = unpack(Failing, root.path(), &Budget::unlimited());
        assert!(
            matches!(result, Err(UnpackError::Read { .. })),
            "{result:?}"
        );
        Ok(())
    }

    #[test]
    fn files_are_created_and_directories_made_without_following_links() -> Outcome {
        let root = tempfile::tempdir()?;
        let outside = root.path().join("outside");
        fs::write(&outside, b"keep")?;
        let output = root.path().join("output");
        std::os::unix::fs::symlink(&outside, &output)?;
        ensure_directory(&output)?;
        assert!(fs::symlink_metadata(&output)?.is_dir());
        let log = output.join("output");
        std::os::unix::fs::symlink(&outside, &log)?;
        let mut file = create_file_no_follow(&log)?;
        file.write_all(b"log")?;
        assert_eq!(fs::read(&outside)?, b"keep");
        assert_eq!(fs::read(&log)?, b"log");
        assert!(ensure_directory(&log).is_ok() && fs::symlink_metadata(&log)?.is_dir());
        assert!(
            create_file_no_follow(&log).is_err(),
            "a directory is not replaced"
        );
        // A parent that is a link is refused.
        let linked = root.path().join("linked");
        std::os::unix::fs::symlink(root.path(), &linked)?;
        assert!(create_file_no_follow(&linked.join("x")).is_err());
        assert!(ensure_directory(&linked.join("y")).is_err());
        assert!(!root.path().join("x").exists() && !root.path().join("y").exists());
        Ok(())
    }
}
