//! What the runner remembers about messages across attempts and restarts:
//! how often each was tried and why it failed (so a message that keeps
//! failing for the environment's sake is dead-lettered with its history
//! after `--max-attempts`, and never retried hot), and which were
//! completed (so a message redelivered because the broker connection
//! dropped after its results were stored is acked, not run again).
//!
//! A message is known by a digest of its queue and its bytes: a
//! byte-identical resubmission to the same queue within [`KEEP`] counts as
//! the same request. The ledger is one JSON file in the work directory
//! (held by this runner alone through the work directory's lock), replaced
//! atomically on every change; a missing or unreadable file starts empty.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// The ledger's file name in the work directory.
pub const FILE: &str = ".runner-ledger.json";
/// How long a record is kept after its last change.
pub const KEEP: Duration = Duration::from_hours(24 * 7);
/// How long after its completion a redelivered message is acked without
/// running (a broker redelivers within minutes of a dropped connection; a
/// byte-identical message sent later on purpose runs again).
pub const COMPLETED_WINDOW: Duration = Duration::from_hours(1);
/// The most records kept (the oldest go first).
pub const MAX_RECORDS: usize = 10_000;
/// The most failure reasons kept per message (the latest).
pub const MAX_REASONS: usize = 10;
/// The longest reason kept, in bytes.
const MAX_REASON: usize = 2_000;

/// A message's identity: a digest of its queue and body.
#[must_use]
pub fn identity(queue: &str, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(queue.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    crate::digest::hex(&hasher.finalize())[..32].to_owned()
}

/// What is known of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Of those, how many were the runner's own bugs.
    #[serde(default)]
    pub bugs: u32,
    /// The latest failure reasons, oldest first.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Not to be tried again before this time (Unix seconds).
    #[serde(default)]
    pub not_before: u64,
    /// When its results were stored (Unix seconds), if they were.
    #[serde(default)]
    pub completed: Option<u64>,
    /// The last change (Unix seconds).
    pub updated: u64,
}

impl Record {
    /// Whether its results were stored less than [`COMPLETED_WINDOW`] before `now`.
    #[must_use]
    pub fn completed_recently(&self, now: SystemTime) -> bool {
        self.completed
            .is_some_and(|at| seconds(now).saturating_sub(at) < COMPLETED_WINDOW.as_secs())
    }

    /// The failure history, one reason per attempt, for a dead letter.
    #[must_use]
    pub fn history(&self) -> String {
        let skipped = self.attempts as usize - self.reasons.len().min(self.attempts as usize);
        let first = skipped + 1;
        self.reasons
            .iter()
            .enumerate()
            .map(|(index, reason)| format!("attempt {}: {reason}", first + index))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Book {
    #[serde(default)]
    messages: BTreeMap<String, Record>,
}

/// The ledger of one work directory.
#[derive(Debug)]
pub struct Ledger {
    path: Option<PathBuf>,
    book: Mutex<Book>,
    /// Messages whose experiment runs now in this runner (a redelivery of
    /// one, after the broker connection dropped, must wait for it).
    running: Mutex<std::collections::BTreeSet<String>>,
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs())
}

fn clip(reason: &str) -> String {
    if reason.len() <= MAX_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_REASON;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &reason[..end])
}

impl Ledger {
    /// The ledger kept in `work_dir` (read now; records older than [`KEEP`] dropped).
    #[must_use]
    pub fn open(work_dir: &Path) -> Self {
        let path = work_dir.join(FILE);
        let mut book: Book = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        prune(&mut book, SystemTime::now());
        Self {
            path: Some(path),
            book: Mutex::new(book),
            running: Mutex::default(),
        }
    }

    /// A ledger kept in memory only (tests, and runners whose work
    /// directory cannot hold it).
    #[must_use]
    pub fn in_memory() -> Self {
        Self {
            path: None,
            book: Mutex::new(Book::default()),
            running: Mutex::default(),
        }
    }

    fn change<T>(&self, change: impl FnOnce(&mut Book) -> T) -> io::Result<T> {
        let mut book = self
            .book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = change(&mut book);
        prune(&mut book, SystemTime::now());
        if let Some(path) = &self.path {
            save(path, &book)?;
        }
        Ok(result)
    }

    /// `id`'s experiment starts here; `false` when it already runs here.
    pub fn begin(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(id.to_owned())
    }

    /// `id`'s experiment no longer runs here.
    pub fn end(&self, id: &str) {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(id);
    }

