//! Values as Go's text/template sees data decoded from JSON: numbers are
//! float64, maps are printed with sorted keys, a missing key is nil.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// A template value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// nil: a missing key, JSON null.
    Nil,
    /// A boolean.
    Bool(bool),
    /// A Go `int` (number literals in the template, `len`).
    Int(i64),
    /// A Go `float64` (every number in the data).
    Float(f64),
    /// A string.
    String(String),
    /// A list (`[]interface{}`).
    List(Vec<Value>),
    /// A map (`map[string]interface{}`).
    Map(BTreeMap<String, Value>),
}

impl From<&serde_json::Value> for Value {
    fn from(value: &serde_json::Value) -> Self {
        match value {
            serde_json::Value::Null => Self::Nil,
            serde_json::Value::Bool(boolean) => Self::Bool(*boolean),
            serde_json::Value::Number(number) => Self::Float(number.as_f64().unwrap_or(0.0)),
            serde_json::Value::String(text) => Self::String(text.clone()),
            serde_json::Value::Array(items) => Self::List(items.iter().map(Self::from).collect()),
            serde_json::Value::Object(map) => Self::Map(
                map.iter()
                    .map(|(key, value)| (key.clone(), Self::from(value)))
                    .collect(),
            ),
        }
    }
}

impl Value {
    /// Go's type name, for error messages.
    #[must_use]
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::Nil => "<nil>",
            Self::Bool(_) => "bool",
            Self::Int(_) => "int",
            Self::Float(_) => "float64",
            Self::String(_) => "string",
            Self::List(_) => "[]interface {}",
            Self::Map(_) => "map[string]interface {}",
        }
    }

    /// Go's `truth`: false, 0, nil and empty strings, lists and maps are false.
    #[must_use]
    pub fn is_true(&self) -> bool {
        match self {
            Self::Nil => false,
            Self::Bool(boolean) => *boolean,
            Self::Int(number) => *number != 0,
            Self::Float(number) => *number != 0.0,
            Self::String(text) => !text.is_empty(),
            Self::List(items) => !items.is_empty(),
            Self::Map(map) => !map.is_empty(),
        }
    }

    /// As an action prints it (`{{ . }}`): nil is `<no value>`.
    #[must_use]
    pub fn to_output(&self) -> String {
        match self {
            Self::Nil => "<no value>".to_owned(),
            other => other.to_go_string(),
        }
    }

    /// Go's `fmt.Sprint` (`%v`): nil inside containers is `<nil>`.
    #[must_use]
    pub fn to_go_string(&self) -> String {
        let mut output = String::new();
        self.write_go(&mut output);
        output
    }

    fn write_go(&self, output: &mut String) {
        match self {
            Self::Nil => output.push_str("<nil>"),
            Self::Bool(boolean) => output.push_str(if *boolean { "true" } else { "false" }),
            Self::Int(number) => {
                let _ = write!(output, "{number}");
            }
            Self::Float(number) => output.push_str(&format_float_g(*number)),
            Self::String(text) => output.push_str(text),
            Self::List(items) => {
                output.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        output.push(' ');
                    }
                    item.write_go(output);
                }
                output.push(']');
            }
            Self::Map(map) => {
                output.push_str("map[");
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        output.push(' ');
                    }
                    output.push_str(key);
                    output.push(':');
                    value.write_go(output);
                }
                output.push(']');
            }
        }
    }

    /// Go's `json.Marshal`: compact, sorted keys, `<`, `>`, `&` escaped.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut output = String::new();
        self.write_json(&mut output);
        output
    }

    fn write_json(&self, output: &mut String) {
        match self {
            Self::Nil => output.push_str("null"),
            Self::Bool(boolean) => output.push_str(if *boolean { "true" } else { "false" }),
            Self::Int(number) => {
                let _ = write!(output, "{number}");
            }
            Self::Float(number) => output.push_str(&format_float_json(*number)),
            Self::String(text) => write_json_string(text, output),
            Self::List(items) => {
                output.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        output.push(',');
                    }
                    item.write_json(output);
                }
                output.push(']');
            }
            Self::Map(map) => {
                output.push('{');
                for (index, (key, value)) in map.iter().enumerate() {
                    if index > 0 {
                        output.push(',');
                    }
                    write_json_string(key, output);
                    output.push(':');
                    value.write_json(output);
                }
                output.push('}');
            }
        }
    }
}

fn write_json_string(text: &str, output: &mut String) {
    output.push('"');
    for character in text.chars() {
        match character {
            '"' => output.push_str("\\\""),
            '\\' => output.push_str("\\\\"),
            '\n' => output.push_str("\\n"),
            '\r' => output.push_str("\\r"),
            '\t' => output.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(output, "\\u{:04x}", character as u32);
            }
            character if (character as u32) < 0x20 => {
                let _ = write!(output, "\\u{:04x}", character as u32);
            }
            character => output.push(character),
        }
    }
    output.push('"');
}

/// Shortest digits and decimal exponent of `number` (`1234.5` → ("12345", 3)).
fn shortest_digits(number: f64) -> (String, i32) {
    let scientific = format!("{:e}", number.abs());
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    (digits, exponent.parse().unwrap_or(0))
}

fn exponent_form(sign: &str, digits: &str, exponent: i32) -> String {
    let mantissa = if digits.len() > 1 {
        format!("{}.{}", &digits[..1], &digits[1..])
    } else {
        digits.to_owned()
    };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs())
}

fn plain_form(sign: &str, digits: &str, exponent: i32) -> String {
    let point = exponent + 1;
    if point <= 0 {
        format!(
            "{sign}0.{}{digits}",
            "0".repeat(usize::try_from(-point).unwrap_or(0))
        )
    } else if usize::try_from(point).unwrap_or(0) >= digits.len() {
        format!(
            "{sign}{digits}{}",
            "0".repeat(usize::try_from(point).unwrap_or(0) - digits.len())
        )
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        format!("{sign}{}.{}", &digits[..split], &digits[split..])
    }
}

/// Go's `%v` for a float64 (`strconv.FormatFloat(f, 'g', -1, 64)`).
#[must_use]
pub fn format_float_g(number: f64) -> String {
    if number.is_nan() {
        return "NaN".to_owned();
    }
    if number.is_infinite() {
        return if number > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        };
    }
    if number == 0.0 {
        return if number.is_sign_negative() {
            "-0".to_owned()
        } else {
            "0".to_owned()
        };
    }
    let sign = if number < 0.0 { "-" } else { "" };
    let (digits, exponent) = shortest_digits(number);
    // strconv's shortest 'g' decides with precision 6: 123456 stays plain, 1e+06 does not.
    if (-4..6).contains(&exponent) {
        plain_form(sign, &digits, exponent)
    } else {
        exponent_form(sign, &digits, exponent)
    }
}

/// Go's `encoding/json` float64: plain between 1e-6 and 1e21, else exponent (`1e+21`, `1e-7`).
#[must_use]
pub fn format_float_json(number: f64) -> String {
    if !number.is_finite() {
        return "null".to_owned();
    }
    if number == 0.0 {
        return "0".to_owned();
    }
    let sign = if number < 0.0 { "-" } else { "" };
    let (digits, exponent) = shortest_digits(number);
    let magnitude = number.abs();
    if (1e-6..1e21).contains(&magnitude) {
        plain_form(sign, &digits, exponent)
    } else {
        let form = exponent_form(sign, &digits, exponent);
        // Go writes e-07 as e-7 in JSON.
        form.replace("e-0", "e-").replace("e+0", "e+")
    }
}
