//! Release candidates: the next `rc.N` for the current `MAJOR.MINOR.PATCH`,
//! from the repository's tags (duat's `semver rc`).

use super::{OverflowError, Version};

/// The next release candidate and the tags that could not be read.
#[derive(Debug, PartialEq, Eq)]
pub struct NextCandidate {
    /// `current` with its pre-release set to the next `rc.N` (metadata kept).
    pub version: Version,
    /// One line per tag that was skipped because it could not be read.
    pub warnings: Vec<String>,
}

/// The next `rc.N` above every `rc.N` among `tags` with the same core as
/// `current`, trailing fields of the highest kept (`rc.3.x` gives `rc.4.x`);
/// `rc.1` when there is none. When `current` is itself an untagged rc above
/// that, it is kept: re-running gives the same answer.
///
/// ```
/// use sgr::version::{Version, rc::next_candidate};
/// let current = Version::parse("0.9.9").unwrap();
/// let next = next_candidate(&current, ["0.9.9-rc.1", "v0.9.9-rc.4", "0.9.10-rc.7"]).unwrap();
/// assert_eq!(next.version.to_string(), "0.9.9-rc.5");
/// ```
///
/// # Errors
/// A tagged `rc.N` whose N is already the largest number a component can hold: there is no
/// next one (never the same number again, which would tag two builds alike).
pub fn next_candidate<'a>(
    current: &Version,
    tags: impl IntoIterator<Item = &'a str>,
) -> Result<NextCandidate, OverflowError> {
    let mut warnings = Vec::new();
    // The next number after the highest tagged rc.
    let mut next: Option<(u64, String)> = None;
    for tag in tags {
        match Version::parse(tag) {
            Ok(version) if version.same_core(current) => match rc_number(version.prerelease()) {
                Some(Ok((number, trailing))) => {
                    let candidate = number.checked_add(1).ok_or_else(|| OverflowError {
                        component: "release candidate number",
                        version: tag.to_owned(),
                    })?;
                    if next
                        .as_ref()
                        .is_none_or(|(highest, _)| candidate >= *highest)
                    {
                        next = Some((candidate, trailing.to_owned()));
                    }
                }
                Some(Err(field)) => {
                    warnings.push(format!("tag {tag}: 'rc.{field}' has no number after 'rc.'"));
                }
                None => {}
            },
            Ok(_) => {}
            Err(error) => warnings.push(format!("tag {tag}: {error}")),
        }
    }
    // An untagged rc already in the file is kept, so re-running does not skip
    // numbers and never goes back.
    if let Some(Ok((number, trailing))) = rc_number(current.prerelease())
        && next
            .as_ref()
            .is_none_or(|(candidate, _)| number > *candidate)
    {
        next = Some((number, trailing.to_owned()));
    }
    let prerelease = match next {
        None => "rc.1".to_owned(),
        Some((number, trailing)) if trailing.is_empty() => format!("rc.{number}"),
        Some((number, trailing)) => format!("rc.{number}.{trailing}"),
    };
    let version = current
        .with_prerelease(&prerelease)
        .unwrap_or_else(|_| current.clone());
    Ok(NextCandidate { version, warnings })
}

/// `rc.N[.rest]` as `(N, rest)`; `Err(field)` when N is not a number; `None` for other pre-releases.
fn rc_number(prerelease: &str) -> Option<Result<(u64, &str), &str>> {
    let rest = prerelease.strip_prefix("rc.")?;
    let (number, trailing) = rest.split_once('.').unwrap_or((rest, ""));
    Some(
        number
            .parse()
            .map(|number| (number, trailing))
            .map_err(|_| number),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(text: &str) -> Version {
        Version::parse(text).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The next candidate of an input that has one.
    fn next_candidate<'a>(
        current: &Version,
        tags: impl IntoIterator<Item = &'a str>,
    ) -> NextCandidate {
        super::next_candidate(current, tags).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_largest_candidate_has_no_next() {
        let error = super::next_candidate(
            &version("1.2.3"),
            ["1.2.3-rc.7", "1.2.3-rc.18446744073709551615"],
        );
        assert_eq!(
            error.err().map(|error| error.to_string()),
            Some(format!(
                "cannot bump the release candidate number of 1.2.3-rc.18446744073709551615: it is already {} (the largest number a version component can hold)",
                u64::MAX
            ))
        );
        // One below the largest still has a next.
        assert_eq!(
            next_candidate(&version("1.2.3"), ["1.2.3-rc.18446744073709551614"])
                .version
                .original(),
            "1.2.3-rc.18446744073709551615"
        );
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
    fn an_untagged_current_rc_is_kept_and_never_goes_back() {
        assert_eq!(
            next_candidate(&version("v2.0.0-rc.2"), [])
                .version
                .original(),
            "v2.0.0-rc.2"
        );
        assert_eq!(
            next_candidate(&version("2.0.0-rc.5"), ["2.0.0-rc.4"])
                .version
                .original(),
            "2.0.0-rc.5"
        );
        assert_eq!(
            next_candidate(&version("2.0.0-rc.5"), ["2.0.0-rc.5"])
                .version
                .original(),
            "2.0.0-rc.6"
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
        assert_eq!(
            next.warnings[1],
            "tag 1.0.0-rc.x: 'rc.x' has no number after 'rc.'"
        );
    }
}
