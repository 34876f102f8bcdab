//! Putting local files into a group's drop folder so that ingestd never sees half a file: every
//! file is checked before any is copied, then each is written under a hidden name (which the
//! daemon ignores), synced to disk, and renamed into place in one step.
//!
//! Local file work only: no socket. Messages name the file or folder and what to do.

use ingestd_proto::names::is_ignored_name;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};

/// A local file that passed the checks, and the name it gets in the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// As given on the command line.
    pub file: PathBuf,
    /// Its file name: the source name in the group.
    pub name: String,
}

/// Check every file before copying any: it exists, is a regular file (symlinks are followed),
/// can be read, has a name the daemon takes, and no two files share a name. Every problem is
/// reported, not just the first.
pub fn check(files: &[PathBuf]) -> Result<Vec<Upload>, Vec<String>> {
    let mut problems = Vec::new();
    let mut uploads: Vec<Upload> = Vec::new();
    let mut seen: HashMap<String, &Path> = HashMap::new();
    for file in files {
        let shown = file.display();
        let name = match file.file_name().map(|n| n.to_str()) {
            Some(Some(name)) => name.to_string(),
            Some(None) => {
                problems.push(format!(
                    "{shown}: the file name is not valid UTF-8; rename it"
                ));
                continue;
            }
            None => {
                problems.push(format!("{shown}: not a file name"));
                continue;
            }
        };
        match fs::metadata(file) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                problems.push(format!("{shown}: no such file"));
                continue;
            }
            Err(e) => {
                problems.push(format!("{shown}: cannot look at it: {}", reason(&e)));
                continue;
            }
            Ok(meta) if meta.is_dir() => {
                problems.push(format!("{shown}: is a folder; add the files in it instead"));
                continue;
            }
            Ok(meta) if !meta.is_file() => {
                problems.push(format!("{shown}: is not a regular file"));
                continue;
            }
            Ok(_) => {}
        }
        // Opening a regular file never blocks, unlike a FIFO, which the check above rules out.
        if let Err(e) = File::open(file) {
            problems.push(format!("{shown}: cannot be read: {}", reason(&e)));
            continue;
        }
        if is_ignored_name(&name) {
            problems.push(format!(
                "{shown}: ingestd ignores hidden and temporary names (.*, ~$*, *~, *.tmp, *.part, \
                 *.crdownload, *.swp); rename it"
            ));
            continue;
        }
        if let Some(first) = seen.get(&name) {
            problems.push(format!(
                "{shown}: same name as {}; both would be the source {name}: rename one, or add \
                 them to different groups",
                first.display()
            ));
            continue;
        }
        seen.insert(name.clone(), file);
        uploads.push(Upload {
            file: file.clone(),
            name,
        });
    }
    if problems.is_empty() {
        Ok(uploads)
    } else {
        Err(problems)
    }
}

