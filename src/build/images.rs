//! One naming scheme from build to deployment.
//!
//! The plan ([`super::plan`]) names every image once: its local repository and tags (what
//! `sgr build` tags) and its remote repository (what `sgr push` writes under each
//! registry). `sgr push` records what it wrote, with the digest the registry answered, in the
//! checkout's git directory (`.git/sgr/pushed.json`, never in the work tree). Templates see
//! the result as `images.<key>`, so build.yaml, the runner Deployment and any manifest of the
//! user's name images without `--set image=…`:
//!
//! - `images.<key>.local`: the first local reference (`leafai/sgr-runner:1.2.0`);
//! - `images.<key>.remote`: the remote repository (`leafai/sgr/runner`);
//! - `images.<key>.pushed`: every reference pushed for one of the image's current tags, pinned
//!   by digest when known (`acr.example/leafai/sgr/runner:1.2.0@sha256:…`);
//! - `images.<key>.ref`: the first of `pushed`, else `local`.
//!
//! `<key>` is the last part of the remote repository with `-` and `.` as `_` (`runner`,
//! `standalone_build`). A push for an older tag is never offered: the record is matched by
//! the image's current tags.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::plan::PlannedImage;

/// Where the record lives inside a git directory.
const RECORD: &str = "sgr/pushed.json";

/// The lock held while the record is read, changed and written.
const LOCK: &str = "sgr/pushed.lock";

/// The most bytes of a record read: it is ours, but a damaged one must not cost memory.
const RECORD_LIMIT: u64 = 4 * 1024 * 1024;

/// References kept per image: the newest; with tens of registries and tags, far under
/// [`RECORD_LIMIT`].
pub const KEPT_PER_IMAGE: usize = 64;

/// One reference a push wrote.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Pushed {
    /// `host/repository:tag`.
    pub reference: String,
    /// The manifest digest the registry reported, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Pushed {
    /// The reference pinned by digest when the digest is known.
    #[must_use]
    pub fn pinned(&self) -> String {
        match &self.digest {
            Some(digest) => format!("{}@{digest}", self.reference),
            None => self.reference.clone(),
        }
    }

    fn tag(&self) -> &str {
        tag_of(&self.reference)
    }
}

/// What `sgr push` wrote, by local repository name.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
pub struct PushRecord {
    /// Local repository (`leafai/sgr-runner`) to what was pushed from it.
    pub images: BTreeMap<String, Vec<Pushed>>,
}

/// The record could not be kept.
#[derive(Debug, Error)]
#[error("cannot write the push record {}", .path.display())]
pub struct RecordError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

impl PushRecord {
    /// The record file of a git directory.
    #[must_use]
    pub fn path(git_dir: &Path) -> PathBuf {
        git_dir.join(RECORD)
    }

    /// Read the record of `git_dir`; absent, unreadable or damaged means empty (it only
    /// saves typing a reference, and the next push rewrites it).
    #[must_use]
    pub fn read(git_dir: &Path) -> Self {
        use std::io::Read as _;
        let path = Self::path(git_dir);
        // Never open a FIFO or a device (opening a FIFO blocks): only a regular file is ours.
        if !std::fs::metadata(&path).is_ok_and(|metadata| metadata.is_file()) {
            return Self::default();
        }
        let mut text = Vec::new();
        let read = std::fs::File::open(&path)
            .and_then(|file| file.take(RECORD_LIMIT).read_to_end(&mut text));
        match read {
            Ok(_) => serde_json::from_slice(&text).unwrap_or_default(),
            Err(_) => Self::default(),
        }
    }

    /// Add what a push wrote: a reference pushed again replaces its entry in place (so the
    /// order, and `ref`, do not depend on which registry was pushed last); a new one is added
    /// at the end; each image keeps its last [`KEPT_PER_IMAGE`] references.
    pub fn add(&mut self, pushed: impl IntoIterator<Item = (String, Pushed)>) {
        for (local, entry) in pushed {
            let list = self.images.entry(local).or_default();
            match list
                .iter_mut()
                .find(|known| known.reference == entry.reference)
            {
                Some(known) => *known = entry,
                None => list.push(entry),
            }
            if list.len() > KEPT_PER_IMAGE {
                let excess = list.len() - KEPT_PER_IMAGE;
                list.drain(..excess);
            }
        }
    }

