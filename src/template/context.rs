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
    /// Which parts of the git metadata were gathered (the others are left out).
    pub needs: Needs,
}

/// Which of the costly parts of the context a template uses, so that only
/// those are gathered: `git.dirty` is a status scan of the whole work tree,
/// the tag a walk over every tag, the remote a configuration read. Found by
/// scanning the names inside `{{ }}` and `{% %}` (both dialects); a template
/// that uses the whole context or a whole map (`{{ . }}`, `{{ toJson .git }}`,
/// `{% for k, v in git %}`) needs all of it. `--print-context` needs all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // one flag per part, read independently
pub struct Needs {
    /// `git.branch*`, `duat.gitBranch`.
    pub branch: bool,
    /// `git.hash`, `git.short_hash`, `duat.gitHash`.
    pub commit: bool,
    /// `git.tag`, `duat.gitTag`.
    pub tag: bool,
    /// `git.url`, `git.https_url`, `git.host`, `git.owner`, `git.repository`, `duat.gitURL`.
    pub remote: bool,
    /// `git.dirty`.
    pub dirty: bool,
    /// `user.*`, `duat.userName`, `duat.userID`, `duat.userGroupID`.
    pub user: bool,
}

impl Default for Needs {
    fn default() -> Self {
        Self::ALL
    }
}

impl Needs {
    /// Everything.
    pub const ALL: Self = Self {
        branch: true,
        commit: true,
        tag: true,
        remote: true,
        dirty: true,
        user: true,
    };

    /// Nothing costly.
    pub const NONE: Self = Self {
        branch: false,
        commit: false,
        tag: false,
        remote: false,
        dirty: false,
        user: false,
    };

    /// What the template `text` (either dialect) uses.
    ///
    /// ```
    /// use sgr::template::context::Needs;
    /// let needs = Needs::of_template("name: {{ .duat.gitBranch }}-{{ expandenv \"$USER\" }}");
    /// assert!(needs.branch && !needs.dirty && !needs.tag && !needs.user);
    /// assert_eq!(Needs::of_template("{{ toJson . }}"), Needs::ALL);
    /// assert!(Needs::of_template("{% for k, v in git %}{% endfor %}").dirty);
    /// ```
    #[must_use]
    pub fn of_template(text: &str) -> Self {
        let mut needs = Self::NONE;
        let mut rest = text;
        while let Some(start) = rest.find(['{']) {
            let after = &rest[start + 1..];
            let close = match after.chars().next() {
                Some('{') => "}}",
                Some('%') => "%}",
                _ => {
                    rest = after;
                    continue;
                }
            };
            let body = &after[1..];
            let end = body.find(close).unwrap_or(body.len());
            needs.add_action(&body[..end]);
            if needs == Self::ALL {
                return needs;
            }
            rest = &body[end..];
        }
        needs
    }

    fn add_action(&mut self, body: &str) {
        let characters: Vec<char> = body.chars().collect();
        let identifier = |character: char| character.is_ascii_alphanumeric() || character == '_';
        let mut index = 0;
        while index < characters.len() {
            let character = characters[index];
            match character {
                '"' | '\'' | '`' => {
                    index += 1;
                    while index < characters.len() && characters[index] != character {
                        if characters[index] == '\\' && character != '`' {
                            index += 1;
                        }
                        index += 1;
                    }
                    index += 1;
                }
                '.' | '$' => {
                    let previous = index.checked_sub(1).map(|at| characters[at]);
                    let next = characters.get(index + 1).copied();
                    let attached = previous.is_some_and(|c| identifier(c) || c == ')' || c == ']');
                    if !attached && !next.is_some_and(|c| identifier(c) || c == '.') {
                        *self = Self::ALL;
                        return;
                    }
                    index += 1;
                }
                character if character.is_ascii_alphabetic() || character == '_' => {
                    let start = index;
                    while index < characters.len() && identifier(characters[index]) {
                        index += 1;
                    }
                    let word: String = characters[start..index].iter().collect();
                    let field_follows = characters.get(index) == Some(&'.')
                        && characters
                            .get(index + 1)
                            .is_some_and(|c| c.is_ascii_alphabetic() || *c == '_');
                    self.add_name(&word, field_follows);
                }
                _ => index += 1,
            }
        }
    }

