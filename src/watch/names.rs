//! Which paths under the drop root mean what: group folders, files to ingest, names to ignore.
//!
//! Pure functions of a path and the drop root. The watcher and the start-up scan both classify
//! through here, so a name is treated the same however it was found. The rules for single names
//! (valid groups, ignored files) live in `ingestd_proto::names`, shared with `ingestctl`.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

// The name rules are the protocol crate's, shared with `ingestctl add`; re-exported so the
// daemon names them where it classifies paths.
pub use ingestd_proto::names::{
    MAX_GROUP_NAME, group_name_problem, is_ignored_name, valid_group_name,
};

/// What a path under the drop root is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathKind {
    /// The drop root itself.
    Root,
    /// A hidden or temporary name (`.x`, `~$x`, `x.tmp`, `x.part`, `x.crdownload`, `x.swp`), or
    /// anything inside a hidden folder (`.rejected/`): never ours to touch.
    Ignored,
    /// A file directly in the drop root: reported, not ingested.
    RootFile(PathBuf),
    /// A folder directly in the drop root with a valid group name.
    Group(String),
    /// A folder directly in the drop root whose name is not a valid group name.
    InvalidGroup(String),
    /// A file in a group folder: a candidate for ingestion.
    GroupFile { group: String, name: String },
    /// A file in a group folder whose name is not UTF-8: taken only to be rejected (moved to
    /// `.rejected/` under [`safe_name`]), so it never stays in the drop folder forever.
    OddName { group: String, raw: OsString },
    /// Something deeper than `<group>/<file>`: reported, not ingested.
    Nested(PathBuf),
    /// Not under the drop root at all.
    Outside,
}

/// Classify `path` (a file or folder, as `is_dir` says) under `root`.
pub fn classify(root: &Path, path: &Path, is_dir: bool) -> PathKind {
    let Ok(relative) = path.strip_prefix(root) else {
        return PathKind::Outside;
    };
    let parts: Vec<&str> = match relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<Vec<_>>>()
    {
        Some(parts) => parts,
        // A name that is not UTF-8 cannot be a source name we can show; as the file of a valid
        // group it is rejected, anywhere else it is left alone.
        None => return odd(relative, path, is_dir),
    };
    if parts.iter().any(|p| is_ignored_name(p)) {
        return PathKind::Ignored;
    }
    match parts.as_slice() {
        [] => PathKind::Root,
        [name] if is_dir => {
            if valid_group_name(name) {
                PathKind::Group(name.to_string())
            } else {
                PathKind::InvalidGroup(name.to_string())
            }
        }
        [_] => PathKind::RootFile(path.to_path_buf()),
        [group, _] if !valid_group_name(group) => PathKind::InvalidGroup(group.to_string()),
        [_, _] if is_dir => PathKind::Nested(path.to_path_buf()),
        [group, name] => PathKind::GroupFile {
            group: group.to_string(),
            name: name.to_string(),
        },
        _ => PathKind::Nested(path.to_path_buf()),
    }
}

fn odd(relative: &Path, path: &Path, is_dir: bool) -> PathKind {
    let parts: Vec<&OsStr> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part),
            _ => None,
        })
        .collect();
    match parts.as_slice() {
        [group, name] if !is_dir => match group.to_str() {
            Some(group) if valid_group_name(group) && !name.as_bytes().starts_with(b".") => {
                PathKind::OddName {
                    group: group.to_string(),
                    raw: name.to_os_string(),
                }
            }
            _ => PathKind::Nested(path.to_path_buf()),
        },
        _ => PathKind::Nested(path.to_path_buf()),
    }
}

/// Longest name a source may have: its stored copy `<stem>_v<N>.<ext>` must fit in the 255
/// bytes a file name may hold, with room for any version number, and its `.error.txt` too.
pub const MAX_SOURCE_NAME: usize = 255 - "_v".len() - 20;

/// A printable stand-in for a name: bytes that are not UTF-8, control characters and `\`
/// written as `\xNN`, cut to [`MAX_SOURCE_NAME`] bytes (keeping the extension), so it can be
/// shown and used as a file name in `.rejected/`.
pub fn safe_name(raw: &OsStr) -> String {
    let mut out = String::new();
    for chunk in raw.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == '\\' || c == '/' {
                for b in c.to_string().bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if out.len() <= MAX_SOURCE_NAME {
        return out;
    }
    let ext = Path::new(&out)
        .extension()
        .and_then(|e| e.to_str())
        .filter(|e| e.len() <= 16)
        .map(|e| format!("~.{e}"))
        .unwrap_or_else(|| "~".into());
    let mut cut = MAX_SOURCE_NAME - ext.len();
    while !out.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{ext}", &out[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_names_are_printable_and_short_enough() {
        assert_eq!(
            safe_name(OsStr::from_bytes(b"r\xe9sum\xe9.csv")),
            "r\\xe9sum\\xe9.csv"
        );
        assert_eq!(safe_name(OsStr::new("a\nb.csv")), "a\\x0ab.csv");
        assert_eq!(safe_name(OsStr::new("ok.csv")), "ok.csv");
        let long = format!("{}.csv", "x".repeat(300));
        let safe = safe_name(OsStr::new(&long));
        assert_eq!(safe.len(), MAX_SOURCE_NAME);
        assert!(safe.ends_with("~.csv"), "{safe}");
    }

    #[test]
    fn classify_table() {
        let root = Path::new("/drop");
        let cases: &[(&str, bool, PathKind)] = &[
            ("/drop", true, PathKind::Root),
            ("/drop/sales", true, PathKind::Group("sales".into())),
            (
                "/drop/bad name",
                true,
                PathKind::InvalidGroup("bad name".into()),
            ),
            ("/drop/.cache", true, PathKind::Ignored),
            (
                "/drop/loose.csv",
                false,
                PathKind::RootFile("/drop/loose.csv".into()),
            ),
            (
                "/drop/sales/q1.csv",
                false,
                PathKind::GroupFile {
                    group: "sales".into(),
                    name: "q1.csv".into(),
                },
            ),
            ("/drop/sales/.rejected/q1.csv", false, PathKind::Ignored),
            ("/drop/sales/.rejected", true, PathKind::Ignored),
            ("/drop/sales/~$q1.xlsx", false, PathKind::Ignored),
            (
                "/drop/sales/sub",
                true,
                PathKind::Nested("/drop/sales/sub".into()),
            ),
            (
                "/drop/sales/sub/x.csv",
                false,
                PathKind::Nested("/drop/sales/sub/x.csv".into()),
            ),
            (
                "/drop/bad name/x.csv",
                false,
                PathKind::InvalidGroup("bad name".into()),
            ),
            ("/elsewhere/x.csv", false, PathKind::Outside),
        ];
        let odd = OsStr::from_bytes(b"/drop/sales/r\xe9sum\xe9.csv");
        assert_eq!(
            classify(root, Path::new(odd), false),
            PathKind::OddName {
                group: "sales".into(),
                raw: OsStr::from_bytes(b"r\xe9sum\xe9.csv").to_os_string(),
            }
        );
        let odd_dir = OsStr::from_bytes(b"/drop/sales/\xff");
        assert!(matches!(
            classify(root, Path::new(odd_dir), true),
            PathKind::Nested(_)
        ));
        for (path, is_dir, want) in cases {
            assert_eq!(&classify(root, Path::new(path), *is_dir), want, "{path}");
        }
    }
}
