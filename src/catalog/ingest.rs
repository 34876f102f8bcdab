//! The catalog side of storing a dropped file: decide unchanged-or-new, reserve the version
//! number, mark it ready once the file is in place, record rejections.
//!
//! Crash safety comes from the order the ingest pipeline calls these in: a version is reserved
//! (status `validating`, with its temporary and final paths) before its file is renamed into
//! place, and marked `ready` after. Start-up recovery finishes or undoes every reservation it
//! finds, so a crash between any two steps leaves the original in the drop folder or a complete
//! stored version, never neither, and never two versions of one drop.

use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::clock;
use crate::identity::Actor;
use crate::protocol::{SkippedColumn, Status};
use rusqlite::{OptionalExtension, Transaction, params};
use std::path::{Path, PathBuf};

/// A file that passed validation, copied to a temporary file beside its final place.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub group: String,
    pub name: String,
    pub format: String,
    pub size: u64,
    pub sha256: String,
    pub columns: Vec<String>,
    pub skipped: Vec<SkippedColumn>,
    pub rows: u64,
    pub notes: Vec<String>,
    /// Where the reader found the header, and the encoding.
    pub reading: crate::protocol::Reading,
    pub actor: Actor,
    pub drop_path: PathBuf,
    pub tmp_path: PathBuf,
}

/// A file that was not accepted.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub group: String,
    pub name: String,
    pub format: Option<String>,
    pub size: Option<u64>,
    pub reason: String,
    pub actor: Actor,
    /// Where the original now sits (`<group>/.rejected/<name>`), if it could be moved.
    pub kept_at: Option<PathBuf>,
}

/// A version number taken for a file that is not yet in its final place.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub id: i64,
    pub group: String,
    pub name: String,
    pub version_no: i64,
    pub sha256: String,
    pub stored_path: PathBuf,
    pub tmp_path: Option<PathBuf>,
    pub drop_path: Option<PathBuf>,
    pub actor: Actor,
}

impl Reservation {
    pub fn label(&self) -> String {
        format!("v{}", self.version_no)
    }
}

/// What to do with an accepted file.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Same content as the newest version: no new version (already audited as `unchanged`).
    Unchanged { version: String },
    /// Store it as this new version.
    Reserved(Reservation),
}

/// `sales.csv`, 3 → `sales_v3.csv`.
pub fn versioned_name(name: &str, version_no: i64) -> String {
    let path = Path::new(name);
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or(name);
    match path.extension().and_then(|e| e.to_str()) {
        Some(ext) => format!("{stem}_v{version_no}.{ext}"),
        None => format!("{stem}_v{version_no}"),
    }
}

fn ensure_group(tx: &Transaction<'_>, name: &str) -> rusqlite::Result<(i64, bool)> {
    if let Some(id) = tx
        .query_row("SELECT id FROM groups WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .optional()?
    {
        return Ok((id, false));
    }
    tx.execute(
        "INSERT INTO groups (name, created_at) VALUES (?1, ?2)",
        params![name, clock::now_ms()],
    )?;
    Ok((tx.last_insert_rowid(), true))
}

fn ensure_source(tx: &Transaction<'_>, group: &str, name: &str) -> rusqlite::Result<i64> {
    let (group_id, _) = ensure_group(tx, group)?;
    if let Some(id) = tx
        .query_row(
            "SELECT id FROM sources WHERE group_id = ?1 AND name = ?2",
            params![group_id, name],
            |r| r.get(0),
        )
        .optional()?
    {
        return Ok(id);
    }
    tx.execute(
        "INSERT INTO sources (group_id, name, created_at) VALUES (?1, ?2, ?3)",
        params![group_id, name, clock::now_ms()],
    )?;
    Ok(tx.last_insert_rowid())
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "[]".into())
}

