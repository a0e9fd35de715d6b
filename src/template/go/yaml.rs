//! `toYaml`: values written as gopkg.in/yaml.v2 marshals them (block style,
//! sorted keys, sequences not indented under their key, strings quoted only
//! when plain text would read back as something else).

use std::fmt::Write as _;

use super::value::{Value, format_float_g};

/// The YAML document for `value`, with a final newline.
#[must_use]
pub fn to_yaml(value: &Value) -> String {
    let mut output = String::new();
    match value {
        Value::Map(map) if !map.is_empty() => write_map(value, 0, &mut output),
        Value::List(items) if !items.is_empty() => write_list(value, 0, &mut output),
        other => {
            output.push_str(&scalar(other, 0));
            output.push('\n');
        }
    }
    output
}

fn write_map(value: &Value, indent: usize, output: &mut String) {
    let Value::Map(map) = value else { return };
    let pad = " ".repeat(indent);
    for (key, item) in map {
        output.push_str(&pad);
        output.push_str(&string_scalar(key, indent));
        output.push(':');
        match item {
            Value::Map(inner) if !inner.is_empty() => {
                output.push('\n');
                write_map(item, indent + 2, output);
            }
            Value::List(inner) if !inner.is_empty() => {
                output.push('\n');
                write_list(item, indent, output);
            }
            other => {
                output.push(' ');
                output.push_str(&scalar(other, indent + 2));
                output.push('\n');
            }
        }
    }
}

fn write_list(value: &Value, indent: usize, output: &mut String) {
    let Value::List(items) = value else { return };
    let pad = " ".repeat(indent);
    for item in items {
        output.push_str(&pad);
        output.push_str("- ");
        match item {
            Value::Map(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                write_map(item, indent + 2, &mut nested);
                output.push_str(nested.get(indent + 2..).unwrap_or_default());
            }
            Value::List(inner) if !inner.is_empty() => {
                let mut nested = String::new();
                write_list(item, indent + 2, &mut nested);
                output.push_str(nested.get(indent + 2..).unwrap_or_default());
            }
            other => {
                output.push_str(&scalar(other, indent + 2));
                output.push('\n');
            }
        }
    }
}

fn scalar(value: &Value, indent: usize) -> String {
    match value {
        Value::Nil => "null".to_owned(),
        Value::Bool(boolean) => boolean.to_string(),
        Value::Int(number) => number.to_string(),
        Value::Float(number) => match format_float_g(*number).as_str() {
            "+Inf" => ".inf".to_owned(),
            "-Inf" => "-.inf".to_owned(),
            "NaN" => ".nan".to_owned(),
            other => other.to_owned(),
        },
        Value::String(text) => string_scalar(text, indent),
        Value::Map(_) => "{}".to_owned(),
        Value::List(_) => "[]".to_owned(),
    }
}

/// Whether plain `text` would be read back as a non-string (bool, null, number).
fn resolves_to_other_type(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO",
        "true", "True", "TRUE", "false", "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
        ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
        ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&text) {
        return true;
    }
    let unsigned = text.strip_prefix(['+', '-']).unwrap_or(text);
    let cleaned = unsigned.replace('_', "");
    if !cleaned.is_empty() && cleaned.bytes().all(|byte| byte.is_ascii_digit()) {
        return true;
    }
    if let Some(hex) = cleaned.strip_prefix("0x") {
        return !hex.is_empty() && hex.bytes().all(|byte| byte.is_ascii_hexdigit());
    }
    if let Some(binary) = cleaned.strip_prefix("0b") {
        return !binary.is_empty() && binary.bytes().all(|byte| byte == b'0' || byte == b'1');
    }
    // Floats: digits with a point and/or an exponent; and base-60 floats like 1:20.
    let (mantissa, exponent) = match cleaned.find(['e', 'E']) {
        Some(at) => (&cleaned[..at], Some(&cleaned[at + 1..])),
        None => (cleaned.as_str(), None),
    };
    let mantissa_ok = {
        let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
        let digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        (mantissa.contains('.') || exponent.is_some())
            && digits(whole)
            && digits(fraction)
            && !(whole.is_empty() && fraction.is_empty())
    };
    let exponent_ok = exponent.is_none_or(|exponent| {
        let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
        !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit())
    });
    if mantissa_ok && exponent_ok {
        return true;
    }
    let base60 = unsigned.split(':').collect::<Vec<_>>();
    base60.len() > 1
        && base60.iter().all(|part| {
            !part.is_empty()
                && part
                    .split('.')
                    .next()
                    .is_some_and(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
        })
}

fn plain_allowed(text: &str) -> bool {
    let Some(first) = text.chars().next() else {
        return false;
    };
    if text.starts_with([' ', '\t']) || text.ends_with([' ', '\t']) {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && (text.len() == 1 || text[1..].starts_with([' ', '\t'])) {
        return false;
    }
    if text.contains(": ") || text.contains(" #") || text.ends_with(':') || text.contains(":\t") {
        return false;
    }
    text.chars()
        .all(|character| !character.is_control() || character == '\t')
        && !text.contains('\t')
}

fn string_scalar(text: &str, indent: usize) -> String {
    let printable = text
        .chars()
        .all(|character| !character.is_control() || character == '\n');
    if printable && resolves_to_other_type(text) {
        return double_quoted(text);
    }
    if printable && text.contains('\n') {
        let chomp = if text.ends_with("\n\n") {
            "+"
        } else if text.ends_with('\n') {
            ""
        } else {
            "-"
        };
        let indicator = if text.starts_with([' ', '\n']) {
            "2"
        } else {
            ""
        };
        let pad = " ".repeat(indent.max(2));
        let body = text.strip_suffix('\n').unwrap_or(text);
        let lines: Vec<String> = body
            .split('\n')
            .map(|line| {
                if line.is_empty() {
                    String::new()
                } else {
                    format!("{pad}{line}")
                }
            })
            .collect();
        return format!("|{indicator}{chomp}\n{}", lines.join("\n"));
    }
    if printable && plain_allowed(text) {
        return text.to_owned();
    }
    if printable {
        return format!("'{}'", text.replace('\'', "''"));
    }
    double_quoted(text)
}

fn double_quoted(text: &str) -> String {
    let mut output = String::from("\"");
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\t' => output.push_str("\\t"),
            '\r' => output.push_str("\\r"),
            '\0' => output.push_str("\\0"),
            character if character.is_control() => {
                let _ = write!(output, "\\x{:02X}", character as u32);
            }
            character => output.push(character),
        }
    }
    output.push('"');
    output
}
