//! The real environment, clock and randomness behind template functions
//! (`env`, `now`, `uuidv4`) of both dialects.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use thiserror::Error;

use super::go::Host;
use crate::env;

/// Seconds and nanoseconds since 1970: `SOURCE_DATE_EPOCH` when set, else the clock.
#[must_use]
pub fn now_seconds() -> (u64, u32) {
    match std::env::var(env::SOURCE_DATE_EPOCH)
        .ok()
        .and_then(|value| value.trim().parse::<u64>().ok())
    {
        Some(seconds) => (seconds, 0),
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or((0, 0), |elapsed| {
                (elapsed.as_secs(), elapsed.subsec_nanos())
            }),
    }
}

/// Where UUID randomness comes from: the kernel's generator.
const RANDOM_SOURCE: &str = "/dev/urandom";

/// The random source gave no bytes for a UUID. There is deliberately no
/// fallback: a predictable "random" value is worse than a failed render.
#[derive(Debug, Error)]
#[error("the random source {path} could not be read for a UUID", path = path.display())]
pub struct RandomSourceError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// A random version-4 UUID from the kernel's generator.
///
/// # Errors
/// The random source cannot be opened or read.
pub fn random_uuid() -> Result<String, RandomSourceError> {
    random_uuid_from(Path::new(RANDOM_SOURCE))
}

fn random_uuid_from(source: &Path) -> Result<String, RandomSourceError> {
    let mut bytes = [0_u8; 16];
    std::fs::File::open(source)
        .and_then(|mut random| random.read_exact(&mut bytes))
        .map_err(|error| RandomSourceError {
            path: source.to_path_buf(),
            source: error,
        })?;
    Ok(uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string())
}

/// The process as a [`Host`].
pub struct ProcessHost;

impl Host for ProcessHost {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    /// Go's `time.Time` format in UTC (`2019-01-25 19:10:44.5 +0000 UTC`).
    fn now(&self) -> String {
        let (seconds, nanos) = now_seconds();
        let stamp = crate::version::stamp::format_utc(seconds);
        let (date, time) = stamp
            .trim_end_matches('Z')
            .split_once('T')
            .unwrap_or((&stamp, ""));
        let fraction = format!("{nanos:09}");
        let fraction = fraction.trim_end_matches('0');
        if fraction.is_empty() {
            format!("{date} {time} +0000 UTC")
        } else {
            format!("{date} {time}.{fraction} +0000 UTC")
        }
    }

    fn uuid(&self) -> Result<String, String> {
        random_uuid().map_err(|error| crate::error::chain(&error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() -> Result<(), RandomSourceError> {
        let first = random_uuid()?;
        let parsed = uuid::Uuid::parse_str(&first);
        assert_eq!(
            parsed.map(|value| value.get_version()),
            Ok(Some(uuid::Version::Random))
        );
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert!(matches!(&first[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(first, random_uuid()?);
        Ok(())
    }

    #[test]
    fn a_missing_random_source_is_an_error_not_a_value() {
        let directory = tempfile::tempdir().ok();
        let missing = directory.as_ref().map_or_else(
            || PathBuf::from("/nonexistent"),
            |path| path.path().join("urandom"),
        );
        let error = random_uuid_from(&missing).err();
        let text = error.as_ref().map(|error| crate::error::chain(error));
        assert_eq!(
            text.as_deref().map(|text| text.starts_with(&format!(
                "the random source {} could not be read for a UUID: ",
                missing.display()
            ))),
            Some(true),
            "{text:?}"
        );
    }

    #[test]
    fn a_short_random_source_is_an_error() -> Result<(), std::io::Error> {
        let directory = tempfile::tempdir()?;
        let short = directory.path().join("short");
        std::fs::write(&short, [7_u8; 15])?;
        assert!(random_uuid_from(&short).is_err());
        std::fs::write(&short, [0_u8; 16])?;
        assert_eq!(
            random_uuid_from(&short).ok().as_deref(),
            Some("00000000-0000-4000-8000-000000000000")
        );
        Ok(())
    }
}
