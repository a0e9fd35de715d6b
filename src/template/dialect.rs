//! Which dialect a template is written in: tera (`{{ git.branch }}`,
//! `{% if %}`) or duat's Go templates (`{{ .duat.gitBranch }}`, `{{ now }}`,
//! `{{ expandenv "$USER" }}`). Every command that renders a file it did not
//! get a dialect for (`sgr build`, `sgr k8s-build`, `--dialect auto`) asks
//! [`choose`], so they all decide alike and can say which construct decided.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::go::functions::FUNCTIONS;

/// The template dialect of a file.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// tera 2 (`sgr render`).
    Tera,
    /// duat's Go templates (`sgr stencil`).
    Go,
}

impl fmt::Display for Dialect {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Tera => "tera",
            Self::Go => "go",
        })
    }
}

/// The dialect chosen for a file, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Detection {
    /// The dialect.
    pub dialect: Dialect,
    /// Why, for `-v`: the flag, the configuration, or the construct that decided.
    pub reason: String,
}

/// Go's control words, which tera writes as `{% ... %}`.
const GO_KEYWORDS: &[&str] = &[
    "if", "else", "end", "range", "with", "define", "template", "block", "break", "continue",
];

/// Words that follow a value in a tera expression (`a and b`, `x is defined`).
const TERA_OPERATOR_WORDS: &[&str] = &["and", "or", "not", "in", "is", "if", "else"];

fn is_identifier_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_'
}

fn is_identifier(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_'
}

/// What one `{{ ... }}` action says about the dialect, if anything.
fn classify_action(inside: &str) -> Option<(Dialect, &'static str)> {
    let body = inside.trim_start_matches('-').trim_start();
    let first = body.chars().next()?;
    match first {
        '.' => return Some((Dialect::Go, "a Go field reference (`.name`)")),
        '$' => return Some((Dialect::Go, "a Go variable (`$name`)")),
        '/' if body.starts_with("/*") => {
            return Some((Dialect::Go, "a Go comment (`{{/* */}}`)"));
        }
        _ => {}
    }
    if !is_identifier_start(first) {
        return None;
    }
    let word_length = body.chars().take_while(|c| is_identifier(*c)).count();
    let word = &body[..word_length];
    let after = &body[word_length..];
    let next = after.trim_start();
    let spaced = after.len() > next.len();
    let next_character = next.chars().next();
    let ends = next.is_empty() || next.starts_with("}}") || next.starts_with('-');
    if !spaced {
        match next_character {
            Some('.') if next[1..].starts_with(is_identifier_start) => {
                return Some((Dialect::Tera, "a tera attribute (`name.field`)"));
            }
            Some('(') => return Some((Dialect::Tera, "a tera call (`name(...)`)")),
            Some('[') => return Some((Dialect::Tera, "a tera subscript (`name[...]`)")),
            _ => {}
        }
    }
    // `if`/`else` are also tera operators (`a if b else c`): only bare `{{ else }}` counts.
    let control =
        GO_KEYWORDS.contains(&word) && !TERA_OPERATOR_WORDS.contains(&word) && (ends || spaced);
    if control || (matches!(word, "else" | "end") && ends) {
        return Some((Dialect::Go, "a Go control word (`{{ if }}`, `{{ end }}`)"));
    }
    let argument = spaced
        && next_character
            .is_some_and(|c| matches!(c, '"' | '`' | '\'' | '.' | '$' | '(') || c.is_ascii_digit());
    let word_argument = spaced
        && next_character.is_some_and(is_identifier_start)
        && !TERA_OPERATOR_WORDS.iter().any(|operator| {
            next.starts_with(operator) && !next[operator.len()..].starts_with(is_identifier)
        });
    if FUNCTIONS.contains(&word) {
        if argument || word_argument {
            return Some((
                Dialect::Go,
                "a Go function call with arguments (`name \"x\"`)",
            ));
        }
        if ends {
            return Some((Dialect::Go, "a Go function called bare (`{{ now }}`)"));
        }
        if next.starts_with('|') && !next.starts_with("||") {
            return Some((Dialect::Go, "a Go function piped (`{{ now | f }}`)"));
        }
    } else if argument {
        return Some((
            Dialect::Go,
            "a call with space-separated arguments (`name \"x\"`)",
        ));
    }
    if spaced && next.starts_with('|') {
        // `{{ name | filter }}` with a name no Go function has: a tera variable.
        return Some((
            Dialect::Tera,
            "a tera variable piped to a filter (`name | filter`)",
        ));
    }
    if ends && !FUNCTIONS.contains(&word) && !GO_KEYWORDS.contains(&word) {
        return Some((Dialect::Tera, "a bare tera variable (`{{ name }}`)"));
    }
    None
}

