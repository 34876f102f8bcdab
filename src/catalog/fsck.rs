//! The consistency check behind `ingestctl fsck`: the catalog against the storage folder,
//! vectors against their sources, jobs against the workers that should be running them.
//!
//! Read-only unless asked to repair, and a repair never deletes a file: a stored file no row
//! knows moves to `STORAGE_ROOT/lost+found/<group>/`, where an operator can look at it. Rows
//! whose file is gone are removed (with their vectors and jobs) and audited, since nothing
//! can be embedded or served from them; vectors of versions that no longer exist are removed;
//! jobs marked processing with no worker go back to the queue. A pruned version
//! (`catalog::retain`) has no file by design: it is never missing, and a file it still names
//! (its removal interrupted) is never an orphan.

use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::identity::Actor;
use crate::protocol::FsckReport;
use rusqlite::params;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The folder orphaned files are moved to, under the storage root.
pub const LOST_AND_FOUND: &str = "lost+found";

/// Stored files under `root`: `<group>/<file>`, skipping temporaries and lost+found.
pub(in crate::catalog) fn stored_files(root: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(groups) = std::fs::read_dir(root) else {
        return files;
    };
    for group in groups.flatten() {
        let name = group.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == LOST_AND_FOUND {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(group.path()) else {
            continue;
        };
        for entry in entries.flatten() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if !hidden && entry.file_type().is_ok_and(|t| t.is_file()) {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    files
}

/// A free name for `file` in `dir`: the same name, else `name.1`, `name.2`, …
/// Move each of `files` (stored files no row names) to `storage_root/lost+found/<group>/`, under
/// a free name; answers where each went, or why one could not be moved (the rest stay).
pub(in crate::catalog) fn move_to_lost_and_found(
    storage_root: &Path,
    files: &[PathBuf],
) -> Result<Vec<String>, String> {
    let mut moved = Vec::with_capacity(files.len());
    for file in files {
        let group = file
            .parent()
            .and_then(Path::file_name)
            .map(|g| g.to_os_string())
            .unwrap_or_default();
        let dir = storage_root.join(LOST_AND_FOUND).join(group);
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let target = free_name(&dir, file);
        std::fs::rename(file, &target).map_err(|e| {
            format!(
                "cannot move {} to {}: {e}",
                file.display(),
                target.display()
            )
        })?;
        moved.push(target.display().to_string());
    }
    Ok(moved)
}

fn free_name(dir: &Path, file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    let mut candidate = dir.join(&name);
    let mut n = 1;
    while candidate.exists() {
        let mut numbered = name.clone();
        numbered.push(format!(".{n}"));
        candidate = dir.join(numbered);
        n += 1;
    }
    candidate
}

impl Db {
    /// Check (and with `repair`, fix) the catalog against `storage_root`. `running` are the
    /// jobs a worker was processing at `running_at` (ms); a job started less than a second
    /// before that may not have reached the list yet, so it is not called stuck.
    pub fn fsck(
        &mut self,
        storage_root: &Path,
        running: &[i64],
        running_at: i64,
        repair: bool,
        actor: &Actor,
    ) -> Result<FsckReport, CatalogError> {
        // Rows that name a stored file: every state but a rejection. Reservations count, so
        // a file being stored right now is never taken for an orphan.
        let rows: Vec<(i64, String, String, Option<i64>, String)> = self
            .conn()
            .prepare(
                "SELECT v.id, g.name, s.name, v.version_no, v.stored_path FROM versions v
                 JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
                 WHERE v.stored_path IS NOT NULL
                   AND v.status NOT IN ('invalid', 'validating', 'deleting', 'pruned')",
            )?
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect::<Result<_, _>>()?;
        let reserved: HashSet<PathBuf> = self
            .conn()
            .prepare("SELECT stored_path FROM versions WHERE stored_path IS NOT NULL")?
            .query_map([], |r| r.get::<_, String>(0))?
            .map(|p| p.map(PathBuf::from))
            .collect::<Result<_, _>>()?;
        let orphan_files: Vec<PathBuf> = stored_files(storage_root)
            .into_iter()
            .filter(|f| !reserved.contains(f))
            .collect();
        let missing: Vec<&(i64, String, String, Option<i64>, String)> = rows
            .iter()
            .filter(|(_, _, _, _, path)| !Path::new(path).is_file())
            .collect();
        let orphan_vectors: i64 = self.conn().query_row(
            "SELECT COUNT(*) FROM vectors WHERE generation_id NOT IN
                (SELECT n.id FROM generations n JOIN versions v ON v.id = n.version_id)
               AND generation_id NOT IN (SELECT generation_id FROM vector_trash)",
            [],
            |r| r.get(0),
        )?;
        let running: HashSet<i64> = running.iter().copied().collect();
        let stuck: Vec<i64> = self
            .conn()
            .prepare(
                "SELECT id FROM jobs WHERE state = 'processing' AND started_at < ?1 ORDER BY id",
            )?
            .query_map([running_at - 1000], |r| r.get(0))?
            .collect::<Result<Vec<i64>, _>>()?
            .into_iter()
            .filter(|id| !running.contains(id))
            .collect();
        let mut report = FsckReport {
            orphan_files: orphan_files
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            missing_files: missing
                .iter()
                .map(|(_, g, s, v, p)| format!("{g}/{s} v{} ({p})", v.unwrap_or_default()))
                .collect(),
            orphan_vectors: orphan_vectors as u64,
            stuck_jobs: stuck.clone(),
            repaired: false,
            moved: Vec::new(),
            pending_deletes: Vec::new(),
        };
        if !repair || report.is_clean() {
            return Ok(report);
        }

        // Files first: moved, never deleted.
        report.moved =
            move_to_lost_and_found(storage_root, &orphan_files).map_err(CatalogError::NotFound)?;
        let missing_ids: Vec<i64> = missing.iter().map(|m| m.0).collect();
        let detail = format!(
            "fsck repair: {} orphaned files moved to {}, {} rows without files removed, \
             {} orphaned vectors removed, {} stuck jobs queued again",
            report.moved.len(),
            storage_root.join(LOST_AND_FOUND).display(),
            missing_ids.len(),
            orphan_vectors,
            stuck.len()
        );
        self.write(|tx| {
            for id in &missing_ids {
                tx.execute(
                    "DELETE FROM vectors WHERE generation_id IN
                        (SELECT id FROM generations WHERE version_id = ?1)",
                    [id],
                )?;
                tx.execute("DELETE FROM generations WHERE version_id = ?1", [id])?;
                tx.execute("DELETE FROM jobs WHERE version_id = ?1", [id])?;
                tx.execute("DELETE FROM versions WHERE id = ?1", [id])?;
            }
            tx.execute(
                "DELETE FROM vectors WHERE generation_id NOT IN
                    (SELECT n.id FROM generations n JOIN versions v ON v.id = n.version_id)
                   AND generation_id NOT IN (SELECT generation_id FROM vector_trash)",
                [],
            )?;
            tx.execute(
                "DELETE FROM generations WHERE version_id NOT IN (SELECT id FROM versions)",
                [],
            )?;
            tx.execute(
                "DELETE FROM sources WHERE NOT EXISTS
                    (SELECT 1 FROM versions v WHERE v.source_id = sources.id)",
                [],
            )?;
            for id in &stuck {
                tx.execute(
                    "UPDATE jobs SET state = 'queued', rows_done = 0,
                            error = 'found processing with no worker; queued again'
                     WHERE id = ?1 AND state = 'processing'",
                    params![id],
                )?;
                tx.execute(
                    "UPDATE versions SET status = 'queued'
                     WHERE id = (SELECT version_id FROM jobs WHERE id = ?1)
                       AND status = 'embedding'",
                    params![id],
                )?;
                tx.execute(
                    "DELETE FROM vectors WHERE generation_id IN
                        (SELECT id FROM generations WHERE job_id = ?1 AND state = 'writing')",
                    [id],
                )?;
                tx.execute(
                    "DELETE FROM generations WHERE job_id = ?1 AND state = 'writing'",
                    [id],
                )?;
            }
            let record = AuditRecord::new(actor.clone(), "fsck", "repaired").detail(detail);
            Ok(((), vec![record]))
        })?;
        self.queue.wake.notify_one();
        report.repaired = true;
        Ok(report)
    }
}
