//! Go's built-in template functions and the sprig (v3) functions duat's
//! templates use, with sprig's exact semantics: string parameters refuse
//! other types, `default`/`empty` treat nil, "" and 0 as empty, `quote`
//! skips nil, `b64dec` returns the decoder's error text.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::format;
use super::value::Value;
use super::yaml;

/// What functions need from outside: the environment, the clock, randomness.
pub trait Host {
    /// An environment variable (`env`, `expandenv`).
    fn env(&self, name: &str) -> Option<String>;
    /// The current time as Go prints a `time.Time`.
    fn now(&self) -> String;
    /// A random version-4 UUID, or why none could be made (the render
    /// fails with it: never a predictable stand-in).
    ///
    /// # Errors
    /// The random source failed.
    fn uuid(&self) -> Result<String, String>;
}

/// Every function name a template may call.
pub const FUNCTIONS: &[&str] = &[
    "and",
    "or",
    "not",
    "len",
    "index",
    "print",
    "printf",
    "println",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
    "env",
    "expandenv",
    "default",
    "empty",
    "ternary",
    "replace",
    "b64enc",
    "b64dec",
    "now",
    "uuidv4",
    "quote",
    "squote",
    "upper",
    "lower",
    "trim",
    "trimSuffix",
    "trimPrefix",
    "contains",
    "hasPrefix",
    "hasSuffix",
    "indent",
    "nindent",
    "toJson",
    "toYaml",
    "RaiseError",
];

type Outcome = Result<Value, String>;

fn count(values: &[Value], want: usize) -> Result<(), String> {
    if values.len() == want {
        Ok(())
    } else {
        Err(format!(
            "wrong number of args: want {want} got {}",
            values.len()
        ))
    }
}

/// A `string` parameter, as reflection converts it: only strings fit.
fn string_at(values: &[Value], index: usize) -> Result<&str, String> {
    match values.get(index) {
        Some(Value::String(text)) => Ok(text),
        Some(Value::Nil) | None => Err("invalid value; expected string".to_owned()),
        Some(other) => Err(format!(
            "wrong type for value; expected string; got {}",
            other.type_name()
        )),
    }
}

fn int_at(values: &[Value], index: usize) -> Result<i64, String> {
    match values.get(index) {
        Some(Value::Int(number)) => Ok(*number),
        Some(Value::Nil) | None => Err("invalid value; expected int".to_owned()),
        Some(other) => Err(format!(
            "wrong type for value; expected int; got {}",
            other.type_name()
        )),
    }
}

fn bool_at(values: &[Value], index: usize) -> Result<bool, String> {
    match values.get(index) {
        Some(Value::Bool(boolean)) => Ok(*boolean),
        Some(Value::Nil) | None => Err("invalid value; expected bool".to_owned()),
        Some(other) => Err(format!(
            "wrong type for value; expected bool; got {}",
            other.type_name()
        )),
    }
}

/// sprig's `empty`.
fn is_empty(value: &Value) -> bool {
    match value {
        Value::Nil => true,
        Value::Bool(boolean) => !boolean,
        Value::Int(number) => *number == 0,
        Value::Float(number) => *number == 0.0,
        Value::String(text) => text.is_empty(),
        Value::List(items) => items.is_empty(),
        Value::Map(map) => map.is_empty(),
    }
}

/// sprig's `strval`: strings as they are, everything else as `%v`.
fn strval(value: &Value) -> String {
    value.to_go_string()
}

/// Go's `strconv.Quote` (sprig's `quote` is `fmt.Sprintf("%q", …)`).
#[must_use]
pub fn go_quote(text: &str) -> String {
    format::quote(text)
}

