//! The local directory queue: a directory per queue under a root, a file
//! per message, oldest first.
//!
//! The original deleted a message file as soon as it read it, so a runner
//! killed mid-experiment lost the message. Here a message is claimed by an
//! atomic rename into the queue's `.inflight/` directory, deleted only on
//! ack, moved back on nack, and moved back at start-up if a previous runner
//! died holding it (at-least-once). Unusable messages go to `.dead/` with a
//! `.reason` file next to them, never requeued for ever.
//!
//! Other programs write into these directories, so the queue is lenient
//! about what it finds: dot files and the `StudioML` client's `lock.lock`
//! are never messages; a file that is not JSON yet and was modified in the
//! last [`SETTLING`] is left alone (its writer may not be done); and a
//! queue directory deleted while one of its messages runs only costs that
//! message (the experiment's results are stored either way): settling it
//! logs a warning instead of failing the runner, and the queue is not
//! created again, since deleting it was the operator's decision.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use thiserror::Error;

use super::QueueFilter;
use crate::failure::{Class, Classify};

const INFLIGHT: &str = ".inflight";
const DEAD: &str = ".dead";
/// The `StudioML` client's lock file for its local queue: never a message.
const CLIENT_LOCK: &str = "lock.lock";

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
}

impl Classify for DirQueueError {
    /// Local file system trouble (a full disk, permissions, a vanished
    /// directory) may pass.
    fn class(&self) -> Class {
        match self {
            Self::Io { .. } => Class::Transient,
        }
    }
}

/// Whether a file named `name` in a queue directory may be a message.
fn is_message_name(name: &str) -> bool {
    !name.starts_with('.') && name != CLIENT_LOCK
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

/// A message file's bytes, at most one more than a request may have (so an
/// oversized file is refused as such without being read whole).
fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::Read as _;
    let limit = u64::try_from(crate::request::MAX_BODY)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    let mut body = Vec::new();
    fs::File::open(path)?.take(limit).read_to_end(&mut body)?;
    Ok(body)
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
    inflight: PathBuf,
}

/// The queues under one root directory.
#[derive(Debug)]
pub struct DirQueues {
    root: PathBuf,
    filter: QueueFilter,
    /// Files left alone since the last listing because they are still
    /// being written (so `--once` waits for them).
    settling: std::sync::atomic::AtomicUsize,
}