/// Detect the dialect of `text` from its first decisive construct; a file
/// with none is tera (both dialects render it alike).
#[must_use]
pub fn detect(text: &str) -> Detection {
    let mut offset = 0;
    while let Some(found) = text[offset..].find('{') {
        let start = offset + found;
        let rest = &text[start..];
        offset = start + 1;
        let line = text[..start].matches('\n').count() + 1;
        let decided = |dialect: Dialect, what: &str| {
            let shown: String = rest.chars().take_while(|c| *c != '\n').take(40).collect();
            Detection {
                dialect,
                reason: format!("line {line}: {what} in `{shown}`"),
            }
        };
        if rest.starts_with("{%") {
            return decided(Dialect::Tera, "a tera statement (`{% ... %}`)");
        }
        // `${#array}` is shell, not a tera comment.
        if rest.starts_with("{#") && !text[..start].ends_with('$') {
            return decided(Dialect::Tera, "a tera comment (`{# ... #}`)");
        }
        if let Some(action) = rest.strip_prefix("{{") {
            let inside = action.split("}}").next().unwrap_or_default();
            if let Some((dialect, what)) = classify_action(inside) {
                return decided(dialect, what);
            }
            offset = start + 2;
        }
    }
    Detection {
        dialect: Dialect::Tera,
        reason: "no construct of either dialect decided: tera by default".to_owned(),
    }
}