/// Go's `os.Expand` with `lookup` (unset variables become "").
#[must_use]
pub fn expand_env(text: &str, lookup: &dyn Fn(&str) -> String) -> String {
    let bytes = text.as_bytes();
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'$' && index + 1 < bytes.len() {
            output.push_str(&text[copied..index]);
            let (name, width) = shell_name(&text[index + 1..]);
            if name.is_empty() && width > 0 {
                // Bad syntax such as "${}": the characters are dropped.
            } else if name.is_empty() {
                output.push('$');
            } else {
                output.push_str(&lookup(name));
            }
            index += width;
            copied = index + 1;
        }
        index += 1;
    }
    output.push_str(&text[copied.min(text.len())..]);
    output
}

fn is_shell_special(byte: u8) -> bool {
    matches!(byte, b'*' | b'#' | b'$' | b'@' | b'!' | b'?' | b'-') || byte.is_ascii_digit()
}

fn shell_name(text: &str) -> (&str, usize) {
    let bytes = text.as_bytes();
    if bytes[0] == b'{' {
        if bytes.len() > 2 && is_shell_special(bytes[1]) && bytes[2] == b'}' {
            return (&text[1..2], 3);
        }
        for (index, byte) in bytes.iter().enumerate().skip(1) {
            if *byte == b'}' {
                if index == 1 {
                    return ("", 2);
                }
                return (&text[1..index], index + 1);
            }
        }
        return ("", 1);
    }
    if is_shell_special(bytes[0]) {
        return (&text[0..1], 1);
    }
    let length = bytes
        .iter()
        .take_while(|byte| **byte == b'_' || byte.is_ascii_alphanumeric())
        .count();
    (&text[..length], length)
}

/// Go's `base64.StdEncoding`: padded, and (unlike the crate's default)
/// tolerant of non-zero bits in the last symbol, as Go's non-strict decoder is.
const GO_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
);

/// Standard base64 with padding.
#[must_use]
pub fn base64_encode(bytes: &[u8]) -> String {
    GO_STANDARD.encode(bytes)
}

/// Standard base64 decoding, as Go's `StdEncoding.DecodeString` (CR and LF
/// skipped); the error is Go's text ("illegal base64 data at input byte N").
///
/// # Errors
/// Invalid input.
pub fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    let (symbols, positions): (Vec<u8>, Vec<usize>) = text
        .bytes()
        .enumerate()
        .filter(|(_, byte)| !matches!(byte, b'\n' | b'\r'))
        .map(|(index, byte)| (byte, index))
        .unzip();
    GO_STANDARD.decode(&symbols).map_err(|_| {
        let offset = go_error_offset(&symbols, &positions, text.len());
        format!("illegal base64 data at input byte {offset}")
    })
}

/// Where Go's decoder, reading quantum by quantum, stops on input the crate
/// rejected. The crate's own offset cannot be used as is: it counts without
/// the newlines Go skips, and it may name a later byte (for `!bcd!` it
/// names the trailing `!`, Go the first). `symbols` is the input without
/// CR and LF, `positions` where each of them stood in the `length` bytes.
fn go_error_offset(symbols: &[u8], positions: &[usize], length: usize) -> usize {
    let at = |index: usize| positions.get(index).copied().unwrap_or(length);
    let is_symbol = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/');
    let Some(first) = symbols.iter().position(|byte| !is_symbol(*byte)) else {
        // Only symbols, the last quantum short: Go names where it would
        // have started had there been no newlines in it.
        return length - symbols.len() % 4;
    };
    if symbols[first] != b'=' || first % 4 < 2 {
        return at(first);
    }
    let mut next = first + 1;
    if first % 4 == 2 {
        match symbols.get(next) {
            None => return length,
            Some(b'=') => next += 1,
            // Go names the byte before the one that should have been `=`.
            Some(_) => return at(next) - 1,
        }
    }
    // The padding is complete: what follows it is trailing garbage.
    at(next)
}

