//! sgr's image labels as one `LABEL` instruction in the rendered Dockerfile, for the classic
//! builder (BuildKit takes them through the `labels` option with no step: `docker`).
//!
//! The Engine API's `labels` build option makes the classic builder add one `LABEL` step per
//! label, each committing an intermediate container: five labels cost five steps, a fixed
//! second or more per image. One instruction carrying all of them costs one step. It goes at
//! the end of the stage being built (the last one, or `--target`'s), which is where the
//! builder would have put the option's labels, so the image gets the same labels. When that
//! stage already ends with a `LABEL` instruction, the labels join it and cost no step at all.
//!
//! They cannot cost less than a step otherwise: the classic builder commits every config-only
//! instruction through an intermediate container (about 0.5 s on the bench machine, whatever
//! the image's size), and putting the labels earlier would break the layer cache of every
//! later step on each commit (`revision`, `created`).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// `dockerfile` with every label added to the stage that is built (the last stage, or the
/// stage named `target`), at its end: merged into the stage's last instruction when that is
/// already a `LABEL` (no extra builder step at all), else as one `LABEL` instruction appended.
/// `None` when that place cannot be found with certainty (no stage of that name, or a file
/// ending inside a continued line): the caller then passes the labels through the build
/// option instead.
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
    let (instructions, ends_continued) = instructions(dockerfile, escape);
    let stages: Vec<(usize, Option<String>)> = instructions
        .iter()
        .filter(|instruction| instruction.keyword.eq_ignore_ascii_case("FROM"))
        .map(|instruction| (instruction.start, instruction.stage_name.clone()))
        .collect();
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
    let pairs = label_pairs(labels, escape);
    // The stage's last instruction, when it is a LABEL, takes the pairs: no step of their own.
    if let Some(last) = instructions
        .iter()
        .take_while(|instruction| instruction.start < insert_at)
        .last()
        .filter(|instruction| {
            // Only the `key=value` form takes more pairs: in the old `LABEL key value` form
            // everything after the key is its value.
            instruction.keyword.eq_ignore_ascii_case("LABEL")
                && dockerfile[instruction.start..instruction.end]
                    .split_whitespace()
                    .nth(1)
                    .is_some_and(|first| first.contains('='))
        })
    {
        let (before, after) = dockerfile.split_at(last.end);
        return Some(format!("{before}{pairs}{after}"));
    }
    let (before, after) = dockerfile.split_at(insert_at);
    let mut output = String::with_capacity(dockerfile.len() + pairs.len() + 8);
    output.push_str(before);
    if !before.is_empty() && !before.ends_with('\n') {
        output.push('\n');
    }
    output.push_str("LABEL");
    output.push_str(&pairs);
    output.push('\n');
    output.push_str(after);
    Some(output)
}

/// ` "k"="v" …`, the arguments of a `LABEL` instruction, with the values quoted for the
/// Dockerfile lexer: the escape character, `"` and `$` escaped, control characters (a newline
/// would end the instruction) as spaces.
fn label_pairs(labels: &BTreeMap<String, String>, escape: char) -> String {
    let mut pairs = String::new();
    for (key, value) in labels {
        let _ = write!(pairs, " {}={}", quote(key, escape), quote(value, escape));
    }
    pairs
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

/// One instruction of a Dockerfile: where it starts, where its last line's content ends
/// (before the newline and trailing blanks), its keyword, and for `FROM` the `AS` name.
struct Instruction {
    start: usize,
    end: usize,
    keyword: String,
    stage_name: Option<String>,
}

/// The instructions of `dockerfile` (comments and blank lines between continued lines belong
/// to no instruction), and whether the file ends inside a continued line.
fn instructions(dockerfile: &str, escape: char) -> (Vec<Instruction>, bool) {
    let mut instructions: Vec<Instruction> = Vec::new();
    let mut continued = false;
    let mut offset = 0;
    for line in dockerfile.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        let content = line.trim_end_matches(['\n', '\r']).trim_end();
        let trimmed = content.trim_start();
        // Comments and blank lines neither start nor end an instruction.
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let end = start + content.len();
        if continued {
            if let Some(instruction) = instructions.last_mut() {
                instruction.end = end;
            }
        } else {
            let mut words = trimmed.split_whitespace();
            let keyword = words.next().unwrap_or_default().to_owned();
            let stage_name = if keyword.eq_ignore_ascii_case("FROM") {
                let words: Vec<&str> = words.collect();
                words
                    .iter()
                    .position(|word| word.eq_ignore_ascii_case("AS"))
                    .and_then(|index| words.get(index + 1))
                    .map(|name| (*name).to_owned())
            } else {
                None
            };
            instructions.push(Instruction {
                start,
                end,
                keyword,
                stage_name,
            });
        }
        continued = content.ends_with(escape);
    }
    (instructions, continued)
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
    fn a_final_label_instruction_takes_them() {
        let single: BTreeMap<String, String> =
            [("a".to_owned(), "b".to_owned())].into_iter().collect();
        // The last instruction, continued over a comment, gets the pairs on its last line.
        assert_eq!(
            append_label_instruction(
                "FROM scratch\nLABEL x=y \\\n# note\n  z=w  \n\n# end\n",
                &single,
                None
            )
            .as_deref(),
            Some("FROM scratch\nLABEL x=y \\\n# note\n  z=w \"a\"=\"b\"  \n\n# end\n")
        );
        // The old `LABEL key value` form would take the pairs into its value: a LABEL of our own.
        assert_eq!(
            append_label_instruction("FROM scratch\nLABEL maintainer \"J D\"\n", &single, None)
                .as_deref(),
            Some("FROM scratch\nLABEL maintainer \"J D\"\nLABEL \"a\"=\"b\"\n")
        );
        // A LABEL that is not the last instruction is left alone: the cache of later steps.
        assert_eq!(
            append_label_instruction("FROM scratch\nLABEL x=y\nCOPY . /\n", &single, None)
                .as_deref(),
            Some("FROM scratch\nLABEL x=y\nCOPY . /\nLABEL \"a\"=\"b\"\n")
        );
        // The target stage's own last LABEL, not the file's.
        assert_eq!(
            append_label_instruction(
                "FROM scratch AS build\nlabel x=y\nFROM scratch\nLABEL q=r\n",
                &single,
                Some("build")
            )
            .as_deref(),
            Some("FROM scratch AS build\nlabel x=y \"a\"=\"b\"\nFROM scratch\nLABEL q=r\n")
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
