//! What `sgr build` will build: images from `sgr.toml` or studio-go-runner's
//! conventions, with tags, build args and labels resolved. Pure: the caller
//! says which files exist and supplies the metadata.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::version::branch;

/// `sgr.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Organisation used in default names and `{org}` (default `leafai`).
    pub org: Option<String>,
    /// Template dialect of every Dockerfile without its own `dialect`
    /// (`tera` or `go`); detected from each file when absent.
    pub dialect: Option<Dialect>,
    /// The images; when absent, the defaults.
    #[serde(default, rename = "image")]
    pub images: Vec<ImageConfig>,
}

/// One `[[image]]` of `sgr.toml`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Repository name without tag, placeholders allowed (`{org}/{module}-build`).
    pub name: String,
    /// Dockerfile template, relative to the git top directory.
    pub dockerfile: PathBuf,
    /// Build context, relative to the git top directory (default: the Dockerfile's directory).
    pub context: Option<PathBuf>,
    /// Tag patterns (default `["{branch}"]`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// More references for the same image, whole (`localhost:32000/{org}/x:{branch}`,
    /// `quay.io/{org}/x:{version}`; no tag means `latest`): tagged locally, never pushed by
    /// `sgr push`.
    #[serde(default)]
    pub extra_tags: Vec<String>,
    /// Images of the same run (names as in `name`, placeholders allowed) that must be built
    /// before this one, e.g. the image its `FROM` names.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Build args; values may use placeholders.
    #[serde(default)]
    pub build_args: BTreeMap<String, String>,
    /// Multi-stage target.
    pub target: Option<String>,
    /// Template dialect of the Dockerfile: `tera`, `go`, or detected when absent.
    pub dialect: Option<Dialect>,
    /// Repository in remote registries, placeholders allowed (default: the
    /// name in studio-go-runner's `{org}/{module}/<component>` layout).
    pub remote: Option<String>,
    /// Template variables for this image's Dockerfile (placeholders allowed in values),
    /// beside the shared context: `[image.values]` `cuda_base = "…"`.
    #[serde(default)]
    pub values: BTreeMap<String, String>,
}

pub use crate::template::dialect::Dialect;

/// Values for `{placeholders}`.
#[derive(Clone, Debug, Default)]
pub struct Naming {
    /// `{org}`.
    pub org: String,
    /// `{module}`.
    pub module: String,
    /// `{branch}`: the branch as build.sh tagged it.
    pub branch: String,
    /// `{version}`: the version as a valid tag.
    pub version: String,
    /// `{short_hash}`.
    pub short_hash: String,
    /// `{user}`, `{uid}`, `{gid}`.
    pub user: String,
    /// Numeric user id.
    pub uid: String,
    /// Numeric group id.
    pub gid: String,
}

/// A bad configuration.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    /// A `{name}` that is not a placeholder.
    #[error(
        "unknown placeholder {{{placeholder}}} in '{text}' (known: {{org}} {{module}} {{branch}} {{version}} {{short_hash}} {{user}} {{uid}} {{gid}})"
    )]
    UnknownPlaceholder {
        /// The placeholder.
        placeholder: String,
        /// Where.
        text: String,
    },
    /// A build arg that would put a secret into the image history.
    #[error("build arg {name} would store a secret in the image history (it {reason})")]
    SecretBuildArg {
        /// The arg.
        name: String,
        /// Why it looks secret.
        reason: String,
    },
    /// Two images with the same name.
    #[error("two images are named {name}")]
    DuplicateImage {
        /// The name.
        name: String,
    },
    /// A name or tag Docker would refuse.
    #[error("'{reference}' is not a valid image reference: {reason}")]
    InvalidReference {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// `depends_on` names an image that is not in the file.
    #[error("image {image} depends on {dependency}, which is not an image of the plan (images: {})", .known.join(", "))]
    UnknownDependency {
        /// The image.
        image: String,
        /// The name in its `depends_on`.
        dependency: String,
        /// The plan's names.
        known: Vec<String>,
    },
    /// `depends_on` goes round in a circle.
    #[error("depends_on forms a cycle: {}", .cycle.join(" -> "))]
    DependencyCycle {
        /// The images of the cycle, the first repeated at the end.
        cycle: Vec<String>,
    },
    /// A name given on the command line is not in the plan.
    #[error("no image {name} in the plan (images: {})", .known.join(", "))]
    UnknownImage {
        /// The name given.
        name: String,
        /// The plan's names.
        known: Vec<String>,
    },
    /// No image to build.
    #[error("nothing to build: no sgr.toml [[image]] and none of Dockerfile, Dockerfile_standalone, Dockerfile_workstation, runner/Dockerfile exists in {}", .top.display())]
    NothingToBuild {
        /// The git top directory.
        top: PathBuf,
    },
}