fn compare(name: &str, left: &Value, right: &Value) -> Result<std::cmp::Ordering, String> {
    match (left, right) {
        (Value::Int(a), Value::Int(b)) => Ok(a.cmp(b)),
        (Value::Float(a), Value::Float(b)) => a
            .partial_cmp(b)
            .ok_or_else(|| "NaN is not comparable".to_owned()),
        (Value::String(a), Value::String(b)) => Ok(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) if name == "eq" || name == "ne" => Ok(a.cmp(b)),
        (Value::Nil, Value::Nil) if name == "eq" || name == "ne" => Ok(std::cmp::Ordering::Equal),
        (Value::Nil, _) | (_, Value::Nil) if name == "eq" || name == "ne" => {
            Ok(std::cmp::Ordering::Less)
        }
        (Value::List(_) | Value::Map(_), _) | (_, Value::List(_) | Value::Map(_)) => {
            Err("invalid type for comparison".to_owned())
        }
        (Value::Bool(_), Value::Bool(_)) => Err("invalid type for comparison".to_owned()),
        _ => Err("incompatible types for comparison".to_owned()),
    }
}

/// `fmt.Sprint`: a space between operands when neither is a string.
fn sprint(values: &[Value]) -> String {
    let mut output = String::new();
    for (index, value) in values.iter().enumerate() {
        if index > 0
            && !matches!(value, Value::String(_))
            && !matches!(values[index - 1], Value::String(_))
        {
            output.push(' ');
        }
        output.push_str(&value.to_go_string());
    }
    output
}

fn indent(spaces: i64, text: &str) -> String {
    let pad = " ".repeat(usize::try_from(spaces).unwrap_or(0));
    format!("{pad}{}", text.replace('\n', &format!("\n{pad}")))
}

