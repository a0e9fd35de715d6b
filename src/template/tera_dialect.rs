//! The tera 2 dialect for new templates, with the functions and filters
//! Dockerfiles and manifests need. Strict: an undefined variable is an error
//! naming file, line and column.

use tera::{Kwargs, State, StringInput, TeraResult, Value};
use thiserror::Error;

use super::go::functions::{base64_decode, base64_encode, expand_env};
use super::process_host::{now_seconds, random_uuid};
use crate::version::branch;

/// A template that failed to parse or render.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{}{message}", .position.map(|(line, column)| format!("{line}:{column}: ")).unwrap_or_default())]
pub struct TeraError {
    /// 1-based line and column, when tera gave one.
    pub position: Option<(usize, usize)>,
    /// What went wrong.
    pub message: String,
}

impl From<tera::Error> for TeraError {
    fn from(error: tera::Error) -> Self {
        match error.kind() {
            tera::ErrorKind::SyntaxError(report) | tera::ErrorKind::RenderingError(report) => {
                let span = report.span();
                let mut message = report.message().to_owned();
                let mut source = std::error::Error::source(&error);
                while let Some(cause) = source {
                    message.push_str(": ");
                    message.push_str(&cause.to_string());
                    source = cause.source();
                }
                Self {
                    position: Some((span.start_line, span.start_col + 1)),
                    message,
                }
            }
            other => Self {
                position: None,
                message: other.to_string(),
            },
        }
    }
}

fn message_error(message: impl Into<String>) -> tera::Error {
    tera::Error::message(message.into())
}

