//! The catalog side of storing a dropped file on PostgreSQL, as in SQLite (`catalog::ingest`):
//! decide unchanged-or-new and reserve the version number, mark it ready once the file is in
//! place (queueing its embedding in the same transaction), give a reservation up, record a
//! rejection; and what start-up recovery asks (this node's reservations, whether a content is
//! stored).
//!
//! What several nodes add: group and source names are cluster-wide and two nodes may see a new
//! one at once (`INSERT … ON CONFLICT DO NOTHING`, then read it); the source's row is locked
//! before the newest version is compared, so two nodes storing the same source at once are
//! serialized and the same content dropped on both becomes one version and one `unchanged`;
//! version numbers come from the database (`next_version_no`); and every version records the
//! node whose storage root holds its file, so recovery on one node never touches another's.

use super::queue;
use super::{NOW_MS, PgError, json};
use crate::audit::AuditRecord;
use crate::catalog::ingest::{Accepted, Decision, Rejected, Reservation, versioned_name};
use crate::catalog::jobs::NEW_VERSION;
use crate::identity::{Actor, Via};
use crate::protocol::Status;
use postgres::{Client, GenericClient};
use std::path::{Path, PathBuf};

fn text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The id of group `name`, created if new; and whether it was.
fn group_id(tx: &mut impl GenericClient, name: &str) -> Result<(i64, bool), PgError> {
    let created = tx.query_opt(
        &format!(
            "INSERT INTO groups (name, created_at) VALUES ($1, {NOW_MS})
             ON CONFLICT (name) DO NOTHING RETURNING id"
        ),
        &[&name],
    )?;
    if let Some(row) = created {
        return Ok((row.get(0), true));
    }
    let row = tx.query_one("SELECT id FROM groups WHERE name = $1", &[&name])?;
    Ok((row.get(0), false))
}

/// The id of source `name` of `group`, created if new.
fn source_id(tx: &mut impl GenericClient, group: &str, name: &str) -> Result<i64, PgError> {
    let (group_id, _) = group_id(tx, group)?;
    tx.execute(
        &format!(
            "INSERT INTO sources (group_id, name, created_at) VALUES ($1, $2, {NOW_MS})
             ON CONFLICT (group_id, name) DO NOTHING"
        ),
        &[&group_id, &name],
    )?;
    Ok(tx
        .query_one(
            "SELECT id FROM sources WHERE group_id = $1 AND name = $2",
            &[&group_id, &name],
        )?
        .get(0))
}

/// Make sure a group exists (a new folder is a new group). True if it was created.
pub fn ensure_group(client: &mut Client, name: &str) -> Result<bool, PgError> {
    Ok(group_id(client, name)?.1)
}

/// Compare with the source's newest version; either record `unchanged` (audited) or reserve
/// the next number for a file that `node` stores under `storage_root`.
pub fn decide(
    client: &mut Client,
    node: &str,
    file: &Accepted,
    storage_root: &Path,
) -> Result<Decision, PgError> {
    let mut tx = client.transaction()?;
    let source = source_id(&mut tx, &file.group, &file.name)?;
    // Locked until the commit: another node deciding for this source waits here, and then
    // sees this node's version.
    tx.execute("SELECT 1 FROM sources WHERE id = $1 FOR UPDATE", &[&source])?;
    let newest = tx.query_opt(
        "SELECT version_no, sha256 FROM versions
         WHERE source_id = $1 AND version_no IS NOT NULL
         ORDER BY version_no DESC LIMIT 1",
        &[&source],
    )?;
    if let Some(newest) = newest
        && newest.get::<_, Option<String>>(1).as_deref() == Some(file.sha256.as_str())
    {
        let version = format!("v{}", newest.get::<_, i64>(0));
        let record = AuditRecord::new(file.actor.clone(), "add", "unchanged")
            .on(&file.group, &file.name)
            .version(Some(version.clone()))
            .detail(format!("same content as {version}; no new version"));
        super::audit(&mut tx, node, &record)?;
        tx.commit()?;
        return Ok(Decision::Unchanged { version });
    }
    let version_no: i64 = tx
        .query_one("SELECT next_version_no($1)", &[&source])?
        .get(0);
    let stored_path = storage_root
        .join(&file.group)
        .join(versioned_name(&file.name, version_no));
    let id: i64 = tx
        .query_one(
            &format!(
                "INSERT INTO versions (source_id, version_no, status, format, size, sha256, rows,
                    columns, skipped_columns, notes, stored_path, tmp_path, drop_path, node,
                    added_by_uid, added_by, created_at, updated_at, reading)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
                    {NOW_MS}, {NOW_MS}, $17)
                 RETURNING id"
            ),
            &[
                &source,
                &version_no,
                &Status::Validating.as_str(),
                &file.format,
                &(file.size as i64),
                &file.sha256,
                &(file.rows as i64),
                &json(&file.columns),
                &json(&file.skipped),
                &json(&file.notes),
                &text(&stored_path),
                &text(&file.tmp_path),
                &text(&file.drop_path),
                &node,
                &file.actor.uid.map(i64::from),
                &file.actor.user,
                &json(&file.reading),
            ],
        )?
        .get(0);
    tx.commit()?;
    Ok(Decision::Reserved(Reservation {
        id,
        group: file.group.clone(),
        name: file.name.clone(),
        version_no,
        sha256: file.sha256.clone(),
        stored_path,
        tmp_path: Some(file.tmp_path.clone()),
        drop_path: Some(file.drop_path.clone()),
        actor: file.actor.clone(),
    }))
}

