//! `.dockerignore` with Docker's own pattern rules (moby's patternmatcher):
//! `#` comments, `!` re-includes, `*` and `?` within one path segment, `**`
//! across segments, patterns cleaned (`./a/../b` is `b`, a leading `/` is
//! dropped), and a pattern that matches a directory excludes everything
//! under it. The last matching pattern decides.

use regex::Regex;
use thiserror::Error;

/// A pattern that is not a valid glob.
#[derive(Debug, Error)]
#[error(".dockerignore line {line}: invalid pattern '{pattern}'")]
pub struct PatternError {
    /// 1-based line.
    pub line: usize,
    /// The pattern as written.
    pub pattern: String,
    /// Why.
    #[source]
    pub source: regex::Error,
}

#[derive(Debug, Clone)]
struct Pattern {
    regex: Regex,
    exclusion: bool,
}

/// The parsed rules of one `.dockerignore`.
#[derive(Debug, Default, Clone)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

/// `filepath.Clean` on a slash-separated relative path.
fn clean(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|last| *last != "..") {
                    parts.pop();
                } else if !path.starts_with('/') {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// The regular expression for one cleaned glob, as moby builds it.
fn to_regex(pattern: &str) -> String {
    let mut expression = String::from("^");
    let mut characters = pattern.chars().peekable();
    let mut in_class = false;
    while let Some(character) = characters.next() {
        if in_class {
            match character {
                ']' => {
                    in_class = false;
                    expression.push(']');
                }
                '\\' => {
                    expression.push('\\');
                    if let Some(next) = characters.next() {
                        expression.push(next);
                    }
                }
                other => expression.push(other),
            }
            continue;
        }
        match character {
            '*' if characters.peek() == Some(&'*') => {
                characters.next();
                if characters.peek() == Some(&'/') {
                    characters.next();
                }
                if characters.peek().is_none() {
                    expression.push_str(".*");
                } else {
                    expression.push_str("(.*/)?");
                }
            }
            '*' => expression.push_str("[^/]*"),
            '?' => expression.push_str("[^/]"),
            '[' => {
                in_class = true;
                expression.push('[');
                if characters.peek() == Some(&'!') {
                    characters.next();
                    expression.push('^');
                }
            }
            '\\' => match characters.next() {
                Some(next) => expression.push_str(&regex::escape(&next.to_string())),
                None => expression.push_str("\\\\"),
            },
            other => expression.push_str(&regex::escape(&other.to_string())),
        }
    }
    expression.push('$');
    expression
}

impl DockerIgnore {
    /// Parse the text of a `.dockerignore`.
    ///
    /// # Errors
    /// A pattern that cannot be compiled (an unclosed `[` class).
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let trimmed = line.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (exclusion, body) = match trimmed.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, trimmed),
            };
            let cleaned = clean(body.trim_start_matches('/'));
            if cleaned == "." {
                continue;
            }
            let regex = Regex::new(&to_regex(&cleaned)).map_err(|source| PatternError {
                line: index + 1,
                pattern: trimmed.to_owned(),
                source,
            })?;
            patterns.push(Pattern { regex, exclusion });
        }
        Ok(Self { patterns })
    }

    /// Whether any pattern re-includes (`!`): then excluded directories must still be walked.
    #[must_use]
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|pattern| pattern.exclusion)
    }

    /// Whether `path` (relative to the context, `/`-separated) is left out of the context.
    #[must_use]
    pub fn is_ignored(&self, path: &str) -> bool {
        let mut ignored = false;
        for pattern in &self.patterns {
            let matches = pattern.regex.is_match(path)
                || path
                    .match_indices('/')
                    .any(|(index, _)| pattern.regex.is_match(&path[..index]));
            if matches {
                ignored = !pattern.exclusion;
            }
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn docker_pattern_rules() {
        let rules = ignore(
            "# comment\n\n*.md\n!README.md\ntarget\n/tmp/*\n**/*.log\ndocs/**/draft-?.txt\n  spaced  \n./a/../b\n",
        );
        for (path, ignored) in [
            ("CHANGES.md", true),
            ("README.md", false),
            ("docs/CHANGES.md", false),
            ("target", true),
            ("target/debug/sgr", true),
            ("src/target", false),
            ("tmp/x", true),
            ("tmp/x/y", true),
            ("tmp", false),
            ("app.log", true),
            ("deep/er/app.log", true),
            ("docs/a/b/draft-1.txt", true),
            ("docs/draft-1.txt", true),
            ("docs/draft-10.txt", false),
            ("spaced", true),
            ("b", true),
            ("a", false),
            ("src/main.rs", false),
        ] {
            assert_eq!(rules.is_ignored(path), ignored, "{path}");
        }
        assert!(rules.has_exclusions());
    }

    #[test]
    fn negation_re_includes_inside_an_ignored_directory() {
        let rules = ignore("data\n!data/keep.txt\n");
        assert!(rules.is_ignored("data/drop.txt"));
        assert!(!rules.is_ignored("data/keep.txt"));
        let rules = ignore("**\n!src\n");
        assert!(rules.is_ignored("Dockerfile.old"));
        assert!(!rules.is_ignored("src/lib.rs"));
    }

    #[test]
    fn character_classes_and_escapes() {
        let rules = ignore("file[0-9].txt\nx[!a].y\nliteral\\*star\n");
        assert!(rules.is_ignored("file3.txt"));
        assert!(!rules.is_ignored("filex.txt"));
        assert!(rules.is_ignored("xb.y"));
        assert!(!rules.is_ignored("xa.y"));
        assert!(rules.is_ignored("literal*star"));
        assert!(!rules.is_ignored("literalXstar"));
        assert!(DockerIgnore::parse("bad[").is_err());
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean("a/./b//c/../d"), "a/b/d");
        assert_eq!(clean("./"), ".");
        assert_eq!(clean("../x"), "../x");
    }
}
