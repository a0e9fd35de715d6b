//! The variables every template sees, in both dialects, built from git
//! metadata, the version, the user, the environment and user values. Pure:
//! callers gather the inputs.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use thiserror::Error;

use crate::git::GitMetadata;
use crate::version::Version;

/// Everything the context is made of.
#[derive(Debug, Default)]
pub struct ContextInputs {
    /// The version from the version file, when there is one.
    pub version: Option<Version>,
    /// The module name, already scrubbed (see [`scrub_module`]).
    pub module: String,
    /// Git metadata, when inside a repository.
    pub git: Option<GitMetadata>,
    /// The process environment (`Env`).
    pub environment: BTreeMap<String, String>,
    /// User values: top-level variables merged over the rest, maps key by key.
    pub values: Map<String, Value>,
    /// The default ECR registry host, when a template asked for it and AWS answered.
    pub aws_ecr: Option<String>,
}

/// duat's docker-safe module name: every code point outside `[0-9A-Za-z._-]`
/// becomes `-`, then everything is lower-cased.
///
/// ```
/// assert_eq!(sgr::template::context::scrub_module("My Project"), "my-project");
/// assert_eq!(sgr::template::context::scrub_module("Café"), "caf-");
/// ```
#[must_use]
pub fn scrub_module(name: &str) -> String {
    name.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() || matches!(character, '.' | '_' | '-') {
                character
            } else {
                '-'
            }
        })
        .collect::<String>()
        .to_lowercase()
}

/// The context as one JSON object.
#[must_use]
#[allow(clippy::too_many_lines)] // one flat list of variables reads best in one place
pub fn build(inputs: &ContextInputs) -> Value {
    let mut duat = Map::new();
    let mut git = Map::new();
    let mut user = Map::new();
    if let Some(version) = &inputs.version {
        duat.insert("version".into(), json!(version.to_string()));
    }
    duat.insert("module".into(), json!(inputs.module));
    if let Some(metadata) = &inputs.git {
        let branch = metadata
            .branch
            .as_ref()
            .map(|branch| branch.name.clone())
            .unwrap_or_default();
        let url = metadata
            .remote
            .as_ref()
            .map(|remote| remote.raw.clone())
            .unwrap_or_default();
        duat.insert(
            "gitTag".into(),
            json!(metadata.tag.clone().unwrap_or_default()),
        );
        duat.insert(
            "gitHash".into(),
            json!(metadata.commit.clone().unwrap_or_default()),
        );
        duat.insert("gitBranch".into(), json!(branch));
        duat.insert("gitURL".into(), json!(url));
        duat.insert(
            "gitDir".into(),
            json!(metadata.top_dir.display().to_string()),
        );
        let remote = metadata.remote.as_ref();
        git.insert("branch".into(), json!(branch));
        git.insert(
            "branch_slug".into(),
            json!(metadata.branch_slug.clone().unwrap_or_default()),
        );
        git.insert(
            "branch_dns".into(),
            json!(metadata.branch_dns_label.clone().unwrap_or_default()),
        );
        git.insert(
            "hash".into(),
            json!(metadata.commit.clone().unwrap_or_default()),
        );
        git.insert(
            "short_hash".into(),
            json!(metadata.short_commit.clone().unwrap_or_default()),
        );
        git.insert(
            "tag".into(),
            json!(metadata.tag.clone().unwrap_or_default()),
        );
        git.insert("url".into(), json!(url));
        git.insert(
            "https_url".into(),
            json!(
                remote
                    .and_then(crate::git::RemoteUrl::https)
                    .unwrap_or_default()
            ),
        );
        git.insert(
            "host".into(),
            json!(remote.map(|remote| remote.host.clone()).unwrap_or_default()),
        );
        git.insert(
            "owner".into(),
            json!(remote.and_then(|remote| remote.owner()).unwrap_or_default()),
        );
        git.insert(
            "repository".into(),
            json!(
                remote
                    .and_then(|remote| remote.repository())
                    .unwrap_or_default()
            ),
        );
        git.insert("dir".into(), json!(metadata.top_dir.display().to_string()));
        git.insert("dirty".into(), json!(metadata.dirty));
        duat.insert("userName".into(), json!(metadata.user.name));
        duat.insert("userID".into(), json!(metadata.user.uid.to_string()));
        duat.insert("userGroupID".into(), json!(metadata.user.gid.to_string()));
        user.insert("name".into(), json!(metadata.user.name));
        user.insert("uid".into(), json!(metadata.user.uid.to_string()));
        user.insert("gid".into(), json!(metadata.user.gid.to_string()));
    }
    if let Some(registry) = &inputs.aws_ecr {
        duat.insert("awsecr".into(), json!(registry));
    }
    let mut context = Map::new();
    context.insert("duat".into(), Value::Object(duat));
    context.insert("git".into(), Value::Object(git));
    context.insert("user".into(), Value::Object(user));
    context.insert("module".into(), json!(inputs.module));
    if let Some(version) = &inputs.version {
        let semver = version.semver();
        context.insert(
            "version".into(),
            json!({
                "full": version.to_string(),
                "original": version.original(),
                "major": semver.major.to_string(),
                "minor": semver.minor.to_string(),
                "patch": semver.patch.to_string(),
                "pre": version.prerelease(),
                "build": version.build_metadata(),
            }),
        );
    }
    context.insert("Env".into(), json!(inputs.environment));
    // User values win, key by key: --set git.hash=x replaces only git.hash.
    merge(&mut context, inputs.values.clone());
    Value::Object(context)
}

