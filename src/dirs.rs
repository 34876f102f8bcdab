//! Folders as open handles: every file-system step under the drop root and the storage root is
//! made relative to a directory opened `O_DIRECTORY | O_NOFOLLOW`, one component at a time.
//!
//! Droppers control the names in their group folders, so any path that is joined and resolved
//! again at each step is a race they can win (swap a folder for a symlink between two steps and
//! the daemon writes, reads or deletes wherever the link points). Here a folder is opened once
//! and kept for the work at hand; a component that is, or becomes, a symbolic link fails the
//! step with [`DirError::Symlink`]. This module never follows a link, never resolves `..`, and
//! never takes a name with a `/` in it. The configured roots themselves are trusted paths from
//! the operator's config; only their last component must not be a link.

use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags, Stat};
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Why a folder could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("{path} is a symbolic link; links are never followed")]
    Symlink { path: PathBuf },
    #[error("{path} is not a folder")]
    NotDir { path: PathBuf },
    #[error("{path} does not exist")]
    Missing { path: PathBuf },
    #[error("{path}: cannot {about}: {source}")]
    Io {
        path: PathBuf,
        about: &'static str,
        source: io::Error,
    },
}

impl DirError {
    pub fn is_missing(&self) -> bool {
        matches!(self, DirError::Missing { .. })
    }
}

/// An open folder and the path it was reached by (for messages only; never opened again).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    shown: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Is `name` one plain component (no `/`, not `.` or `..`, not empty)?
pub fn plain_name(name: &OsStr) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty() && bytes != b"." && bytes != b".." && !bytes.contains(&b'/')
}

fn plain(name: &OsStr) -> io::Result<&OsStr> {
    if plain_name(name) {
        Ok(name)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a plain file name",
        ))
    }
}

impl Dir {
    /// Open a configured root. Its last component must not be a symbolic link.
    pub fn open(path: &Path) -> Result<Dir, DirError> {
        match rustix::fs::open(path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir {
                fd,
                shown: path.to_path_buf(),
            }),
            Err(e) => Err(explain(
                rustix::fs::CWD,
                path.as_os_str(),
                path.to_path_buf(),
                e,
            )),
        }
    }

    /// The path this folder was reached by, for messages.
    pub fn shown(&self) -> &Path {
        &self.shown
    }

    /// Where `name` inside this folder would be shown.
    pub fn shown_child(&self, name: impl AsRef<OsStr>) -> PathBuf {
        self.shown.join(name.as_ref())
    }

    /// Open the sub-folder `name`; a symbolic link there is refused, never traversed.
    pub fn child(&self, name: impl AsRef<OsStr>) -> Result<Dir, DirError> {
        let name = name.as_ref();
        let shown = self.shown_child(name);
        let name = plain(name).map_err(|source| DirError::Io {
            path: shown.clone(),
            about: "open",
            source,
        })?;
        match rustix::fs::openat(&self.fd, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(Dir { fd, shown }),
            Err(e) => Err(explain(&self.fd, name, shown, e)),
        }
    }

    /// Open the sub-folder `name`, creating it with exactly `mode` (never the umask) if it is
    /// not there. Returns the folder and whether it was created.
    pub fn child_or_create(
        &self,
        name: impl AsRef<OsStr>,
        mode: u32,
    ) -> Result<(Dir, bool), DirError> {
        let name = name.as_ref();
        let shown = self.shown_child(name);
        let io_error = |about, source| DirError::Io {
            path: shown.clone(),
            about,
            source,
        };
        let name = plain(name).map_err(|e| io_error("create", e))?;
        let created = match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(0o700)) {
            Ok(()) => true,
            Err(rustix::io::Errno::EXIST) => false,
            Err(e) => return Err(io_error("create", e.into())),
        };
        let dir = self.child(name)?;
        if created {
            rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(mode))
                .map_err(|e| io_error("set the mode of", e.into()))?;
            // The new entry must survive a crash before anything is put inside it.
            let _ = self.sync();
        }
        Ok((dir, created))
    }

    /// The folder's own status.
    pub fn stat_self(&self) -> io::Result<Stat> {
        Ok(rustix::fs::fstat(&self.fd)?)
    }

    /// Status of `name` itself (a link is described, not followed).
    pub fn stat(&self, name: impl AsRef<OsStr>) -> io::Result<Stat> {
        let name = plain(name.as_ref())?;
        Ok(rustix::fs::statat(
            &self.fd,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
        )?)
    }

    /// Open `name` for reading. A link fails (`ELOOP`); a FIFO or device never blocks the
    /// open (`O_NONBLOCK`) and is told apart by the caller with `metadata()`.
    pub fn open_read(&self, name: impl AsRef<OsStr>) -> io::Result<File> {
        let name = plain(name.as_ref())?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::empty())?;
        Ok(File::from(fd))
    }

    /// Create a new file `name` with exactly `mode` (set with fchmod, so the umask has no say).
    pub fn create_new(&self, name: impl AsRef<OsStr>, mode: u32) -> io::Result<File> {
        let name = plain(name.as_ref())?;
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::NOCTTY
            | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&self.fd, name, flags, Mode::from_raw_mode(0o600))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        Ok(File::from(fd))
    }

    /// Rename `name` here to `to_name` in `to` (same file system). With `replace` false an
    /// existing target fails with `AlreadyExists` instead of being overwritten.
    pub fn rename(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
        replace: bool,
    ) -> io::Result<()> {
        let (name, to_name) = (plain(name.as_ref())?, plain(to_name.as_ref())?);
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        rustix::fs::renameat_with(&self.fd, name, &to.fd, to_name, flags)?;
        Ok(())
    }

    /// Rename and make the new entry (and the old one's removal) durable.
    pub fn rename_durable(
        &self,
        name: impl AsRef<OsStr>,
        to: &Dir,
        to_name: impl AsRef<OsStr>,
        replace: bool,
    ) -> io::Result<()> {
        self.rename(name, to, to_name, replace)?;
        to.sync()?;
        let _ = self.sync();
        Ok(())
    }

    /// Remove the file `name` (never a folder).
    pub fn unlink(&self, name: impl AsRef<OsStr>) -> io::Result<()> {
        let name = plain(name.as_ref())?;
        Ok(rustix::fs::unlinkat(&self.fd, name, AtFlags::empty())?)
    }

    /// Make this folder's entries durable.
    pub fn sync(&self) -> io::Result<()> {
        Ok(rustix::fs::fsync(&self.fd)?)
    }

    /// Names in this folder (not `.` or `..`), read through the handle.
    pub fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        let mut names = Vec::new();
        let dup = self.fd.as_fd().try_clone_to_owned()?;
        let mut dir = rustix::fs::Dir::new(dup)?;
        dir.rewind();
        for entry in dir {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name != "." && name != ".." {
                names.push(name.to_os_string());
            }
        }
        Ok(names)
    }

    /// Change the group and mode of this folder (for `.rejected/`, which the dropper's group
    /// reads).
    pub fn set_owner_mode(&self, gid: Option<u32>, mode: u32) -> io::Result<()> {
        if let Some(gid) = gid {
            rustix::fs::fchown(&self.fd, None, Some(rustix::fs::Gid::from_raw(gid)))?;
        }
        rustix::fs::fchmod(&self.fd, Mode::from_raw_mode(mode))?;
        Ok(())
    }
}