/// One image of the plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedImage {
    /// Repository name (`leafai/sgr-build`).
    pub name: String,
    /// Full references (`leafai/sgr-build:main`).
    pub tags: Vec<String>,
    /// More full references, tagged after the build but never pushed (`localhost:32000/…`).
    pub extra_tags: Vec<String>,
    /// Names of the images of the plan built before this one.
    pub depends_on: Vec<String>,
    /// The Dockerfile template.
    pub dockerfile: PathBuf,
    /// The context directory.
    pub context: PathBuf,
    /// Build args.
    pub build_args: BTreeMap<String, String>,
    /// OCI labels.
    pub labels: BTreeMap<String, String>,
    /// Target stage.
    pub target: Option<String>,
    /// Dialect, when configured (else detected at render time).
    pub dialect: Option<Dialect>,
    /// Repository in remote registries (`leafai/sgr/build`).
    pub remote: String,
    /// Template variables of its Dockerfile, placeholders expanded.
    pub values: BTreeMap<String, String>,
}

impl PlannedImage {
    /// Every local reference it gets: its tags, then its extra whole references.
    #[must_use]
    pub fn all_references(&self) -> Vec<String> {
        self.tags.iter().chain(&self.extra_tags).cloned().collect()
    }
}

/// Replace `{placeholders}` in `text`.
///
/// # Errors
/// An unknown placeholder.
pub fn expand(text: &str, naming: &Naming) -> Result<String, PlanError> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        output.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            output.push_str(&rest[start..]);
            return Ok(output);
        };
        let name = &rest[start + 1..start + end];
        let value = match name {
            "org" => &naming.org,
            "module" => &naming.module,
            "branch" => &naming.branch,
            "version" => &naming.version,
            "short_hash" => &naming.short_hash,
            "user" => &naming.user,
            "uid" => &naming.uid,
            "gid" => &naming.gid,
            other => {
                return Err(PlanError::UnknownPlaceholder {
                    placeholder: other.to_owned(),
                    text: text.to_owned(),
                });
            }
        };
        output.push_str(value);
        rest = &rest[start + end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

/// The images studio-go-runner's build.sh made, for the files that exist.
#[must_use]
pub fn default_images(exists: &dyn Fn(&Path) -> bool) -> Vec<ImageConfig> {
    let user_args: BTreeMap<String, String> = [
        ("USER", "{user}"),
        ("USER_ID", "{uid}"),
        ("USER_GROUP_ID", "{gid}"),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value.to_owned()))
    .collect();
    let candidates = [
        (
            "{org}/{module}-build",
            "Dockerfile",
            ".",
            "{branch}",
            user_args.clone(),
        ),
        (
            "{org}/{module}-standalone-build",
            "Dockerfile_standalone",
            ".",
            "{branch}",
            BTreeMap::new(),
        ),
        (
            "{org}/{module}-workstation",
            "Dockerfile_workstation",
            ".",
            "{branch}",
            user_args,
        ),
        // The runner image: a Rust build stage compiles the workspace, so its context is the
        // top directory (the top .dockerignore keeps target/ out).
        (
            "{org}/{module}-runner",
            "runner/Dockerfile",
            ".",
            "{version}",
            BTreeMap::new(),
        ),
    ];
    candidates
        .into_iter()
        .filter(|(_, dockerfile, ..)| exists(Path::new(dockerfile)))
        .map(|(name, dockerfile, context, tag, build_args)| ImageConfig {
            name: name.to_owned(),
            dockerfile: PathBuf::from(dockerfile),
            context: Some(PathBuf::from(context)),
            tags: vec![tag.to_owned()],
            extra_tags: Vec::new(),
            depends_on: Vec::new(),
            build_args,
            target: None,
            dialect: None,
            remote: None,
            values: BTreeMap::new(),
        })
        .collect()
}

