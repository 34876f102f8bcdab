//! `ingestctl fsck` on PostgreSQL, for one node: the catalog against this node's storage root,
//! its jobs against its workers, as in SQLite (`catalog::fsck`), and the deletes other nodes
//! left to it.
//!
//! Each node checks the files it holds (`versions.node`); another node's files are in its own
//! storage root, for its own fsck, unless every node mounts the same one
//! (`cluster.shared_storage`): then each checks them all. Read-only unless asked to repair, and a repair never deletes
//! a file it was not asked to: an orphaned file moves to `STORAGE_ROOT/lost+found/<group>/`;
//! rows of this node whose file is gone are removed with their vectors and jobs; this node's
//! jobs marked processing with no worker go back to the queue; the deletes other nodes left to
//! it are carried out ([`super::deletes::carry_out`]).

use super::deletes;
use super::{NOW_MS, PgError};
use crate::audit::AuditRecord;
use crate::catalog::fsck::{LOST_AND_FOUND, move_to_lost_and_found, stored_files};
use crate::identity::Actor;
use crate::protocol::{FsckReport, JobState};
use postgres::Client;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// What fsck found beyond SQLite's report: the files waiting for their holders to remove them
/// (`node: path`), this node's first. Those of this node are not clean: they should be gone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pending {
    pub mine: Vec<String>,
    pub others: Vec<String>,
}

/// Check (and with `repair`, fix) what `node` holds under `storage_root`; with `shared` (every
/// node mounts that root) what every node holds there. `running` are the jobs its workers
/// run; a job started less than a second ago may not be among them yet.
pub fn fsck(
    client: &mut Client,
    node: &str,
    storage_root: &Path,
    shared: bool,
    running: &[i64],
    repair: bool,
    actor: &Actor,
) -> Result<(FsckReport, Pending), PgError> {
    let rows: Vec<(i64, String, String, Option<i64>, String)> = client
        .query(
            "SELECT v.id, g.name, s.name, v.version_no, v.stored_path FROM versions v
             JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
             WHERE (v.node = $1 OR $2) AND v.stored_path IS NOT NULL
               AND v.status NOT IN ('invalid', 'validating', 'deleting', 'pruned')",
            &[&node, &shared],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    // Every file this node's rows name (reservations and pruned rows too), and those other
    // nodes asked it to remove: none of them is an orphan.
    let known: HashSet<PathBuf> = client
        .query(
            "SELECT stored_path FROM versions WHERE (node = $1 OR $2) AND stored_path IS NOT NULL
             UNION SELECT stored_path FROM pending_deletes WHERE node = $1 OR $2",
            &[&node, &shared],
        )?
        .iter()
        .map(|r| PathBuf::from(r.get::<_, String>(0)))
        .collect();
    let orphan_files: Vec<PathBuf> = stored_files(storage_root)
        .into_iter()
        .filter(|f| !known.contains(f))
        .collect();
    let missing: Vec<&(i64, String, String, Option<i64>, String)> = rows
        .iter()
        .filter(|(_, _, _, _, path)| !Path::new(path).is_file())
        .collect();
    // Generations and vectors cascade from their parents, so only a bug or a hand (the keys'
    // triggers off) leaves a vector without its generation; counted, and deleted by a repair,
    // as on SQLite.
    let orphan_vectors: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM vectors WHERE generation_id NOT IN
                (SELECT n.id FROM generations n JOIN versions v ON v.id = n.version_id)",
            &[],
        )?
        .get(0);
    let running: HashSet<i64> = running.iter().copied().collect();
    let stuck: Vec<i64> = client
        .query(
            &format!(
                "SELECT id FROM jobs WHERE state = $1 AND node = $2 AND started_at < {NOW_MS} - 1000
                 ORDER BY id"
            ),
            &[&JobState::Processing.as_str(), &node],
        )?
        .iter()
        .map(|r| r.get::<_, i64>(0))
        .filter(|id| !running.contains(id))
        .collect();
    let mut pending = Pending::default();
    for row in client.query(
        "SELECT node, stored_path FROM pending_deletes ORDER BY node = $1 DESC, node, id",
        &[&node],
    )? {
        let (holder, path): (String, String) = (row.get(0), row.get(1));
        let line = format!("{holder}: {path}");
        if holder == node {
            pending.mine.push(line);
        } else {
            pending.others.push(line);
        }
    }
    let mut report = FsckReport {
        orphan_files: orphan_files
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        missing_files: missing
            .iter()
            .map(|(_, g, s, v, p)| format!("{g}/{s} v{} ({p})", v.unwrap_or_default()))
            .collect(),
        orphan_vectors: orphan_vectors.max(0) as u64,
        stuck_jobs: stuck.clone(),
        repaired: false,
        moved: Vec::new(),
        pending_deletes: pending.mine.clone(),
    };
    if !repair || report.is_clean() {
        return Ok((report, pending));
    }

    // Files first: moved, never deleted.
    report.moved = move_to_lost_and_found(storage_root, &orphan_files).map_err(PgError::Invalid)?;
    let carried = deletes::carry_out(client, node, storage_root)?;
    let missing_ids: Vec<i64> = missing.iter().map(|m| m.0).collect();
    let detail = format!(
        "fsck repair on node {node}: {} orphaned files moved to {}, {} rows without files \
         removed, {} vectors without a generation deleted, {} stuck jobs queued again, {} \
         files other nodes deleted removed",
        report.moved.len(),
        storage_root.join(LOST_AND_FOUND).display(),
        missing_ids.len(),
        report.orphan_vectors,
        stuck.len(),
        carried.removed.len()
    );
    let mut tx = client.transaction()?;
    tx.execute(
        "DELETE FROM generations WHERE version_id = ANY($1)",
        &[&missing_ids],
    )?;
    tx.execute(
        "UPDATE generations SET job_id = NULL WHERE job_id IN
            (SELECT id FROM jobs WHERE version_id = ANY($1))",
        &[&missing_ids],
    )?;
    tx.execute(
        "DELETE FROM jobs WHERE version_id = ANY($1)",
        &[&missing_ids],
    )?;
    tx.execute("DELETE FROM versions WHERE id = ANY($1)", &[&missing_ids])?;
    tx.execute(
        "DELETE FROM sources s WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.source_id = s.id)",
        &[],
    )?;
    tx.execute(
        "UPDATE versions SET status = 'queued'
         WHERE id IN (SELECT version_id FROM jobs WHERE id = ANY($1)) AND status = 'embedding'",
        &[&stuck],
    )?;
    tx.execute(
        "DELETE FROM generations WHERE job_id = ANY($1) AND state = 'writing'",
        &[&stuck],
    )?;
    tx.execute(
        "UPDATE jobs SET state = 'queued', rows_done = 0, node = NULL, lease_until = NULL,
                error = 'found processing with no worker; queued again'
         WHERE id = ANY($1) AND state = 'processing'",
        &[&stuck],
    )?;
    tx.execute(
        "DELETE FROM vectors WHERE generation_id NOT IN
            (SELECT n.id FROM generations n JOIN versions v ON v.id = n.version_id)",
        &[],
    )?;
    let record = AuditRecord::new(actor.clone(), "fsck", "repaired").detail(detail);
    super::audit(&mut tx, node, &record)?;
    super::notify::nudge(&mut tx, node)?;
    tx.commit()?;
    pending.mine = carried
        .refused
        .iter()
        .map(|(path, why)| format!("{node}: {} ({why})", path.display()))
        .collect();
    report.pending_deletes = pending.mine.clone();
    report.repaired = true;
    Ok((report, pending))
}