/// Turn a failed open of `name` in `dir` into a reason a person can act on.
fn explain<Fd: AsFd>(dir: Fd, name: &OsStr, shown: PathBuf, e: rustix::io::Errno) -> DirError {
    use rustix::io::Errno;
    match e {
        Errno::NOENT => return DirError::Missing { path: shown },
        Errno::LOOP | Errno::NOTDIR => {}
        other => {
            return DirError::Io {
                path: shown,
                about: "open",
                source: other.into(),
            };
        }
    }
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink() => {
            DirError::Symlink { path: shown }
        }
        Ok(_) => DirError::NotDir { path: shown },
        Err(Errno::NOENT) => DirError::Missing { path: shown },
        Err(other) => DirError::Io {
            path: shown,
            about: "open",
            source: other.into(),
        },
    }
}

/// Create the operator-configured folder `path` and any missing parents, each created one
/// with exactly `mode` (never the umask); folders already there are left as they are. The
/// last component of each is never followed if it is a link.
pub fn create_all(path: &Path, mode: u32) -> Result<(), DirError> {
    let mut missing = Vec::new();
    let mut at = path;
    loop {
        match std::fs::symlink_metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(at),
            Err(source) => {
                return Err(DirError::Io {
                    path: at.to_path_buf(),
                    about: "look at",
                    source,
                });
            }
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for folder in missing.into_iter().rev() {
        let (Some(parent), Some(name)) = (folder.parent(), folder.file_name()) else {
            continue;
        };
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        Dir::open(parent)?.child_or_create(name, mode)?;
    }
    // What is there now must be a folder, not a link to one.
    Dir::open(path).map(drop)
}

/// Open the file at the operator-configured `path`, creating it with exactly `mode` if it is
/// missing, and take from an existing one any permission bits beyond `mode` (older versions
/// created it under the umask). Its last component is never followed if it is a link. For
/// the catalog and `audit.jsonl`, which hold every row's text.
pub fn open_private(path: &Path, mode: u32, append: bool) -> io::Result<File> {
    let mut flags = OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    if append {
        flags |= OFlags::APPEND;
    }
    let created = rustix::fs::open(
        path,
        flags | OFlags::CREATE | OFlags::EXCL,
        Mode::from_raw_mode(0o600),
    );
    let fd = match created {
        Ok(fd) => {
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
            fd
        }
        Err(rustix::io::Errno::EXIST) => {
            let fd = rustix::fs::open(path, flags, Mode::empty())?;
            restrict(&fd, mode)?;
            fd
        }
        Err(e) => return Err(e.into()),
    };
    Ok(File::from(fd))
}

/// Take from `path`, if it exists, any permission bits beyond `mode` (SQLite's `-wal` and
/// `-shm`, which it creates beside the database).
pub fn restrict_existing(path: &Path, mode: u32) -> io::Result<()> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => restrict(&fd, mode),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Take away any permission bits beyond `mode`; never add one.
fn restrict(fd: &OwnedFd, mode: u32) -> io::Result<()> {
    let current = rustix::fs::fstat(fd)?.st_mode & 0o7777;
    if current & !mode != 0 {
        rustix::fs::fchmod(fd, Mode::from_raw_mode(current & mode))?;
    }
    Ok(())
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
    pub fn matches_in(&self, dir: &Dir, name: impl AsRef<OsStr>) -> bool {
        dir.stat(name)
            .map(|st| Identity::of_stat(&st) == *self)
            .unwrap_or(false)
    }

    /// The same inode, whatever happened to its content since.
    pub fn same_inode(&self, other: &Identity) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

/// Is this status a regular file?
pub fn is_file(st: &Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::RegularFile
}

/// Is this status a symbolic link?
pub fn is_symlink(st: &Stat) -> bool {
    rustix::fs::FileType::from_raw_mode(st.st_mode).is_symlink()
}

/// The folder mode that goes with a file mode: x wherever r is set (0640 → 0750).
pub fn dir_mode(file_mode: u32) -> u32 {
    let mut mode = file_mode & 0o777;
    for (r, x) in [(0o400, 0o100), (0o040, 0o010), (0o004, 0o001)] {
        if mode & r != 0 {
            mode |= x;
        }
    }
    mode
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn folder_modes_add_x_where_r_is() {
        assert_eq!(dir_mode(0o640), 0o750);
        assert_eq!(dir_mode(0o600), 0o700);
        assert_eq!(dir_mode(0o644), 0o755);
        assert_eq!(dir_mode(0o400), 0o500);
    }

    #[test]
    fn plain_names_only() {
        for ok in ["a.csv", "..a", "a b"] {
            assert!(plain_name(OsStr::new(ok)), "{ok}");
        }
        for bad in ["", ".", "..", "a/b", "/x"] {
            assert!(!plain_name(OsStr::new(bad)), "{bad}");
        }
    }

    #[test]
    fn a_symlinked_folder_is_refused_not_traversed() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret.csv"), b"a\n1\n").unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("g")).unwrap();
        std::os::unix::fs::symlink(outside.join("secret.csv"), root.join("f.csv")).unwrap();
        let dir = Dir::open(&root).unwrap();
        assert!(matches!(dir.child("g"), Err(DirError::Symlink { .. })));
        assert!(matches!(
            dir.child_or_create("g", 0o750),
            Err(DirError::Symlink { .. })
        ));
        assert!(dir.open_read("f.csv").is_err());
        assert!(is_symlink(&dir.stat("f.csv").unwrap()));
        assert!(dir.child("../outside").is_err());
        assert!(matches!(
            Dir::open(&root.join("g")),
            Err(DirError::Symlink { .. })
        ));
        assert!(dir.child("nothing").unwrap_err().is_missing());
    }

    #[test]
    fn created_things_get_their_mode_not_the_umask() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let (sub, created) = dir.child_or_create("s", 0o750).unwrap();
        assert!(created);
        let (_, again) = dir.child_or_create("s", 0o700).unwrap();
        assert!(!again);
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&tmp.path().join("s")), 0o750);
        sub.create_new("f", 0o640).unwrap();
        assert_eq!(mode(&tmp.path().join("s/f")), 0o640);
        assert!(sub.create_new("f", 0o640).is_err(), "never overwrites");
    }

    #[test]
    fn private_files_are_created_with_their_mode_and_never_widened() {
        let tmp = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let new = tmp.path().join("new");
        open_private(&new, 0o640, true).unwrap();
        assert_eq!(mode(&new), 0o640);
        let old = tmp.path().join("old");
        std::fs::write(&old, b"x").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).unwrap();
        open_private(&old, 0o640, false).unwrap();
        assert_eq!(mode(&old), 0o640);
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o600)).unwrap();
        restrict_existing(&old, 0o640).unwrap();
        assert_eq!(mode(&old), 0o600, "never widened");
        restrict_existing(&tmp.path().join("absent"), 0o640).unwrap();
        std::os::unix::fs::symlink(&old, tmp.path().join("link")).unwrap();
        assert!(open_private(&tmp.path().join("link"), 0o640, true).is_err());
    }

    #[test]
    fn renames_can_refuse_to_replace() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("a"), b"a").unwrap();
        std::fs::write(tmp.path().join("b"), b"b").unwrap();
        let err = dir.rename("a", &dir, "b", false).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        dir.rename_durable("a", &dir, "b", true).unwrap();
        assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), b"a");
        let mut names = dir.names().unwrap();
        names.sort();
        assert_eq!(names, vec![std::ffi::OsString::from("b")]);
        dir.unlink("b").unwrap();
        assert!(dir.names().unwrap().is_empty());
    }
}
