//! File-system steps of storing a version: the bounded copy, its sha256, the durable rename into
//! place, and removing the drop original only if it is still the file we read.
//!
//! Every step that makes data durable syncs before the next step can make the previous copy
//! unnecessary, so a crash never leaves neither the original nor a complete stored copy.

use crate::dirs::Dir;
pub use crate::dirs::Identity;
use crate::sha256;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Folder of temporary copies inside a group's storage folder.
pub const TMP_DIR: &str = ".tmp";

/// Copy at most `limit` bytes of `from` into `out` (a new file), in the kernel where it can
/// (`copy_file_range`). Returns the bytes copied, or `Ok(None)` if `from` holds more than
/// `limit` bytes (it grew after the size check); the caller removes the partial copy.
///
/// Neither synced nor hashed here: the caller hashes the copy itself (so the digest describes
/// the stored bytes) and syncs it, both while the copy is parsed.
pub fn copy_limited(from: &File, out: &mut File, limit: u64) -> std::io::Result<Option<u64>> {
    let bytes = std::io::copy(&mut from.take(limit.saturating_add(1)), out)?;
    Ok((bytes <= limit).then_some(bytes))
}

/// How a stored file's drop original is set aside before it is unlinked:
/// `.ingestd-rm-<8 hex>.<name>`. Hidden, so the watcher never takes it; the original name
/// follows, so a crash between the two steps leaves enough to put it back (a name the daemon
/// accepts is at most 233 bytes, so this fits in 255).
pub const ASIDE_PREFIX: &str = ".ingestd-rm-";

/// A fresh aside name for `name`.
fn aside_name(name: &OsStr) -> OsString {
    let mut aside = OsString::from(format!("{ASIDE_PREFIX}{:08x}.", fastrand::u32(..)));
    aside.push(name);
    aside
}

/// The original name an aside name was made from, if `name` is one.
pub fn aside_original(name: &OsStr) -> Option<&OsStr> {
    let rest = name.as_bytes().strip_prefix(ASIDE_PREFIX.as_bytes())?;
    let (tag, original) = (rest.get(..8)?, rest.get(9..)?);
    (tag.iter().all(u8::is_ascii_hexdigit) && rest[8] == b'.' && !original.is_empty())
        .then(|| OsStr::from_bytes(original))
}

/// What [`remove_if_same`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// The file we stored is gone from the drop folder (removed now, or already gone).
    Removed,
    /// The name holds another file, or other content, than the one stored: left in place.
    Changed,
    /// Another file was moved onto the name between the check and the removal: it was put
    /// back under its name, untouched.
    Restored,
    /// As `Restored`, but the name was taken once more meanwhile: the newcomer is kept under
    /// this free name in the same folder.
    KeptAs(String),
}

/// Remove `name` from `dir` if it is still the file we stored, without ever unlinking a
/// file that was moved onto the name after the check.
///
/// A plain "stat, then unlink by name" deletes whatever a writer renamed onto the name in
/// between (a new drop, lost). So the name is first renamed aside (never replacing anything)
/// to a private hidden name, the identity of what was moved is checked there, and only the
/// file we stored is unlinked; anything else is put back with a rename that does not replace,
/// or, if the name was taken again meanwhile, kept under a free name. A crash in between
/// leaves the aside name, which start-up recovery resolves ([`resolve_aside`]).
pub fn remove_if_same(
    dir: &Dir,
    name: impl AsRef<OsStr>,
    identity: &Identity,
) -> std::io::Result<Removal> {
    let name = name.as_ref();
    match dir.stat(name) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Removal::Removed),
        Err(e) => return Err(e),
        Ok(st) if Identity::of_stat(&st) != *identity => return Ok(Removal::Changed),
        Ok(_) => {}
    }
    super::pause::before_remove(dir, name);
    remove_set_aside(dir, name, identity)
}

/// The second half of [`remove_if_same`]: set `name` aside, then remove it if it is the file
/// with `identity`, else put it back.
fn remove_set_aside(dir: &Dir, name: &OsStr, identity: &Identity) -> std::io::Result<Removal> {
    let aside = set_aside(dir, name)?;
    let Some(aside) = aside else {
        // Gone between the check and the rename: nothing of ours to remove.
        return Ok(Removal::Removed);
    };
    match dir.stat(&aside) {
        Ok(st) if Identity::of_stat(&st) == *identity => {
            dir.unlink(&aside)?;
            let _ = dir.sync();
            Ok(Removal::Removed)
        }
        Ok(_) => put_back(dir, &aside, name),
        // Someone took the aside name away: whatever it was, it is not ours to remove.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Removal::Changed),
        Err(e) => Err(e),
    }
}

