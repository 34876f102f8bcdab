//! File-system steps of storing a version: copy while hashing, fsync, rename into place, and
//! remove the drop original only if it is still the file we read.
//!
//! Every step that makes data durable syncs before the next step can make the previous copy
//! unnecessary, so a crash never leaves neither the original nor a complete stored copy.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Folder of temporary copies inside a group's storage folder.
pub const TMP_DIR: &str = ".tmp";

/// What copying produced.
#[derive(Debug)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: String,
}

/// Copy at most `limit` bytes of `from` into a new file at `to`, hashing as it goes, then fsync.
/// Returns `Ok(None)` if `from` holds more than `limit` bytes (it grew after the size check).
pub fn copy_hashed(from: &mut File, to: &Path, limit: u64) -> std::io::Result<Option<Copied>> {
    let mut out = OpenOptions::new().write(true).create_new(true).open(to)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        bytes += n as u64;
        if bytes > limit {
            drop(out);
            let _ = std::fs::remove_file(to);
            return Ok(None);
        }
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])?;
    }
    out.sync_all()?;
    Ok(Some(Copied {
        bytes,
        sha256: hex(&hasher.finalize()),
    }))
}

/// sha256 of a whole file, streamed.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Make the directory entry of a just-renamed or just-created file durable.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Rename `from` to `to` (same file system) and make the rename durable.
pub fn rename_durable(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::rename(from, to)?;
    if let Some(parent) = to.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// The identity of a file as we read it: if any of this changed, it is another file or another
/// content, and must not be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

impl Identity {
    pub fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// Is `path` still exactly this file?
    pub fn matches(&self, path: &Path) -> bool {
        std::fs::symlink_metadata(path)
            .map(|m| Identity::of(&m) == *self)
            .unwrap_or(false)
    }
}

/// Remove the drop original if it is still the file we stored; true if removed (or already
/// gone), false if it changed and was left in place.
pub fn remove_if_same(path: &Path, identity: &Identity) -> std::io::Result<bool> {
    if !path.exists() {
        return Ok(true);
    }
    if !identity.matches(path) {
        return Ok(false);
    }
    std::fs::remove_file(path)?;
    if let Some(parent) = path.parent() {
        let _ = sync_dir(parent);
    }
    Ok(true)
}

/// A name in `dir` for `name` that is not taken: `name`, then `stem (2).ext`, `stem (3).ext`, …
pub fn free_name(dir: &Path, name: &str) -> PathBuf {
    let candidate = dir.join(name);
    if !candidate.exists() {
        return candidate;
    }
    let path = Path::new(name);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    let ext = path.extension().and_then(|e| e.to_str());
    (2..)
        .map(|n| match ext {
            Some(ext) => dir.join(format!("{stem} ({n}).{ext}")),
            None => dir.join(format!("{stem} ({n})")),
        })
        .find(|p| !p.exists())
        .unwrap_or(candidate)
}

/// Write `text` to `path` through a temporary file and a rename, so a reader never sees half.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::with_prefix_in(".ingestd-", dir)?;
    tmp.write_all(text.as_bytes())?;
    // Readable by whoever dropped the file, not only by the daemon's user.
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_hashes_and_respects_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("a.csv");
        std::fs::write(&src, b"abc").unwrap();
        let copied = copy_hashed(&mut File::open(&src).unwrap(), &dir.path().join("b"), 3)
            .unwrap()
            .unwrap();
        assert_eq!(copied.bytes, 3);
        assert_eq!(
            copied.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let over = copy_hashed(&mut File::open(&src).unwrap(), &dir.path().join("c"), 2).unwrap();
        assert!(over.is_none());
        assert!(!dir.path().join("c").exists());
    }

    #[test]
    fn removes_only_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        std::fs::write(&path, b"one").unwrap();
        let identity = Identity::of(&std::fs::metadata(&path).unwrap());
        std::fs::write(&path, b"two, longer").unwrap();
        assert!(!remove_if_same(&path, &identity).unwrap());
        assert!(path.exists());
        let identity = Identity::of(&std::fs::metadata(&path).unwrap());
        assert!(remove_if_same(&path, &identity).unwrap());
        assert!(!path.exists());
    }

    #[test]
    fn free_names_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(free_name(dir.path(), "a.csv"), dir.path().join("a.csv"));
        std::fs::write(dir.path().join("a.csv"), b"").unwrap();
        std::fs::write(dir.path().join("a (2).csv"), b"").unwrap();
        assert_eq!(free_name(dir.path(), "a.csv"), dir.path().join("a (3).csv"));
    }
}
