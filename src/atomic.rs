//! Writing files so that nothing is ever half-written.
//!
//! Content goes to a temporary file in the target's directory, is flushed to
//! disk and given the original's permissions and owner, then renamed over
//! the target: a crash or a full disk leaves either the old file or the new
//! one. A symbolic link is followed, so the file it points at is replaced and
//! the link kept.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

/// Write `contents` to `path`, creating it or replacing it atomically.
///
/// # Errors
/// Any failure; the target is then untouched and no temporary file is left.
pub fn write(path: &Path, contents: &[u8]) -> io::Result<()> {
    let existing = fs::canonicalize(path).ok();
    let target = match &existing {
        Some(target) => target.clone(),
        None => path.to_path_buf(),
    };
    let metadata = existing.as_ref().map(fs::metadata).transpose()?;
    if let Some(metadata) = &metadata
        && !metadata.is_file()
    {
        // Renaming over a device, FIFO or socket would replace it (as root,
        // /dev/null) with a regular file.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", target.display()),
        ));
    }
    let directory = match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut temporary = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".sgr-tmp")
        .tempfile_in(&directory)?;
    temporary.write_all(contents)?;
    temporary.as_file().sync_all()?;
    if let Some(metadata) = &metadata {
        use std::os::unix::fs::MetadataExt;
        fs::set_permissions(temporary.path(), metadata.permissions())?;
        // Keeping the owner only works as root or for one's own files; elsewhere the
        // new file belongs to the user who ran sgr, as with any editor.
        let _ =
            std::os::unix::fs::chown(temporary.path(), Some(metadata.uid()), Some(metadata.gid()));
    } else {
        use std::os::unix::fs::PermissionsExt;
        // tempfile creates 0600; a new file gets 0644, as a shell redirect gives
        // under the usual umask.
        fs::set_permissions(temporary.path(), fs::Permissions::from_mode(0o644))?;
    }
    temporary
        .persist(&target)
        .map_err(|persist| persist.error)?;
    if let Ok(handle) = fs::File::open(&directory) {
        let _ = handle.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn creates_a_new_file() -> Result<(), Box<dyn std::error::Error>> {
        let directory = tempfile::tempdir()?;
        let path = directory.path().join("out.yaml");
        write(&path, b"a: 1\\n")?;
        assert_eq!(fs::read(&path)?, b"a: 1\\n");
        assert_eq!(fs::metadata(&path)?.permissions().mode() & 0o777, 0o644);
        assert_eq!(fs::read_dir(directory.path())?.count(), 1);
        Ok(())
    }

    #[test]
    fn a_missing_directory_fails_cleanly() {
        let result = write(Path::new("/nonexistent-sgr-dir/out.yaml"), b"x");
        assert!(result.is_err());
    }
}