/// Rename `name` to a fresh aside name (never replacing one); `None` if `name` is gone.
fn set_aside(dir: &Dir, name: &OsStr) -> std::io::Result<Option<OsString>> {
    for _ in 0..16 {
        let aside = aside_name(name);
        match dir.rename(name, dir, &aside, false) {
            Ok(()) => return Ok(Some(aside)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no free aside name to remove the drop original through",
    ))
}

/// Give the file at `aside` its name back, or the first free name like it; never replaces.
fn put_back(dir: &Dir, aside: &OsStr, name: &OsStr) -> std::io::Result<Removal> {
    let text = name.to_string_lossy();
    let mut tried = candidates(&text)
        .skip(1)
        .take(1000)
        .map(OsString::from)
        .collect::<Vec<_>>();
    tried.insert(0, name.to_os_string());
    tried.push(OsString::from(format!(
        "{}-{text}",
        uuid::Uuid::new_v4().simple()
    )));
    for candidate in tried {
        match dir.rename_durable(aside, dir, &candidate, false) {
            Ok(()) if candidate == name => return Ok(Removal::Restored),
            Ok(()) => return Ok(Removal::KeptAs(candidate.to_string_lossy().into_owned())),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NAMETOOLONG.raw_os_error()) => {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(format!(
        "no free name to put {text} back under"
    )))
}

/// What start-up recovery did with an aside name a crash left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AsideFate {
    /// Proven to be a stored version's content: removed, as the interrupted step meant to.
    Removed,
    /// Not proven stored: given back its name, or kept under a free one.
    Restored(Removal),
}

/// Resolve a leftover aside name in `dir`: remove it only if `stored(original, sha256)` says
/// the catalog holds exactly its content as a version of that name; put it back otherwise.
/// Never removes a file whose content it could not read and prove stored.
pub fn resolve_aside(
    dir: &Dir,
    aside: &OsStr,
    stored: impl FnOnce(&OsStr, &str) -> bool,
) -> std::io::Result<AsideFate> {
    let original = aside_original(aside).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an aside name")
    })?;
    let proven = dir
        .open_read(aside)
        .ok()
        .filter(|f| f.metadata().is_ok_and(|m| m.is_file() && m.nlink() == 1))
        .and_then(|f| sha256::of_reader(f).ok())
        .is_some_and(|sha| stored(original, &sha));
    if proven {
        dir.unlink(aside)?;
        let _ = dir.sync();
        return Ok(AsideFate::Removed);
    }
    Ok(AsideFate::Restored(put_back(dir, aside, original)?))
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
        .unwrap_or_else(|| {
            fit_name(
                &format!("{}-{name}", uuid::Uuid::new_v4().simple()),
                NAME_MAX,
            )
        })
}

/// The most bytes a file name may hold (Linux file systems).
pub const NAME_MAX: usize = 255;

/// What a rejected file's reason file is called beside it: `<name>.error.txt`, with `name`
/// cut (keeping its extension) so the whole fits in [`NAME_MAX`] bytes.
pub fn error_file_name(name: &str) -> String {
    const SUFFIX: &str = ".error.txt";
    format!("{}{SUFFIX}", fit_name(name, NAME_MAX - SUFFIX.len()))
}

