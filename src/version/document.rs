//! Where a version lives inside a file's text, and how it is rewritten
//! without touching anything else.
//!
//! The text is handled as bytes: line endings (LF or CRLF), a missing final
//! newline, lines of any length and text that is not UTF-8 all pass through
//! unchanged. Only the bytes of the version itself are replaced, which fixes
//! duat's line-scanner rewrite that dropped CR, added newlines and truncated
//! files at the first line over 64 KiB.

use std::ops::Range;
use std::path::Path;

use thiserror::Error;

use super::{ParseError, Version};

const OPEN_TAG: &[u8] = b"<repo-version>";
const CLOSE_TAG: &[u8] = b"</repo-version>";
const REVISION: &[u8] = b":Revision:";

/// How a file stores its version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `<repo-version>1.2.3</repo-version>` anywhere on a line (Markdown,
    /// Dockerfiles, any text file); every tag is rewritten.
    RepoVersionTag,
    /// An AsciiDoc `:Revision: 1.2.3` attribute line.
    AsciiDocRevision,
}

impl Format {
    /// AsciiDoc for `.adoc`/`.asciidoc` files, the `<repo-version>` tag for everything else.
    #[must_use]
    pub fn for_path(path: &Path) -> Self {
        match path.extension().and_then(|extension| extension.to_str()) {
            Some(extension)
                if extension.eq_ignore_ascii_case("adoc")
                    || extension.eq_ignore_ascii_case("asciidoc") =>
            {
                Self::AsciiDocRevision
            }
            _ => Self::RepoVersionTag,
        }
    }

    /// How the marker is spelt, for messages.
    #[must_use]
    pub const fn marker(self) -> &'static str {
        match self {
            Self::RepoVersionTag => "<repo-version>…</repo-version> tag",
            Self::AsciiDocRevision => ":Revision: line",
        }
    }
}

/// One place a version is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Occurrence {
    /// 1-based line number.
    pub line: usize,
    /// The version text found there (inner tags removed, HTML entities
    /// decoded, whitespace trimmed); empty for a placeholder.
    pub value: String,
    /// Bytes replaced by a tag rewrite (between the tags, or after `:Revision:`).
    value_range: Range<usize>,
    /// Bytes replaced by a bare substitution (the whole tag).
    whole_range: Range<usize>,
}

/// Every place `format` stores a version in `text`, in order.
#[must_use]
pub fn occurrences(text: &[u8], format: Format) -> Vec<Occurrence> {
    let mut found = Vec::new();
    let mut line_start = 0;
    for (line_index, line) in text.split(|byte| *byte == b'\n').enumerate() {
        let content = line.strip_suffix(b"\r").unwrap_or(line);
        match format {
            Format::RepoVersionTag => find_tags(content, line_start, line_index + 1, &mut found),
            Format::AsciiDocRevision => {
                if let Some(rest) = content.strip_prefix(REVISION) {
                    let value_start = line_start + REVISION.len();
                    let value_range = value_start..value_start + rest.len();
                    found.push(Occurrence {
                        line: line_index + 1,
                        value: String::from_utf8_lossy(rest).trim().to_owned(),
                        whole_range: value_range.clone(),
                        value_range,
                    });
                }
            }
        }
        line_start += line.len() + 1;
    }
    found
}