/// Whether a variable name looks like it holds a secret: [`crate::secrets::secret_name`],
/// the same names `--print-context` masks.
#[must_use]
pub fn secret_looking(name: &str) -> bool {
    crate::secrets::secret_name(name)
}

/// Refuse build args that would land a secret in the image history: a
/// secret-looking name, or a value equal to a secret-looking variable's.
///
/// # Errors
/// The first offending arg.
pub fn check_build_args(
    args: &BTreeMap<String, String>,
    environment: &[(String, String)],
) -> Result<(), PlanError> {
    for (name, value) in args {
        if secret_looking(name) {
            return Err(PlanError::SecretBuildArg {
                name: name.clone(),
                reason: "is named like a secret".to_owned(),
            });
        }
        if let Some((variable, _)) = environment.iter().find(|(variable, secret)| {
            secret_looking(variable) && !secret.is_empty() && secret == value
        }) {
            return Err(PlanError::SecretBuildArg {
                name: name.clone(),
                reason: format!("has the value of {variable}"),
            });
        }
    }
    Ok(())
}

/// Check `name:tag` against Docker's reference grammar: lower-case path
/// components of `[a-z0-9]` joined by `.`, `_`, `__` or `-`, an optional
/// registry host first, a tag of `[A-Za-z0-9_.-]` up to 128 characters.
///
/// # Errors
/// The first rule broken.
pub fn validate_reference(reference: &str) -> Result<(), PlanError> {
    let invalid = |reason: &str| PlanError::InvalidReference {
        reference: reference.to_owned(),
        reason: reason.to_owned(),
    };
    let (name, tag) = match reference.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => (name, Some(tag)),
        _ => (reference, None),
    };
    if let Some(tag) = tag {
        let valid_start = tag
            .chars()
            .next()
            .is_some_and(|first| first.is_ascii_alphanumeric() || first == '_');
        if !valid_start
            || tag.len() > 128
            || !tag.chars().all(|character| {
                character.is_ascii_alphanumeric() || matches!(character, '_' | '.' | '-')
            })
        {
            return Err(invalid(
                "a tag is 1 to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
            ));
        }
    }
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && (components[0].contains(['.', ':']) || components[0] == "localhost")
    {
        components.remove(0);
    }
    for component in components {
        let separators_ok = !component.is_empty()
            && component.starts_with(|character: char| {
                character.is_ascii_lowercase() || character.is_ascii_digit()
            })
            && component.ends_with(|character: char| {
                character.is_ascii_lowercase() || character.is_ascii_digit()
            })
            && component.chars().all(|character| {
                character.is_ascii_lowercase()
                    || character.is_ascii_digit()
                    || matches!(character, '.' | '_' | '-')
            })
            && !component.contains("..")
            && !component.contains("___");
        if !separators_ok {
            return Err(invalid(&format!(
                "'{component}' must be lower-case letters and digits, separated by '.', '_' or '-'"
            )));
        }
    }
    Ok(())
}

