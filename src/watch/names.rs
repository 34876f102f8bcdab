//! Which paths under the drop root mean what: group folders, files to ingest, names to ignore.
//!
//! Pure functions of a path and the drop root. The watcher and the start-up scan both classify
//! through here, so a name is treated the same however it was found.

use std::path::{Path, PathBuf};

/// Longest group name.
pub const MAX_GROUP_NAME: usize = 64;

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
    /// Something deeper than `<group>/<file>`: reported, not ingested.
    Nested(PathBuf),
    /// Not under the drop root at all.
    Outside,
}

/// A group name is 1–64 of `[A-Za-z0-9._-]`, not starting with `.`.
pub fn valid_group_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_GROUP_NAME
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Why a group name is not valid, for messages.
pub fn group_name_problem(name: &str) -> String {
    format!(
        "{name:?} is not a valid group name: use 1 to {MAX_GROUP_NAME} letters, digits, '.', '_' \
         or '-', not starting with '.'"
    )
}

/// Hidden and temporary names that writers and editors leave behind.
pub fn is_ignored_name(name: &str) -> bool {
    const SUFFIXES: &[&str] = &[".tmp", ".part", ".crdownload", ".swp"];
    let lower = name.to_ascii_lowercase();
    name.starts_with('.')
        || name.starts_with("~$")
        || name.ends_with('~')
        || SUFFIXES.iter().any(|s| lower.ends_with(s))
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
        // A name that is not UTF-8 cannot be a group or a source name we can show.
        None => return PathKind::Nested(path.to_path_buf()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names() {
        for ok in ["sales", "Q1.2026", "a", "a-b_c", &"x".repeat(64)] {
            assert!(valid_group_name(ok), "{ok}");
        }
        for bad in [
            "",
            ".hidden",
            "a b",
            "ü",
            "a/b",
            &"x".repeat(65),
            "semi;colon",
        ] {
            assert!(!valid_group_name(bad), "{bad}");
        }
    }

    #[test]
    fn ignored_names() {
        for ignored in [
            ".x.csv",
            "~$book.xlsx",
            "a.csv.tmp",
            "a.PART",
            "a.crdownload",
            ".a.swp",
            "a.csv~",
        ] {
            assert!(is_ignored_name(ignored), "{ignored}");
        }
        for taken in ["sales.csv", "tmp.csv", "part.xlsx", "a~b.csv"] {
            assert!(!is_ignored_name(taken), "{taken}");
        }
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
        for (path, is_dir, want) in cases {
            assert_eq!(&classify(root, Path::new(path), *is_dir), want, "{path}");
        }
    }
}