fn find_tags(line: &[u8], line_start: usize, line_number: usize, found: &mut Vec<Occurrence>) {
    let mut position = 0;
    while let Some(open) = find(&line[position..], OPEN_TAG) {
        let inner_start = position + open + OPEN_TAG.len();
        let Some(close) = find(&line[inner_start..], CLOSE_TAG) else {
            return;
        };
        let inner_end = inner_start + close;
        let tag_end = inner_end + CLOSE_TAG.len();
        found.push(Occurrence {
            line: line_number,
            value: tag_value(&line[inner_start..inner_end]),
            value_range: line_start + inner_start..line_start + inner_end,
            whole_range: line_start + position + open..line_start + tag_end,
        });
        position = tag_end;
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// The version inside a tag: nested `<…>` tags removed, HTML entities decoded.
fn tag_value(inner: &[u8]) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for character in String::from_utf8_lossy(inner).chars() {
        match character {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            character if !in_tag => text.push(character),
            _ => {}
        }
    }
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
        .trim()
        .to_owned()
}

/// Why a file's version cannot be read.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DocumentError {
    /// No marker at all, or only empty ones.
    #[error("no version found: the file has no {} with a version", .format.marker())]
    NoVersion {
        /// The format looked for.
        format: Format,
    },
    /// A marker whose text is not a version.
    #[error("invalid version")]
    Invalid {
        /// 1-based line.
        line: usize,
        /// Why.
        #[source]
        source: ParseError,
    },
    /// A tag inside a tag, or a closing tag left over after one: a rewrite
    /// would lose one of them.
    #[error(
        "nested or conflicting <repo-version> tags on line {line}: {what}; a rewrite would lose one"
    )]
    NestedTags {
        /// 1-based line.
        line: usize,
        /// What was found.
        what: &'static str,
    },
    /// Two markers that disagree.
    #[error(
        "version '{found}' disagrees with '{first}' on line {first_line}; every tag must hold the same version"
    )]
    Disagree {
        /// Line of the first version.
        first_line: usize,
        /// The first version.
        first: String,
        /// Line of the disagreeing one.
        line: usize,
        /// The disagreeing text.
        found: String,
    },
}

impl DocumentError {
    /// The 1-based line the error is about, when there is one.
    #[must_use]
    pub const fn line(&self) -> Option<usize> {
        match self {
            Self::NoVersion { .. } => None,
            Self::Invalid { line, .. }
            | Self::Disagree { line, .. }
            | Self::NestedTags { line, .. } => Some(*line),
        }
    }
}

/// Refuse tags a rewrite cannot keep: `<repo-version>` inside a tag, or a
/// `</repo-version>` right after a complete tag on the same line. A lone
/// closing or opening tag (a tag split over lines) is ignored, as duat did.
///
/// # Errors
/// The first such line.
pub fn check_markers(text: &[u8], format: Format) -> Result<(), DocumentError> {
    if format != Format::RepoVersionTag {
        return Ok(());
    }
    for (line_index, line) in text.split(|byte| *byte == b'\n').enumerate() {
        let mut position = 0;
        while let Some(open) = find(&line[position..], OPEN_TAG) {
            let inner_start = position + open + OPEN_TAG.len();
            let Some(close) = find(&line[inner_start..], CLOSE_TAG) else {
                break;
            };
            let inner_end = inner_start + close;
            let nested = |what| DocumentError::NestedTags {
                line: line_index + 1,
                what,
            };
            if find(&line[inner_start..inner_end], OPEN_TAG).is_some() {
                return Err(nested("a <repo-version> tag inside another"));
            }
            position = inner_end + CLOSE_TAG.len();
            let next_close = find(&line[position..], CLOSE_TAG);
            let next_open = find(&line[position..], OPEN_TAG);
            if let Some(next_close) = next_close
                && next_open.is_none_or(|next_open| next_close < next_open)
            {
                return Err(nested("a </repo-version> without its <repo-version>"));
            }
        }
    }
    Ok(())
}

/// The version stored in `text`: the first non-empty marker, every other
/// non-empty one being the same version (`v1.2` and `1.2.0` agree). Empty
/// markers are placeholders and are filled in on the next write.
///
/// # Errors
/// No version, an invalid one, or markers that disagree.
pub fn read_version(text: &[u8], format: Format) -> Result<(Version, usize), DocumentError> {
    check_markers(text, format)?;
    let mut first: Option<(Version, usize)> = None;
    for occurrence in occurrences(text, format) {
        if occurrence.value.is_empty() {
            continue;
        }
        let version =
            Version::parse(&occurrence.value).map_err(|source| DocumentError::Invalid {
                line: occurrence.line,
                source,
            })?;
        match &first {
            None => first = Some((version, occurrence.line)),
            Some((expected, first_line)) => {
                if expected.semver() != version.semver() {
                    return Err(DocumentError::Disagree {
                        first_line: *first_line,
                        first: expected.original(),
                        line: occurrence.line,
                        found: occurrence.value,
                    });
                }
            }
        }
    }
    first.ok_or(DocumentError::NoVersion { format })
}

