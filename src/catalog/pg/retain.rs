//! Version retention (`ingest.retain_versions`) on PostgreSQL, as in SQLite
//! (`catalog::retain`): the stored versions of a source beyond the newest N are pruned, oldest
//! first, never the newest, the active one, or one a job still needs; a pruned row stays, its
//! vectors go in the marking transaction, its file after.
//!
//! Any node prunes (after an accept or a swap of its own), but a file is removed only by the
//! node that holds it, as `<its storage root>/<group>/<file>` without following a symlink: a
//! pruned row of another node's file keeps naming it until that node's next prune or start
//! ([`finish_prunes`]), and `fsck` counts such a file as neither orphaned nor missing.

use super::{NOW_MS, PgError};
use crate::audit::AuditRecord;
use crate::catalog::retain::{PRUNED, Pruned, remove_stored};
use crate::identity::{Actor, Resolve};
use postgres::Client;
use std::path::Path;

/// Statuses of a stored version that counts against the limit.
const STORED: &str = "'ready', 'queued', 'embedding', 'embedded', 'failed'";

/// Prune the versions of `group`/`source` beyond the newest `keep` (0: never), audited by
/// `node`; then remove the files `node` holds of every pruned row. Answers the versions
/// pruned now.
pub fn prune_source(
    client: &mut Client,
    node: &str,
    group: &str,
    source: &str,
    keep: u32,
    storage_root: &Path,
) -> Result<Vec<Pruned>, PgError> {
    if keep == 0 {
        return Ok(Vec::new());
    }
    let mut tx = client.transaction()?;
    let Some(source_id) = tx
        .query_opt(
            "SELECT s.id FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2 FOR UPDATE OF s",
            &[&group, &source],
        )?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Ok(Vec::new());
    };
    let chosen: Vec<(i64, i64)> = tx
        .query(
            &format!(
                "SELECT v.id, v.version_no FROM versions v
                 WHERE v.source_id = $1 AND v.version_no IS NOT NULL AND v.status IN ({STORED})
                   AND v.version_no NOT IN
                       (SELECT version_no FROM versions
                        WHERE source_id = $1 AND version_no IS NOT NULL AND status IN ({STORED})
                        ORDER BY version_no DESC LIMIT $2)
                   AND NOT EXISTS (SELECT 1 FROM generations n
                                   WHERE n.version_id = v.id AND n.state = 'active')
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.version_id = v.id
                                   AND j.state IN ('queued', 'processing'))
                 ORDER BY v.version_no"
            ),
            &[&source_id, &i64::from(keep)],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut pruned = Vec::new();
    for (id, version_no) in chosen {
        tx.execute(
            &format!("UPDATE versions SET status = $1, updated_at = {NOW_MS} WHERE id = $2"),
            &[&PRUNED, &id],
        )?;
        // Not active (checked above): nothing searches these vectors, which cascade.
        tx.execute("DELETE FROM generations WHERE version_id = $1", &[&id])?;
        let record = AuditRecord::new(Actor::daemon(), "prune", "ok")
            .on(group, source)
            .version(Some(format!("v{version_no}")))
            .detail(format!(
                "ingest.retain_versions = {keep}: v{version_no} pruned, its stored file and \
                 vectors removed"
            ));
        super::audit(&mut tx, node, &record)?;
        pruned.push(Pruned {
            group: group.to_string(),
            source: source.to_string(),
            version_no,
        });
    }
    tx.commit()?;
    finish_prunes(client, node, storage_root)?;
    Ok(pruned)
}

/// Remove the stored file of every pruned row of `node` that still names one, and forget the
/// path of each one that is gone. A file that cannot be removed stays named, to be tried
/// again by the next prune. Answers how many went.
pub fn finish_prunes(
    client: &mut Client,
    node: &str,
    storage_root: &Path,
) -> Result<usize, PgError> {
    let marked: Vec<(i64, String)> = client
        .query(
            "SELECT id, stored_path FROM versions
             WHERE status = $1 AND stored_path IS NOT NULL AND node = $2",
            &[&PRUNED, &node],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut gone = Vec::new();
    for (id, path) in marked {
        match remove_stored(storage_root, Path::new(&path)) {
            Ok(()) => gone.push(id),
            Err(error) => tracing::warn!(%path, %error, "cannot remove a pruned version's file"),
        }
    }
    if !gone.is_empty() {
        client.execute(
            "UPDATE versions SET stored_path = NULL WHERE id = ANY($1) AND status = $2",
            &[&gone, &PRUNED],
        )?;
    }
    Ok(gone.len())
}
