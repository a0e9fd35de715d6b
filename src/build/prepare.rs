//! From a repository to its image plan: git metadata, the version file and
//! `sgr.toml` read once, the images named and labelled. `sgr build`,
//! `sgr push`, `sgr release --images` and the templates' `images` variable
//! all start here, so they agree on names and tags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::plan::{self, Config, Naming, PlanError, PlannedImage};
use crate::git::{GitError, GitMetadata, GitRepository};
use crate::template::context::{self, Needs};
use crate::template::process_host::now_seconds;
use crate::template::settings::ContextSettings;
use crate::version::{Version, branch};

/// The organisation in image names when neither `--org` nor `sgr.toml` names one.
pub const DEFAULT_ORG: &str = "leafai";

/// Why no plan could be made.
#[derive(Debug, Error)]
pub enum PrepareError {
    /// Git metadata.
    #[error(transparent)]
    Git(#[from] GitError),
    /// `sgr.toml` cannot be read or parsed.
    #[error("{}: {message}", .path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The plan is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An image named on the command line is not in the plan.
    #[error("no image {name} in the plan (images: {})", .known.join(", "))]
    UnknownImage {
        /// The name given.
        name: String,
        /// The plan's names.
        known: Vec<String>,
    },
}

/// Which images a command works on.
#[derive(Debug)]
pub struct PlanSelection<'a> {
    /// Where git discovery starts.
    pub git_dir: &'a Path,
    /// `--config`.
    pub config: Option<&'a Path>,
    /// `--org`.
    pub org: Option<&'a str>,
    /// Image names given on the command line (all when empty).
    pub images: &'a [String],
    /// Extra build args.
    pub extra_args: BTreeMap<String, String>,
}

/// The plan and what it was made from.
#[derive(Debug)]
pub struct Prepared {
    /// The git top directory.
    pub top: PathBuf,
    /// Placeholder values.
    pub naming: Naming,
    /// The selected images.
    pub planned: Vec<PlannedImage>,
    /// Where the Dockerfiles' variables come from.
    pub context_settings: ContextSettings,
}

/// Read git, the version file and `sgr.toml`, and plan the selected images.
///
/// # Errors
/// Git, configuration or plan errors; an unknown image name.
pub fn prepare(selection: &PlanSelection<'_>) -> Result<Prepared, PrepareError> {
    let repository = GitRepository::discover(selection.git_dir)?;
    let top = repository.top_dir().to_path_buf();
    // No status scan (git.dirty) nor tag walk: the plan and labels use neither.
    let metadata = repository.metadata_for(
        &crate::env::process,
        Needs {
            dirty: false,
            tag: false,
            ..Needs::ALL
        },
    )?;
    let config = read_config(selection.config, &top)?;
    let mut images = if config.images.is_empty() {
        plan::default_images(&|path| top.join(path).is_file())
    } else {
        config.images.clone()
    };
    for image in &mut images {
        image.dialect = image.dialect.or(config.dialect);
    }
    let context_settings = ContextSettings {
        module: top.clone(),
        git_dir: selection.git_dir.to_path_buf(),
        ..ContextSettings::default()
    };
    let version = context_settings
        .version_files
        .iter()
        .map(|name| top.join(name))
        .find(|path| path.exists())
        .and_then(|path| crate::version_file::VersionFile::read(&path).ok())
        .and_then(|file| file.version().ok())
        .map(|(version, _)| version);
    let module = context::scrub_module(
        &top.file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default(),
    );
    let naming = Naming {
        org: selection
            .org
            .map(str::to_owned)
            .or(config.org.clone())
            .unwrap_or_else(|| DEFAULT_ORG.to_owned()),
        module: module.clone(),
        branch: metadata.branch_slug.clone().unwrap_or_default(),
        version: version
            .as_ref()
            .map(|version| branch::docker_tag(&version.to_string()))
            .unwrap_or_default(),
        short_hash: metadata.short_commit.clone().unwrap_or_default(),
        user: metadata.user.name.clone(),
        uid: metadata.user.uid.to_string(),
        gid: metadata.user.gid.to_string(),
    };
    let labels = labels(&metadata, version.as_ref(), module);
    let planned = plan::plan(&images, &naming, &labels, &selection.extra_args, &top)?;
    Ok(Prepared {
        top,
        naming,
        planned: keep_named(planned, selection.images)?,
        context_settings,
    })
}

/// `sgr.toml`: the file named, else the one at the git top if present, else none.
fn read_config(named: Option<&Path>, top: &Path) -> Result<Config, PrepareError> {
    let path = named.map_or_else(|| top.join("sgr.toml"), Path::to_path_buf);
    if named.is_none() && !path.exists() {
        return Ok(Config::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|error| PrepareError::Config {
        path: path.clone(),
        message: error.to_string(),
    })?;
    toml::from_str(&text).map_err(|error| PrepareError::Config {
        path,
        message: error.to_string().trim().replace('\n', " "),
    })
}

/// The OCI labels every image gets: created, revision, version, source, module, branch.
fn labels(
    metadata: &GitMetadata,
    version: Option<&Version>,
    module: String,
) -> BTreeMap<String, String> {
    let (seconds, _) = now_seconds();
    let mut labels = BTreeMap::new();
    labels.insert(
        "org.opencontainers.image.created".to_owned(),
        crate::version::stamp::format_utc(seconds),
    );
    labels.insert(
        "org.opencontainers.image.revision".to_owned(),
        metadata.commit.clone().unwrap_or_default(),
    );
    labels.insert(
        "org.opencontainers.image.version".to_owned(),
        version.map(ToString::to_string).unwrap_or_default(),
    );
    labels.insert("dev.sgr.module".to_owned(), module);
    labels.insert(
        "dev.sgr.branch".to_owned(),
        metadata
            .branch
            .as_ref()
            .map(|branch| branch.name.clone())
            .unwrap_or_default(),
    );
    if let Some(source) = metadata
        .remote
        .as_ref()
        .and_then(crate::git::RemoteUrl::https)
    {
        labels.insert("org.opencontainers.image.source".to_owned(), source);
    }
    labels
}

/// Only the images `names` names (all when empty); a name not in the plan is an error.
fn keep_named(
    mut planned: Vec<PlannedImage>,
    names: &[String],
) -> Result<Vec<PlannedImage>, PrepareError> {
    if names.is_empty() {
        return Ok(planned);
    }
    let known: Vec<String> = planned.iter().map(|image| image.name.clone()).collect();
    if let Some(name) = names.iter().find(|name| !known.contains(name)) {
        return Err(PrepareError::UnknownImage {
            name: name.clone(),
            known,
        });
    }
    planned.retain(|image| names.contains(&image.name));
    Ok(planned)
}
