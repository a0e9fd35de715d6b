//! `experiment.pythonenv` and `config.pip` entries reach pip's command line.
//! Anything but a PEP 508 requirement specifier would make pip do what the
//! runner never meant: `--requirement=/etc/shadow` is an option that makes
//! pip read (and print) a file as the runner's user, `./dir` or `~/x`
//! installs from the runner's disk, so does a bare wheel or archive name
//! (`x-1.0-py3-none-any.whl`, found in pip's working directory), and a
//! URL fetches code from anywhere.
//! So an entry is checked here as a specifier (name, extras, version
//! specifiers, marker), and URLs pass only when the operator's policy
//! allows them.

/// What an operator allows in requirement entries beyond plain specifiers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Accept `name @ https://…` and bare `https://…`, `git+https://…`
    /// URLs (never `file:`, which is a path on the runner's disk).
    pub allow_urls: bool,
}

/// URL schemes accepted under [`Policy::allow_urls`].
const URL_SCHEMES: [&str; 5] = ["https", "http", "git+https", "git+http", "git+ssh"];

/// Endings of wheel and archive file names: pip installs such a name from
/// a file in its working directory, not from the index.
const ARCHIVE_SUFFIXES: [&str; 8] = [
    ".whl", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".zip", ".tar", ".egg",
];

/// Version comparison operators, longest first.
const OPERATORS: [&str; 8] = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"];

/// Why `entry` is not an acceptable requirement, or `Ok` (a blank entry is
/// acceptable: it is ignored).
pub(crate) fn check(entry: &str, policy: Policy) -> Result<(), &'static str> {
    let text = entry.trim();
    if text.is_empty() {
        return Ok(());
    }
    if text.chars().any(char::is_control) {
        return Err("it holds a control character");
    }
    if text.starts_with('-') {
        return Err("it is a pip option");
    }
    if text.starts_with(['.', '~', '/', '\\']) {
        return Err("it is a path");
    }
    if text.starts_with('#') {
        return Err("it is a comment");
    }
    let before_marker = text.split(';').next().unwrap_or_default();
    let at = text.find('@');
    let bare_url = match (before_marker.find(':'), at) {
        (Some(colon), Some(at)) => colon < at,
        (Some(_), None) => true,
        (None, _) => false,
    };
    if bare_url {
        // `git+https://…`, `https://…/x.whl`, `file:…`.
        if !policy.allow_urls {
            return Err("it is a URL (URLs are refused unless the runner allows them)");
        }
        let (url, marker) = split_url(text);
        check_url(url)?;
        return check_marker(marker);
    }
    let head = at.map_or(text, |at| &text[..at]);
    if head.contains(['/', '\\']) {
        return Err("it is a path");
    }
    let (name, rest) = take_name(text).ok_or("it does not start with a package name")?;
    if name.is_empty() {
        return Err("it does not start with a package name");
    }
    let lowercase = name.to_ascii_lowercase();
    if ARCHIVE_SUFFIXES
        .iter()
        .any(|suffix| lowercase.ends_with(suffix))
    {
        return Err("it is a wheel or archive file name (requirement specifiers only)");
    }
    let rest = take_extras(rest.trim_start())?.trim_start();
    if let Some(after_at) = rest.strip_prefix('@') {
        if !policy.allow_urls {
            return Err("it is a URL (URLs are refused unless the runner allows them)");
        }
        let (url, marker) = split_url(after_at.trim_start());
        check_url(url)?;
        return check_marker(marker);
    }
    let (specifiers, marker) = match rest.split_once(';') {
        Some((specifiers, marker)) => (specifiers, Some(marker)),
        None => (rest, None),
    };
    check_specifiers(specifiers.trim())?;
    check_marker(marker)
}

/// The distribution name (`[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?`) and
/// what follows it.
fn take_name(text: &str) -> Option<(&str, &str)> {
    let end = text
        .find(|character: char| !(character.is_ascii_alphanumeric() || "._-".contains(character)))
        .unwrap_or(text.len());
    let name = &text[..end];
    let valid = name.starts_with(|character: char| character.is_ascii_alphanumeric())
        && name.ends_with(|character: char| character.is_ascii_alphanumeric());
    valid.then_some((name, &text[end..]))
}

/// Skips `[extra, other]`, checking each extra is a name.
fn take_extras(text: &str) -> Result<&str, &'static str> {
    let Some(inside) = text.strip_prefix('[') else {
        return Ok(text);
    };
    let (extras, rest) = inside
        .split_once(']')
        .ok_or("its extras have no closing ']'")?;
    for extra in extras
        .split(',')
        .map(str::trim)
        .filter(|extra| !extra.is_empty())
    {
        match take_name(extra) {
            Some((_, "")) => {}
            _ => return Err("an extra is not a name"),
        }
    }
    Ok(rest)
}

/// `>=1.0,<2`, `==1.4.*`, `(>=1.0)` or nothing.
fn check_specifiers(text: &str) -> Result<(), &'static str> {
    if text.is_empty() {
        return Ok(());
    }
    let text = match text.strip_prefix('(') {
        Some(inner) => inner
            .strip_suffix(')')
            .ok_or("its version specifiers have no closing ')'")?
            .trim(),
        None => text,
    };
    for specifier in text.split(',').map(str::trim) {
        let operator = OPERATORS
            .iter()
            .find(|operator| specifier.starts_with(**operator))
            .ok_or("it is not a name followed by version specifiers (such as ==1.2)")?;
        let version = specifier[operator.len()..].trim();
        let valid = !version.is_empty()
            && version
                .chars()
                .all(|character| character.is_ascii_alphanumeric() || ".*+!_-".contains(character));
        if !valid {
            return Err("a version is not a version");
        }
    }
    Ok(())
}

/// After `; `: an environment marker such as `python_version < "3.8"`.
fn check_marker(marker: Option<&str>) -> Result<(), &'static str> {
    let Some(marker) = marker else {
        return Ok(());
    };
    let marker = marker.trim();
    let valid = !marker.is_empty()
        && marker.chars().all(|character| {
            character.is_ascii_alphanumeric()
                || character == ' '
                || "\"'._-<>=!~()*+,".contains(character)
        });
    if valid {
        Ok(())
    } else {
        Err("its marker is not an environment marker")
    }
}

/// A URL runs to the first whitespace; a marker may follow after `;`.
fn split_url(text: &str) -> (&str, Option<&str>) {
    let end = text.find(char::is_whitespace).unwrap_or(text.len());
    let (url, rest) = text.split_at(end);
    let rest = rest.trim_start();
    if rest.is_empty() {
        (url, None)
    } else {
        // Anything after the URL but a marker is refused by check_marker.
        (url, Some(rest.strip_prefix(';').unwrap_or("\u{0}")))
    }
}

fn check_url(url: &str) -> Result<(), &'static str> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or("it is a URL of a kind the runner refuses")?;
    let scheme = scheme.to_ascii_lowercase();
    if !URL_SCHEMES.contains(&scheme.as_str()) {
        return Err(
            "it is a URL of a kind the runner refuses (only http, https, git+http, git+https, git+ssh)",
        );
    }
    if rest.is_empty() || rest.starts_with('/') {
        return Err("its URL has no host");
    }
    Ok(())
}
