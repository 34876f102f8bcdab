//! Version retention (`ingest.retain_versions`): the stored versions of a source beyond the
//! newest N are pruned, oldest first.
//!
//! A pruned version keeps its row, with status `pruned` and no stored file, so `show` still
//! tells its history (who added it, when, its columns) and version numbers are never reused;
//! its file, vectors and generations are removed. Never pruned: the newest version (it is
//! always among the N kept), the version whose vectors are active (so search never loses its
//! rows to retention), and any version a job is queued for or processing.
//!
//! Pruning runs on the catalog thread (off the reactor), after each accept and after each
//! swap of active vectors, in two steps like a delete: one transaction marks the rows, drops
//! their vectors and audits each prune; then each stored file is removed relative to a handle
//! on its group's storage folder, opened `O_DIRECTORY | O_NOFOLLOW` under the storage root —
//! never through a path that could be a symlink — and the row forgets the path once the file
//! is gone. A crash in between leaves rows marked `pruned` that still name their file; the next
//! prune finishes them, and `fsck` counts such a file as neither orphaned nor missing.
//!
//! This module never removes anything outside `storage_root/<group>/`, never touches a row
//! that is not a stored version, and never decides what the newest version is from anything
//! but version numbers.

use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::clock;
use crate::identity::{Actor, Resolve};
use rusqlite::params;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// The status of a pruned version's row.
pub const PRUNED: &str = "pruned";

/// Statuses of a stored version that counts against the limit.
const STORED: &str = "'ready', 'queued', 'embedding', 'embedded', 'failed'";

/// What retention needs to know; set by the daemon at start and on reload.
#[derive(Debug, Clone, Default)]
pub struct Retention {
    /// Versions kept per source; 0 turns pruning off (the catalog alone, in tests).
    pub keep: u32,
    /// The storage root every stored file lies under, as `<root>/<group>/<file>`.
    pub storage_root: PathBuf,
}

/// One version pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub group: String,
    pub source: String,
    pub version_no: i64,
}

