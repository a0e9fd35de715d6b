//! Version rules with no I/O: lenient parsing as duat did (so existing README
//! files and tags keep working), the bump rules, pre-release stamps, release
//! candidates, and the text format of version files.
//!
//! Everything here is pure so that it is tested directly against the
//! reference vectors, without files or repositories.

pub mod branch;
pub mod document;
pub mod rc;
pub mod stamp;

use std::cmp::Ordering;
use std::fmt;

use thiserror::Error;

/// A semantic version as duat read it: an optional `v` prefix that survives
/// printing, missing minor/patch read as 0, and leading zeros accepted in the
/// numeric core and kept byte for byte until the version is changed (duat's
/// `Original()`: `01.2.3` stays `01.2.3`; `patch` gives `1.2.4`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    inner: semver::Version,
    v_prefix: bool,
    /// The core as written (`01.2.3`), only when it has leading zeros.
    written_core: Option<String>,
}

/// A bump that would go past the largest version component.
#[derive(Debug, Error, PartialEq, Eq)]
#[error(
    "cannot bump the {component} of {version}: it is already {} (the largest number a version component can hold)",
    u64::MAX
)]
pub struct OverflowError {
    /// `major`, `minor` or `patch`.
    pub component: &'static str,
    /// The version as given.
    pub version: String,
}

/// A version string that cannot be read even leniently.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("'{text}' is not a semantic version: {reason}")]
pub struct ParseError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ParseError {
    fn new(text: &str, reason: impl Into<String>) -> Self {
        Self {
            text: text.to_owned(),
            reason: reason.into(),
        }
    }
}