/// The dialect for a file: the command line's, else the configuration's,
/// else detected; `--dialect auto` is `None`.
#[must_use]
pub fn choose(flag: Option<Dialect>, configured: Option<Dialect>, text: &str) -> Detection {
    if let Some(dialect) = flag {
        return Detection {
            dialect,
            reason: "--dialect".to_owned(),
        };
    }
    if let Some(dialect) = configured {
        return Detection {
            dialect,
            reason: "sgr.toml's dialect".to_owned(),
        };
    }
    detect(text)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;

    #[test]
    fn constructs() {
        for (text, dialect) in [
            ("LABEL v={{.duat.version}}", Dialect::Go),
            ("ENV L={{ env \"X\" | default \"y\" }}", Dialect::Go),
            ("ARG CACHE_END=\"{{now}}\"", Dialect::Go),
            ("x {{- uuidv4 -}}", Dialect::Go),
            ("{{ now | quote }}", Dialect::Go),
            ("{{ len .list }}", Dialect::Go),
            ("{{/* c */}}", Dialect::Go),
            ("{{ if true }}a{{ end }}", Dialect::Go),
            ("{{ printf \"%d\" 3 }}", Dialect::Go),
            ("LABEL v={{ version.full }}", Dialect::Tera),
            ("{#- comment -#}\nFROM x", Dialect::Tera),
            ("RUN echo ${#list}\n{{ .x }}", Dialect::Go),
            ("FROM scratch", Dialect::Tera),
            ("{{ drain }}", Dialect::Tera),
            ("{{ drain + 30 }}", Dialect::Tera),
            ("{{ namespace | quote }}", Dialect::Tera),
            ("{{ now() }}", Dialect::Tera),
            (
                "{{ (module ~ \"-x\") | quote }}\n{{ module }}",
                Dialect::Tera,
            ),
            ("{{ x and y }}", Dialect::Tera),
            ("{%- set a = 1 -%}", Dialect::Tera),
        ] {
            assert_eq!(detect(text).dialect, dialect, "{text}");
        }
        let why = detect("FROM x\nARG CACHE_END=\"{{now}}\"\n");
        assert!(
            why.reason.starts_with("line 2: a Go function called bare"),
            "{}",
            why.reason
        );
    }

    #[test]
    fn flag_then_configuration_then_detection() {
        assert_eq!(
            choose(Some(Dialect::Tera), Some(Dialect::Go), "{{ .x }}").dialect,
            Dialect::Tera
        );
        assert_eq!(
            choose(None, Some(Dialect::Go), "{{ x }}").dialect,
            Dialect::Go
        );
        assert_eq!(choose(None, None, "{{ x }}").dialect, Dialect::Tera);
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
    }

    /// Files under `directory` (recursively) that hold a template construct.
    fn templates_under(directory: &Path, keep: &dyn Fn(&Path) -> bool) -> Vec<(PathBuf, String)> {
        let mut found = Vec::new();
        let mut pending = vec![directory.to_path_buf()];
        while let Some(current) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&current) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if keep(&path)
                    && let Ok(text) = std::fs::read_to_string(&path)
                    && (text.contains("{{") || text.contains("{%"))
                {
                    found.push((path, text));
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn every_duat_template_of_studio_go_runner_is_go() {
        let reference = root().join("../shared/reference/studio-go-runner");
        assert!(
            reference.is_dir(),
            "{} is absent (shared/ lies beside the clone)",
            reference.display()
        );
        // Shell scripts hold `docker --format '{{...}}'`, not templates.
        let templates = templates_under(&reference, &|path| {
            path.extension()
                .is_none_or(|extension| extension != "sh" && extension != "md")
        });
        let names: Vec<String> = templates
            .iter()
            .map(|(path, _)| {
                path.strip_prefix(&reference)
                    .unwrap_or(path)
                    .display()
                    .to_string()
            })
            .collect();
        for expected in [
            "19b9df9e/Dockerfile_developer",
            "19b9df9e/build.yaml",
            "4f816e5c/Dockerfile_standalone",
            "4f816e5c/build.yaml",
            "4f816e5c/ci_containerize_local.yaml",
        ] {
            assert!(
                names.iter().any(|name| name == expected),
                "{expected} not among {names:?}"
            );
        }
        for (path, text) in &templates {
            let detection = detect(text);
            assert_eq!(
                detection.dialect,
                Dialect::Go,
                "{}: {}",
                path.display(),
                detection.reason
            );
        }
    }

    #[test]
    fn every_stencil_corpus_template_is_go() {
        let templates = templates_under(&root().join("tests/stencil"), &|path| {
            path.extension()
                .is_some_and(|extension| extension == "tmpl")
        });
        assert!(templates.len() >= 5);
        for (path, text) in &templates {
            let detection = detect(text);
            assert_eq!(
                detection.dialect,
                Dialect::Go,
                "{}: {}",
                path.display(),
                detection.reason
            );
        }
    }

    #[test]
    fn every_tera_template_of_the_project_is_tera() {
        let root = root();
        let mut files: Vec<PathBuf> = [
            "Dockerfile",
            "Dockerfile_standalone",
            "Dockerfile_workstation",
            "build.yaml",
        ]
        .iter()
        .map(|name| root.join(name))
        .collect();
        files.extend(
            templates_under(&root.join("templates"), &|_| true)
                .into_iter()
                .map(|(path, _)| path),
        );
        assert!(files.len() >= 6);
        for path in files {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(text.contains("{{"), "{} holds no template", path.display());
            let detection = detect(&text);
            assert_eq!(
                detection.dialect,
                Dialect::Tera,
                "{}: {}",
                path.display(),
                detection.reason
            );
        }
    }
}