/// Resolve the configured (or default) images into the plan.
///
/// # Errors
/// Unknown placeholders, duplicate names, secret build args, nothing to build.
pub fn plan(
    images: &[ImageConfig],
    naming: &Naming,
    labels: &BTreeMap<String, String>,
    extra_args: &BTreeMap<String, String>,
    top: &Path,
) -> Result<Vec<PlannedImage>, PlanError> {
    if images.is_empty() {
        return Err(PlanError::NothingToBuild {
            top: top.to_path_buf(),
        });
    }
    let mut planned: Vec<PlannedImage> = Vec::new();
    for image in images {
        let name = expand(&image.name, naming)?;
        if planned.iter().any(|existing| existing.name == name) {
            return Err(PlanError::DuplicateImage { name });
        }
        let patterns = if image.tags.is_empty() {
            vec!["{branch}".to_owned()]
        } else {
            image.tags.clone()
        };
        let mut tags = Vec::with_capacity(patterns.len());
        for pattern in &patterns {
            let tag = branch::docker_tag(&expand(pattern, naming)?);
            if tag.is_empty() {
                return Err(PlanError::InvalidReference {
                    reference: format!("{name}:"),
                    reason: format!(
                        "the tag pattern '{pattern}' is empty here ({{version}} needs a version file, {{branch}} a branch)"
                    ),
                });
            }
            tags.push(format!("{name}:{tag}"));
        }
        for tag in &tags {
            validate_reference(tag)?;
        }
        let mut extra_tags = Vec::with_capacity(image.extra_tags.len());
        for pattern in &image.extra_tags {
            let reference = whole_reference(&expand(pattern, naming)?);
            validate_reference(&reference)?;
            if !tags.contains(&reference) && !extra_tags.contains(&reference) {
                extra_tags.push(reference);
            }
        }
        let depends_on = image
            .depends_on
            .iter()
            .map(|dependency| expand(dependency, naming))
            .collect::<Result<Vec<_>, _>>()?;
        let mut build_args = BTreeMap::new();
        for (key, value) in &image.build_args {
            build_args.insert(key.clone(), expand(value, naming)?);
        }
        build_args.extend(
            extra_args
                .iter()
                .map(|(key, value)| (key.clone(), value.clone())),
        );
        let context = image.context.clone().unwrap_or_else(|| {
            image
                .dockerfile
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        });
        let remote = match &image.remote {
            Some(pattern) => expand(pattern, naming)?,
            None => crate::registry::remote_repository(&name, &naming.org, &naming.module),
        };
        validate_reference(&remote)?;
        let values = image
            .values
            .iter()
            .map(|(key, value)| Ok((key.clone(), expand(value, naming)?)))
            .collect::<Result<BTreeMap<_, _>, PlanError>>()?;
        planned.push(PlannedImage {
            remote,
            values,
            name,
            tags,
            extra_tags,
            depends_on,
            dockerfile: image.dockerfile.clone(),
            context: if context.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                context
            },
            build_args,
            labels: labels.clone(),
            target: image.target.clone(),
            dialect: image.dialect,
        });
    }
    check_dependencies(&planned)?;
    Ok(planned)
}

/// A whole reference with its tag made valid: `host:5000/a/b:feature/x_y` becomes
/// `host:5000/a/b:feature-x-y`, and one without a tag gets `latest`, as `docker tag` does.
fn whole_reference(reference: &str) -> String {
    let last_component = reference.rfind('/').map_or(0, |slash| slash + 1);
    match reference[last_component..].find(':') {
        Some(colon) => {
            let split = last_component + colon;
            format!(
                "{}:{}",
                &reference[..split],
                branch::docker_tag(&reference[split + 1..])
            )
        }
        None => format!("{reference}:latest"),
    }
}

/// For each image, the indices of the images of `images` it waits for; names of its
/// `depends_on` that are not in `images` (left out by a selection) are not waited for.
#[must_use]
pub fn waits(images: &[PlannedImage]) -> Vec<Vec<usize>> {
    images
        .iter()
        .map(|image| {
            let mut indices: Vec<usize> = image
                .depends_on
                .iter()
                .filter_map(|dependency| images.iter().position(|other| &other.name == dependency))
                .collect();
            indices.sort_unstable();
            indices.dedup();
            indices
        })
        .collect()
}