impl Version {
    /// Parse `v?MAJOR[.MINOR[.PATCH]][-PRE][+BUILD]`, surrounding whitespace ignored.
    ///
    /// ```
    /// let version = sgr::version::Version::parse("v1.2").unwrap();
    /// assert_eq!(version.to_string(), "1.2.0");
    /// assert_eq!(version.original(), "v1.2.0");
    /// ```
    ///
    /// # Errors
    /// When the text does not match the lenient grammar, or a pre-release or
    /// build identifier is invalid.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ParseError::new(text, "it is empty"));
        }
        let (v_prefix, rest) = match trimmed.strip_prefix('v') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (rest, build) = match rest.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (rest, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        if pre.is_some_and(str::is_empty) {
            return Err(ParseError::new(text, "the pre-release after '-' is empty"));
        }
        if build.is_some_and(str::is_empty) {
            return Err(ParseError::new(
                text,
                "the build metadata after '+' is empty",
            ));
        }
        let mut numbers = [0_u64; 3];
        let parts: Vec<&str> = core.split('.').collect();
        let leading_zeros = parts
            .iter()
            .any(|part| part.len() > 1 && part.starts_with('0'));
        if parts.len() > 3 {
            return Err(ParseError::new(
                text,
                "the core has more than three numbers (MAJOR.MINOR.PATCH)",
            ));
        }
        for (slot, part) in numbers.iter_mut().zip(&parts) {
            if part.is_empty() || !part.bytes().all(|byte| byte.is_ascii_digit()) {
                return Err(ParseError::new(
                    text,
                    format!("'{part}' is not a number (expected MAJOR.MINOR.PATCH)"),
                ));
            }
            *slot = part
                .parse()
                .map_err(|_| ParseError::new(text, format!("'{part}' is too large")))?;
        }
        let pre = match pre {
            None => semver::Prerelease::EMPTY,
            Some(pre) => semver::Prerelease::new(pre)
                .map_err(|error| ParseError::new(text, format!("pre-release '{pre}': {error}")))?,
        };
        let build = match build {
            None => semver::BuildMetadata::EMPTY,
            Some(build) => semver::BuildMetadata::new(build).map_err(|error| {
                ParseError::new(text, format!("build metadata '{build}': {error}"))
            })?,
        };
        Ok(Self {
            inner: semver::Version {
                major: numbers[0],
                minor: numbers[1],
                patch: numbers[2],
                pre,
                build,
            },
            v_prefix,
            written_core: leading_zeros.then(|| {
                let mut written = parts.join(".");
                for _ in parts.len()..3 {
                    written.push_str(".0");
                }
                written
            }),
        })
    }

    /// The version in strict semver form.
    #[must_use]
    pub const fn semver(&self) -> &semver::Version {
        &self.inner
    }

    /// Whether the text this came from started with `v`.
    #[must_use]
    pub const fn has_v_prefix(&self) -> bool {
        self.v_prefix
    }

    /// The same version, printed with or without the `v` prefix.
    #[must_use]
    pub fn with_v_prefix(mut self, v_prefix: bool) -> Self {
        self.v_prefix = v_prefix;
        self
    }

    /// The version as it is written back: the `v` prefix kept when the input had one.
    #[must_use]
    pub fn original(&self) -> String {
        let prefix = if self.v_prefix { "v" } else { "" };
        match &self.written_core {
            Some(core) => {
                let mut text = format!("{prefix}{core}");
                if !self.inner.pre.is_empty() {
                    text.push('-');
                    text.push_str(self.inner.pre.as_str());
                }
                if !self.inner.build.is_empty() {
                    text.push('+');
                    text.push_str(self.inner.build.as_str());
                }
                text
            }
            None => format!("{prefix}{}", self.inner),
        }
    }

    /// The pre-release part, empty for a release.
    #[must_use]
    pub fn prerelease(&self) -> &str {
        self.inner.pre.as_str()
    }

    /// The build metadata, empty when there is none.
    #[must_use]
    pub fn build_metadata(&self) -> &str {
        self.inner.build.as_str()
    }

    fn overflow(&self, component: &'static str) -> OverflowError {
        OverflowError {
            component,
            version: self.original(),
        }
    }

    /// `M+1.0.0`, pre-release and metadata dropped.
    ///
    /// # Errors
    /// When the major number is already `u64::MAX`.
    pub fn bump_major(&self) -> Result<Self, OverflowError> {
        let major = self
            .inner
            .major
            .checked_add(1)
            .ok_or_else(|| self.overflow("major"))?;
        Ok(self.with_core(major, 0, 0))
    }

    /// `M.m+1.0`, pre-release and metadata dropped.
    ///
    /// # Errors
    /// When the minor number is already `u64::MAX`.
    pub fn bump_minor(&self) -> Result<Self, OverflowError> {
        let minor = self
            .inner
            .minor
            .checked_add(1)
            .ok_or_else(|| self.overflow("minor"))?;
        Ok(self.with_core(self.inner.major, minor, 0))
    }

    /// `M.m.p+1`, metadata dropped; a pre-release is released instead
    /// (`1.2.3-x` becomes `1.2.3`), as duat did.
    ///
    /// # Errors
    /// When the patch number is already `u64::MAX` (and there is no pre-release).
    pub fn bump_patch(&self) -> Result<Self, OverflowError> {
        let patch = if self.inner.pre.is_empty() {
            self.inner
                .patch
                .checked_add(1)
                .ok_or_else(|| self.overflow("patch"))?
        } else {
            self.inner.patch
        };
        Ok(self.with_core(self.inner.major, self.inner.minor, patch))
    }

    /// The same version with its pre-release replaced; build metadata is kept.
    ///
    /// # Errors
    /// When `prerelease` is not a valid semver pre-release.
    pub fn with_prerelease(&self, prerelease: &str) -> Result<Self, ParseError> {
        let pre = semver::Prerelease::new(prerelease).map_err(|error| {
            ParseError::new(
                &format!(
                    "{}.{}.{}-{prerelease}",
                    self.inner.major, self.inner.minor, self.inner.patch
                ),
                format!("pre-release '{prerelease}': {error}"),
            )
        })?;
        let mut next = self.clone();
        next.inner.pre = pre;
        // duat printed a changed version normalised.
        next.written_core = None;
        Ok(next)
    }

    /// Whether both have the same `MAJOR.MINOR.PATCH`.
    #[must_use]
    pub const fn same_core(&self, other: &Self) -> bool {
        self.inner.major == other.inner.major
            && self.inner.minor == other.inner.minor
            && self.inner.patch == other.inner.patch
    }

    /// Semver precedence (build metadata ignored).
    #[must_use]
    pub fn precedence(&self, other: &Self) -> Ordering {
        self.inner.cmp_precedence(&other.inner)
    }

    fn with_core(&self, major: u64, minor: u64, patch: u64) -> Self {
        Self {
            inner: semver::Version::new(major, minor, patch),
            v_prefix: self.v_prefix,
            written_core: None,
        }
    }
}

/// The normalised form `M.m.p[-pre][+build]`, without any `v`.
impl fmt::Display for Version {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, formatter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Version {
        match Version::parse(text) {
            Ok(version) => version,
            Err(error) => panic!("{error}"),
        }
    }

    #[test]
    fn lenient_parsing_matches_duat() {
        for (input, normalised, original) in [
            ("0.9.9", "0.9.9", "0.9.9"),
            ("v1.2.3", "1.2.3", "v1.2.3"),
            ("1", "1.0.0", "1.0.0"),
            ("v1.2", "1.2.0", "v1.2.0"),
            ("01.2.3", "1.2.3", "01.2.3"),
            ("v1.02", "1.2.0", "v1.02.0"),
            ("1.2.003-rc.1+b", "1.2.3-rc.1+b", "1.2.003-rc.1+b"),
            (" 1.2.3\t", "1.2.3", "1.2.3"),
            ("1.0.0-pre+build", "1.0.0-pre+build", "1.0.0-pre+build"),
            ("0.17.0-rc.8", "0.17.0-rc.8", "0.17.0-rc.8"),
            ("1.2-beta", "1.2.0-beta", "1.2.0-beta"),
            ("1.2.3+a.b-c", "1.2.3+a.b-c", "1.2.3+a.b-c"),
        ] {
            let version = parse(input);
            assert_eq!(version.to_string(), normalised, "{input}");
            assert_eq!(version.original(), original, "{input}");
        }
    }

