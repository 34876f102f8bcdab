//! A source's read options (`ingestctl set`) in the catalog: storing them, handing them to the
//! ingest path and to row streams, and applying them to the newest version.
//!
//! Applying is one transaction: the version's columns, row count, notes and `reading` become
//! what the file reads as with the options, the options are stored (or removed), the change
//! is audited, and an embedding job is queued for the version, so the source's old embeddings
//! stay active until that job swaps in the new ones. It never reads a file: the caller has
//! the parse worker read it first, and nothing here changes unless that succeeded.

use super::jobs::{REEMBED, enqueue};
use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::clock;
use crate::identity::Actor;
use crate::protocol::{ReadOverride, Reading, SkippedColumn, SourceOverride};
use rusqlite::{OptionalExtension, params};
use std::path::PathBuf;

/// The version `set` reads again: the newest accepted one of the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reread {
    pub group: String,
    pub source: String,
    pub version_id: i64,
    pub version_no: i64,
    pub stored_path: PathBuf,
    pub format: String,
    pub columns: Vec<String>,
}

/// What the version reads as with the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAs {
    pub columns: Vec<String>,
    pub skipped: Vec<SkippedColumn>,
    pub rows: u64,
    pub notes: Vec<String>,
    pub reading: Reading,
}

/// What applying did: the stored options and the job queued (or already queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub options: Option<SourceOverride>,
    pub job: i64,
}

