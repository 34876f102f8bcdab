//! The pid file of `--daemonize`: created and locked (`flock`, exclusive) before the daemon
//! forks, so a second instance is refused on the terminal it was started from, with the pid
//! of the one running; rewritten with the daemon's own pid after the fork; removed at exit.
//!
//! The lock, not the file's existence, is what says "running": a pid file left behind by a
//! crash is not locked by anyone and is simply taken over.

use nix::fcntl::{Flock, FlockArg};
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    #[error(
        "another ingestd (pid {pid}) holds the pid file {path}; stop it first or use another \
         --pid-file"
    )]
    Running { path: PathBuf, pid: String },
    #[error("cannot {about} the pid file {path}: {source}")]
    Io {
        about: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A locked pid file. The lock lasts while this value (or a forked copy of its descriptor)
/// lives; dropping it removes the file.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    file: Flock<File>,
}

impl PidFile {
    /// Create (or take over) `path` and lock it; [`PidFile::write_pid`] fills it in.
    pub fn acquire(path: &Path) -> Result<Self, PidFileError> {
        let io = |about| {
            move |source| PidFileError::Io {
                about,
                path: path.to_path_buf(),
                source,
            }
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io("create the folder of"))?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("open"))?;
        let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(locked) => locked,
            Err((mut file, nix::errno::Errno::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = match pid.trim() {
                    "" => "unknown".to_string(),
                    pid => pid.to_string(),
                };
                return Err(PidFileError::Running {
                    path: path.to_path_buf(),
                    pid,
                });
            }
            Err((_, errno)) => return Err(io("lock")(std::io::Error::from(errno))),
        };
        // Empty until the pid that will run is known (after the fork, with --daemonize): a
        // reader never sees the pid of the parent that is about to exit.
        file.set_len(0).map_err(io("truncate"))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Write this process's pid (after a fork, the daemon's).
    pub fn write_pid(&mut self) -> Result<(), PidFileError> {
        let path = self.path.clone();
        let io = |source| PidFileError::Io {
            about: "write",
            path: path.clone(),
            source,
        };
        self.file.set_len(0).map_err(io)?;
        self.file.rewind().map_err(io)?;
        writeln!(&mut *self.file, "{}", std::process::id()).map_err(io)?;
        self.file.sync_all().map_err(io)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Still locked by us: nobody else can have written it.
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_running_pid_and_the_file_goes_at_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ingestd.pid");
        let mut first = PidFile::acquire(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "",
            "no pid before write_pid"
        );
        first.write_pid().unwrap();
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.trim(), std::process::id().to_string());
        let error = PidFile::acquire(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains(&std::process::id().to_string()), "{error}");
        drop(first);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_file_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingestd.pid");
        std::fs::write(&path, "999999\n").unwrap();
        let mut taken = PidFile::acquire(&path).unwrap();
        taken.write_pid().unwrap();
        let written = std::fs::read_to_string(taken.path()).unwrap();
        assert_eq!(written, format!("{}\n", std::process::id()));
    }
}