impl DirQueues {
    /// The queues under `root` that `filter` selects.
    #[must_use]
    pub fn new(root: &Path, filter: QueueFilter) -> Self {
        Self {
            root: root.to_path_buf(),
            filter,
            settling: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// How many files the claims since the last [`DirQueues::queues`] left
    /// alone because they were still being written.
    #[must_use]
    pub fn settling(&self) -> usize {
        self.settling.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The queue names, sorted.
    ///
    /// # Errors
    /// The root cannot be read.
    pub fn queues(&self) -> Result<Vec<String>, DirQueueError> {
        self.settling.store(0, std::sync::atomic::Ordering::Relaxed);
        let names = fs::read_dir(&self.root)
            .map_err(io_error("reading the queue root", &self.root))?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_dir()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !name.starts_with('.'))
            .collect::<Vec<_>>();
        Ok(self.filter.select(names))
    }

    /// Put messages a dead runner was holding back in their queues.
    /// Returns how many were recovered.
    ///
    /// # Errors
    /// A directory cannot be read or a file moved.
    pub fn recover(&self) -> Result<usize, DirQueueError> {
        let mut recovered = 0;
        for queue in self.queues()? {
            let inflight = self.root.join(&queue).join(INFLIGHT);
            let Ok(entries) = fs::read_dir(&inflight) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let target = self.root.join(&queue).join(entry.file_name());
                match fs::rename(entry.path(), &target) {
                    Ok(()) => recovered += 1,
                    // The queue was deleted meanwhile, or another runner recovered it.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                    Err(error) => return Err(io_error("returning", &target)(error)),
                }
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
    /// The queue cannot be read.
    pub fn claim(&self, queue: &str) -> Result<Option<Claimed>, DirQueueError> {
        self.claim_at(queue, SystemTime::now())
    }

    fn claim_at(&self, queue: &str, now: SystemTime) -> Result<Option<Claimed>, DirQueueError> {
        let directory = self.root.join(queue);
        let entries = match fs::read_dir(&directory) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("reading the queue", &directory)(error)),
        };
        let mut files: Vec<(SystemTime, String)> = entries
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if !is_message_name(&name) {
                    return None;
                }
                Some((entry.metadata().ok()?.modified().ok()?, name))
            })
            .collect();
        if files.is_empty() {
            return Ok(None);
        }
        files.sort();
        let inflight_directory = directory.join(INFLIGHT);
        // Not create_dir_all: a queue deleted meanwhile is not made again.
        match fs::create_dir(&inflight_directory) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io_error("creating", &inflight_directory)(error)),
        }
        for (modified, name) in files {
            let waiting = directory.join(&name);
            // A fresh file is looked at where it is, so a half-written one is never moved.
            if now
                .duration_since(modified)
                .map_or(true, |age| age < SETTLING)
                && read_bounded(&waiting).is_ok_and(|body| settling(&body, modified, now))
            {
                self.settling
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                continue;
            }
            let inflight = inflight_directory.join(&name);
            match fs::rename(&waiting, &inflight) {
                Ok(()) => {
                    let body = read_bounded(&inflight).map_err(io_error("reading", &inflight))?;
                    // It changed since it was looked at: give it back to its writer.
                    let modified = fs::metadata(&inflight)
                        .and_then(|metadata| metadata.modified())
                        .map_err(io_error("reading", &inflight))?;
                    if settling(&body, modified, now) {
                        fs::rename(&inflight, &waiting).map_err(io_error("returning", &waiting))?;
                        self.settling
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    return Ok(Some(Claimed {
                        queue: queue.to_owned(),
                        name,
                        body,
                        inflight,
                    }));
                }
                // Another runner took it first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error("claiming", &inflight)(error)),
            }
        }
        Ok(None)
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
        match fs::remove_file(&inflight) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.vanished(&queue, &name, "removed (it was done)");
                Ok(())
            }
            Err(error) => Err(io_error("acknowledging", &inflight)(error)),
        }
    }

    /// Not now: the message goes back, as the newest of its queue. A
    /// message whose queue (or file) was deleted meanwhile is dropped with a
    /// warning.
    ///
    /// # Errors
    /// The file cannot be moved.
    pub fn nack(&self, claimed: Claimed) -> Result<(), DirQueueError> {
        let Claimed {
            queue,
            name,
            inflight,
            ..
        } = claimed;
        let target = self.root.join(&queue).join(&name);
        match fs::rename(&inflight, &target) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.vanished(&queue, &name, "returned to its queue (dropped)");
                return Ok(());
            }
            Err(error) => return Err(io_error("returning", &target)(error)),
        }
        let now = fs::File::options()
            .write(true)
            .open(&target)
            .and_then(|file| file.set_modified(SystemTime::now()));
        match now {
            // Taken by another runner, or its queue deleted, this instant.
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
            other => other.map_err(io_error("touching", &target)),
        }
    }

    /// Never runnable: kept in `.dead/` with the reason beside it. A
    /// message whose queue was deleted meanwhile is dropped with a warning
    /// that gives the reason (`None`).
    ///
    /// # Errors
    /// The files cannot be written.
    pub fn dead_letter(
        &self,
        claimed: Claimed,
        reason: &str,
    ) -> Result<Option<PathBuf>, DirQueueError> {
        let Claimed {
            queue,
            name,
            inflight,
            ..
        } = claimed;
        let directory = self.root.join(&queue).join(DEAD);
        // Not create_dir_all: a deleted queue is not made again.
        match fs::create_dir(&directory) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.vanished(
                    &queue,
                    &name,
                    &format!("dead-lettered (dropped; the reason: {reason})"),
                );
                return Ok(None);
            }
            Err(error) => return Err(io_error("creating", &directory)(error)),
        }
        let target = directory.join(&name);
        match fs::rename(&inflight, &target) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                self.vanished(
                    &queue,
                    &name,
                    &format!("dead-lettered (dropped; the reason: {reason})"),
                );
                return Ok(None);
            }
            Err(error) => return Err(io_error("dead-lettering", &target)(error)),
        }
        let reason_file = directory.join(format!("{name}.reason"));
        fs::write(&reason_file, format!("{reason}\n"))
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
        assert!(!directory.join(INFLIGHT).join("partial.json").exists());
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
        let inflight = root.path().join("local_a").join(INFLIGHT).join("job");
        fs::remove_file(&inflight).map_err(io_error("removing", &inflight))?;
        queues.ack(claimed)?;
        assert!(root.path().join("local_a").is_dir());
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
