//! Release candidates: the next `rc.N` for the current `MAJOR.MINOR.PATCH`,
//! from the repository's tags (duat's `semver rc`).

use super::Version;

/// The next release candidate and the tags that could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct NextCandidate {
    /// `current` with its pre-release set to the next `rc.N` (metadata kept).
    pub version: Version,
    /// One line per tag that was skipped because it could not be read.
    pub warnings: Vec<String>,
}

/// The next `rc.N` above every `rc.N` among `tags` with the same core as
/// `current` (and above `current` itself when it is an rc), trailing fields
/// of the highest kept (`rc.3.x` gives `rc.4.x`); `rc.1` when there is none.
///
/// ```
/// use sgr::version::{Version, rc::next_candidate};
/// let current = Version::parse("0.9.9").unwrap();
/// let next = next_candidate(&current, ["0.9.9-rc.1", "v0.9.9-rc.4", "0.9.10-rc.7"]);
/// assert_eq!(next.version.to_string(), "0.9.9-rc.5");
/// ```
pub fn next_candidate<'a>(
    current: &Version,
    tags: impl IntoIterator<Item = &'a str>,
) -> NextCandidate {
    let mut warnings = Vec::new();
    let mut best: Option<(u64, String)> = None;
    let mut consider = |prerelease: &str, source: &str, warnings: &mut Vec<String>| {
        let Some(rest) = prerelease.strip_prefix("rc.") else {
            return;
        };
        let (number, trailing) = rest
            .split_once('.')
            .map_or((rest, ""), |(number, trailing)| (number, trailing));
        match number.parse::<u64>() {
            Ok(number) => {
                if best.as_ref().is_none_or(|(highest, _)| number >= *highest) {
                    best = Some((number, trailing.to_owned()));
                }
            }
            Err(_) => warnings.push(format!(
                "{source}: 'rc.{number}' does not have a number after 'rc.'"
            )),
        }
    };
    consider(current.prerelease(), "current version", &mut warnings);
    for tag in tags {
        match Version::parse(tag) {
            Ok(version) if version.same_core(current) => {
                consider(version.prerelease(), tag, &mut warnings)
            }
            Ok(_) => {}
            Err(error) => warnings.push(format!("tag {tag}: {error}")),
        }
    }
    let prerelease = match best {
        None => "rc.1".to_owned(),
        Some((number, trailing)) if trailing.is_empty() => {
            format!("rc.{}", number.saturating_add(1))
        }
        Some((number, trailing)) => format!("rc.{}.{trailing}", number.saturating_add(1)),
    };
    let version = current
        .with_prerelease(&prerelease)
        .unwrap_or_else(|_| current.clone());
    NextCandidate { version, warnings }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn duat_vectors() {
        let tags = [
            "0.17.0-rc.3",
            "0.17.0-rc.4",
            "0.17.0-rc.5",
            "0.17.0-rc.6",
            "0.17.0-rc.7",
            "0.17.0-rc.8",
        ];
        assert_eq!(
            next_candidate(&version("0.17.0-rc.8"), tags)
                .version
                .original(),
            "0.17.0-rc.9"
        );
        let tags = [
            "0.9.9-rc.1",
            "0.9.9-rc.3",
            "v0.9.9-rc.4",
            "0.9.9-rc1",
            "0.9.10-rc.7",
        ];
        assert_eq!(
            next_candidate(&version("0.9.9"), tags).version.original(),
            "0.9.9-rc.5"
        );
        assert_eq!(
            next_candidate(&version("0.9.9"), ["0.9.8", "1.0.0"])
                .version
                .original(),
            "0.9.9-rc.1"
        );
    }

    #[test]
    fn trailing_fields_and_metadata_are_kept() {
        let next = next_candidate(&version("1.0.0+meta"), ["1.0.0-rc.3.x"]);
        assert_eq!(next.version.original(), "1.0.0-rc.4.x+meta");
    }

    #[test]
    fn the_current_rc_counts_without_tags() {
        assert_eq!(
            next_candidate(&version("v2.0.0-rc.2"), [])
                .version
                .original(),
            "v2.0.0-rc.3"
        );
    }

    #[test]
    fn unreadable_tags_become_warnings() {
        let next = next_candidate(
            &version("1.0.0"),
            ["not-a-version", "1.0.0-rc.x", "1.0.0-rc.2"],
        );
        assert_eq!(next.version.original(), "1.0.0-rc.3");
        assert_eq!(next.warnings.len(), 2, "{:?}", next.warnings);
        assert!(next.warnings[0].starts_with("tag not-a-version: "));
        assert!(next.warnings[1].contains("1.0.0-rc.x"));
    }
}
