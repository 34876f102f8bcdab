//! `<group>/.rejected/`: the one folder in a drop tree the daemon writes into, opened through
//! the group folder's handle and trusted only if it is a real folder owned by the daemon's user.
//!
//! A dropper can create `.rejected` first (as a link to `/etc/cron.d`, or as a folder of their
//! own): a link fails to open, a folder owned by anyone else is refused, and in both cases
//! nothing is written and the file stays where it is (reported in `status`). Who may read what
//! lands here follows the group folder: `.rejected/` takes the group folder's group and read
//! bits (never its write bits), so the people who can list the group folder can read the
//! `.error.txt` files; a rejected file keeps its own owner and mode. This module never moves or
//! writes anything itself.

use crate::dirs::{Dir, DirError};
use std::path::PathBuf;

/// `.rejected/` opened and checked, with the mode and group its `.error.txt` files get.
#[derive(Debug)]
pub struct Kept {
    pub dir: Dir,
    pub file_mode: u32,
    pub gid: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum RejectedDirError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error(
        "{path} belongs to uid {owner}, not to the daemon's user (uid {euid}); nothing is \
         written through it (remove it and the daemon creates its own)"
    )]
    NotOurs {
        path: PathBuf,
        owner: u32,
        euid: u32,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Name of the folder rejected files move to.
pub const NAME: &str = ".rejected";

/// Mode of `.error.txt` files given the group folder's mode: the daemon reads and writes, and
/// the group folder's readers (group, others) read.
pub fn file_mode(group_folder_mode: u32) -> u32 {
    0o600 | (group_folder_mode & 0o044)
}

/// Open (creating if needed) `.rejected/` in the group folder `group`.
pub fn open(group: &Dir) -> Result<Kept, RejectedDirError> {
    let io = |source: std::io::Error| DirError::Io {
        path: group.shown().to_path_buf(),
        about: "stat",
        source,
    };
    let group_st = group.stat_self().map_err(io)?;
    let file_mode = file_mode(group_st.st_mode);
    let folder_mode = crate::dirs::dir_mode(file_mode);
    let (dir, created) = group.child_or_create(NAME, folder_mode)?;
    let st = dir.stat_self().map_err(io)?;
    let euid = rustix::process::geteuid().as_raw();
    if st.st_uid != euid {
        return Err(RejectedDirError::NotOurs {
            path: dir.shown().to_path_buf(),
            owner: st.st_uid,
            euid,
        });
    }
    let mut gid = Some(st.st_gid).filter(|g| *g == group_st.st_gid);
    if created {
        // Best effort: a daemon that is not root can only give its own groups away.
        if dir
            .set_owner_mode(Some(group_st.st_gid), folder_mode)
            .is_ok()
        {
            gid = Some(group_st.st_gid);
        }
    }
    Ok(Kept {
        dir,
        file_mode,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_files_are_readable_by_the_group_folders_readers_only() {
        assert_eq!(file_mode(0o1777), 0o644);
        assert_eq!(file_mode(0o2770), 0o640);
        assert_eq!(file_mode(0o700), 0o600);
        assert_eq!(file_mode(0o755), 0o644);
    }

    #[test]
    fn a_rejected_link_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::create_dir(tmp.path().join("g")).unwrap();
        std::os::unix::fs::symlink(&outside, tmp.path().join("g/.rejected")).unwrap();
        let group = Dir::open(&tmp.path().join("g")).unwrap();
        assert!(matches!(
            open(&group),
            Err(RejectedDirError::Dir(DirError::Symlink { .. }))
        ));
        std::fs::remove_file(tmp.path().join("g/.rejected")).unwrap();
        let kept = open(&group).unwrap();
        assert_eq!(kept.dir.shown(), tmp.path().join("g/.rejected"));
    }
}
