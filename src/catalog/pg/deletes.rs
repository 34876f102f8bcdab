//! Deletes across nodes: a version deleted on one node whose stored file another node holds.
//!
//! The node that takes the `rm` removes the version's rows as it would its own, and in the same
//! transaction leaves the file to its holder in `pending_deletes` ([`request`]) and tells that
//! node over `LISTEN`/`NOTIFY`. The holder removes its files at once when it hears so, and at
//! start-up for what was requested while it was down ([`carry_out`]). A file is removed only as
//! `<storage root>/<group>/<file>` of the holder's own storage root, with the group folder
//! opened without following a symlink (`retain::remove_stored`): a row that names anything
//! else is never acted on and stays, for `fsck` to report ([`pending`]).

use super::notify;
use super::{NOW_MS, PgError};
use crate::catalog::retain::{RemoveError, remove_stored};
use postgres::Client;
use std::path::{Path, PathBuf};

/// A file of another node's, left to it by a delete on this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// The node that holds the file.
    pub holder: &'a str,
    pub group: &'a str,
    pub stored_path: &'a Path,
    pub version_id: Option<i64>,
    /// Who deleted the version (`alice (uid 1000)`), for the record.
    pub requested_by: Option<&'a str>,
}

/// Leave `request`'s file to its holder, in the caller's transaction (the one that deletes
/// the version's rows), and tell the holder when it commits.
pub fn request(
    tx: &mut impl postgres::GenericClient,
    request: &Request<'_>,
) -> Result<(), PgError> {
    let path = request.stored_path.to_str().ok_or_else(|| {
        PgError::Invalid(format!(
            "a stored path that is not UTF-8: {}",
            request.stored_path.display()
        ))
    })?;
    tx.execute(
        &format!(
            "INSERT INTO pending_deletes (node, group_name, stored_path, version_id,
                                          requested_at, requested_by)
             VALUES ($1, $2, $3, $4, {NOW_MS}, $5)"
        ),
        &[
            &request.holder,
            &request.group,
            &path,
            &request.version_id,
            &request.requested_by,
        ],
    )?;
    notify::deletes_for(tx, request.holder)
}

/// What [`carry_out`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Carried {
    /// Files removed (or already gone), their rows deleted.
    pub removed: Vec<PathBuf>,
    /// Files not removed, with the reason; their rows stay.
    pub refused: Vec<(PathBuf, String)>,
}

/// Remove the files other nodes left to `node`, which keeps its stored files under
/// `storage_root`. Each row goes only once its file is gone; a row that is refused stays.
pub fn carry_out(client: &mut Client, node: &str, storage_root: &Path) -> Result<Carried, PgError> {
    let mut carried = Carried::default();
    let mut tx = client.transaction()?;
    // Locked, so a second process of the same node skips them instead of racing.
    let rows = tx.query(
        "SELECT id, stored_path FROM pending_deletes WHERE node = $1 ORDER BY id
         FOR UPDATE SKIP LOCKED",
        &[&node],
    )?;
    for row in rows {
        let id: i64 = row.get(0);
        let path = PathBuf::from(row.get::<_, String>(1));
        match remove_stored(storage_root, &path) {
            Ok(()) => {
                tx.execute("DELETE FROM pending_deletes WHERE id = $1", &[&id])?;
                carried.removed.push(path);
            }
            Err(error) => {
                let reason = error.to_string();
                match error {
                    RemoveError::Outside { .. } => tracing::error!(
                        path = %path.display(),
                        "another node asked to remove a file outside this node's storage; \
                         refused, the request stays for fsck"
                    ),
                    RemoveError::Io { .. } => tracing::warn!(
                        path = %path.display(),
                        "cannot remove a file another node deleted: {reason}"
                    ),
                }
                carried.refused.push((path, reason));
            }
        }
    }
    tx.commit()?;
    Ok(carried)
}

/// The files waiting for their holders to remove them, per node: what `fsck` reports.
pub fn pending(client: &mut Client) -> Result<Vec<(String, u64)>, PgError> {
    Ok(client
        .query(
            "SELECT node, COUNT(*) FROM pending_deletes GROUP BY node ORDER BY node",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get::<_, i64>(1).max(0) as u64))
        .collect())
}
