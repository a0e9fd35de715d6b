//! The artifact download cache (`--cache-dir`, `--cache-size`): immutable
//! objects kept on local disk under their storage hash (S3's `ETag` and the
//! size), so experiments that share a dataset or a workspace download it
//! once.
//!
//! - a byte-size LRU: when the files add up to more than the limit, the
//!   least recently used are deleted (never one an experiment is reading);
//! - one downloader per object: a second experiment wanting an object that
//!   is being fetched waits for that download instead of starting another;
//! - entries live `ttl` after their last use;
//! - hits and misses are counted for `/metrics`.
//!
//! Downloads go to `.partial/` and are renamed into place when complete, so
//! the cache never holds half an object; `.partial/` is emptied at start-up
//! and the files already in the directory are taken into the index.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

const PARTIAL: &str = ".partial";

#[derive(Debug)]
struct Entry {
    size: u64,
    used: u64,
    expires: SystemTime,
    pins: usize,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    downloading: HashSet<String>,
    total: u64,
    clock: u64,
}

/// The cache.
pub struct Cache {
    directory: PathBuf,
    limit: u64,
    ttl: Duration,
    state: Mutex<State>,
    downloaded: Condvar,
    /// Objects served from the cache.
    pub hits: Counter,
    /// Objects that had to be downloaded.
    pub misses: Counter,
    /// Bytes held.
    pub bytes: Gauge,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Cache")
            .field("directory", &self.directory)
            .field("limit", &self.limit)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A cached file, kept on disk while this lives.
#[derive(Debug)]
pub struct Pinned<'cache> {
    cache: &'cache Cache,
    name: String,
    path: PathBuf,
}

impl Pinned<'_> {
    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pinned<'_> {
    fn drop(&mut self) {
        let mut state = self.cache.lock();
        if let Some(entry) = state.entries.get_mut(&self.name) {
            entry.pins = entry.pins.saturating_sub(1);
        }
        self.cache.evict(&mut state);
    }
}

/// The cache's own failures, or the downloader's.
#[derive(Debug, thiserror::Error)]
pub enum CacheError<E: std::error::Error + 'static> {
    /// The download failed.
    #[error(transparent)]
    Download(E),
    /// The cache directory failed.
    #[error("artifact cache {}: cannot {action}", .path.display())]
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

/// The file name for a storage hash and size: `<hash>-<size>`, with
/// anything but letters, digits, `-` and `_` replaced.
#[must_use]
pub fn file_name(hash: &str, size: u64) -> String {
    let clean: String = hash
        .trim_matches('"')
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '-' | '_') {
                character
            } else {
                '_'
            }
        })
        .collect();
    format!("{clean}-{size}")
}

impl Cache {
    /// Open (creating) the cache in `directory`: check it is writable,
    /// empty `.partial/`, index the files already there (oldest first) and
    /// trim to `limit` bytes.
    ///
    /// # Errors
    /// The directory cannot be made, written or read.
    pub fn open(directory: &Path, limit: u64, ttl: Duration) -> io::Result<Self> {
        let partial = directory.join(PARTIAL);
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir_all(&partial)?;
        tempfile::NamedTempFile::new_in(directory)?;
        let mut found = Vec::new();
        for entry in fs::read_dir(directory)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let metadata = entry.metadata()?;
            if name.starts_with('.') || !metadata.is_file() {
                continue;
            }
            let used = metadata.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((used, name, metadata.len()));
        }
        found.sort();
        let cache = Self {
            directory: directory.to_path_buf(),
            limit,
            ttl,
            state: Mutex::new(State::default()),
            downloaded: Condvar::new(),
            hits: Counter::default(),
            misses: Counter::default(),
            bytes: Gauge::default(),
        };
        {
            let mut state = cache.lock();
            for (used, name, size) in found {
                state.clock += 1;
                let clock = state.clock;
                state.total += size;
                state.entries.insert(
                    name,
                    Entry {
                        size,
                        used: clock,
                        expires: used + ttl,
                        pins: 0,
                    },
                );
            }
            cache.evict(&mut state);
        }
        Ok(cache)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the object is held now (without counting a hit).
    #[must_use]
    pub fn contains(&self, name: &str) -> bool {
        self.lock().entries.contains_key(name) && self.directory.join(name).is_file()
    }