fn path_text(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Db {
    /// Make sure a group exists (a new folder is a new group). True if it was created.
    pub fn ensure_group(&mut self, name: &str) -> Result<bool, CatalogError> {
        self.write(|tx| Ok((ensure_group(tx, name)?.1, Vec::new())))
    }

    /// Compare with the newest version; either record `unchanged` or reserve the next number.
    pub fn decide(
        &mut self,
        file: &Accepted,
        storage_root: &Path,
    ) -> Result<Decision, CatalogError> {
        self.write(|tx| {
            let source_id = ensure_source(tx, &file.group, &file.name)?;
            let newest: Option<(i64, Option<String>)> = tx
                .query_row(
                    "SELECT version_no, sha256 FROM versions
                     WHERE source_id = ?1 AND version_no IS NOT NULL
                     ORDER BY version_no DESC LIMIT 1",
                    [source_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((no, Some(sha))) = &newest
                && *sha == file.sha256
            {
                let version = format!("v{no}");
                let record = AuditRecord::new(file.actor.clone(), "add", "unchanged")
                    .on(&file.group, &file.name)
                    .version(Some(version.clone()))
                    .detail(format!("same content as {version}; no new version"));
                return Ok((Decision::Unchanged { version }, vec![record]));
            }
            // Numbers are never reused, even after the newest version was deleted, so a label
            // in the audit trail always means one content.
            let last: i64 = tx.query_row(
                "SELECT last_version FROM sources WHERE id = ?1",
                [source_id],
                |r| r.get(0),
            )?;
            let version_no = newest.map(|(no, _)| no).unwrap_or(0).max(last) + 1;
            tx.execute(
                "UPDATE sources SET last_version = ?1 WHERE id = ?2",
                params![version_no, source_id],
            )?;
            let stored_path = storage_root
                .join(&file.group)
                .join(versioned_name(&file.name, version_no));
            let now = clock::now_ms();
            tx.execute(
                "INSERT INTO versions (source_id, version_no, status, format, size, sha256, rows,
                    columns, skipped_columns, notes, stored_path, tmp_path, drop_path,
                    added_by_uid, added_by, created_at, updated_at, reading)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?16,
                    ?17)",
                params![
                    source_id,
                    version_no,
                    Status::Validating.as_str(),
                    file.format,
                    file.size as i64,
                    file.sha256,
                    file.rows as i64,
                    json(&file.columns),
                    json(&file.skipped),
                    json(&file.notes),
                    path_text(&stored_path),
                    path_text(&file.tmp_path),
                    path_text(&file.drop_path),
                    file.actor.uid,
                    file.actor.user,
                    now,
                    json(&file.reading),
                ],
            )?;
            let reservation = Reservation {
                id: tx.last_insert_rowid(),
                group: file.group.clone(),
                name: file.name.clone(),
                version_no,
                sha256: file.sha256.clone(),
                stored_path,
                tmp_path: Some(file.tmp_path.clone()),
                drop_path: Some(file.drop_path.clone()),
                actor: file.actor.clone(),
            };
            Ok((Decision::Reserved(reservation), Vec::new()))
        })
    }

    /// The reserved version's file is in place: it is `ready`, and its embedding job is
    /// queued in the same transaction, so no accepted version is ever left without one.
    /// Audited as an accepted add.
    pub fn mark_ready(&mut self, r: &Reservation, detail: String) -> Result<(), CatalogError> {
        let max_attempts = self.queue.max_attempts;
        self.write(|tx| {
            tx.execute(
                "UPDATE versions SET status = ?1, tmp_path = NULL, updated_at = ?2 WHERE id = ?3",
                params![Status::Ready.as_str(), clock::now_ms(), r.id],
            )?;
            let mut records = Vec::new();
            let (job, _) = super::jobs::enqueue(
                tx,
                r.id,
                super::jobs::NEW_VERSION,
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
            Ok(((), records))
        })?;
        self.queue.wake.notify_one();
        self.prune_after_change(&r.group, &r.name);
        Ok(())
    }

    /// Give a reservation up (its file could not be put in place; the drop original remains).
    pub fn abandon(&mut self, id: i64) -> Result<(), CatalogError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM versions WHERE id = ?1 AND status = ?2",
                params![id, Status::Validating.as_str()],
            )?;
            Ok(((), Vec::new()))
        })
    }

    /// Record a rejected attempt (status `invalid`, no version number) and audit it.
    pub fn record_rejection(&mut self, file: &Rejected) -> Result<(), CatalogError> {
        self.write(|tx| {
            let source_id = ensure_source(tx, &file.group, &file.name)?;
            let now = clock::now_ms();
            tx.execute(
                "INSERT INTO versions (source_id, status, reason, format, size, drop_path,
                    added_by_uid, added_by, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
                params![
                    source_id,
                    Status::Invalid.as_str(),
                    file.reason,
                    file.format,
                    file.size.map(|s| s as i64),
                    file.kept_at.as_deref().map(path_text),
                    file.actor.uid,
                    file.actor.user,
                    now,
                ],
            )?;
            let mut record = AuditRecord::new(file.actor.clone(), "add", "rejected")
                .on(&file.group, &file.name)
                .detail(file.reason.clone());
            if let Some(kept) = &file.kept_at {
                record.detail = Some(format!("{} (kept at {})", file.reason, kept.display()));
            }
            Ok(((), vec![record]))
        })
    }

    /// Reservations left by a crash, for start-up recovery.
    pub fn reservations(&mut self) -> Result<Vec<Reservation>, CatalogError> {
        let mut stmt = self.conn().prepare(
            "SELECT v.id, g.name, s.name, v.version_no, v.sha256, v.stored_path, v.tmp_path,
                    v.drop_path, v.added_by_uid, v.added_by
             FROM versions v JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
             WHERE v.status = ?1 AND v.version_no IS NOT NULL
             ORDER BY v.id",
        )?;
        let rows = stmt.query_map([Status::Validating.as_str()], |r| {
            Ok(Reservation {
                id: r.get(0)?,
                group: r.get(1)?,
                name: r.get(2)?,
                version_no: r.get(3)?,
                sha256: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                stored_path: PathBuf::from(r.get::<_, String>(5)?),
                tmp_path: r.get::<_, Option<String>>(6)?.map(PathBuf::from),
                drop_path: r.get::<_, Option<String>>(7)?.map(PathBuf::from),
                actor: Actor {
                    uid: r.get(8)?,
                    user: r.get(9)?,
                    via: crate::identity::Via::Drop,
                },
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioned_names() {
        assert_eq!(versioned_name("sales.csv", 2), "sales_v2.csv");
        assert_eq!(versioned_name("q1.report.xlsx", 10), "q1.report_v10.xlsx");
        assert_eq!(versioned_name("noext", 1), "noext_v1");
    }
}
