//! The local directory queue: a directory per queue under a root, a file
//! per message, oldest first.
//!
//! The original deleted a message file as soon as it read it, so a runner
//! killed mid-experiment lost the message. Here a message is claimed by an
//! atomic rename into the queue's `.inflight/` directory, deleted only on
//! ack, moved back on nack, and moved back at start-up if a previous runner
//! died holding it (at-least-once). Unusable messages go to `.dead/` with a
//! `.reason` file next to them, never requeued for ever.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use thiserror::Error;

use super::QueueFilter;

const INFLIGHT: &str = ".inflight";
const DEAD: &str = ".dead";

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

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> DirQueueError {
    let path = path.to_path_buf();
    move |source| DirQueueError::Io {
        action,
        path,
        source,
    }
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
}

impl DirQueues {
    /// The queues under `root` that `filter` selects.
    #[must_use]
    pub fn new(root: &Path, filter: QueueFilter) -> Self {
        Self {
            root: root.to_path_buf(),
            filter,
        }
    }

    /// The queue names, sorted.
    ///
    /// # Errors
    /// The root cannot be read.
    pub fn queues(&self) -> Result<Vec<String>, DirQueueError> {
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
                fs::rename(entry.path(), &target).map_err(io_error("returning", &target))?;
                recovered += 1;
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
    /// the root: the rename decides who gets a message.
    ///
    /// # Errors
    /// The queue cannot be read.
    pub fn claim(&self, queue: &str) -> Result<Option<Claimed>, DirQueueError> {
        let directory = self.root.join(queue);
        let mut files: Vec<(SystemTime, String)> = fs::read_dir(&directory)
            .map_err(io_error("reading the queue", &directory))?
            .filter_map(Result::ok)
            .filter(|entry| entry.file_type().is_ok_and(|kind| kind.is_file()))
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                if name.starts_with('.') {
                    return None;
                }
                Some((entry.metadata().ok()?.modified().ok()?, name))
            })
            .collect();
        files.sort();
        let inflight_directory = directory.join(INFLIGHT);
        fs::create_dir_all(&inflight_directory)
            .map_err(io_error("creating", &inflight_directory))?;
        for (_, name) in files {
            let inflight = inflight_directory.join(&name);
            match fs::rename(directory.join(&name), &inflight) {
                Ok(()) => {
                    let body = fs::read(&inflight).map_err(io_error("reading", &inflight))?;
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

    /// Done with it: the message is gone.
    ///
    /// # Errors
    /// The file cannot be removed.
    pub fn ack(&self, claimed: Claimed) -> Result<(), DirQueueError> {
        let Claimed { inflight, .. } = claimed;
        fs::remove_file(&inflight).map_err(io_error("acknowledging", &inflight))
    }

    /// Not now: the message goes back, as the newest of its queue.
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
        let target = self.root.join(queue).join(name);
        fs::rename(&inflight, &target).map_err(io_error("returning", &target))?;
        let now = fs::File::options()
            .write(true)
            .open(&target)
            .and_then(|file| file.set_modified(SystemTime::now()));
        now.map_err(io_error("touching", &target))
    }

    /// Never runnable: kept in `.dead/` with the reason beside it.
    ///
    /// # Errors
    /// The files cannot be written.
    pub fn dead_letter(&self, claimed: Claimed, reason: &str) -> Result<PathBuf, DirQueueError> {
        let Claimed {
            queue,
            name,
            inflight,
            ..
        } = claimed;
        let directory = self.root.join(queue).join(DEAD);
        fs::create_dir_all(&directory).map_err(io_error("creating", &directory))?;
        let target = directory.join(&name);
        fs::rename(&inflight, &target).map_err(io_error("dead-lettering", &target))?;
        let reason_file = directory.join(format!("{name}.reason"));
        fs::write(&reason_file, format!("{reason}\n"))
            .map_err(io_error("writing", &reason_file))?;
        Ok(target)
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
    fn a_message_held_by_a_dead_runner_is_delivered_again() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        queues.publish("local_a", "job", b"run me")?;
        let claimed = queues.claim("local_a")?;
        assert!(claimed.is_some());
        // The runner dies: nothing acked. A new runner starts.
        drop(claimed);
        let restarted = self::queues(root.path());
        assert!(restarted.claim("local_a")?.is_none());
        assert_eq!(restarted.recover()?, 1);
        let body = restarted.claim("local_a")?.map(|claimed| claimed.body);
        assert_eq!(body.as_deref(), Some(&b"run me"[..]));
        Ok(())
    }

    #[test]
    fn unusable_messages_are_dead_lettered_with_their_reason() -> Result<(), DirQueueError> {
        let root = tempfile::tempdir().map_err(io_error("creating", Path::new("tmp")))?;
        let queues = queues(root.path());
        queues.publish("local_a", "broken", b"{not json")?;
        let claimed = queues
            .claim("local_a")?
            .ok_or_else(|| io_error("claiming", root.path())(io::ErrorKind::NotFound.into()))?;
        let dead = queues.dead_letter(claimed, "the message is not a StudioML request")?;
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
}