/// A bad user value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValuesError {
    /// A `-values` entry or `--set` without `=`.
    #[error("'{pair}' has no '=': values are KEY=VALUE")]
    NoEquals {
        /// The entry.
        pair: String,
    },
    /// An empty key.
    #[error("'{pair}' has an empty key")]
    EmptyKey {
        /// The entry.
        pair: String,
    },
}

fn split_pair(pair: &str) -> Result<(String, String), ValuesError> {
    let (key, value) = pair.split_once('=').ok_or_else(|| ValuesError::NoEquals {
        pair: pair.to_owned(),
    })?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ValuesError::EmptyKey {
            pair: pair.to_owned(),
        });
    }
    let unquoted = ['"', '\'']
        .iter()
        .find_map(|quote| {
            value
                .strip_prefix(*quote)
                .and_then(|inner| inner.strip_suffix(*quote))
        })
        .unwrap_or(value);
    Ok((key.to_owned(), unquoted.to_owned()))
}

/// duat's `-values k=v,k2=v2`: split on `,`, then on the first `=`; a value
/// in matching quotes is unquoted. Keys are top-level variables.
///
/// # Errors
/// An entry without `=`, or with an empty key.
pub fn parse_duat_values(text: &str) -> Result<Vec<(String, String)>, ValuesError> {
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(split_pair)
        .collect()
}

/// `--set a.b=v`: like a `-values` entry, with dots nesting maps.
///
/// # Errors
/// No `=`, or an empty key.
pub fn apply_set(values: &mut Map<String, Value>, pair: &str) -> Result<(), ValuesError> {
    let (key, value) = split_pair(pair)?;
    let mut path: Vec<&str> = key.split('.').collect();
    if path.iter().any(|part| part.is_empty()) {
        return Err(ValuesError::EmptyKey {
            pair: pair.to_owned(),
        });
    }
    let last = path.pop().unwrap_or_default();
    let mut target = values;
    for part in path {
        let entry = target
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(map) = entry else {
            return Ok(());
        };
        target = map;
    }
    target.insert(last.to_owned(), Value::String(value));
    Ok(())
}

/// Merge `overlay` into `base`, maps recursively, anything else replaced.
pub fn merge(base: &mut Map<String, Value>, overlay: Map<String, Value>) {
    for (key, value) in overlay {
        match (base.get_mut(&key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => merge(existing, incoming),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duat_values() {
        assert_eq!(
            parse_duat_values("Namespace=ci,Image='a=b',Quoted=\"x\",Empty="),
            Ok(vec![
                ("Namespace".to_owned(), "ci".to_owned()),
                ("Image".to_owned(), "a=b".to_owned()),
                ("Quoted".to_owned(), "x".to_owned()),
                ("Empty".to_owned(), String::new()),
            ])
        );
        assert_eq!(
            parse_duat_values("ok=1,broken"),
            Err(ValuesError::NoEquals {
                pair: "broken".to_owned()
            })
        );
        assert_eq!(
            parse_duat_values("=x"),
            Err(ValuesError::EmptyKey {
                pair: "=x".to_owned()
            })
        );
    }

    #[test]
    fn set_nests_and_merge_overlays() {
        let mut values = Map::new();
        assert_eq!(apply_set(&mut values, "image.tag=1.0"), Ok(()));
        assert_eq!(apply_set(&mut values, "image.name=runner"), Ok(()));
        assert_eq!(
            Value::Object(values.clone()),
            json!({"image": {"tag": "1.0", "name": "runner"}})
        );
        let overlay = json!({"image": {"tag": "2.0"}, "replicas": 3});
        if let Value::Object(overlay) = overlay {
            merge(&mut values, overlay);
        }
        assert_eq!(
            Value::Object(values),
            json!({"image": {"tag": "2.0", "name": "runner"}, "replicas": 3})
        );
    }

    #[test]
    fn values_win_and_missing_parts_are_absent() {
        let mut values = Map::new();
        values.insert("duat".into(), json!("overridden"));
        let inputs = ContextInputs {
            module: "studio-go-runner".into(),
            values,
            ..ContextInputs::default()
        };
        let context = build(&inputs);
        assert_eq!(context["duat"], json!("overridden"));
        assert_eq!(context["module"], json!("studio-go-runner"));
        assert!(context.get("version").is_none());
    }

    #[test]
    fn module_vectors() {
        for (name, scrubbed) in [
            ("studio-go-runner", "studio-go-runner"),
            ("My Project", "my-project"),
            ("runner_v2", "runner_v2"),
            ("Café", "caf-"),
        ] {
            assert_eq!(scrub_module(name), scrubbed);
        }
    }
}