    /// Whether `id`'s experiment runs here now.
    #[must_use]
    pub fn is_running(&self, id: &str) -> bool {
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// What is known of `id`.
    #[must_use]
    pub fn get(&self, id: &str) -> Option<Record> {
        self.book
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .messages
            .get(id)
            .cloned()
    }

    /// Count a failed attempt of `id` with its reason; it is not to be tried
    /// before `not_before`. Returns the record as it is now.
    ///
    /// # Errors
    /// The ledger file cannot be written (the record is kept in memory).
    pub fn failed(
        &self,
        id: &str,
        reason: &str,
        bug: bool,
        not_before: SystemTime,
        now: SystemTime,
    ) -> io::Result<Record> {
        self.change(|book| {
            let record = book.messages.entry(id.to_owned()).or_default();
            record.attempts = record.attempts.saturating_add(1);
            if bug {
                record.bugs = record.bugs.saturating_add(1);
            }
            record.reasons.push(clip(reason));
            if record.reasons.len() > MAX_REASONS {
                let extra = record.reasons.len() - MAX_REASONS;
                record.reasons.drain(..extra);
            }
            record.not_before = seconds(not_before);
            record.updated = seconds(now);
            record.clone()
        })
    }

    /// `id`'s results are stored: a redelivery is to be acked, not run.
    ///
    /// # Errors
    /// The ledger file cannot be written (the record is kept in memory).
    pub fn completed(&self, id: &str, now: SystemTime) -> io::Result<()> {
        self.change(|book| {
            let record = book.messages.entry(id.to_owned()).or_default();
            record.completed = Some(seconds(now));
            record.not_before = 0;
            record.updated = seconds(now);
        })
    }

    /// Forget `id`'s failures (it was settled for good).
    ///
    /// # Errors
    /// The ledger file cannot be written.
    pub fn settled(&self, id: &str) -> io::Result<()> {
        self.change(|book| {
            if book
                .messages
                .get(id)
                .is_some_and(|record| record.completed.is_none())
            {
                book.messages.remove(id);
            }
        })
    }
}

fn prune(book: &mut Book, now: SystemTime) {
    // A record from the future (the clock was set back) is as of now, so a
    // clock jump neither keeps it for ever nor drops completions early.
    let today = seconds(now);
    for record in book.messages.values_mut() {
        record.updated = record.updated.min(today);
    }
    let oldest = today.saturating_sub(KEEP.as_secs());
    book.messages.retain(|_, record| record.updated >= oldest);
    if book.messages.len() > MAX_RECORDS {
        let mut ages: Vec<(u64, String)> = book
            .messages
            .iter()
            .map(|(id, record)| (record.updated, id.clone()))
            .collect();
        ages.sort();
        for (_, id) in ages.into_iter().take(book.messages.len() - MAX_RECORDS) {
            book.messages.remove(&id);
        }
    }
}

fn save(path: &Path, book: &Book) -> io::Result<()> {
    let directory = path.parent().unwrap_or_else(|| Path::new("."));
    let mut temporary = tempfile::NamedTempFile::new_in(directory)?;
    serde_json::to_writer(&mut temporary, book).map_err(io::Error::other)?;
    temporary.flush()?;
    temporary.as_file().sync_data()?;
    temporary.persist(path).map_err(|error| error.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_and_completions_survive_a_restart() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let now = SystemTime::now();
        let id = identity("local_a", b"{}");
        assert_ne!(id, identity("local_b", b"{}"));
        // Records on disk are named by it: the text must not change.
        assert_eq!(id, "2647cefee4af60e09ffc178de9dfac1c");
        {
            let ledger = Ledger::open(directory.path());
            ledger.failed(&id, "S3 unreachable", false, now, now)?;
            let record = ledger.failed(&id, "disk full", false, now + KEEP, now)?;
            assert_eq!(record.attempts, 2);
            assert_eq!(
                record.history(),
                "attempt 1: S3 unreachable; attempt 2: disk full"
            );
            ledger.completed("other", now)?;
        }
        let ledger = Ledger::open(directory.path());
        assert_eq!(ledger.get(&id).map(|record| record.attempts), Some(2));
        assert!(
            ledger
                .get("other")
                .and_then(|record| record.completed)
                .is_some()
        );
        ledger.settled(&id)?;
        ledger.settled("other")?;
        assert_eq!(ledger.get(&id), None);
        assert!(ledger.get("other").is_some(), "completions are kept");
        Ok(())
    }

    #[test]
    fn a_completion_counts_for_redeliveries_within_its_window() -> io::Result<()> {
        let ledger = Ledger::in_memory();
        let done = SystemTime::now();
        ledger.completed("m", done)?;
        let record = ledger.get("m").unwrap_or_default();
        assert!(record.completed_recently(done + Duration::from_mins(5)));
        assert!(!record.completed_recently(done + COMPLETED_WINDOW + Duration::from_secs(1)));
        assert!(!Record::default().completed_recently(done));
        Ok(())
    }

    #[test]
    fn history_is_bounded_and_numbered_from_the_first_kept() -> io::Result<()> {
        let ledger = Ledger::in_memory();
        let now = SystemTime::now();
        let mut record = Record::default();
        for attempt in 1..=15 {
            record = ledger.failed(
                "m",
                &format!("r{attempt}{}", "x".repeat(5_000)),
                false,
                now,
                now,
            )?;
        }
        assert_eq!(record.reasons.len(), MAX_REASONS);
        assert!(record.history().starts_with("attempt 6: r6"));
        assert!(
            record
                .reasons
                .iter()
                .all(|reason| reason.len() <= MAX_REASON + 4)
        );
        Ok(())
    }

    #[test]
    fn old_records_and_a_corrupt_file_are_dropped() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        fs::write(directory.path().join(FILE), b"{not json")?;
        let ledger = Ledger::open(directory.path());
        assert_eq!(ledger.get("x"), None);
        let long_ago = SystemTime::now() - KEEP - Duration::from_mins(1);
        ledger.failed("old", "r", false, long_ago, long_ago)?;
        assert_eq!(ledger.get("old"), None, "pruned on write");
        Ok(())
    }
}
