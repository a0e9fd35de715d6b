//! Tolerant reading of the request's JSON. The StudioML client writes
//! `null` for every optional value it has none for, older clients write
//! numbers where newer ones write strings (`pythonver: 3` or `"3.11"`), and
//! YAML configs turn `1` into a number: all of these read as the field's
//! empty or textual value, so that validation (not the JSON reader) decides
//! and says which field is wrong.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// `null` (or a missing field) as the type's default.
pub(crate) fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A string, a number or a boolean as its text; `null` as empty.
pub(crate) fn text<'de, D>(deserializer: D) -> Result<String, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(TextVisitor)
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = String;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string, a number or null")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<String, E> {
        Ok(value.to_owned())
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<String, E> {
        Ok(value)
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<String, E> {
        Ok(value.to_string())
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<String, E> {
        // serde_json's own rendering: `3.0` stays `3.0`, `3.1` stays `3.1`.
        Ok(serde_json::Number::from_f64(value)
            .map_or_else(|| value.to_string(), |number| number.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_none<E: de::Error>(self) -> Result<String, E> {
        Ok(String::new())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// One element of a list of strings.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        text(deserializer).map(Text)
    }
}

/// A list of strings (numbers as their text); `null` as empty.
pub(crate) fn texts<'de, D>(deserializer: D) -> Result<Vec<String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<Vec<Text>>::deserialize(deserializer)?
        .unwrap_or_default()
        .into_iter()
        .map(|Text(text)| text)
        .collect())
}

/// A map of strings (numbers as their text, `null` as empty); `null` as empty.
pub(crate) fn text_map<'de, D>(deserializer: D) -> Result<BTreeMap<String, String>, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<BTreeMap<String, Text>>::deserialize(deserializer)?
        .unwrap_or_default()
        .into_iter()
        .map(|(name, Text(value))| (name, value))
        .collect())
}

/// A map of objects; `null` as empty, and a `null` entry as absent.
pub(crate) fn object_map<'de, D, T>(deserializer: D) -> Result<BTreeMap<String, T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(
        Option::<BTreeMap<String, Option<T>>>::deserialize(deserializer)?
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| Some((name, value?)))
            .collect(),
    )
}

/// A boolean; `null` as false.
pub(crate) fn flag<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or_default())
}

/// `unpack`: a boolean; `null` as true. The `StudioML` client writes
/// `unpack: null` for an artifact it made without saying (the workspace of a
/// `--hyperparam` experiment), and it always stores and unpacks artifacts
/// as tar archives itself; an absent field stays false (the field's
/// default).
pub(crate) fn unpack_flag<'de, D>(deserializer: D) -> Result<bool, D::Error>
where
    D: Deserializer<'de>,
{
    Ok(Option::<bool>::deserialize(deserializer)?.unwrap_or(true))
}

/// A count: a non-negative whole number, or its text; `null` as 0. Counts
/// beyond `u32` read as `u32::MAX`, which validation then refuses with the
/// field's name.
pub(crate) fn count<'de, D>(deserializer: D) -> Result<u32, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(CountVisitor)
}

struct CountVisitor;

impl<'de> Visitor<'de> for CountVisitor {
    type Value = u32;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a non-negative whole number or null")
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<u32, E> {
        Ok(u32::try_from(value).unwrap_or(u32::MAX))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<u32, E> {
        u64::try_from(value)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            .and_then(|value| self.visit_u64(value))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<u32, E> {
        if value.is_finite() && value >= 0.0 && value.fract() == 0.0 {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            // Saturating: a finite, non-negative whole number.
            Ok(value.min(f64::from(u32::MAX)) as u32)
        } else {
            Err(E::invalid_value(de::Unexpected::Float(value), &self))
        }
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<u32, E> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Ok(0);
        }
        trimmed
            .parse::<u64>()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
            .and_then(|value| self.visit_u64(value))
    }

    fn visit_unit<E: de::Error>(self) -> Result<u32, E> {
        Ok(0)
    }

    fn visit_none<E: de::Error>(self) -> Result<u32, E> {
        Ok(0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<u32, D::Error> {
        deserializer.deserialize_any(self)
    }
}

/// Seconds since the epoch: a number or its text; `null` as 0. Anything a
/// float can hold is read (infinities from text included); validation
/// bounds it.
pub(crate) fn seconds<'de, D>(deserializer: D) -> Result<f64, D::Error>
where
    D: Deserializer<'de>,
{
    deserializer.deserialize_any(SecondsVisitor)
}

struct SecondsVisitor;

impl<'de> Visitor<'de> for SecondsVisitor {
    type Value = f64;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a number of seconds or null")
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<f64, E> {
        Ok(value)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_u64<E: de::Error>(self, value: u64) -> Result<f64, E> {
        Ok(value as f64)
    }

    #[allow(clippy::cast_precision_loss)]
    fn visit_i64<E: de::Error>(self, value: i64) -> Result<f64, E> {
        Ok(value as f64)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<f64, E> {
        let trimmed = value.trim();
        if trimmed.is_empty() {
            return Ok(0.0);
        }
        trimmed
            .parse::<f64>()
            .map_err(|_| E::invalid_value(de::Unexpected::Str(value), &self))
    }

    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }

    fn visit_none<E: de::Error>(self) -> Result<f64, E> {
        Ok(0.0)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<f64, D::Error> {
        deserializer.deserialize_any(self)
    }
}