/// A tera instance with sgr's functions and filters and no HTML escaping.
#[must_use]
pub fn engine() -> tera::Tera {
    let mut engine = tera::Tera::new();
    engine.autoescape_on(Vec::<&'static str>::new());
    engine.register_function("env", |kwargs: Kwargs, _: &State| -> TeraResult<Value> {
        let name = kwargs.must_get::<&str>("name")?;
        let fallback = kwargs.get::<&str>("default")?;
        match (std::env::var(name), fallback) {
            (Ok(value), _) => Ok(Value::from(value)),
            (Err(_), Some(fallback)) => Ok(Value::from(fallback)),
            (Err(_), None) => Err(message_error(format!("environment variable {name} is not set (give env(name=\"{name}\", default=\"...\"))"))),
        }
    });
    engine.register_function("now", |kwargs: Kwargs, _: &State| -> TeraResult<Value> {
        let (seconds, _) = now_seconds();
        let utc = crate::version::stamp::format_utc(seconds);
        match kwargs.get::<&str>("format")? {
            None | Some("rfc3339") => Ok(Value::from(utc)),
            Some("unix") => Ok(Value::from(seconds)),
            Some("stamp") => Ok(Value::from(crate::version::stamp::encode_base25(seconds))),
            Some(other) => Err(message_error(format!(
                "now(format=\"{other}\"): formats are rfc3339, unix, stamp"
            ))),
        }
    });
    engine.register_function("uuidv4", |_: Kwargs, _: &State| -> TeraResult<Value> {
        random_uuid()
            .map(Value::from)
            .map_err(|error| message_error(crate::error::chain(&error)))
    });
    engine.register_filter("expandenv", |value: StringInput, _: Kwargs, _: &State| {
        Value::from(expand_env(value.as_str(), &|name| {
            std::env::var(name).unwrap_or_default()
        }))
    });
    engine.register_filter("b64enc", |value: StringInput, _: Kwargs, _: &State| {
        Value::from(base64_encode(value.as_str().as_bytes()))
    });
    engine.register_filter(
        "b64dec",
        |value: StringInput, _: Kwargs, _: &State| -> TeraResult<Value> {
            let bytes = base64_decode(value.as_str()).map_err(message_error)?;
            String::from_utf8(bytes)
                .map(Value::from)
                .map_err(|_| message_error("the decoded bytes are not UTF-8 text"))
        },
    );
    engine.register_filter(
        "slug",
        |value: StringInput, kwargs: Kwargs, _: &State| -> TeraResult<Value> {
            match kwargs.get::<&str>("kind")?.unwrap_or("dns") {
                "dns" => Ok(Value::from(branch::dns_label(value.as_str()))),
                "tag" => Ok(Value::from(branch::docker_tag(value.as_str()))),
                "semver" => Ok(Value::from(branch::prerelease_identifier(value.as_str()))),
                "label" => Ok(Value::from(branch::label_value(value.as_str()))),
                other => Err(message_error(format!(
                    "slug(kind=\"{other}\"): kinds are dns, tag, label, semver"
                ))),
            }
        },
    );
    engine.register_filter(
        "quote",
        |value: Value, _: Kwargs, _: &State| -> TeraResult<Value> {
            let text = match value.as_str() {
                Some(text) => text.to_owned(),
                None => value.to_string(),
            };
            serde_json::to_string(&text)
                .map(Value::from)
                .map_err(|error| message_error(error.to_string()))
        },
    );
    engine.register_filter(
        "to_json",
        |value: Value, kwargs: Kwargs, _: &State| -> TeraResult<Value> {
            let pretty = kwargs.get::<bool>("pretty")?.unwrap_or(false);
            let text = if pretty {
                serde_json::to_string_pretty(&value)
            } else {
                serde_json::to_string(&value)
            };
            text.map(Value::from)
                .map_err(|error| message_error(error.to_string()))
        },
    );
    engine.register_filter(
        "to_yaml",
        |value: Value, _: Kwargs, _: &State| -> TeraResult<Value> {
            let json =
                serde_json::to_value(&value).map_err(|error| message_error(error.to_string()))?;
            let text =
                serde_saphyr::to_string(&json).map_err(|error| message_error(error.to_string()))?;
            Ok(Value::from(text.trim_end_matches('\n').to_owned()))
        },
    );
    engine
}

/// Render `source` (called `name` in messages) with `context`. With
/// `allow_missing`, undefined top-level variables render as empty strings.
///
/// # Errors
/// Syntax and rendering errors with their position.
pub fn render(
    name: &str,
    source: &str,
    context: &serde_json::Value,
    allow_missing: bool,
) -> Result<String, TeraError> {
    render_limited(name, source, context, allow_missing, usize::MAX)
}

/// [`render`], refusing an output of more than `max_output` bytes.
///
/// # Errors
/// Syntax and rendering errors with their position; an output past `max_output`.
pub fn render_limited(
    name: &str,
    source: &str,
    context: &serde_json::Value,
    allow_missing: bool,
    max_output: usize,
) -> Result<String, TeraError> {
    let mut engine = engine();
    engine.add_raw_template(name, source)?;
    let mut tera_context = tera::Context::from_serialize(context)?;
    if allow_missing {
        let wanted: Vec<String> = engine
            .get_template_variables(name)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        for variable in wanted {
            if !tera_context.contains_key(&variable) {
                tera_context.insert(variable, "");
            }
        }
    }
    let mut output = LimitedWriter {
        buffer: Vec::new(),
        limit: max_output,
        exceeded: false,
    };
    let result = engine.render_to(name, &tera_context, &mut output);
    if output.exceeded {
        return Err(TeraError {
            position: None,
            message: format!("the rendered output exceeds {max_output} bytes (--max-output)"),
        });
    }
    result?;
    String::from_utf8(output.buffer).map_err(|_| TeraError {
        position: None,
        message: "the rendered output is not UTF-8".to_owned(),
    })
}

/// Collects the output and fails once it would pass `limit` bytes, so that
/// a template cannot grow its output without bound.
struct LimitedWriter {
    buffer: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for LimitedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.buffer.len().saturating_add(bytes.len()) > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("output limit reached"));
        }
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn context() -> serde_json::Value {
        json!({"git": {"branch": "Feature/197_Hybrid"}, "version": {"full": "0.9.9"}, "items": {"b": 2, "a": [1, "x"]}})
    }

    #[test]
    fn functions_and_filters() {
        let rendered = render(
            "t",
            r#"{{ git.branch | slug }} {{ git.branch | slug(kind="tag") }} {{ "ghp_example" | b64enc }} {{ "Z2hwX2V4YW1wbGU=" | b64dec }} {{ "a\"b" | quote }} {{ items | to_json }} {{ env(name="SGR_SURELY_UNSET", default="d") }} {{ uuidv4() | length }}"#,
            &context(),
            false,
        );
        assert_eq!(
            rendered,
            Ok(r#"feature-197-hybrid Feature-197-Hybrid Z2hwX2V4YW1wbGU= ghp_example "a\"b" {"a":[1,"x"],"b":2} d 36"#.to_owned())
        );
        assert_eq!(
            render("t", "{{ items | to_yaml }}", &context(), false),
            Ok("a:\n- 1\n- x\nb: 2".to_owned())
        );
    }

    #[test]
    fn undefined_variables_are_errors_with_positions() {
        let error = render("t", "line\n  {{ nope }}", &context(), false).err();
        assert_eq!(
            error.as_ref().and_then(|error| error.position),
            Some((2, 6))
        );
        assert!(
            error.is_some_and(|error| error.message.contains("Variable `nope` is not defined"))
        );
        assert_eq!(
            render("t", "[{{ nope }}]", &context(), true),
            Ok("[]".to_owned())
        );
        let syntax = render("t", "{{ unclosed", &context(), false).err();
        assert!(syntax.is_some_and(|error| error.position.is_some()));
    }

    #[test]
    fn map_iteration_is_sorted_by_key() {
        let context = json!({"labels": {"zone": "a", "app": "b", "tier": "c"}});
        for _ in 0..20 {
            assert_eq!(
                render(
                    "t",
                    "{% for key, value in labels %}{{ key }}={{ value }};{% endfor %}",
                    &context,
                    false
                ),
                Ok("app=b;tier=c;zone=a;".to_owned())
            );
        }
    }

    #[test]
    fn no_html_escaping() {
        assert_eq!(
            render("t.html", "{{ x }}", &json!({"x": "<&>"}), false),
            Ok("<&>".to_owned())
        );
    }
}
