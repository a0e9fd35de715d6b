//! What counts as a secret, in one place: the names `sgr build` refuses as
//! build args (they stay in the image history) are the names whose values
//! `--print-context` masks, and a password inside a URL
//! (`amqp://user:password@host`) is masked wherever a context or a remote is
//! shown. Two lists drifted apart before; this module is the only one.

use serde_json::Value;

/// What a masked value is replaced with.
pub const MASK: &str = "***";

/// Name endings that mark a secret (`GITHUB_TOKEN`, `DB_PASSWORD`, `GH_PAT`,
/// `AWS_SECRET_ACCESS_KEY` through `KEY`, `GOOGLE_APPLICATION_CREDENTIALS`).
const SECRET_ENDINGS: &[&str] = &[
    "TOKEN",
    "_PAT",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "_KEY",
    "APIKEY",
    "CREDENTIALS",
    "CREDENTIAL",
];

/// Parts that mark a secret anywhere in a name (`AWS_SECRET_ACCESS_KEY`,
/// `TOKEN_FILE` is not one: a file name is not the secret, but `*TOKEN*` still is).
const SECRET_PARTS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "API_KEY",
    "APIKEY",
];

/// Whether a variable (or value) name looks like it holds a secret. Case is
/// ignored; `-` and `.` count as `_`.
///
/// ```
/// use sgr::secrets::secret_name;
/// for name in ["GH_PAT", "GITHUB_TOKEN", "db_password", "AWS_SECRET_ACCESS_KEY", "SSH_KEY", "GOOGLE_APPLICATION_CREDENTIALS", "DOCKER_AUTH"] {
///     assert!(secret_name(name), "{name}");
/// }
/// for name in ["HOME", "USER_ID", "PATH", "KEYBOARD", "MONKEY", "AUTHOR"] {
///     assert!(!secret_name(name), "{name}");
/// }
/// ```
#[must_use]
pub fn secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase().replace(['-', '.'], "_");
    upper == "PAT"
        || SECRET_ENDINGS.iter().any(|ending| upper.ends_with(ending))
        || SECRET_PARTS.iter().any(|part| upper.contains(part))
        || upper
            .split('_')
            .any(|word| matches!(word, "AUTH" | "AUTHORIZATION" | "PAT"))
}

/// `text` with the userinfo of every `scheme://user:password@host` masked:
/// the password becomes `***`, and a userinfo without `:` (a token used as
/// the user name, `https://ghp_x@github.com`) becomes `***` whole.
///
/// ```
/// use sgr::secrets::mask_urls;
/// assert_eq!(mask_urls("amqp://u:pw@h:5672/v"), "amqp://u:***@h:5672/v");
/// assert_eq!(mask_urls("https://ghp_x@github.com/o/r"), "https://***@github.com/o/r");
/// assert_eq!(mask_urls("http://proxy:3128"), "http://proxy:3128");
/// ```
#[must_use]
pub fn mask_urls(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        let (before, after) = rest.split_at(index + 3);
        output.push_str(before);
        let authority_end = after
            .find(|character: char| {
                matches!(character, '/' | '?' | '#') || character.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rsplit_once('@') {
            Some((user_info, host)) => {
                match user_info.split_once(':') {
                    Some((user, _)) => {
                        output.push_str(user);
                        output.push(':');
                        output.push_str(MASK);
                    }
                    None => output.push_str(MASK),
                }
                output.push('@');
                output.push_str(host);
            }
            None => output.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    output.push_str(rest);
    output
}

/// `value` as it may be shown: every string under a secret-looking name
/// replaced by `***`, every other string with its URL passwords masked.
#[must_use]
pub fn masked(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, inner)| {
                    let shown = if secret_name(name) {
                        mask_all(inner)
                    } else {
                        masked(inner)
                    };
                    (name.clone(), shown)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        Value::String(text) => Value::String(mask_urls(text)),
        other => other.clone(),
    }
}

/// Every scalar under a secret name, masked (nested maps keep their shape).
fn mask_all(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(name, inner)| (name.clone(), mask_all(inner)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask_all).collect()),
        Value::Null => Value::Null,
        _ => Value::String(MASK.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_names_of_the_issue_are_secret() {
        for name in [
            "GH_PAT",
            "GITHUB_PAT",
            "GITHUB_TOKEN",
            "NPM_TOKEN",
            "CLIENT_SECRET",
            "DB_PASSWORD",
            "MYSQL_PASSWD",
            "SIGNING_KEY",
            "STRIPE_API_KEY",
            "OPENAI_APIKEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AZURE_CREDENTIAL",
            "SSH_PRIVATE_KEY",
            "github_token",
        ] {
            assert!(secret_name(name), "{name}");
        }
        for name in [
            "HOME", "USER", "USER_ID", "HOME_DIR", "PATH", "KEYS", "PATTERN", "AMQP_URL",
        ] {
            assert!(!secret_name(name), "{name}");
        }
    }

    #[test]
    fn urls_keep_their_shape() {
        assert_eq!(mask_urls("amqp://u:pw@h/vhost"), "amqp://u:***@h/vhost");
        assert_eq!(
            mask_urls("postgres://app:s3cr@t@db:5432/x?sslmode=require"),
            "postgres://app:***@db:5432/x?sslmode=require"
        );
        assert_eq!(
            mask_urls("a http://u:p@x b https://y"),
            "a http://u:***@x b https://y"
        );
        assert_eq!(mask_urls("no url"), "no url");
    }

    #[test]
    fn contexts_are_masked_by_name_and_by_url() {
        let context = json!({
            "Env": {"AMQP_URL": "amqp://u:pw@h/", "GH_PAT": "ghp_x", "HOME": "/root", "HTTPS_PROXY": "http://me:pw@proxy:3128"},
            "git": {"url": "https://github.com/o/r"},
            "api_token": {"nested": "x"},
        });
        assert_eq!(
            masked(&context),
            json!({
                "Env": {"AMQP_URL": "amqp://u:***@h/", "GH_PAT": "***", "HOME": "/root", "HTTPS_PROXY": "http://me:***@proxy:3128"},
                "git": {"url": "https://github.com/o/r"},
                "api_token": {"nested": "***"},
            })
        );
    }
}