/// How a rewrite puts the version in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Replacement {
    /// Keep the markers: `<repo-version>NEW</repo-version>`.
    KeepMarkers,
    /// Replace each `<repo-version>…</repo-version>` tag by the bare `NEW`
    /// (for Dockerfiles); `:Revision:` lines keep their marker.
    Substitute,
}

/// `text` with every marker holding `value`, and how many were rewritten.
/// Every other byte is kept as it was.
#[must_use]
pub fn rewrite(
    text: &[u8],
    format: Format,
    value: &str,
    replacement: Replacement,
) -> (Vec<u8>, usize) {
    let found = occurrences(text, format);
    let mut output = Vec::with_capacity(text.len() + found.len() * value.len());
    let mut copied = 0;
    for occurrence in &found {
        let (range, new_text) = match (format, replacement) {
            (Format::RepoVersionTag, Replacement::KeepMarkers) => {
                (&occurrence.value_range, value.to_owned())
            }
            (Format::RepoVersionTag, Replacement::Substitute) => {
                (&occurrence.whole_range, value.to_owned())
            }
            (Format::AsciiDocRevision, _) => (&occurrence.value_range, format!(" {value}")),
        };
        output.extend_from_slice(&text[copied..range.start]);
        output.extend_from_slice(new_text.as_bytes());
        copied = range.end;
    }
    output.extend_from_slice(&text[copied..]);
    (output, found.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, format: Format) -> Result<String, DocumentError> {
        read_version(text.as_bytes(), format).map(|(version, _)| version.original())
    }

    #[test]
    fn reads_the_readme_tag() {
        assert_eq!(
            read(
                "# x\nVersion: <repo-version>0.9.9</repo-version>\n",
                Format::RepoVersionTag
            ),
            Ok("0.9.9".to_owned())
        );
        assert_eq!(
            read(
                "<repo-version><b>1.2.3</b></repo-version>",
                Format::RepoVersionTag
            ),
            Ok("1.2.3".to_owned())
        );
        assert_eq!(
            read(
                "<repo-version> v1.2 </repo-version>",
                Format::RepoVersionTag
            ),
            Ok("v1.2.0".to_owned())
        );
        assert!(
            read(
                "<repo-version>1.0.0-a&amp;b</repo-version>",
                Format::RepoVersionTag
            )
            .is_err()
        );
    }

    #[test]
    fn escaped_and_unclosed_tags_are_not_versions() {
        assert_eq!(
            read(
                "&lt;repo-version&gt;1.0.0&lt;/repo-version&gt;\n<repo-version>1.0.0\n</repo-version>",
                Format::RepoVersionTag
            ),
            Err(DocumentError::NoVersion {
                format: Format::RepoVersionTag
            })
        );
    }

    #[test]
    fn placeholders_are_skipped_and_all_values_must_agree() {
        let text = "<repo-version></repo-version>\na <repo-version>v1.2</repo-version> b <repo-version>1.2.0</repo-version>\n";
        assert_eq!(read(text, Format::RepoVersionTag), Ok("v1.2.0".to_owned()));
        let disagreeing =
            "<repo-version>1.2.0</repo-version>\n\n<repo-version>1.3.0</repo-version>\n";
        let error = read_version(disagreeing.as_bytes(), Format::RepoVersionTag).err();
        assert_eq!(error.as_ref().and_then(DocumentError::line), Some(3));
        assert_eq!(
            error.map(|error| error.to_string()),
            Some("version '1.3.0' disagrees with '1.2.0' on line 1; every tag must hold the same version".to_owned())
        );
    }

    #[test]
    fn nested_and_conflicting_tags_are_refused_with_their_line() {
        for (text, line) in [
            (
                "a\n<repo-version><repo-version>1.0.0</repo-version></repo-version>\n",
                2,
            ),
            (
                "<repo-version>1.0.0 <repo-version>2.0.0</repo-version>\n",
                1,
            ),
            (
                "x\r\ny\r\n<repo-version>1.0.0</repo-version>2.0.0</repo-version>\r\n",
                3,
            ),
        ] {
            let error = read_version(text.as_bytes(), Format::RepoVersionTag).err();
            assert!(
                matches!(error, Some(DocumentError::NestedTags { .. })),
                "{text:?}: {error:?}"
            );
            assert_eq!(
                error.as_ref().and_then(DocumentError::line),
                Some(line),
                "{text:?}"
            );
        }
        // Side by side and split over lines stay allowed.
        assert!(
            check_markers(
                b"<repo-version>1</repo-version><repo-version>1</repo-version>\n<repo-version>1\n</repo-version>",
                Format::RepoVersionTag
            )
            .is_ok()
        );
    }

    #[test]
    fn invalid_versions_name_their_line() {
        let error = read_version(
            b"a\r\nb\r\n<repo-version>1.x</repo-version>\r\n",
            Format::RepoVersionTag,
        )
        .err();
        assert_eq!(error.as_ref().and_then(DocumentError::line), Some(3));
    }

    #[test]
    fn asciidoc_revision() {
        let text = "= Title\n:Revision: 0.1.2\r\nbody :Revision: not this\n";
        assert_eq!(read(text, Format::AsciiDocRevision), Ok("0.1.2".to_owned()));
        let (rewritten, count) = rewrite(
            text.as_bytes(),
            Format::AsciiDocRevision,
            "0.2.0",
            Replacement::KeepMarkers,
        );
        assert_eq!(count, 1);
        assert_eq!(
            String::from_utf8_lossy(&rewritten),
            "= Title\n:Revision: 0.2.0\r\nbody :Revision: not this\n"
        );
        assert_eq!(
            Format::for_path(Path::new("docs/README.adoc")),
            Format::AsciiDocRevision
        );
        assert_eq!(
            Format::for_path(Path::new("README.md")),
            Format::RepoVersionTag
        );
        assert_eq!(
            Format::for_path(Path::new("Dockerfile")),
            Format::RepoVersionTag
        );
    }

    #[test]
    fn rewrite_touches_only_the_versions() {
        let long_line = "x".repeat(100 * 1024);
        let text = format!(
            "A <repo-version>1.0.0</repo-version>\r\n{long_line}\r\n<repo-version></repo-version> and <repo-version><i>1.0.0</i></repo-version>"
        );
        let (rewritten, count) = rewrite(
            text.as_bytes(),
            Format::RepoVersionTag,
            "1.0.1",
            Replacement::KeepMarkers,
        );
        assert_eq!(count, 3);
        let expected = format!(
            "A <repo-version>1.0.1</repo-version>\r\n{long_line}\r\n<repo-version>1.0.1</repo-version> and <repo-version>1.0.1</repo-version>"
        );
        assert_eq!(String::from_utf8_lossy(&rewritten), expected);
    }

    #[test]
    fn substitute_leaves_the_bare_version() {
        let text = b"LABEL version=<repo-version></repo-version>\nLABEL x=<repo-version>0.0.1</repo-version>";
        let (rewritten, count) = rewrite(
            text,
            Format::RepoVersionTag,
            "0.9.9",
            Replacement::Substitute,
        );
        assert_eq!(count, 2);
        assert_eq!(
            String::from_utf8_lossy(&rewritten),
            "LABEL version=0.9.9\nLABEL x=0.9.9"
        );
    }

    #[test]
    fn non_utf8_bytes_survive() {
        let mut text = b"\xff\xfe <repo-version>1.0.0</repo-version> \xc3\n".to_vec();
        text.extend_from_slice(b"tail");
        let (rewritten, _) = rewrite(
            &text,
            Format::RepoVersionTag,
            "2.0.0",
            Replacement::KeepMarkers,
        );
        assert_eq!(
            rewritten,
            b"\xff\xfe <repo-version>2.0.0</repo-version> \xc3\ntail".to_vec()
        );
    }
}