    /// Add `pushed` to the record of `git_dir` and write it, holding a lock on
    /// `sgr/pushed.lock` meanwhile, so that pushes running at the same moment in one checkout
    /// keep each other's entries.
    ///
    /// # Errors
    /// The lock, or the record, cannot be taken or written.
    pub fn update(
        git_dir: &Path,
        pushed: impl IntoIterator<Item = (String, Pushed)>,
    ) -> Result<(), RecordError> {
        let lock_path = git_dir.join(LOCK);
        let error = |source| RecordError {
            path: lock_path.clone(),
            source,
        };
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(error)?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|errno| error(errno.into()))?;
        let mut record = Self::read(git_dir);
        record.add(pushed);
        // The lock goes with the file when it is dropped, after the write.
        let written = record.write(git_dir);
        drop(lock);
        written
    }

    /// Write the record of `git_dir` atomically.
    ///
    /// # Errors
    /// The directory cannot be made or the file written.
    pub fn write(&self, git_dir: &Path) -> Result<(), RecordError> {
        let path = Self::path(git_dir);
        let error = |source| RecordError {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(error)?;
        }
        let text = serde_json::to_vec_pretty(self).map_err(|source| error(source.into()))?;
        crate::atomic::write(&path, &text).map_err(error)
    }
}

/// The tag of a reference (`latest` when it has none); a digest suffix is ignored.
fn tag_of(reference: &str) -> &str {
    let reference = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_slash = reference.rfind('/').map_or(0, |index| index + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => &reference[last_slash + colon + 1..],
        None => "latest",
    }
}

/// The repository of a reference: without its tag and digest.
#[must_use]
pub fn repository_of(reference: &str) -> &str {
    let reference = reference
        .split_once('@')
        .map_or(reference, |(name, _)| name);
    let last_slash = reference.rfind('/').map_or(0, |index| index + 1);
    match reference[last_slash..].rfind(':') {
        Some(colon) => &reference[..last_slash + colon],
        None => reference,
    }
}

/// The template key of an image: the last part of its remote repository, `-` and `.` as `_`.
#[must_use]
pub fn key_of(image: &PlannedImage) -> String {
    identifier(image.remote.rsplit('/').next().unwrap_or(&image.remote))
}

/// `text` with every character that is not a letter or a digit as `_`.
fn identifier(text: &str) -> String {
    text.chars()
        .map(|character| {
            if character.is_ascii_alphanumeric() {
                character
            } else {
                '_'
            }
        })
        .collect()
}

/// Whether a template names the `images` variable (`images.x`, `images["x"]`, `.images`,
/// `images |`), not merely the word: only then is the plan read for it.
#[must_use]
pub fn referenced_in(text: &str) -> bool {
    text.match_indices("images").any(|(index, _)| {
        let before = text[..index].chars().next_back();
        let after = text[index + "images".len()..].trim_start().chars().next();
        let word_start =
            before.is_none_or(|character| !character.is_alphanumeric() && character != '_');
        word_start && matches!(after, Some('.' | '[' | '|' | '}' | ')'))
    })
}

/// Merge `user` over `ours`, key by key (objects recursively; anything else replaces).
pub fn merge(ours: &mut serde_json::Value, user: serde_json::Value) {
    match (ours, user) {
        (serde_json::Value::Object(ours), serde_json::Value::Object(user)) => {
            for (key, value) in user {
                match ours.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        ours.insert(key, value);
                    }
                }
            }
        }
        (ours, user) => *ours = user,
    }
}

/// The `images` template variable for a plan and a push record, and a warning per key two
/// images would share (both then go by their whole remote repository: `team_a_runner`).
#[must_use]
pub fn variable(planned: &[PlannedImage], record: &PushRecord) -> (serde_json::Value, Vec<String>) {
    let mut by_key: BTreeMap<String, Vec<&PlannedImage>> = BTreeMap::new();
    for image in planned {
        by_key.entry(key_of(image)).or_default().push(image);
    }
    let mut warnings = Vec::new();
    let mut images = serde_json::Map::new();
    for (key, sharing) in by_key {
        if sharing.len() > 1 {
            let names: Vec<String> = sharing
                .iter()
                .map(|image| format!("images.{}", identifier(&image.remote)))
                .collect();
            warnings.push(format!(
                "images {} share the template key {key}: use {}",
                sharing
                    .iter()
                    .map(|image| image.remote.as_str())
                    .collect::<Vec<_>>()
                    .join(" and "),
                names.join(" and ")
            ));
        }
        for image in &sharing {
            let key = if sharing.len() > 1 {
                identifier(&image.remote)
            } else {
                key.clone()
            };
            images.insert(key, entry(image, record));
        }
    }
    (serde_json::Value::Object(images), warnings)
}