/// Check every `depends_on`: each names an image of `images`, and none goes round in a circle.
///
/// # Errors
/// The first unknown name, or a cycle (named image by image).
pub fn check_dependencies(images: &[PlannedImage]) -> Result<(), PlanError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    for image in images {
        if let Some(dependency) = image
            .depends_on
            .iter()
            .find(|dependency| !images.iter().any(|other| &other.name == *dependency))
        {
            return Err(PlanError::UnknownDependency {
                image: image.name.clone(),
                dependency: dependency.clone(),
                known: images.iter().map(|other| other.name.clone()).collect(),
            });
        }
    }
    let waits = waits(images);
    // Depth-first, iterative (a long chain must not overflow the stack); meeting an image
    // that is still on the path closes a cycle.
    let mut marks = vec![Mark::New; images.len()];
    for start in 0..images.len() {
        if marks[start] != Mark::New {
            continue;
        }
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some((node, next)) = path.last().copied() {
            let Some(&dependency) = waits[node].get(next) else {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            };
            if let Some(top) = path.last_mut() {
                top.1 += 1;
            }
            match marks[dependency] {
                Mark::New => {
                    marks[dependency] = Mark::OnPath;
                    path.push((dependency, 0));
                }
                Mark::OnPath => {
                    let from = path
                        .iter()
                        .position(|&(index, _)| index == dependency)
                        .unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..]
                        .iter()
                        .map(|&(index, _)| images[index].name.clone())
                        .collect();
                    cycle.push(images[dependency].name.clone());
                    return Err(PlanError::DependencyCycle { cycle });
                }
                Mark::Done => {}
            }
        }
    }
    Ok(())
}

/// The images a command line selects: every one when both lists are empty; else each name of
/// `exact` alone, and each name of `with_dependencies` (`--only`) with everything it depends
/// on, directly or not. The plan's order is kept.
///
/// # Errors
/// A name that is not in the plan.
pub fn select(
    images: Vec<PlannedImage>,
    exact: &[String],
    with_dependencies: &[String],
) -> Result<Vec<PlannedImage>, PlanError> {
    if exact.is_empty() && with_dependencies.is_empty() {
        return Ok(images);
    }
    let position = |name: &String| {
        images
            .iter()
            .position(|image| &image.name == name)
            .ok_or_else(|| PlanError::UnknownImage {
                name: name.clone(),
                known: images.iter().map(|image| image.name.clone()).collect(),
            })
    };
    let mut keep = vec![false; images.len()];
    for name in exact {
        keep[position(name)?] = true;
    }
    let mut expanded = vec![false; images.len()];
    let mut pending = with_dependencies
        .iter()
        .map(position)
        .collect::<Result<Vec<_>, _>>()?;
    while let Some(index) = pending.pop() {
        if std::mem::replace(&mut expanded[index], true) {
            continue;
        }
        keep[index] = true;
        pending.extend(
            images[index]
                .depends_on
                .iter()
                .filter_map(|dependency| images.iter().position(|image| &image.name == dependency)),
        );
    }
    Ok(images
        .into_iter()
        .zip(keep)
        .filter_map(|(image, kept)| kept.then_some(image))
        .collect())
}

