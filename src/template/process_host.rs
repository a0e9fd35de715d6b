//! The real environment, clock and randomness behind template functions
//! (`env`, `now`, `uuidv4`) of both dialects.

use std::io::Read as _;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// A random version-4 UUID from the kernel's generator.
#[must_use]
pub fn random_uuid() -> String {
    use std::fmt::Write as _;
    let mut bytes = [0_u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut random| random.read_exact(&mut bytes))
        .is_err()
    {
        let (seconds, nanos) = now_seconds();
        bytes = (u128::from(seconds) << 32 | u128::from(nanos))
            .wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)
            .to_le_bytes();
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let mut text = String::with_capacity(36);
    for (index, byte) in bytes.iter().enumerate() {
        if matches!(index, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
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

    fn uuid(&self) -> String {
        random_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_version_4() {
        let first = random_uuid();
        assert_eq!(first.len(), 36);
        assert_eq!(&first[14..15], "4");
        assert!(matches!(&first[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(first, random_uuid());
    }
}
