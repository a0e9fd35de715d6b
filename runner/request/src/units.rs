//! Sizes and durations as StudioML writes them. Both come from untrusted
//! text, so every conversion is checked: a value no `u64` or `Duration`
//! can hold is "not a size" or "not a duration", never a panic (a
//! `Duration::from_secs_f64` of `99999999999999999999h` used to bring the
//! runner down).

use std::time::Duration;

/// 2⁶⁴ as a float: the first byte count a `u64` cannot hold.
const U64_LIMIT: f64 = 18_446_744_073_709_551_616.0;

/// `3gb`, `2GiB`, `512mb`, `100b`: decimal and binary units, case-insensitive;
/// `None` when it is not a size or does not fit in a `u64`.
#[must_use]
pub fn parse_size(text: &str) -> Option<u64> {
    let lower = text.trim().to_ascii_lowercase();
    let split = lower.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
    if split == 0 {
        return None;
    }
    let (number, unit) = lower.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor: f64 = match unit.trim() {
        "b" => 1.0,
        "k" | "kb" => 1e3,
        "ki" | "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mi" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tb" => 1e12,
        "ti" | "tib" => 1024.0_f64.powi(4),
        _ => return None,
    };
    let bytes = number * factor;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    // In range: finite, non-negative and below 2⁶⁴.
    (0.0..U64_LIMIT).contains(&bytes).then_some(bytes as u64)
}

/// Go durations: `20m`, `1h30m`, `90s`, `500ms`, `1.5h`, `0`; `None` when it
/// is not a duration or does not fit in a `Duration`.
#[must_use]
pub fn parse_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let number_end =
            rest.find(|character: char| !(character.is_ascii_digit() || character == '.'))?;
        if number_end == 0 {
            return None;
        }
        let value: f64 = rest[..number_end].parse().ok()?;
        let after = &rest[number_end..];
        let unit_end = after
            .find(|character: char| character.is_ascii_digit() || character == '.')
            .unwrap_or(after.len());
        let unit_seconds = match &after[..unit_end] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        let part = Duration::try_from_secs_f64(value * unit_seconds).ok()?;
        total = total.checked_add(part)?;
        rest = &after[unit_end..];
    }
    Some(total)
}

/// A non-negative number of seconds (`"60"`, `"0.5"`); `None` when it is
/// not one or does not fit in a `Duration`.
#[must_use]
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    Duration::try_from_secs_f64(seconds).ok()
}