/// One image's entry: pushed references of its current tags in its current remote repository.
fn entry(image: &PlannedImage, record: &PushRecord) -> serde_json::Value {
    let local = image
        .tags
        .first()
        .cloned()
        .unwrap_or_else(|| format!("{}:latest", image.name));
    let tags: Vec<&str> = image.tags.iter().map(|tag| tag_of(tag)).collect();
    let remote_suffix = format!("/{}", image.remote);
    let pushed: Vec<String> = record
        .images
        .get(&image.name)
        .into_iter()
        .flatten()
        .filter(|entry| {
            tags.contains(&entry.tag()) && repository_of(&entry.reference).ends_with(&remote_suffix)
        })
        .map(Pushed::pinned)
        .collect();
    let best = pushed.first().cloned().unwrap_or_else(|| local.clone());
    serde_json::json!({
        "name": image.name,
        "local": local,
        "remote": image.remote,
        "pushed": pushed,
        "ref": best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(name: &str, remote: &str, tags: &[&str]) -> PlannedImage {
        PlannedImage {
            name: name.to_owned(),
            tags: tags.iter().map(|tag| format!("{name}:{tag}")).collect(),
            extra_tags: Vec::new(),
            depends_on: Vec::new(),
            dockerfile: PathBuf::from("Dockerfile"),
            context: PathBuf::from("."),
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            target: None,
            dialect: None,
            remote: remote.to_owned(),
            values: BTreeMap::new(),
        }
    }

    #[test]
    fn references_split_at_the_right_colon() {
        assert_eq!(tag_of("localhost:5000/a/b:1.0.0"), "1.0.0");
        assert_eq!(tag_of("localhost:5000/a/b"), "latest");
        assert_eq!(tag_of("a/b:main@sha256:00"), "main");
        assert_eq!(
            repository_of("localhost:5000/a/b:1.0.0"),
            "localhost:5000/a/b"
        );
        assert_eq!(repository_of("localhost:5000/a/b"), "localhost:5000/a/b");
        assert_eq!(repository_of("b:x@sha256:00"), "b");
    }

    #[test]
    fn the_variable_offers_current_pushes_pinned_else_the_local_reference() {
        let plan = [
            planned("leafai/sgr-runner", "leafai/sgr/runner", &["1.2.0"]),
            planned(
                "leafai/sgr-standalone-build",
                "leafai/sgr/standalone-build",
                &["main"],
            ),
        ];
        let mut record = PushRecord::default();
        record.add([
            (
                "leafai/sgr-runner".to_owned(),
                Pushed {
                    reference: "r.example/leafai/sgr/runner:1.1.0".to_owned(),
                    digest: Some("sha256:old".to_owned()),
                },
            ),
            (
                "leafai/sgr-runner".to_owned(),
                Pushed {
                    reference: "r.example/leafai/sgr/runner:1.2.0".to_owned(),
                    digest: Some("sha256:aaa".to_owned()),
                },
            ),
        ]);
        // A second push of the same reference replaces the first.
        record.add([(
            "leafai/sgr-runner".to_owned(),
            Pushed {
                reference: "r.example/leafai/sgr/runner:1.2.0".to_owned(),
                digest: Some("sha256:bbb".to_owned()),
            },
        )]);
        let (value, warnings) = variable(&plan, &record);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            value["runner"]["ref"],
            "r.example/leafai/sgr/runner:1.2.0@sha256:bbb"
        );
        assert_eq!(value["runner"]["pushed"].as_array().map(Vec::len), Some(1));
        assert_eq!(value["runner"]["remote"], "leafai/sgr/runner");
        assert_eq!(
            value["standalone_build"]["ref"],
            "leafai/sgr-standalone-build:main"
        );
    }

    #[test]
    fn the_record_round_trips_and_a_damaged_one_is_empty() -> Result<(), Box<dyn std::error::Error>>
    {
        let directory = tempfile::tempdir()?;
        assert_eq!(PushRecord::read(directory.path()), PushRecord::default());
        let mut record = PushRecord::default();
        record.add([(
            "a".to_owned(),
            Pushed {
                reference: "h/a:1".to_owned(),
                digest: None,
            },
        )]);
        record.write(directory.path())?;
        assert_eq!(PushRecord::read(directory.path()), record);
        std::fs::write(PushRecord::path(directory.path()), b"{not json")?;
        assert_eq!(PushRecord::read(directory.path()), PushRecord::default());
        Ok(())
    }

    #[test]
    fn only_a_variable_reference_reads_the_plan() {
        for text in [
            "{{ images.runner.ref }}",
            "{{ images[\"runner\"] }}",
            "{{ .images.runner }}",
            "{{ images | json_encode }}",
            "{{images}}",
        ] {
            assert!(referenced_in(text), "{text}");
        }
        for text in [
            "# list docker images here",
            "myimages.x",
            "images_x.y",
            "{{ imagesx.y }}",
        ] {
            assert!(!referenced_in(text), "{text}");
        }
    }

    #[test]
    fn user_values_win_key_by_key() {
        let mut ours =
            serde_json::json!({"build": {"ref": "a", "local": "l"}, "runner": {"ref": "r"}});
        merge(&mut ours, serde_json::json!({"build": {"ref": "mine"}}));
        assert_eq!(
            ours,
            serde_json::json!({"build": {"ref": "mine", "local": "l"}, "runner": {"ref": "r"}})
        );
    }

    #[test]
    fn shared_keys_are_warned_about_and_both_images_stay_reachable() {
        let plan = [
            planned("a/runner", "team-a/runner", &["1"]),
            planned("b/runner", "team-b/runner", &["1"]),
        ];
        let (value, warnings) = variable(&plan, &PushRecord::default());
        assert_eq!(value["team_a_runner"]["name"], "a/runner");
        assert_eq!(value["team_b_runner"]["name"], "b/runner");
        assert!(value.get("runner").is_none());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("images.team_a_runner"), "{warnings:?}");
    }

    #[test]
    fn pushes_to_another_repository_or_order_do_not_change_ref() {
        let plan = [planned("l/build", "l/p/build", &["main"])];
        let pushed = |reference: &str| {
            (
                "l/build".to_owned(),
                Pushed {
                    reference: reference.to_owned(),
                    digest: None,
                },
            )
        };
        let mut record = PushRecord::default();
        // A reference of the same tag in another repository (an old `remote`) is not offered.
        record.add([pushed("evil.example/other/thing:main")]);
        record.add([
            pushed("a.example/l/p/build:main"),
            pushed("b.example/l/p/build:main"),
        ]);
        record.add([pushed("a.example/l/p/build:main")]);
        let (value, _) = variable(&plan, &record);
        assert_eq!(value["build"]["ref"], "a.example/l/p/build:main");
        assert_eq!(
            value["build"]["pushed"],
            serde_json::json!(["a.example/l/p/build:main", "b.example/l/p/build:main"])
        );
        // The record keeps the newest references of an image, never grows without bound.
        for index in 0..(KEPT_PER_IMAGE + 10) {
            record.add([pushed(&format!("c.example/l/p/build:t{index}"))]);
        }
        assert_eq!(record.images["l/build"].len(), KEPT_PER_IMAGE);
    }

    #[test]
    fn a_fifo_record_is_not_opened() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        std::fs::create_dir_all(directory.path().join("sgr"))?;
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            PushRecord::path(directory.path()),
            rustix::fs::Mode::from_raw_mode(0o600),
        )?;
        // Opening it would block for ever.
        assert_eq!(PushRecord::read(directory.path()), PushRecord::default());
        Ok(())
    }

    #[test]
    fn concurrent_updates_keep_every_entry() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let git_dir = directory.path().to_path_buf();
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let git_dir = git_dir.clone();
                std::thread::spawn(move || {
                    for push in 0..5 {
                        PushRecord::update(
                            &git_dir,
                            [(
                                format!("image-{writer}"),
                                Pushed {
                                    reference: format!("r.example/i/{writer}:t{push}"),
                                    digest: None,
                                },
                            )],
                        )?;
                    }
                    Ok::<_, RecordError>(())
                })
            })
            .collect();
        for writer in writers {
            writer.join().map_err(|_| "a writer panicked")??;
        }
        let record = PushRecord::read(&git_dir);
        assert_eq!(record.images.len(), 8, "{record:?}");
        assert!(record.images.values().all(|pushed| pushed.len() == 5));
        Ok(())
    }
}