/// Call `name` with evaluated arguments (`and`, `or` and `RaiseError` are handled by the executor).
///
/// # Errors
/// Wrong argument count or type, or the function's own failure; the text follows Go's.
#[allow(clippy::too_many_lines)]
pub fn call(name: &str, values: &[Value], host: &dyn Host) -> Outcome {
    let text = |value: String| Ok(Value::String(value));
    match name {
        "not" => {
            count(values, 1)?;
            Ok(Value::Bool(!values[0].is_true()))
        }
        "len" => {
            count(values, 1)?;
            match &values[0] {
                Value::String(text) => {
                    Ok(Value::Int(i64::try_from(text.len()).unwrap_or(i64::MAX)))
                }
                Value::List(items) => {
                    Ok(Value::Int(i64::try_from(items.len()).unwrap_or(i64::MAX)))
                }
                Value::Map(map) => Ok(Value::Int(i64::try_from(map.len()).unwrap_or(i64::MAX))),
                Value::Nil => Err("len of nil pointer".to_owned()),
                other => Err(format!("len of type {}", other.type_name())),
            }
        }
        "index" => {
            let Some((first, keys)) = values.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".to_owned());
            };
            let mut current = first.clone();
            for key in keys {
                current = match (current, key) {
                    (Value::Map(mut map), Value::String(key)) => {
                        map.remove(key).unwrap_or(Value::Nil)
                    }
                    (Value::List(items), Value::Int(position)) => {
                        let slot = usize::try_from(*position)
                            .ok()
                            .filter(|slot| *slot < items.len());
                        match slot {
                            Some(slot) => items[slot].clone(),
                            None => return Err(format!("index out of range: {position}")),
                        }
                    }
                    (Value::Nil, _) => return Err("index of untyped nil".to_owned()),
                    (Value::Map(_), key) => {
                        return Err(format!(
                            "value has type {}; should be string",
                            key.type_name()
                        ));
                    }
                    (Value::List(_), key) => {
                        return Err(format!(
                            "cannot index slice/array with type {}",
                            key.type_name()
                        ));
                    }
                    (other, _) => {
                        return Err(format!("can't index item of type {}", other.type_name()));
                    }
                };
            }
            Ok(current)
        }
        "print" => text(sprint(values)),
        "println" => text(format!(
            "{}\n",
            values
                .iter()
                .map(Value::to_go_string)
                .collect::<Vec<_>>()
                .join(" ")
        )),
        "printf" => {
            let format = string_at(values, 0)?;
            text(format::sprintf(format, &values[1..]))
        }
        "eq" => {
            let Some((first, others)) = values.split_first() else {
                return Err("missing argument for comparison".to_owned());
            };
            if others.is_empty() {
                return Err("missing argument for comparison".to_owned());
            }
            for other in others {
                if compare(name, first, other)? == std::cmp::Ordering::Equal {
                    return Ok(Value::Bool(true));
                }
            }
            Ok(Value::Bool(false))
        }
        "ne" | "lt" | "le" | "gt" | "ge" => {
            count(values, 2)?;
            let ordering = compare(name, &values[0], &values[1])?;
            Ok(Value::Bool(match name {
                "ne" => ordering != std::cmp::Ordering::Equal,
                "lt" => ordering == std::cmp::Ordering::Less,
                "le" => ordering != std::cmp::Ordering::Greater,
                "gt" => ordering == std::cmp::Ordering::Greater,
                _ => ordering != std::cmp::Ordering::Less,
            }))
        }
        "env" => {
            count(values, 1)?;
            text(host.env(string_at(values, 0)?).unwrap_or_default())
        }
        "expandenv" => {
            count(values, 1)?;
            text(expand_env(string_at(values, 0)?, &|name| {
                host.env(name).unwrap_or_default()
            }))
        }
        "default" => {
            let Some((default, given)) = values.split_first() else {
                return Err("wrong number of args: want at least 1 got 0".to_owned());
            };
            match given.first() {
                Some(value) if !is_empty(value) => Ok(value.clone()),
                _ => Ok(default.clone()),
            }
        }
        "empty" => {
            count(values, 1)?;
            Ok(Value::Bool(is_empty(&values[0])))
        }
        "ternary" => {
            count(values, 3)?;
            Ok(if bool_at(values, 2)? {
                values[0].clone()
            } else {
                values[1].clone()
            })
        }
        "replace" => {
            count(values, 3)?;
            text(string_at(values, 2)?.replace(string_at(values, 0)?, string_at(values, 1)?))
        }
        "b64enc" => {
            count(values, 1)?;
            text(base64_encode(string_at(values, 0)?.as_bytes()))
        }
        "b64dec" => {
            count(values, 1)?;
            match base64_decode(string_at(values, 0)?) {
                Ok(bytes) => text(String::from_utf8_lossy(&bytes).into_owned()),
                Err(message) => text(message),
            }
        }
        "now" => {
            count(values, 0)?;
            text(host.now())
        }
        "uuidv4" => {
            count(values, 0)?;
            host.uuid().map(Value::String)
        }
        "quote" | "squote" => {
            let quoted: Vec<String> = values
                .iter()
                .filter(|value| !matches!(value, Value::Nil))
                .map(|value| {
                    if name == "quote" {
                        go_quote(&strval(value))
                    } else {
                        format!("'{}'", strval(value))
                    }
                })
                .collect();
            text(quoted.join(" "))
        }
        "upper" => {
            count(values, 1)?;
            text(string_at(values, 0)?.to_uppercase())
        }
        "lower" => {
            count(values, 1)?;
            text(string_at(values, 0)?.to_lowercase())
        }
        "trim" => {
            count(values, 1)?;
            text(string_at(values, 0)?.trim().to_owned())
        }
        "trimSuffix" => {
            count(values, 2)?;
            let (suffix, subject) = (string_at(values, 0)?, string_at(values, 1)?);
            text(subject.strip_suffix(suffix).unwrap_or(subject).to_owned())
        }
        "trimPrefix" => {
            count(values, 2)?;
            let (prefix, subject) = (string_at(values, 0)?, string_at(values, 1)?);
            text(subject.strip_prefix(prefix).unwrap_or(subject).to_owned())
        }
        "contains" | "hasPrefix" | "hasSuffix" => {
            count(values, 2)?;
            let (needle, subject) = (string_at(values, 0)?, string_at(values, 1)?);
            Ok(Value::Bool(match name {
                "contains" => subject.contains(needle),
                "hasPrefix" => subject.starts_with(needle),
                _ => subject.ends_with(needle),
            }))
        }
        "indent" | "nindent" => {
            count(values, 2)?;
            let indented = indent(int_at(values, 0)?, string_at(values, 1)?);
            text(if name == "nindent" {
                format!("\n{indented}")
            } else {
                indented
            })
        }
        "toJson" => {
            count(values, 1)?;
            text(values[0].to_json())
        }
        "toYaml" => {
            count(values, 1)?;
            text(yaml::to_yaml(&values[0]).trim_end_matches('\n').to_owned())
        }
        other => Err(format!("function {other:?} not defined")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_env_follows_os_expand() {
        let lookup = |name: &str| match name {
            "USER" => "kmutch".to_owned(),
            _ => String::new(),
        };
        for (input, expected) in [
            ("build-$USER", "build-kmutch"),
            ("${USER}x", "kmutchx"),
            ("$$x", "x"),
            ("$1 and $", " and $"),
            ("${}y", "y"),
            ("${USER", "USER"),
            ("no dollars", "no dollars"),
            ("$UNSET-", "-"),
        ] {
            assert_eq!(expand_env(input, &lookup), expected, "{input}");
        }
    }

    #[test]
    fn base64_both_ways() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("ghp_example", "Z2hwX2V4YW1wbGU="),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), encoded);
            assert_eq!(base64_decode(encoded), Ok(plain.as_bytes().to_vec()));
        }
        assert_eq!(
            base64_decode("Zm9v!"),
            Err("illegal base64 data at input byte 4".to_owned())
        );
        assert_eq!(
            base64_decode("Zg="),
            Err("illegal base64 data at input byte 3".to_owned())
        );
        assert_eq!(
            base64_decode("Zm9vY"),
            Err("illegal base64 data at input byte 4".to_owned())
        );
        assert_eq!(
            base64_decode("Zm=v"),
            Err("illegal base64 data at input byte 2".to_owned())
        );
        assert_eq!(base64_decode("Zm9v\nYmFy"), Ok(b"foobar".to_vec()));
    }

    /// Go's answers (go 1.x `base64.StdEncoding.DecodeString`), one case
    /// per way its decoder stops; checked once exhaustively against Go for
    /// every input of up to 8 bytes from `A`, `g`, `=`, LF and `!`.
    #[test]
    fn base64_decoding_fails_where_go_fails() {
        for (input, offset) in [
            ("!bcd!", 0),
            ("not base64!", 3),
            ("Zm9v!", 4),
            ("Zg=", 3),
            ("Zg=\n", 4),
            ("Zm9vY", 4),
            ("Zm9v\nY", 5),
            ("Zm\n\n", 2),
            ("\nZg", 1),
            ("Zm=v", 2),
            ("Zm\n=\nv", 4),
            ("Zg=!", 2),
            ("Zg==Zg==", 4),
            ("Zm9=\n\nx", 6),
            ("=", 0),
            ("Z===", 1),
        ] {
            assert_eq!(
                base64_decode(input),
                Err(format!("illegal base64 data at input byte {offset}")),
                "{input:?}"
            );
        }
        for (input, plain) in [
            ("Zm9vYg=\n=", "foob"),
            ("Zh==", "f"),
            ("Zm9=", "fo"),
            ("Zm9v\r\nYmFy\n", "foobar"),
        ] {
            assert_eq!(
                base64_decode(input),
                Ok(plain.as_bytes().to_vec()),
                "{input:?}"
            );
        }
    }

    #[test]
    fn quoting_matches_strconv() {
        assert_eq!(go_quote("a\tb\"c\\"), "\"a\\tb\\\"c\\\\\"");
        assert_eq!(go_quote("é\u{1}"), "\"é\\x01\"");
    }
}
