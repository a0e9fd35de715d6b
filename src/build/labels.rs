//! sgr's image labels as one `LABEL` instruction in the rendered Dockerfile.
//!
//! The Engine API's `labels` build option makes the classic builder add one `LABEL` step per
//! label, each committing an intermediate container: five labels cost five steps, a fixed
//! second or more per image. One instruction carrying all of them costs one step. It goes at
//! the end of the stage being built (the last one, or `--target`'s), which is where the
//! builder would have put the option's labels, so the image gets the same labels.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `dockerfile` with one `LABEL` instruction holding every label appended to the stage that
/// is built: the last stage, or the stage named `target`. `None` when that place cannot be
/// found with certainty (no stage of that name, or a file ending inside a continued line):
/// the caller then passes the labels through the build option instead.
#[must_use]
pub fn append_label_instruction(
    dockerfile: &str,
    labels: &BTreeMap<String, String>,
    target: Option<&str>,
) -> Option<String> {
    if labels.is_empty() {
        return Some(dockerfile.to_owned());
    }
    let escape = escape_character(dockerfile);
    let instruction = label_instruction(labels, escape);
    let (stages, ends_continued) = stage_starts(dockerfile, escape);
    let insert_at = match target {
        None => dockerfile.len(),
        Some(target) => {
            let index = stages.iter().position(|(_, name)| {
                name.as_deref()
                    .is_some_and(|name| name.eq_ignore_ascii_case(target))
            })?;
            stages
                .get(index + 1)
                .map_or(dockerfile.len(), |(start, _)| *start)
        }
    };
    if insert_at == dockerfile.len() && ends_continued {
        return None;
    }
    let (before, after) = dockerfile.split_at(insert_at);
    let mut output = String::with_capacity(dockerfile.len() + instruction.len() + 2);
    output.push_str(before);
    if !before.is_empty() && !before.ends_with('\n') {
        output.push('\n');
    }
    output.push_str(&instruction);
    output.push('\n');
    output.push_str(after);
    Some(output)
}

/// `LABEL "k"="v" …` with the values quoted for the Dockerfile lexer: the escape character,
/// `"` and `$` escaped, control characters (a newline would end the instruction) as spaces.
fn label_instruction(labels: &BTreeMap<String, String>, escape: char) -> String {
    let mut instruction = String::from("LABEL");
    for (key, value) in labels {
        let _ = write!(
            instruction,
            " {}={}",
            quote(key, escape),
            quote(value, escape)
        );
    }
    instruction
}

fn quote(text: &str, escape: char) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for character in text.chars() {
        if character == escape || character == '"' || character == '$' {
            quoted.push(escape);
            quoted.push(character);
        } else if character.is_control() {
            quoted.push(' ');
        } else {
            quoted.push(character);
        }
    }
    quoted.push('"');
    quoted
}

/// The escape character: `\`, or what a leading `# escape=` parser directive says.
fn escape_character(dockerfile: &str) -> char {
    for line in dockerfile.lines() {
        let Some(comment) = line.trim_start().strip_prefix('#') else {
            break;
        };
        let Some((key, value)) = comment.split_once('=') else {
            break;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("escape") {
            return match value.trim() {
                "`" => '`',
                _ => '\\',
            };
        }
        if !key
            .chars()
            .all(|character| character.is_ascii_alphanumeric())
            || key.is_empty()
        {
            break;
        }
    }
    '\\'
}

/// The byte offset and `AS` name of each `FROM` that starts an instruction, and whether the
/// file ends inside a continued line.
fn stage_starts(dockerfile: &str, escape: char) -> (Vec<(usize, Option<String>)>, bool) {
    let mut stages = Vec::new();
    let mut continued = false;
    let mut offset = 0;
    for line in dockerfile.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']);
        let trimmed = content.trim_start();
        // Comments and blank lines neither start nor end an instruction.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if !continued {
            let mut words = trimmed.split_whitespace();
            if words
                .next()
                .is_some_and(|word| word.eq_ignore_ascii_case("FROM"))
            {
                let words: Vec<&str> = words.collect();
                let name = words
                    .iter()
                    .position(|word| word.eq_ignore_ascii_case("AS"))
                    .and_then(|index| words.get(index + 1))
                    .map(|name| (*name).to_owned());
                stages.push((start, name));
            }
        }
        continued = content.trim_end().ends_with(escape);
    }
    (stages, continued)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> BTreeMap<String, String> {
        [
            ("org.opencontainers.image.version", "1.0.0"),
            ("dev.sgr.branch", "feature/\"x\"$HOME\\y\nz"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
    }

    #[test]
    fn one_instruction_at_the_end() {
        assert_eq!(
            append_label_instruction("FROM scratch\nCOPY . /ctx", &labels(), None).as_deref(),
            Some(
                "FROM scratch\nCOPY . /ctx\nLABEL \"dev.sgr.branch\"=\"feature/\\\"x\\\"\\$HOME\\\\y z\" \"org.opencontainers.image.version\"=\"1.0.0\"\n"
            )
        );
        assert_eq!(
            append_label_instruction("FROM scratch\n", &BTreeMap::new(), None).as_deref(),
            Some("FROM scratch\n")
        );
    }

    #[test]
    fn the_escape_directive_is_honoured() {
        let output = append_label_instruction("# escape=`\nFROM scratch\n", &labels(), None);
        assert!(
            output
                .as_deref()
                .is_some_and(|text| text.contains("\"feature/`\"x`\"`$HOME\\y z\"")),
            "{output:?}"
        );
    }

    #[test]
    fn a_target_stage_gets_them_at_its_end() {
        let dockerfile = "FROM scratch AS build\nRUN x \\\n  FROM not-a-stage\n# FROM comment\nFROM scratch as Final\nCOPY --from=build /x /x\n";
        let single: BTreeMap<String, String> =
            [("a".to_owned(), "b".to_owned())].into_iter().collect();
        assert_eq!(
            append_label_instruction(dockerfile, &single, Some("build")).as_deref(),
            Some(
                "FROM scratch AS build\nRUN x \\\n  FROM not-a-stage\n# FROM comment\nLABEL \"a\"=\"b\"\nFROM scratch as Final\nCOPY --from=build /x /x\n"
            )
        );
        assert_eq!(
            append_label_instruction(dockerfile, &single, Some("final")).as_deref(),
            Some(format!("{dockerfile}LABEL \"a\"=\"b\"\n").as_str())
        );
        assert_eq!(
            append_label_instruction(dockerfile, &single, Some("missing")),
            None
        );
        assert_eq!(
            append_label_instruction("FROM scratch\nRUN x \\\n", &single, None),
            None
        );
    }
}