/// `name` if it fits in `max` bytes, else cut at a character boundary with `~` and its
/// extension (up to 16 bytes) kept: `a-very-long-na~.csv`. The rule names use for a rejected
/// file's safe name, so a file and its reason file read alike.
pub fn fit_name(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let tail = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 16)
        .map(|e| format!("~.{e}"))
        .unwrap_or_else(|| "~".into());
    let mut cut = max.saturating_sub(tail.len());
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &name[..cut])
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
    fn a_copy_is_exact_and_stops_past_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        // Several megabytes of bytes that differ from block to block.
        let data: Vec<u8> = (0..3_500_000usize)
            .map(|i| (i * 31 + i / 4093) as u8)
            .collect();
        std::fs::write(tmp.path().join("a.csv"), &data).unwrap();
        let limit = data.len() as u64;
        let mut out = dir.create_new("b", 0o640).unwrap();
        let copied = copy_limited(&dir.open_read("a.csv").unwrap(), &mut out, limit).unwrap();
        assert_eq!(copied, Some(limit));
        assert_eq!(std::fs::read(tmp.path().join("b")).unwrap(), data);
        // The copy hashes as the original.
        assert_eq!(
            sha256::of_reader(dir.open_read("b").unwrap()).unwrap(),
            sha256::of_bytes(&data)
        );
        // One byte over the limit, found only at the end.
        let mut out = dir.create_new("c", 0o640).unwrap();
        let over = copy_limited(&dir.open_read("a.csv").unwrap(), &mut out, limit - 1).unwrap();
        assert_eq!(over, None);
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
        assert_eq!(
            remove_if_same(&dir, "a.csv", &identity).unwrap(),
            Removal::Changed
        );
        assert!(path.exists());
        let identity = Identity::of_stat(&dir.stat("a.csv").unwrap());
        assert_eq!(identity, Identity::of(&std::fs::metadata(&path).unwrap()));
        assert_eq!(
            remove_if_same(&dir, "a.csv", &identity).unwrap(),
            Removal::Removed
        );
        assert!(!path.exists());
        assert_eq!(
            remove_if_same(&dir, "a.csv", &identity).unwrap(),
            Removal::Removed
        );
        assert!(dir.names().unwrap().is_empty(), "nothing set aside is left");
    }

    /// What happens when a writer renames a new file onto the name after the check: the
    /// newcomer is set aside, seen not to be ours, and put back — never unlinked.
    #[test]
    fn a_file_moved_onto_the_name_after_the_check_is_put_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let path = tmp.path().join("a.csv");
        std::fs::write(&path, b"one").unwrap();
        let stored = Identity::of_stat(&dir.stat("a.csv").unwrap());
        std::fs::write(tmp.path().join(".new"), b"the newcomer").unwrap();
        std::fs::rename(tmp.path().join(".new"), &path).unwrap();
        let removal = remove_set_aside(&dir, OsStr::new("a.csv"), &stored).unwrap();
        assert_eq!(removal, Removal::Restored);
        assert_eq!(std::fs::read(&path).unwrap(), b"the newcomer");
        assert_eq!(dir.names().unwrap(), [OsString::from("a.csv")]);
    }

    #[test]
    fn a_newcomer_whose_name_was_taken_again_is_kept_under_a_free_name() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        std::fs::write(tmp.path().join("a.csv"), b"third").unwrap();
        std::fs::write(tmp.path().join(".ingestd-rm-0000abcd.a.csv"), b"second").unwrap();
        let fate =
            resolve_aside(&dir, OsStr::new(".ingestd-rm-0000abcd.a.csv"), |_, _| false).unwrap();
        assert_eq!(
            fate,
            AsideFate::Restored(Removal::KeptAs("a (2).csv".into()))
        );
        assert_eq!(std::fs::read(tmp.path().join("a.csv")).unwrap(), b"third");
        assert_eq!(
            std::fs::read(tmp.path().join("a (2).csv")).unwrap(),
            b"second"
        );
    }

    #[test]
    fn an_aside_file_is_removed_only_when_its_content_is_proven_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let aside = OsStr::new(".ingestd-rm-00c0ffee.q.csv");
        std::fs::write(tmp.path().join(aside), b"abc").unwrap();
        let sha_abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        // Another content stored under that name proves nothing.
        let fate = resolve_aside(&dir, aside, |name, sha| name == "q.csv" && sha == "0").unwrap();
        assert_eq!(fate, AsideFate::Restored(Removal::Restored));
        std::fs::rename(tmp.path().join("q.csv"), tmp.path().join(aside)).unwrap();
        // A second link may be someone else's file: never removed through this name.
        std::fs::hard_link(tmp.path().join(aside), tmp.path().join(".other")).unwrap();
        let fate = resolve_aside(&dir, aside, |_, sha| sha == sha_abc).unwrap();
        assert_eq!(fate, AsideFate::Restored(Removal::Restored));
        std::fs::remove_file(tmp.path().join(".other")).unwrap();
        std::fs::rename(tmp.path().join("q.csv"), tmp.path().join(aside)).unwrap();
        let fate =
            resolve_aside(&dir, aside, |name, sha| name == "q.csv" && sha == sha_abc).unwrap();
        assert_eq!(fate, AsideFate::Removed);
        assert!(dir.names().unwrap().is_empty());
    }

    #[test]
    fn aside_names_carry_the_original_and_fit() {
        let name = "n".repeat(233);
        let aside = aside_name(OsStr::new(&name));
        assert!(aside.len() <= NAME_MAX, "{}", aside.len());
        assert_eq!(aside_original(&aside), Some(OsStr::new(&name)));
        for not in [
            ".ingestd-rm-",
            ".ingestd-rm-0000abcd.",
            ".ingestd-rm-xyz0abcd.a",
            "a.csv",
        ] {
            assert_eq!(aside_original(OsStr::new(not)), None, "{not}");
        }
    }

    #[test]
    fn error_file_names_fit_and_keep_the_extension() {
        let long = format!("{}.csv", "x".repeat(246));
        assert_eq!(long.len(), 250);
        let error = error_file_name(&long);
        assert_eq!(error.len(), NAME_MAX);
        assert!(error.ends_with("~.csv.error.txt"), "{error}");
        assert_eq!(error_file_name("a.csv"), "a.csv.error.txt");
        // Cut at a character boundary.
        let wide = format!("{}.csv", "é".repeat(125));
        let error = error_file_name(&wide);
        assert!(error.len() <= NAME_MAX && error.ends_with("~.csv.error.txt"));
        assert_eq!(fit_name("abc", 255), "abc");
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