    /// The object `name` (see [`file_name`]) from the cache, or fetched with
    /// `download` (which writes the given path) and kept. Only one
    /// download of an object runs at a time; others wait for it.
    ///
    /// # Errors
    /// The download or the cache directory fails.
    pub fn get<E: std::error::Error + 'static>(
        &self,
        name: &str,
        download: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<Pinned<'_>, CacheError<E>> {
        let path = self.directory.join(name);
        let mut state = self.lock();
        loop {
            self.expire(&mut state);
            let State { entries, clock, .. } = &mut *state;
            if path.is_file()
                && let Some(entry) = entries.get_mut(name)
            {
                *clock += 1;
                entry.used = *clock;
                entry.pins += 1;
                entry.expires = SystemTime::now() + self.ttl;
                self.hits.inc();
                return Ok(self.pinned(name, path));
            }
            if !state.downloading.contains(name) {
                break;
            }
            state = self
                .downloaded
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        self.misses.inc();
        state.downloading.insert(name.to_owned());
        drop(state);
        let partial = self.directory.join(PARTIAL).join(name);
        let result = download(&partial)
            .map_err(CacheError::Download)
            .and_then(|()| {
                let size = fs::metadata(&partial)
                    .map_err(|source| CacheError::Io {
                        action: "read the download",
                        path: partial.clone(),
                        source,
                    })?
                    .len();
                fs::rename(&partial, &path).map_err(|source| CacheError::Io {
                    action: "keep the download",
                    path: path.clone(),
                    source,
                })?;
                Ok(size)
            });
        let mut state = self.lock();
        state.downloading.remove(name);
        self.downloaded.notify_all();
        let size = match result {
            Ok(size) => size,
            Err(error) => {
                let _ = fs::remove_file(&partial);
                return Err(error);
            }
        };
        state.clock += 1;
        let clock = state.clock;
        if let Some(old) = state.entries.insert(
            name.to_owned(),
            Entry {
                size,
                used: clock,
                expires: SystemTime::now() + self.ttl,
                pins: 1,
            },
        ) {
            state.total -= old.size;
        }
        state.total += size;
        self.evict(&mut state);
        Ok(self.pinned(name, path))
    }

