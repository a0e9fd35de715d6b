//! Branch names made safe for the places they end up in.
//!
//! duat, build.sh and the manifests each cleaned branch names differently
//! (and none was DNS-safe); here is one function per destination, each with
//! the reference vectors.

/// The branch as one semver pre-release identifier, exactly as duat's `semver
/// pre` made it: every code point other than `[0-9A-Za-z]` becomes one `-`.
/// Case is kept and nothing is collapsed, so versions sort with duat's.
///
/// ```
/// assert_eq!(sgr::version::branch::prerelease_identifier("feature/197_hybrid"), "feature-197-hybrid");
/// ```
#[must_use]
pub fn prerelease_identifier(branch: &str) -> String {
    branch
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '-'
            }
        })
        .collect()
}

/// The most characters Docker accepts in a tag.
pub const DOCKER_TAG_MAX: usize = 128;

/// The branch as a Docker tag, the way build.sh named images (`_` and `/`
/// become `-`, so `feature/197_hybrid` gives `feature-197-hybrid`), and
/// valid where build.sh's was not: any other character outside
/// `[A-Za-z0-9_.-]` also becomes `-`, a leading `.` or `-` is dropped, and
/// the result is cut to 128 characters.
#[must_use]
pub fn docker_tag(branch: &str) -> String {
    let cleaned: String = branch
        .chars()
        .map(|character| match character {
            '_' | '/' => '-',
            character
                if character.is_ascii_alphanumeric() || character == '.' || character == '-' =>
            {
                character
            }
            _ => '-',
        })
        .collect();
    let trimmed = cleaned.trim_start_matches(['.', '-']);
    trimmed.chars().take(DOCKER_TAG_MAX).collect()
}

/// The most characters in a DNS label (and a Kubernetes label value).
pub const DNS_LABEL_MAX: usize = 63;

/// The branch as an RFC 1123 DNS label (Kubernetes names and label values):
/// lower case, `[a-z0-9-]`, runs of `-` collapsed, no `-` at either end,
/// at most 63 characters.
#[must_use]
pub fn dns_label(branch: &str) -> String {
    let mut label = String::with_capacity(branch.len());
    for character in branch.chars() {
        let character = character.to_ascii_lowercase();
        if character.is_ascii_lowercase() || character.is_ascii_digit() {
            label.push(character);
        } else if !label.ends_with('-') {
            label.push('-');
        }
    }
    let cut: String = label
        .trim_matches('-')
        .chars()
        .take(DNS_LABEL_MAX)
        .collect();
    cut.trim_end_matches('-').to_owned()
}

/// The text as a Kubernetes label value: `[A-Za-z0-9._-]` (anything else
/// becomes `-`), at most 63 characters, starting and ending alphanumeric.
#[must_use]
pub fn label_value(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-') {
                character
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|character: char| !character.is_ascii_alphanumeric());
    let cut: String = trimmed.chars().take(DNS_LABEL_MAX).collect();
    cut.trim_end_matches(|character: char| !character.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reference_vectors() {
        for (branch, identifier, tag) in [
            ("master", "master", "master"),
            (
                "feature/35_travis_and_git",
                "feature-35-travis-and-git",
                "feature-35-travis-and-git",
            ),
            (
                "feature/212_kops_1_11",
                "feature-212-kops-1-11",
                "feature-212-kops-1-11",
            ),
            (
                "feature/131_go_1.18",
                "feature-131-go-1-18",
                "feature-131-go-1.18",
            ),
            ("release-1.0", "release-1-0", "release-1.0"),
            (
                "hotfix/v1.2+build",
                "hotfix-v1-2-build",
                "hotfix-v1.2-build",
            ),
            ("Feature/ABC_Ü", "Feature-ABC--", "Feature-ABC--"),
        ] {
            assert_eq!(prerelease_identifier(branch), identifier, "{branch}");
            assert_eq!(docker_tag(branch), tag, "{branch}");
        }
    }

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label("Feature/197_Hybrid"), "feature-197-hybrid");
        assert_eq!(dns_label("--a__b--"), "a-b");
        assert_eq!(dns_label(&"x".repeat(100)).len(), 63);
        assert_eq!(
            dns_label(&format!("{}-{}", "a".repeat(62), "b")),
            "a".repeat(62)
        );
    }

    #[test]
    fn label_values() {
        assert_eq!(
            label_value("0.9.9-feature-197-hybrid-aaaagipajnu"),
            "0.9.9-feature-197-hybrid-aaaagipajnu"
        );
        assert_eq!(label_value("1.0.0+build"), "1.0.0-build");
        assert_eq!(
            label_value(&format!("-{}-", "a".repeat(70))),
            "a".repeat(63)
        );
    }

    proptest! {
        #[test]
        fn identifier_is_one_code_point_per_code_point(branch in "\\PC{0,40}") {
            let identifier = prerelease_identifier(&branch);
            prop_assert_eq!(identifier.chars().count(), branch.chars().count());
            prop_assert!(identifier.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-'));
        }

        #[test]
        fn docker_tags_are_valid(branch in "\\PC{0,200}") {
            let tag = docker_tag(&branch);
            prop_assert!(tag.len() <= DOCKER_TAG_MAX);
            prop_assert!(tag.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"_.-".contains(&byte)));
            prop_assert!(!tag.starts_with('.') && !tag.starts_with('-'));
        }

        #[test]
        fn dns_labels_are_valid(branch in "\\PC{0,200}") {
            let label = dns_label(&branch);
            prop_assert!(label.len() <= DNS_LABEL_MAX);
            prop_assert!(label.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-'));
            prop_assert!(!label.starts_with('-') && !label.ends_with('-'));
        }
    }
}