    fn add_name(&mut self, word: &str, field_follows: bool) {
        match word {
            "__tera_context" => *self = Self::ALL,
            "git" if !field_follows => {
                *self = Self {
                    user: self.user,
                    ..Self::ALL
                };
            }
            "duat" if !field_follows => {
                *self = Self {
                    dirty: self.dirty,
                    ..Self::ALL
                };
            }
            "branch" | "branch_slug" | "branch_dns" | "gitBranch" => self.branch = true,
            "hash" | "short_hash" | "gitHash" => self.commit = true,
            "tag" | "gitTag" => self.tag = true,
            "url" | "https_url" | "host" | "owner" | "repository" | "gitURL" => self.remote = true,
            "dirty" => self.dirty = true,
            "user" | "userName" | "userID" | "userGroupID" => self.user = true,
            _ => {}
        }
    }
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
        let needs = inputs.needs;
        if needs.tag {
            duat.insert(
                "gitTag".into(),
                json!(metadata.tag.clone().unwrap_or_default()),
            );
        }
        if needs.commit {
            duat.insert(
                "gitHash".into(),
                json!(metadata.commit.clone().unwrap_or_default()),
            );
        }
        if needs.branch {
            duat.insert("gitBranch".into(), json!(branch));
        }
        if needs.remote {
            duat.insert("gitURL".into(), json!(url));
        }
        duat.insert(
            "gitDir".into(),
            json!(metadata.top_dir.display().to_string()),
        );
        let remote = metadata.remote.as_ref();
        if needs.branch {
            git.insert("branch".into(), json!(branch));
            git.insert(
                "branch_slug".into(),
                json!(metadata.branch_slug.clone().unwrap_or_default()),
            );
            git.insert(
                "branch_dns".into(),
                json!(metadata.branch_dns_label.clone().unwrap_or_default()),
            );
        }
        if needs.commit {
            git.insert(
                "hash".into(),
                json!(metadata.commit.clone().unwrap_or_default()),
            );
            git.insert(
                "short_hash".into(),
                json!(metadata.short_commit.clone().unwrap_or_default()),
            );
        }
        if needs.tag {
            git.insert(
                "tag".into(),
                json!(metadata.tag.clone().unwrap_or_default()),
            );
        }
        if needs.remote {
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
        }
        git.insert("dir".into(), json!(metadata.top_dir.display().to_string()));
        if needs.dirty {
            git.insert("dirty".into(), json!(metadata.dirty));
        }
        if needs.user {
            duat.insert("userName".into(), json!(metadata.user.name));
            duat.insert("userID".into(), json!(metadata.user.uid.to_string()));
            duat.insert("userGroupID".into(), json!(metadata.user.gid.to_string()));
            user.insert("name".into(), json!(metadata.user.name));
            user.insert("uid".into(), json!(metadata.user.uid.to_string()));
            user.insert("gid".into(), json!(metadata.user.gid.to_string()));
        }
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

/// How deeply user values may nest (`--set a.b.c…` keys, values files): far
/// beyond any real configuration, far below what would exhaust the stack of
/// the recursive steps that follow (merging, rendering, dropping).
pub const MAX_DEPTH: usize = 64;

/// How deeply `value` nests (a scalar is 0, `{"a": 1}` is 1), counted without recursion.
#[must_use]
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0_usize)];
    while let Some((current, level)) = pending.pop() {
        deepest = deepest.max(level);
        match current {
            Value::Object(map) => pending.extend(map.values().map(|inner| (inner, level + 1))),
            Value::Array(items) => pending.extend(items.iter().map(|inner| (inner, level + 1))),
            _ => {}
        }
    }
    deepest
}

/// A bad user value.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ValuesError {
    /// A `--set` key with more levels than [`MAX_DEPTH`].
    #[error("the key of '{}…' nests {levels} levels deep; the limit is {MAX_DEPTH}", .pair.chars().take(40).collect::<String>())]
    TooDeep {
        /// The entry.
        pair: String,
        /// Its levels.
        levels: usize,
    },
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
    let levels = key.split('.').count();
    if levels > MAX_DEPTH {
        return Err(ValuesError::TooDeep {
            pair: pair.to_owned(),
            levels,
        });
    }
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
    fn nesting_is_bounded() {
        let mut values = Map::new();
        let deep = format!("{}=1", vec!["a"; MAX_DEPTH + 1].join("."));
        assert!(matches!(
            apply_set(&mut values, &deep),
            Err(ValuesError::TooDeep { levels, .. }) if levels == MAX_DEPTH + 1
        ));
        let limit = format!("{}=1", vec!["a"; MAX_DEPTH].join("."));
        assert_eq!(apply_set(&mut values, &limit), Ok(()));
        assert_eq!(depth(&Value::Object(values)), MAX_DEPTH);
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [1]})), 2);
    }

    #[test]
    fn needs_follow_the_names_a_template_uses() {
        let build_yaml = "name: build-{{ expandenv \"$USER\" }}\n  RUNNER_BUILD_LOG: \"{{.duat.version}}-build.log\"\n  image: x/{{.duat.module}}:{{.duat.gitBranch | replace \"_\" \"-\" }}";
        assert_eq!(
            Needs::of_template(build_yaml),
            Needs {
                branch: true,
                ..Needs::NONE
            }
        );
        assert_eq!(
            Needs::of_template("{{ git.dirty }}"),
            Needs {
                dirty: true,
                ..Needs::NONE
            }
        );
        assert_eq!(
            Needs::of_template("{{ .git.url }} {{ user.name }}"),
            Needs {
                remote: true,
                user: true,
                ..Needs::NONE
            }
        );
        assert_eq!(Needs::of_template("{{ \"git\" }} {{ 1.5 }}"), Needs::NONE);
        for whole in [
            "{{ . }}",
            "{{ toJson $ }}",
            "{{ __tera_context }}",
            "{{ range $k, $v := . }}{{ end }}",
        ] {
            assert_eq!(Needs::of_template(whole), Needs::ALL, "{whole}");
        }
        assert!(Needs::of_template("{{ index .git \"dirty\" }}").dirty);
        assert!(Needs::of_template("{{ git | json_encode }}").dirty);
        assert!(Needs::of_template("{% for k, v in duat %}{% endfor %}").tag);
        assert!(!Needs::of_template("{% for k, v in duat %}{% endfor %}").dirty);
    }

    #[test]
    fn unneeded_parts_are_left_out() {
        let inputs = ContextInputs {
            module: "m".into(),
            git: Some(GitMetadata {
                top_dir: "/r".into(),
                branch: None,
                branch_slug: None,
                branch_dns_label: None,
                commit: None,
                short_commit: None,
                tag: None,
                remote: None,
                dirty: true,
                user: crate::git::CurrentUser::default(),
            }),
            needs: Needs {
                branch: true,
                ..Needs::NONE
            },
            ..ContextInputs::default()
        };
        let context = build(&inputs);
        assert_eq!(context["git"]["branch"], json!(""));
        assert!(context["git"].get("dirty").is_none());
        assert!(context["duat"].get("gitHash").is_none());
        assert_eq!(
            build(&ContextInputs {
                needs: Needs::ALL,
                ..inputs
            })["git"]["dirty"],
            json!(true)
        );
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
