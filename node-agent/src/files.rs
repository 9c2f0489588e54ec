//! Crash-safe file writes and Palisade's seccomp directory.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Prefix of temporary files; anything with it in a Palisade directory is a crash leftover.
pub const TEMP_PREFIX: &str = ".palisade-tmp-";

/// Writes `content` to `path` so that a reader (or a crash) only ever sees the old file or
/// the whole new one: a temp file in the same directory, fsync, rename over, fsync the
/// directory. The file gets `mode`.
pub fn write_atomic(path: &Path, content: &[u8], mode: u32) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    // A new file with a random name, created exclusively (O_EXCL: never an existing file,
    // never through a symlink someone planted): nobody can predict or pre-create it.
    let mut tmp = tempfile::Builder::new().prefix(TEMP_PREFIX).tempfile_in(dir)?;
    tmp.write_all(content)?;
    tmp.as_file().set_permissions(fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// Removes `path` and fsyncs its directory; a missing file is not an error.
pub fn remove_durable(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Deletes crash leftovers (files starting with [`TEMP_PREFIX`]) in `dir`; returns how many.
pub fn clean_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Hex SHA-256 of a file's content, `None` when it does not exist.
pub fn file_digest(path: &Path) -> io::Result<Option<String>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(palisade_domain::digest(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file in the seccomp directory that lists the profiles Palisade wrote there, one
/// name per line. A `.json` file not listed is another tool's and is never changed.
pub const OWNED_RECORD: &str = ".palisade-owned";

/// The names recorded as Palisade's in `dir`; `None` when there is no record yet.
pub fn read_owned(dir: &Path) -> io::Result<Option<std::collections::BTreeSet<String>>> {
    match fs::read_to_string(dir.join(OWNED_RECORD)) {
        Ok(text) => Ok(Some(
            text.lines().filter(|l| !l.is_empty()).map(str::to_string).collect(),
        )),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Replaces the record of Palisade's names in `dir` (crash-safe).
pub fn write_owned(dir: &Path, names: &std::collections::BTreeSet<String>) -> io::Result<()> {
    let mut text = String::new();
    for name in names {
        text.push_str(name);
        text.push('\n');
    }
    write_atomic(&dir.join(OWNED_RECORD), text.as_bytes(), 0o644)
}

/// Names `<name>.json` in the seccomp directory.
pub fn seccomp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.json"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn atomic_write_replaces_whole_files_with_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        write_atomic(&path, b"one", 0o644).unwrap();
        write_atomic(&path, b"two two", 0o644).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two two");
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o644);
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["p.json"], "no temp file is left behind");
    }

    /// A hostile writer in the directory plants symlinks where a predictable temp file
    /// would go (earlier versions used `<prefix><name>-<pid>`, opened without O_EXCL and
    /// followed the link): the write never goes through them.
    #[test]
    fn planted_symlinks_are_never_written_through() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        fs::write(&victim, b"untouched").unwrap();
        let path = dir.path().join("p.json");
        for guess in [
            format!("{TEMP_PREFIX}p.json-{}", std::process::id()),
            format!("{TEMP_PREFIX}p.json"),
        ] {
            std::os::unix::fs::symlink(&victim, dir.path().join(guess)).unwrap();
        }
        write_atomic(&path, b"new", 0o644).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"untouched");
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        write_atomic(&path, b"old", 0o644).unwrap();
        // Renaming a file over a non-empty directory fails after the temp file was written.
        let blocker = dir.path().join("blocked.json");
        fs::create_dir(&blocker).unwrap();
        fs::write(blocker.join("x"), b"").unwrap();
        assert!(write_atomic(&blocker, b"new", 0o644).is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            clean_temp_files(dir.path()).unwrap(),
            0,
            "the failed write cleaned its temp file"
        );
    }

    #[test]
    fn cleans_only_temp_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(format!("{TEMP_PREFIX}a.json-1")), b"half").unwrap();
        fs::write(dir.path().join("keep.json"), b"{}").unwrap();
        assert_eq!(clean_temp_files(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep.json").exists());
        assert_eq!(clean_temp_files(&dir.path().join("missing")).unwrap(), 0);
    }

    #[test]
    fn digests_and_durable_removal() {
        let dir = tempfile::tempdir().unwrap();
        let path = seccomp_path(dir.path(), "web");
        assert_eq!(path.file_name().unwrap(), "web.json");
        assert_eq!(file_digest(&path).unwrap(), None);
        write_atomic(&path, b"{}", 0o644).unwrap();
        assert_eq!(file_digest(&path).unwrap(), Some(palisade_domain::digest(b"{}")));
        remove_durable(&path).unwrap();
        remove_durable(&path).unwrap();
        assert!(!path.exists());
    }
}