/// The reserved version's file is in place: it is `ready`, and its embedding job is queued in
/// the same transaction, so no accepted version is ever left without one. Audited as an
/// accepted add. Answers the job.
pub fn mark_ready(
    client: &mut Client,
    node: &str,
    r: &Reservation,
    detail: String,
    max_attempts: u32,
) -> Result<i64, PgError> {
    let mut tx = client.transaction()?;
    tx.execute(
        &format!(
            "UPDATE versions SET status = $1, tmp_path = NULL, updated_at = {NOW_MS} WHERE id = $2"
        ),
        &[&Status::Ready.as_str(), &r.id],
    )?;
    let mut records = Vec::new();
    let (job, _) = queue::enqueue(
        &mut tx,
        node,
        r.id,
        NEW_VERSION,
        &r.actor,
        max_attempts,
        false,
        &mut records,
    )?;
    let mut record = AuditRecord::new(r.actor.clone(), "add", "accepted")
        .on(&r.group, &r.name)
        .version(Some(r.label()))
        .detail(detail);
    record.job = Some(job);
    records.insert(0, record);
    for record in &records {
        super::audit(&mut tx, node, record)?;
    }
    tx.commit()?;
    Ok(job)
}

/// Give a reservation up (its file could not be put in place; the drop original remains).
pub fn abandon(client: &mut Client, id: i64) -> Result<(), PgError> {
    client.execute(
        "DELETE FROM versions WHERE id = $1 AND status = $2",
        &[&id, &Status::Validating.as_str()],
    )?;
    Ok(())
}

/// Record a rejected attempt (status `invalid`, no version number) and audit it.
pub fn record_rejection(client: &mut Client, node: &str, file: &Rejected) -> Result<(), PgError> {
    let mut tx = client.transaction()?;
    let source = source_id(&mut tx, &file.group, &file.name)?;
    tx.execute(
        &format!(
            "INSERT INTO versions (source_id, status, reason, format, size, drop_path, node,
                added_by_uid, added_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, {NOW_MS}, {NOW_MS})"
        ),
        &[
            &source,
            &Status::Invalid.as_str(),
            &file.reason,
            &file.format,
            &file.size.map(|s| s as i64),
            &file.kept_at.as_deref().map(text),
            &node,
            &file.actor.uid.map(i64::from),
            &file.actor.user,
        ],
    )?;
    let mut record = AuditRecord::new(file.actor.clone(), "add", "rejected")
        .on(&file.group, &file.name)
        .detail(file.reason.clone());
    if let Some(kept) = &file.kept_at {
        record.detail = Some(format!("{} (kept at {})", file.reason, kept.display()));
    }
    super::audit(&mut tx, node, &record)?;
    tx.commit()?;
    Ok(())
}

/// The reservations `node` left (a store a stop interrupted), for its start-up recovery.
/// Another node's are its own to finish: their files are in its storage root.
pub fn reservations(client: &mut Client, node: &str) -> Result<Vec<Reservation>, PgError> {
    let rows = client.query(
        "SELECT v.id, g.name, s.name, v.version_no, v.sha256, v.stored_path, v.tmp_path,
                v.drop_path, v.added_by_uid, v.added_by
         FROM versions v JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
         WHERE v.status = $1 AND v.version_no IS NOT NULL AND v.node = $2
         ORDER BY v.id",
        &[&Status::Validating.as_str(), &node],
    )?;
    Ok(rows
        .iter()
        .map(|r| Reservation {
            id: r.get(0),
            group: r.get(1),
            name: r.get(2),
            version_no: r.get(3),
            sha256: r.get::<_, Option<String>>(4).unwrap_or_default(),
            stored_path: PathBuf::from(r.get::<_, Option<String>>(5).unwrap_or_default()),
            tmp_path: r.get::<_, Option<String>>(6).map(PathBuf::from),
            drop_path: r.get::<_, Option<String>>(7).map(PathBuf::from),
            actor: Actor {
                uid: r
                    .get::<_, Option<i64>>(8)
                    .and_then(|u| u32::try_from(u).ok()),
                user: r.get(9),
                via: Via::Drop,
            },
        })
        .collect())
}

/// Does `group` hold a stored version of `source` (anything but a reservation or a
/// rejection) whose content is `sha256`?
pub fn holds_content(
    client: &mut Client,
    group: &str,
    source: &str,
    sha256: &str,
) -> Result<bool, PgError> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM versions v
                JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
                WHERE g.name = $1 AND s.name = $2 AND v.sha256 = $3
                  AND v.version_no IS NOT NULL AND v.status NOT IN ('validating', 'invalid'))",
            &[&group, &source, &sha256],
        )?
        .get(0))
}
