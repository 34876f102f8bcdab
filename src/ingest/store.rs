//! File-system steps of storing a version: copy while hashing, fsync, rename into place, and
//! remove the drop original only if it is still the file we read.
//!
//! Every step that makes data durable syncs before the next step can make the previous copy
//! unnecessary, so a crash never leaves neither the original nor a complete stored copy.

use super::dirs::Dir;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Folder of temporary copies inside a group's storage folder.
pub const TMP_DIR: &str = ".tmp";

/// What copying produced.
#[derive(Debug)]
pub struct Copied {
    pub bytes: u64,
    pub sha256: String,
}

/// Copy at most `limit` bytes of `from` into `out` (a new file), hashing as it goes, then
/// fsync. Returns `Ok(None)` if `from` holds more than `limit` bytes (it grew after the size
/// check); the caller removes the partial copy.
pub fn copy_hashed(from: &mut File, out: &mut File, limit: u64) -> std::io::Result<Option<Copied>> {
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

/// sha256 of an open file, streamed from where it stands.
pub fn sha256_of(file: &mut File) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    std::io::copy(file, &mut hasher)?;
    Ok(hex(&hasher.finalize()))
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

/// The identity of a file as we read it: if any of this changed, it is another file or another
/// content, and must not be removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i128,
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

    // `struct stat`'s field types differ between architectures; the conversions are needed
    // on some of them.
    #[allow(clippy::useless_conversion)]
    pub fn of_stat(st: &rustix::fs::Stat) -> Self {
        Self {
            dev: u64::from(st.st_dev),
            ino: u64::from(st.st_ino),
            size: u64::try_from(st.st_size).unwrap_or(0),
            mtime_ns: i128::from(st.st_mtime) * 1_000_000_000 + i128::from(st.st_mtime_nsec),
        }
    }

    /// Is `name` in `dir` still exactly this file (never following a link)?
    pub fn matches_in(&self, dir: &Dir, name: impl AsRef<std::ffi::OsStr>) -> bool {
        dir.stat(name)
            .map(|st| Identity::of_stat(&st) == *self)
            .unwrap_or(false)
    }

    /// The same inode, whatever happened to its content since.
    pub fn same_inode(&self, other: &Identity) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Remove `name` from `dir` if it is still the file we stored; true if removed (or already
/// gone), false if it changed and was left in place.
pub fn remove_if_same(
    dir: &Dir,
    name: impl AsRef<std::ffi::OsStr>,
    identity: &Identity,
) -> std::io::Result<bool> {
    let name = name.as_ref();
    match dir.stat(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(true),
        Err(e) => return Err(e),
        Ok(st) if Identity::of_stat(&st) != *identity => return Ok(false),
        Ok(_) => {}
    }
    dir.unlink(name)?;
    let _ = dir.sync();
    Ok(true)
}

/// A name in `dir` for `name` that is not taken: `name`, then `stem (2).ext`, `stem (3).ext`, …
/// Only a hint: the rename that uses it refuses to replace, and the caller tries the next one.
pub fn free_name(dir: &Dir, name: &str) -> String {
    candidates(name)
        .take(10_000)
        .find(|c| {
            dir.stat(c)
                .is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound)
        })
        .unwrap_or_else(|| format!("{}-{name}", uuid::Uuid::new_v4().simple()))
}

/// `name`, `stem (2).ext`, `stem (3).ext`, …
pub fn candidates(name: &str) -> impl Iterator<Item = String> + '_ {
    let path = Path::new(name);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    let ext = path.extension().and_then(|e| e.to_str());
    std::iter::once(name.to_string()).chain((2..).map(move |n| match ext {
        Some(ext) => format!("{stem} ({n}).{ext}"),
        None => format!("{stem} ({n})"),
    }))
}

/// Write `text` as `name` in `dir` through a temporary file and a rename, so a reader never
/// sees half. The file gets exactly `mode` and, when given, the group `gid`.
pub fn write_atomic(
    dir: &Dir,
    name: &str,
    text: &str,
    mode: u32,
    gid: Option<u32>,
) -> std::io::Result<()> {
    let tmp = format!(".ingestd-{}", uuid::Uuid::new_v4().simple());
    let written = (|| {
        let mut file = dir.create_new(&tmp, mode)?;
        if let Some(gid) = gid {
            rustix::fs::fchown(&file, None, Some(rustix::fs::Gid::from_raw(gid)))?;
            // chown may clear set-id bits; the mode is set again after it.
            rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        dir.rename_durable(&tmp, dir, name, true)
    })();
    if written.is_err() {
        let _ = dir.unlink(&tmp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_hashes_and_respects_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("a.csv"), b"abc").unwrap();
        let mut out = dir.create_new("b", 0o640).unwrap();
        let copied = copy_hashed(&mut dir.open_read("a.csv").unwrap(), &mut out, 3)
            .unwrap()
            .unwrap();
        assert_eq!(copied.bytes, 3);
        assert_eq!(
            copied.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let mut out = dir.create_new("c", 0o640).unwrap();
        let over = copy_hashed(&mut dir.open_read("a.csv").unwrap(), &mut out, 2).unwrap();
        assert!(over.is_none());
    }

    #[test]
    fn removes_only_the_same_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let path = tmp.path().join("a.csv");
        std::fs::write(&path, b"one").unwrap();
        let identity = Identity::of(&std::fs::metadata(&path).unwrap());
        assert!(identity.matches_in(&dir, "a.csv"));
        std::fs::write(&path, b"two, longer").unwrap();
        assert!(!remove_if_same(&dir, "a.csv", &identity).unwrap());
        assert!(path.exists());
        let identity = Identity::of_stat(&dir.stat("a.csv").unwrap());
        assert_eq!(identity, Identity::of(&std::fs::metadata(&path).unwrap()));
        assert!(remove_if_same(&dir, "a.csv", &identity).unwrap());
        assert!(!path.exists());
        assert!(remove_if_same(&dir, "a.csv", &identity).unwrap());
    }

    #[test]
    fn free_names_never_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        assert_eq!(free_name(&dir, "a.csv"), "a.csv");
        std::fs::write(tmp.path().join("a.csv"), b"").unwrap();
        std::fs::write(tmp.path().join("a (2).csv"), b"").unwrap();
        assert_eq!(free_name(&dir, "a.csv"), "a (3).csv");
    }

    #[test]
    fn atomic_writes_get_their_mode() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        write_atomic(&dir, "x.error.txt", "why\n", 0o640, None).unwrap();
        let meta = std::fs::metadata(tmp.path().join("x.error.txt")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        assert_eq!(dir.names().unwrap().len(), 1, "no temporary left behind");
    }
}