/// The dialect of a Dockerfile template: [`crate::template::dialect::detect`].
#[must_use]
pub fn detect_dialect(text: &str) -> Dialect {
    crate::template::dialect::detect(text).dialect
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naming() -> Naming {
        Naming {
            org: "leafai".into(),
            module: "studio-go-runner".into(),
            branch: "feature-197-hybrid".into(),
            version: "0.9.9".into(),
            short_hash: "eaa596f".into(),
            user: "kmutch".into(),
            uid: "1000".into(),
            gid: "1000".into(),
        }
    }

    #[test]
    fn defaults_follow_build_sh() -> Result<(), PlanError> {
        let images = default_images(&|path| path != Path::new("Dockerfile_workstation"));
        let planned = plan(
            &images,
            &naming(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            Path::new("/top"),
        )?;
        let tags: Vec<&str> = planned
            .iter()
            .flat_map(|image| image.tags.iter().map(String::as_str))
            .collect();
        assert_eq!(
            tags,
            [
                "leafai/studio-go-runner-build:feature-197-hybrid",
                "leafai/studio-go-runner-standalone-build:feature-197-hybrid",
                "leafai/studio-go-runner-runner:0.9.9"
            ]
        );
        assert_eq!(
            planned[0].build_args.get("USER_ID").map(String::as_str),
            Some("1000")
        );
        assert_eq!(planned[2].context, PathBuf::from("."));
        assert_eq!(planned[2].remote, "leafai/studio-go-runner/runner");
        assert!(matches!(
            plan(
                &[],
                &naming(),
                &BTreeMap::new(),
                &BTreeMap::new(),
                Path::new("/top")
            ),
            Err(PlanError::NothingToBuild { .. })
        ));
        Ok(())
    }

    #[test]
    fn placeholders_and_errors() {
        assert_eq!(
            expand("{org}/{module}:{branch}-{short_hash}", &naming()).as_deref(),
            Ok("leafai/studio-go-runner:feature-197-hybrid-eaa596f")
        );
        assert!(matches!(
            expand("{nope}", &naming()),
            Err(PlanError::UnknownPlaceholder { .. })
        ));
        let image = ImageConfig {
            name: "x".into(),
            dockerfile: "Dockerfile".into(),
            ..ImageConfig::default()
        };
        assert!(matches!(
            plan(
                &[image.clone(), image],
                &naming(),
                &BTreeMap::new(),
                &BTreeMap::new(),
                Path::new(".")
            ),
            Err(PlanError::DuplicateImage { .. })
        ));
    }

    #[test]
    fn references_follow_docker_rules() {
        for valid in [
            "leafai/sgr-build:main",
            "localhost:32000/leafai/x:1.0",
            "a.b_c__d-e/f:v1.2-rc_1",
            "registry.example.com/x",
        ] {
            assert_eq!(validate_reference(valid), Ok(()), "{valid}");
        }
        for invalid in [
            "leafai/.tmp-build:main",
            "Leafai/x:main",
            "x:-bad",
            "x:",
            "a//b:c",
            "x-:y",
        ] {
            assert!(validate_reference(invalid).is_err(), "{invalid}");
        }
    }

    #[test]
    fn secrets_are_refused_as_build_args() {
        let environment = vec![
            ("GITHUB_TOKEN".to_owned(), "ghp_x".to_owned()),
            ("HOME".to_owned(), "/root".to_owned()),
        ];
        let args = |name: &str, value: &str| {
            [(name.to_owned(), value.to_owned())]
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        };
        assert!(check_build_args(&args("GITHUB_TOKEN", "x"), &environment).is_err());
        assert!(check_build_args(&args("DB_PASSWORD", "x"), &environment).is_err());
        assert!(check_build_args(&args("INNOCENT", "ghp_x"), &environment).is_err());
        assert!(check_build_args(&args("HOME_DIR", "/root"), &environment).is_ok());
    }

    #[test]
    fn dialect_detection() {
        assert_eq!(detect_dialect("LABEL v={{.duat.version}}"), Dialect::Go);
        assert_eq!(
            detect_dialect("ENV L={{ env \"X\" | default \"y\" }}"),
            Dialect::Go
        );
        assert_eq!(detect_dialect("LABEL v={{ version.full }}"), Dialect::Tera);
        assert_eq!(detect_dialect("{#- comment -#}\nFROM x"), Dialect::Tera);
        assert_eq!(detect_dialect("FROM scratch"), Dialect::Tera);
        assert_eq!(detect_dialect("{{ len .list }}"), Dialect::Go);
    }

    fn image(name: &str, depends_on: &[&str]) -> ImageConfig {
        ImageConfig {
            name: name.into(),
            dockerfile: "Dockerfile".into(),
            depends_on: depends_on.iter().map(|name| (*name).to_owned()).collect(),
            ..ImageConfig::default()
        }
    }

    fn plan_of(images: &[ImageConfig]) -> Result<Vec<PlannedImage>, PlanError> {
        plan(
            images,
            &naming(),
            &BTreeMap::new(),
            &BTreeMap::new(),
            Path::new("/top"),
        )
    }

    #[test]
    fn extra_tags_are_whole_references() -> Result<(), PlanError> {
        let mut config = image("{org}/x", &[]);
        config.tags = vec!["{branch}".into(), "latest".into()];
        config.extra_tags = vec![
            "localhost:32000/{org}/x:{branch}".into(),
            "localhost:32000/{org}/x".into(),
            "quay.io/{org}/x:{version}".into(),
            "{org}/x:latest".into(),
        ];
        let planned = plan_of(&[config])?;
        assert_eq!(
            planned[0].tags,
            ["leafai/x:feature-197-hybrid", "leafai/x:latest"]
        );
        assert_eq!(
            planned[0].extra_tags,
            [
                "localhost:32000/leafai/x:feature-197-hybrid",
                "localhost:32000/leafai/x:latest",
                "quay.io/leafai/x:0.9.9"
            ]
        );
        let mut bad = image("x", &[]);
        bad.extra_tags = vec!["Upper/x:1".into()];
        assert!(matches!(
            plan_of(&[bad]),
            Err(PlanError::InvalidReference { .. })
        ));
        Ok(())
    }

    #[test]
    fn dependencies_are_checked() -> Result<(), PlanError> {
        let planned = plan_of(&[
            image("{org}/base", &[]),
            image("dev", &["{org}/base"]),
            image("other", &[]),
            image("top", &["dev", "leafai/base"]),
        ])?;
        assert_eq!(waits(&planned), [vec![], vec![0], vec![], vec![0, 1]]);
        let error = plan_of(&[image("a", &["nope"]), image("b", &[])]);
        assert_eq!(
            error.map_err(|error| error.to_string()),
            Err(
                "image a depends on nope, which is not an image of the plan (images: a, b)"
                    .to_owned()
            )
        );
        let error = plan_of(&[image("a", &["b"]), image("b", &["c"]), image("c", &["b"])]);
        assert_eq!(
            error.map_err(|error| error.to_string()),
            Err("depends_on forms a cycle: b -> c -> b".to_owned())
        );
        assert!(matches!(
            plan_of(&[image("a", &["a"])]),
            Err(PlanError::DependencyCycle { cycle }) if cycle == ["a", "a"]
        ));
        Ok(())
    }

    #[test]
    fn only_takes_dependencies_and_names_are_exact() -> Result<(), PlanError> {
        let planned = plan_of(&[
            image("base", &[]),
            image("dev", &["base"]),
            image("other", &[]),
            image("top", &["dev"]),
        ])?;
        let names = |images: Vec<PlannedImage>| -> Vec<String> {
            images.into_iter().map(|image| image.name).collect()
        };
        assert_eq!(
            names(select(planned.clone(), &[], &["top".into()])?),
            ["base", "dev", "top"]
        );
        assert_eq!(
            names(select(planned.clone(), &["top".into()], &[])?),
            ["top"]
        );
        assert_eq!(
            names(select(planned.clone(), &["other".into()], &["dev".into()])?),
            ["base", "dev", "other"]
        );
        assert_eq!(names(select(planned.clone(), &[], &[])?).len(), 4);
        assert!(matches!(
            select(planned, &[], &["nope".into()]),
            Err(PlanError::UnknownImage { name, .. }) if name == "nope"
        ));
        Ok(())
    }

    #[test]
    fn config_parses() -> Result<(), toml::de::Error> {
        let config: Config = toml::from_str(
            "org = \"acme\"\n[[image]]\nname = \"{org}/app\"\ndockerfile = \"docker/Dockerfile\"\ntags = [\"{version}\", \"latest\"]\nextra_tags = [\"localhost:32000/x\"]\ndepends_on = [\"base\"]\ndialect = \"go\"\n[image.build_args]\nMODE = \"release\"\n",
        )?;
        assert_eq!(config.org.as_deref(), Some("acme"));
        assert_eq!(config.images[0].dialect, Some(Dialect::Go));
        assert_eq!(config.images[0].extra_tags, ["localhost:32000/x"]);
        assert_eq!(config.images[0].depends_on, ["base"]);
        assert!(
            toml::from_str::<Config>("[[image]]\nname = \"x\"\ndockerfile = \"D\"\nunknown = 1\n")
                .is_err()
        );
        Ok(())
    }
}