/// Log what a prune after an accept or a swap did, on either backend: a failure is logged,
/// never passed on.
pub fn log_pruned<E: std::fmt::Display>(group: &str, source: &str, pruned: Result<Vec<Pruned>, E>) {
    match pruned {
        Ok(pruned) if !pruned.is_empty() => {
            let versions: Vec<String> = pruned
                .iter()
                .map(|p| format!("v{}", p.version_no))
                .collect();
            tracing::info!(group, source, versions = %versions.join(", "), "versions pruned");
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(group, source, %error, "cannot prune old versions"),
    }
}

impl Db {
    /// Prune `group`/`source` after an accept or a swap. A failure is logged, never passed
    /// on: the accept or swap it follows has happened, and the next one prunes again.
    pub fn prune_after_change(&mut self, group: &str, source: &str) {
        let pruned = match self.source_id(group, source) {
            Ok(Some(id)) => self.prune_source(id),
            Ok(None) => return,
            Err(error) => Err(error),
        };
        log_pruned(group, source, pruned);
    }

    /// Prune the versions of `source_id` beyond the newest `retention.keep`, then remove the
    /// files of every pruned row that still names one. Returns the versions pruned now.
    pub fn prune_source(&mut self, source_id: i64) -> Result<Vec<Pruned>, CatalogError> {
        let keep = self.retention.keep;
        if keep == 0 {
            return Ok(Vec::new());
        }
        let pruned = self.write(|tx| {
            let (group, source): (String, String) = tx.query_row(
                "SELECT g.name, s.name FROM sources s JOIN groups g ON g.id = s.group_id
                 WHERE s.id = ?1",
                [source_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            // Oldest first, past the newest `keep`; the active version and any a job still
            // needs are passed over, not counted.
            let sql = format!(
                "SELECT v.id, v.version_no FROM versions v
                 WHERE v.source_id = ?1 AND v.version_no IS NOT NULL AND v.status IN ({STORED})
                   AND v.version_no NOT IN
                       (SELECT version_no FROM versions
                        WHERE source_id = ?1 AND version_no IS NOT NULL AND status IN ({STORED})
                        ORDER BY version_no DESC LIMIT ?2)
                   AND NOT EXISTS (SELECT 1 FROM generations n
                                   WHERE n.version_id = v.id AND n.state = 'active')
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.version_id = v.id
                                   AND j.state IN ('queued', 'processing'))
                 ORDER BY v.version_no"
            );
            let chosen: Vec<(i64, i64)> = tx
                .prepare(&sql)?
                .query_map(params![source_id, keep], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            let mut records = Vec::new();
            let mut pruned = Vec::new();
            for (id, version_no) in chosen {
                tx.execute(
                    "UPDATE versions SET status = ?1, updated_at = ?2 WHERE id = ?3",
                    params![PRUNED, clock::now_ms(), id],
                )?;
                // Not active (checked above): nothing searches these vectors.
                tx.execute(
                    "DELETE FROM vectors WHERE generation_id IN
                        (SELECT id FROM generations WHERE version_id = ?1)",
                    [id],
                )?;
                tx.execute("DELETE FROM generations WHERE version_id = ?1", [id])?;
                records.push(
                    AuditRecord::new(Actor::daemon(), "prune", "ok")
                        .on(&group, &source)
                        .version(Some(format!("v{version_no}")))
                        .detail(format!(
                            "ingest.retain_versions = {keep}: v{version_no} pruned, its stored \
                             file and vectors removed"
                        )),
                );
                pruned.push(Pruned {
                    group: group.clone(),
                    source: source.clone(),
                    version_no,
                });
            }
            Ok((pruned, records))
        })?;
        self.finish_prunes()?;
        Ok(pruned)
    }

    /// Remove the stored file of every pruned row that still names one, and forget the path
    /// of each one that is gone. A file that cannot be removed stays named, to be tried again
    /// by the next prune.
    pub fn finish_prunes(&mut self) -> Result<usize, CatalogError> {
        let marked: Vec<(i64, String)> = self
            .conn()
            .prepare_cached(
                "SELECT id, stored_path FROM versions
                 WHERE status = ?1 AND stored_path IS NOT NULL",
            )?
            .query_map([PRUNED], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        if marked.is_empty() {
            return Ok(0);
        }
        let root = self.retention.storage_root.clone();
        let mut gone = Vec::new();
        for (id, path) in marked {
            match remove_stored(&root, Path::new(&path)) {
                Ok(()) => gone.push(id),
                Err(error) => {
                    tracing::warn!(%path, %error, "cannot remove a pruned version's file");
                }
            }
        }
        let removed = gone.len();
        self.write(|tx| {
            for id in gone {
                tx.execute(
                    "UPDATE versions SET stored_path = NULL WHERE id = ?1 AND status = ?2",
                    params![id, PRUNED],
                )?;
            }
            Ok(((), Vec::new()))
        })?;
        Ok(removed)
    }
}

/// Why a stored file was not removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("it is not a file directly in a group folder under the storage root {root}")]
    Outside { root: PathBuf },
    #[error("cannot {about}: {source}")]
    Io {
        about: &'static str,
        source: nix::Error,
    },
}

/// Remove `path`, which must be `root/<group>/<file>`: open the group folder relative to the
/// root without following a symlink, and unlink the file relative to that handle. A file
/// already gone counts as removed.
pub fn remove_stored(root: &Path, path: &Path) -> Result<(), RemoveError> {
    use nix::fcntl::{OFlag, open, openat};
    use nix::sys::stat::Mode;
    use nix::unistd::{UnlinkatFlags, unlinkat};
    let outside = || RemoveError::Outside {
        root: root.to_path_buf(),
    };
    let relative = path.strip_prefix(root).map_err(|_| outside())?;
    let mut parts = relative.components();
    let (Some(group), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(outside());
    };
    let (std::path::Component::Normal(group), std::path::Component::Normal(file)) = (group, file)
    else {
        return Err(outside());
    };
    let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let io = |about| move |source| RemoveError::Io { about, source };
    let root_fd: OwnedFd =
        open(root, dir_flags, Mode::empty()).map_err(io("open the storage root"))?;
    let group_fd: OwnedFd = match openat(
        &root_fd,
        group,
        dir_flags | OFlag::O_NOFOLLOW,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        // The whole group folder is gone: so is the file.
        Err(nix::Error::ENOENT) => return Ok(()),
        Err(e) => return Err(io("open the group's storage folder (a symlink is refused)")(e)),
    };
    match unlinkat(&group_fd, file, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::Error::ENOENT) => Ok(()),
        Err(e) => Err(io("remove the file")(e)),
    }
}

#[cfg(test)]
mod tests;