    fn pinned(&self, name: &str, path: PathBuf) -> Pinned<'_> {
        Pinned {
            cache: self,
            name: name.to_owned(),
            path,
        }
    }

    /// Drop entries past their time.
    fn expire(&self, state: &mut State) {
        let now = SystemTime::now();
        let expired: Vec<String> = state
            .entries
            .iter()
            .filter(|(_, entry)| entry.pins == 0 && entry.expires <= now)
            .map(|(name, _)| name.clone())
            .collect();
        for name in expired {
            self.remove(state, &name);
        }
    }

    /// Delete least recently used, unpinned entries until under the limit.
    fn evict(&self, state: &mut State) {
        while state.total > self.limit {
            let Some(oldest) = state
                .entries
                .iter()
                .filter(|(_, entry)| entry.pins == 0)
                .min_by_key(|(_, entry)| entry.used)
                .map(|(name, _)| name.clone())
            else {
                break;
            };
            self.remove(state, &oldest);
        }
        self.bytes
            .set(i64::try_from(state.total).unwrap_or(i64::MAX));
    }

    fn remove(&self, state: &mut State, name: &str) {
        if let Some(entry) = state.entries.remove(name) {
            state.total -= entry.size;
            let _ = fs::remove_file(self.directory.join(name));
        }
        self.bytes
            .set(i64::try_from(state.total).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn write(size: usize, fill: u8) -> impl FnOnce(&Path) -> io::Result<()> {
        move |path| fs::write(path, vec![fill; size])
    }

    #[test]
    fn least_recently_used_bytes_are_evicted_and_their_files_deleted()
    -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        // Room for 5 objects of 100 bytes.
        let cache = Cache::open(directory.path(), 500, Duration::from_hours(1))?;
        for index in 0..7u8 {
            drop(cache.get(&format!("o{index}"), write(100, index))?);
        }
        assert_eq!(cache.misses.get(), 7);
        assert!(!cache.contains("o0") && !cache.contains("o1"));
        assert!(!directory.path().join("o0").exists());
        assert!(cache.contains("o2") && cache.contains("o6"));
        // A hit makes o2 the most recent: the next insert evicts o3.
        let hit = cache.get("o2", |_: &Path| -> io::Result<()> {
            panic!("a hit must not download")
        })?;
        assert_eq!(fs::read(hit.path())?, vec![2u8; 100]);
        drop(hit);
        assert_eq!(cache.hits.get(), 1);
        drop(cache.get("o7", write(100, 7))?);
        assert!(cache.contains("o2") && !cache.contains("o3"));
        assert_eq!(cache.bytes.get(), 500);
        Ok(())
    }

    #[test]
    fn a_pinned_file_survives_eviction_until_released() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let cache = Cache::open(directory.path(), 150, Duration::from_hours(1))?;
        let held = cache.get("big", write(100, 1))?;
        drop(cache.get("next", write(100, 2))?);
        // Over the limit, but "big" is being read: "next" went instead.
        assert!(held.path().exists());
        assert!(!cache.contains("next"));
        drop(held);
        assert!(cache.contains("big"));
        Ok(())
    }

    #[test]
    fn one_download_per_object_and_failures_are_not_kept() -> Result<(), Box<dyn std::error::Error>>
    {
        let directory = tempfile::tempdir()?;
        let cache = Arc::new(Cache::open(
            directory.path(),
            10_000,
            Duration::from_hours(1),
        )?);
        let downloads = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|scope| {
            for _ in 0..4 {
                let cache = Arc::clone(&cache);
                let downloads = Arc::clone(&downloads);
                scope.spawn(move || {
                    let pinned = cache.get("shared", |path: &Path| {
                        downloads.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(200));
                        fs::write(path, b"data")
                    });
                    assert!(pinned.is_ok());
                });
            }
        });
        assert_eq!(downloads.load(Ordering::SeqCst), 1);
        assert_eq!((cache.misses.get(), cache.hits.get()), (1, 3));
        let failed = cache.get("broken", |path: &Path| {
            fs::write(path, b"half")?;
            Err(io::Error::other("connection reset"))
        });
        assert!(matches!(failed, Err(CacheError::Download(_))));
        assert!(!cache.contains("broken"));
        assert_eq!(fs::read_dir(directory.path().join(PARTIAL))?.count(), 0);
        Ok(())
    }

    #[test]
    fn entries_expire_and_a_reopened_cache_knows_its_files()
    -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        {
            let cache = Cache::open(directory.path(), 1000, Duration::from_millis(50))?;
            drop(cache.get("short", write(10, 1))?);
            std::thread::sleep(Duration::from_millis(100));
            drop(cache.get("other", write(10, 2))?);
            assert!(!cache.contains("short"));
        }
        fs::write(directory.path().join(PARTIAL).join("leftover"), b"x")?;
        let reopened = Cache::open(directory.path(), 1000, Duration::from_hours(1))?;
        assert!(reopened.contains("other"));
        assert_eq!(fs::read_dir(directory.path().join(PARTIAL))?.count(), 0);
        assert_eq!(reopened.bytes.get(), 10);
        Ok(())
    }

    #[test]
    fn names_are_safe() {
        assert_eq!(file_name("\"0331071c2b-1\"", 7), "0331071c2b-1-7");
        assert_eq!(file_name("../x", 1), "___x-1");
    }
}