/// The group's folder under the drop root, created if missing (a new folder is a new group).
pub fn group_folder(drop_root: &Path, group: &str) -> Result<PathBuf, String> {
    let folder = drop_root.join(group);
    match fs::symlink_metadata(&folder) {
        Ok(meta) if meta.is_dir() => return Ok(folder),
        Ok(_) => {
            return Err(format!(
                "{} is not a folder, so it cannot hold group '{group}' (ingestd never follows \
                 symlinks)",
                folder.display()
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(format!(
                "cannot look at {}: {}",
                folder.display(),
                reason(&e)
            ));
        }
    }
    match fs::create_dir(&folder) {
        Ok(()) => Ok(folder),
        // Someone else made it meanwhile: as good.
        Err(e) if e.kind() == ErrorKind::AlreadyExists && folder.is_dir() => Ok(folder),
        Err(e) if e.kind() == ErrorKind::PermissionDenied => Err(format!(
            "cannot create the folder of the new group '{group}', {}: permission denied; you \
             need write access to {} (or ask an administrator to create the group)",
            folder.display(),
            drop_root.display()
        )),
        Err(e) => Err(format!(
            "cannot create the folder of group '{group}', {}: {}",
            folder.display(),
            reason(&e)
        )),
    }
}

/// The hidden name a file is written under before it is renamed into place.
pub fn temporary_name(name: &str) -> String {
    format!(".{name}.ingestctl-{}.part", std::process::id())
}

/// Copy `upload` into `folder` under a hidden temporary name, sync it, and rename it to its
/// name. Returns where it now is. On failure nothing is left behind.
pub fn place(upload: &Upload, folder: &Path) -> Result<PathBuf, String> {
    let tmp = folder.join(temporary_name(&upload.name));
    let target = folder.join(&upload.name);
    let result = copy_synced(&upload.file, &tmp).and_then(|()| fs::rename(&tmp, &target));
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(if e.kind() == ErrorKind::PermissionDenied {
            format!(
                "{}: cannot write into {}: permission denied; you need write access to that \
                 folder",
                upload.file.display(),
                folder.display()
            )
        } else {
            format!(
                "{}: copying to {} failed: {}",
                upload.file.display(),
                target.display(),
                reason(&e)
            )
        });
    }
    // The rename is durable once the folder is synced; some file systems cannot sync a
    // folder, and the file itself is already safe, so a failure here changes nothing.
    if let Ok(dir) = File::open(folder) {
        let _ = dir.sync_all();
    }
    Ok(target)
}

fn copy_synced(from: &Path, to: &Path) -> io::Result<()> {
    let mut source = File::open(from)?;
    let mut copy = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(to)?;
    io::copy(&mut source, &mut copy)?;
    copy.sync_all()
}

/// An I/O error as a short phrase: "permission denied", not "Permission denied (os error 13)".
fn reason(error: &io::Error) -> String {
    match error.kind() {
        ErrorKind::PermissionDenied => "permission denied".to_string(),
        ErrorKind::NotFound => "no such file or folder".to_string(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Whether permission bits bind us: they do not for root, which CI may be.
    fn permissions_apply(dir: &Path) -> bool {
        let probe = dir.join("probe");
        fs::write(&probe, "x").unwrap();
        fs::set_permissions(&probe, fs::Permissions::from_mode(0o000)).unwrap();
        let binds = File::open(&probe).is_err();
        fs::remove_file(&probe).unwrap();
        binds
    }

    #[test]
    fn good_files_pass_with_their_names() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        let a = dir.path().join("q1.csv");
        let b = dir.path().join("sub/q2.xlsx");
        fs::write(&a, "a,b\n1,2\n").unwrap();
        fs::write(&b, "x").unwrap();
        let link = dir.path().join("link.csv");
        std::os::unix::fs::symlink(&a, &link).unwrap();
        let uploads = check(&[a.clone(), b.clone(), link.clone()]).unwrap();
        let names: Vec<&str> = uploads.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["q1.csv", "q2.xlsx", "link.csv"]);
        assert_eq!(uploads[1].file, b);
    }

    #[test]
    fn every_problem_is_reported_before_anything_is_copied() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("q1.csv");
        fs::write(&good, "a\n1\n").unwrap();
        fs::create_dir(dir.path().join("other")).unwrap();
        let twin = dir.path().join("other/q1.csv");
        fs::write(&twin, "a\n2\n").unwrap();
        let hidden = dir.path().join(".secret.csv");
        fs::write(&hidden, "a\n").unwrap();
        let missing = dir.path().join("missing.csv");
        let folder = dir.path().join("other");
        let err = check(&[good, missing, folder, twin, hidden]).unwrap_err();
        assert_eq!(err.len(), 4, "{err:#?}");
        assert!(err[0].ends_with("missing.csv: no such file"), "{}", err[0]);
        assert!(err[1].contains("is a folder"), "{}", err[1]);
        assert!(err[2].contains("other/q1.csv: same name as"), "{}", err[2]);
        assert!(err[2].contains("rename one"), "{}", err[2]);
        assert!(
            err[3].contains("ignores hidden and temporary names"),
            "{}",
            err[3]
        );
    }

    #[test]
    fn an_unreadable_file_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        if !permissions_apply(dir.path()) {
            return; // root reads everything
        }
        let locked = dir.path().join("locked.csv");
        fs::write(&locked, "a\n").unwrap();
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o200)).unwrap();
        let err = check(&[locked]).unwrap_err();
        assert_eq!(err.len(), 1);
        assert!(
            err[0].ends_with("locked.csv: cannot be read: permission denied"),
            "{}",
            err[0]
        );
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.csv");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return; // no mkfifo here
        }
        let err = check(&[fifo]).unwrap_err();
        assert!(err[0].contains("not a regular file"), "{}", err[0]);
    }

    #[test]
    fn a_new_group_gets_its_folder_and_files_land_whole() {
        let root = tempfile::tempdir().unwrap();
        let local = tempfile::tempdir().unwrap();
        let file = local.path().join("q1.csv");
        fs::write(&file, "a,b\n1,2\n").unwrap();
        let folder = group_folder(root.path(), "sales").unwrap();
        assert_eq!(folder, root.path().join("sales"));
        assert!(folder.is_dir());
        assert_eq!(group_folder(root.path(), "sales").unwrap(), folder);

        let upload = Upload {
            file,
            name: "q1.csv".into(),
        };
        let placed = place(&upload, &folder).unwrap();
        assert_eq!(placed, folder.join("q1.csv"));
        assert_eq!(fs::read(&placed).unwrap(), b"a,b\n1,2\n");
        let left: Vec<_> = fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, ["q1.csv"], "no temporary file is left");
        // Adding again replaces the file in the drop folder, as a re-drop would.
        fs::write(&upload.file, "a,b\n3,4\n").unwrap();
        place(&upload, &folder).unwrap();
        assert_eq!(fs::read(&placed).unwrap(), b"a,b\n3,4\n");
    }

    #[test]
    fn the_temporary_name_is_one_the_daemon_ignores() {
        let tmp = temporary_name("q1.csv");
        assert!(tmp.starts_with(".q1.csv.ingestctl-"), "{tmp}");
        assert!(is_ignored_name(&tmp), "{tmp}");
    }

    #[test]
    fn a_file_in_place_of_the_group_folder_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("sales"), "x").unwrap();
        let err = group_folder(root.path(), "sales").unwrap_err();
        assert!(err.contains("is not a folder"), "{err}");
    }

    #[test]
    fn no_write_access_says_which_folder() {
        let root = tempfile::tempdir().unwrap();
        if !permissions_apply(root.path()) {
            return; // root writes everywhere
        }
        let local = tempfile::tempdir().unwrap();
        let file = local.path().join("q1.csv");
        fs::write(&file, "a\n1\n").unwrap();
        let folder = group_folder(root.path(), "sales").unwrap();
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o555)).unwrap();
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o555)).unwrap();
        let upload = Upload {
            file,
            name: "q1.csv".into(),
        };
        let err = place(&upload, &folder).unwrap_err();
        assert!(
            err.contains(&format!("cannot write into {}", folder.display())),
            "{err}"
        );
        assert!(err.contains("need write access"), "{err}");
        let err = group_folder(root.path(), "new").unwrap_err();
        assert!(err.contains("permission denied"), "{err}");
        assert!(
            err.contains(&format!("write access to {}", root.path().display())),
            "{err}"
        );
        fs::set_permissions(root.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&folder, fs::Permissions::from_mode(0o755)).unwrap();
    }
}