    #[test]
    fn rejects_what_duat_rejected() {
        for input in [
            "",
            "x1.2.3",
            "1.2.3.4",
            "1..3",
            "1.2.a",
            "a.b.c",
            "1.2.3-",
            "1.2.3+",
            "1.2.3-a..b",
            "V1.2.3",
            "1.2.3-é",
        ] {
            assert!(Version::parse(input).is_err(), "{input} should be rejected");
        }
    }

    #[test]
    fn parse_error_names_the_text() {
        let error = Version::parse("1.x").err();
        assert_eq!(
            error.map(|error| error.to_string()),
            Some(
                "'1.x' is not a semantic version: 'x' is not a number (expected MAJOR.MINOR.PATCH)"
                    .to_owned()
            )
        );
    }

    #[test]
    fn bumps_follow_duat() {
        let bumped = |text: &str, bump: fn(&Version) -> Result<Version, OverflowError>| {
            bump(&parse(text)).map(|version| version.original())
        };
        assert_eq!(
            bumped("1.2.3-x+m", Version::bump_major),
            Ok("2.0.0".to_owned())
        );
        assert_eq!(
            bumped("1.2.3-x+m", Version::bump_minor),
            Ok("1.3.0".to_owned())
        );
        assert_eq!(
            bumped("1.2.3-x+m", Version::bump_patch),
            Ok("1.2.3".to_owned())
        );
        assert_eq!(
            bumped("1.2.3+m", Version::bump_patch),
            Ok("1.2.4".to_owned())
        );
        assert_eq!(
            bumped("v0.9.9", Version::bump_patch),
            Ok("v0.9.10".to_owned())
        );
        assert_eq!(
            bumped("01.02.03", Version::bump_patch),
            Ok("1.2.4".to_owned())
        );
        assert_eq!(
            parse("01.2.3")
                .with_prerelease("x")
                .map(|version| version.original())
                .ok(),
            Some("1.2.3-x".to_owned())
        );
        assert_eq!(
            parse("1.0.0-pre+build")
                .with_prerelease("main-aaaagipajnu")
                .map(|version| version.original())
                .ok(),
            Some("1.0.0-main-aaaagipajnu+build".to_owned())
        );
    }

    #[test]
    fn bumps_past_the_largest_component_are_errors() {
        let max = u64::MAX;
        let top = parse(&format!("{max}.0.{max}"));
        assert_eq!(
            top.bump_patch().err().map(|error| error.component),
            Some("patch")
        );
        assert_eq!(
            parse(&format!("{max}.0.0"))
                .bump_major()
                .err()
                .map(|error| error.component),
            Some("major")
        );
        assert_eq!(
            parse(&format!("0.{max}.0"))
                .bump_minor()
                .err()
                .map(|error| error.component),
            Some("minor")
        );
        // A pre-release of the largest patch is released without overflow.
        assert_eq!(
            parse(&format!("0.0.{max}-rc.1"))
                .bump_patch()
                .map(|version| version.original()),
            Ok(format!("0.0.{max}"))
        );
        assert_eq!(
            top.bump_minor().map(|version| version.original()),
            Ok(format!("{max}.1.0"))
        );
    }

    proptest! {
        #[test]
        fn bumps_increase_precedence(major in 0_u64..1000, minor in 0_u64..1000, patch in 0_u64..1000, pre in proptest::option::of("[a-z][a-z0-9]{0,6}")) {
            let text = match &pre { Some(pre) => format!("{major}.{minor}.{patch}-{pre}"), None => format!("{major}.{minor}.{patch}") };
            let version = parse(&text);
            for bumped in [version.bump_major(), version.bump_minor(), version.bump_patch()] {
                let bumped = bumped.map_err(|error| TestCaseError::fail(error.to_string()))?;
                prop_assert_eq!(bumped.precedence(&version), Ordering::Greater);
                prop_assert!(bumped.prerelease().is_empty());
                prop_assert!(bumped.build_metadata().is_empty());
            }
            prop_assert_eq!(version.bump_major().map(|bumped| bumped.semver().major), Ok(major + 1));
            prop_assert_eq!(version.bump_minor().map(|bumped| bumped.semver().minor), Ok(minor + 1));
            prop_assert_eq!(version.bump_minor().map(|bumped| bumped.semver().major), Ok(major));
        }

        #[test]
        fn printing_round_trips(major in 0_u64..100_000, minor in 0_u64..100_000, patch in 0_u64..100_000, v in any::<bool>()) {
            let text = format!("{}{major}.{minor}.{patch}", if v { "v" } else { "" });
            let version = parse(&text);
            prop_assert_eq!(version.original(), text);
            prop_assert_eq!(parse(&version.original()), version);
        }
    }
}