impl Db {
    /// The read options set for `source` of `group`, if any.
    pub fn source_override(
        &self,
        group: &str,
        source: &str,
    ) -> Result<Option<SourceOverride>, CatalogError> {
        let row: Option<(String, Option<String>, i64)> = self
            .conn()
            .query_row(
                "SELECT r.options, r.set_by, r.set_at FROM source_reading r
                 JOIN sources s ON s.id = r.source_id JOIN groups g ON g.id = s.group_id
                 WHERE g.name = ?1 AND s.name = ?2",
                params![group, source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        Ok(row.map(|(options, set_by, set_at)| SourceOverride {
            options: serde_json::from_str(&options).unwrap_or_default(),
            set_by,
            set_at: clock::rfc3339(set_at),
        }))
    }

    /// The newest accepted version of `source`, which `set` reads again.
    pub fn version_to_reread(&self, group: &str, source: &str) -> Result<Reread, CatalogError> {
        let exists: bool = self.conn().query_row(
            "SELECT EXISTS (SELECT 1 FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE g.name = ?1 AND s.name = ?2)",
            params![group, source],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(CatalogError::NotFound(format!(
                "no source named {source:?} in group {group:?}"
            )));
        }
        newest(self.conn(), group, source)?.ok_or_else(|| {
            CatalogError::NotFound(format!(
                "{source} has no accepted version to read again; its options apply to files \
                 accepted from now on only once one was"
            ))
        })
    }

    /// Store `options` for the source of `reread` (`None`: remove them) and make the version read
    /// as `read`,
    /// audited with `detail`, and queue its embedding job; `Ok(Err(why))` when a newer version
    /// arrived since `reread` was chosen (nothing changed).
    pub fn apply_override(
        &mut self,
        reread: &Reread,
        options: Option<&ReadOverride>,
        read: &ReadAs,
        actor: &Actor,
        detail: String,
    ) -> Result<Result<Applied, String>, CatalogError> {
        let (group, source) = (reread.group.as_str(), reread.source.as_str());
        let max_attempts = self.queue.max_attempts;
        let now = clock::now_ms();
        let applied = self.write(|tx| {
            let current = newest(tx, group, source)?;
            if current.as_ref().map(|v| v.version_id) != Some(reread.version_id) {
                let why = format!(
                    "a newer version of {source} arrived while v{} was read again; nothing was \
                     changed, run the command again",
                    reread.version_no
                );
                return Ok((Err(why), Vec::new()));
            }
            let source_id: i64 = tx.query_row(
                "SELECT source_id FROM versions WHERE id = ?1",
                [reread.version_id],
                |r| r.get(0),
            )?;
            tx.execute(
                "UPDATE versions SET columns = ?1, skipped_columns = ?2, rows = ?3, notes = ?4,
                        reading = ?5, updated_at = ?6
                 WHERE id = ?7",
                params![
                    json(&read.columns),
                    json(&read.skipped),
                    read.rows as i64,
                    json(&read.notes),
                    json(&read.reading),
                    now,
                    reread.version_id
                ],
            )?;
            match options {
                Some(options) => tx.execute(
                    "INSERT INTO source_reading (source_id, options, set_by, set_uid, set_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (source_id) DO UPDATE SET options = excluded.options,
                        set_by = excluded.set_by, set_uid = excluded.set_uid,
                        set_at = excluded.set_at",
                    params![
                        source_id,
                        json(options),
                        actor.display_name(),
                        actor.uid,
                        now
                    ],
                )?,
                None => tx.execute(
                    "DELETE FROM source_reading WHERE source_id = ?1",
                    [source_id],
                )?,
            };
            let mut records = Vec::new();
            let (job, _) = enqueue(
                tx,
                reread.version_id,
                REEMBED,
                actor,
                max_attempts,
                false,
                &mut records,
            )?;
            let mut record = AuditRecord::new(actor.clone(), "set", "ok")
                .on(group, source)
                .version(Some(format!("v{}", reread.version_no)))
                .detail(detail);
            record.job = Some(job);
            records.push(record);
            Ok((Ok(job), records))
        })?;
        let job = match applied {
            Ok(job) => job,
            Err(why) => return Ok(Err(why)),
        };
        self.queue.wake.notify_one();
        Ok(Ok(Applied {
            options: self.source_override(group, source)?,
            job,
        }))
    }
}

/// The newest accepted version of `source`, as a job or a re-embed would pick it.
fn newest(
    conn: &rusqlite::Connection,
    group: &str,
    source: &str,
) -> Result<Option<Reread>, CatalogError> {
    Ok(conn
        .query_row(
            "SELECT v.id, v.version_no, v.stored_path, v.format, v.columns
             FROM versions v JOIN sources s ON s.id = v.source_id
             JOIN groups g ON g.id = s.group_id
             WHERE g.name = ?1 AND s.name = ?2 AND v.version_no IS NOT NULL
               AND v.status NOT IN ('invalid', 'deleting', 'validating', 'pruned')
             ORDER BY v.version_no DESC LIMIT 1",
            params![group, source],
            |r| {
                Ok(Reread {
                    group: group.to_string(),
                    source: source.to_string(),
                    version_id: r.get(0)?,
                    version_no: r.get(1)?,
                    stored_path: PathBuf::from(r.get::<_, Option<String>>(2)?.unwrap_or_default()),
                    format: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                    columns: serde_json::from_str(&r.get::<_, String>(4)?).unwrap_or_default(),
                })
            },
        )
        .optional()?)
}

impl Db {
    /// The read options version `version_no` of `source` was read with: a row stream must
    /// read the file exactly as its columns were read (handed to it in [`super::Claimed`]).
    pub fn version_set(
        &self,
        group: &str,
        source: &str,
        version_no: i64,
    ) -> Result<Option<ReadOverride>, CatalogError> {
        let reading: Option<String> = self
            .conn()
            .query_row(
                "SELECT v.reading FROM versions v JOIN sources s ON s.id = v.source_id
             JOIN groups g ON g.id = s.group_id
             WHERE g.name = ?1 AND s.name = ?2 AND v.version_no = ?3",
                params![group, source, version_no],
                |r| r.get(0),
            )
            .optional()?;
        Ok(reading
            .and_then(|text| serde_json::from_str::<Reading>(&text).ok())
            .and_then(|reading| reading.set))
    }
}

/// JSON text of a value stored in a JSON column.
fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
