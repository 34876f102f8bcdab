//! The rows of a generation being written: chunks of vectors from a job's worker, each row
//! with a hash of its text, and the texts a job may reuse instead of embedding them again.
//!
//! Chunks are committed with relaxed durability: until the swap they are not searchable, and
//! a crash before it leaves a generation that start-up recovery keeps only as a source of
//! vectors to reuse. A chunk for a job that is no longer processing is refused with
//! [`Written::Stopped`], never stored. This file never changes a job's state.

use super::state::Generation;
use crate::catalog::{CatalogError, Db};
use crate::embed::Identity;
use crate::protocol::{EventKind, JobState};
use rusqlite::params;

/// The hash a vector's text is stored with: the first 16 bytes of its SHA-256. 128 bits make
/// a collision between two texts of one source far less likely than a disk error, so a
/// matching hash is taken as the same text without comparing the texts.
pub fn text_hash(text: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// One row for [`Db::write_vectors`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub row: u64,
    pub text: String,
    /// [`text_hash`] of `text`.
    pub text_hash: [u8; 16],
    pub vector: RowVector,
}

/// Where a row's vector comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RowVector {
    /// Embedded by the provider for this row.
    Embedded(Vec<f32>),
    /// Copied, inside the catalog, from a row with the same text: of the source's active or
    /// retained generation of the same identity, or an earlier row of this generation.
    Copy { generation: i64, row: u64 },
}

/// Where a text was already embedded: (generation, row).
pub type Origin = (i64, u64);

/// What [`Db::write_vectors`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Written {
    /// The rows are in the generation and the job's progress is recorded.
    Stored,
    /// The job is no longer processing (cancelled, or its version deleted) or its generation
    /// is no longer being written: nothing was stored, and the worker should stop.
    Stopped,
}

/// Every text a job may reuse, read on a connection of its own so a large source does not
/// hold up the catalog thread: (hash, generation, row) of the vectors of the job's source in
/// its active and retained generations made by `identity`, except `generation` (the job's
/// own, which is empty when this runs).
pub fn reusable_texts(
    database: &std::path::Path,
    job: i64,
    generation: i64,
    identity: &Identity,
) -> Result<Vec<([u8; 16], Origin)>, CatalogError> {
    let conn = crate::catalog::schema::open_reader(database)?;
    let mut stmt = conn.prepare(
        "SELECT x.text_hash, x.generation_id, x.row_no FROM generations n
         JOIN vectors x ON x.generation_id = n.id
         WHERE n.source_id = (SELECT source_id FROM jobs WHERE id = ?1) AND n.id != ?2
           AND n.state IN (?7, ?8)
           AND n.provider = ?3 AND n.model = ?4 AND n.dimension = ?5 AND n.weights_hash = ?6
           AND x.text_hash IS NOT NULL",
    )?;
    let rows = stmt
        .query_map(
            params![
                job,
                generation,
                identity.provider,
                identity.model,
                identity.dimension as i64,
                identity.weights_hash,
                Generation::Active,
                Generation::Retained
            ],
            |r| {
                let hash: Vec<u8> = r.get(0)?;
                Ok((hash, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            },
        )?
        .filter_map(|row| match row {
            Ok((hash, generation, row)) => <[u8; 16]>::try_from(hash.as_slice())
                .ok()
                .map(|h| Ok((h, (generation, row as u64)))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

impl Db {
    /// Append rows to a generation being written and record the job's progress. Committed
    /// without waiting for the disk: until the swap these rows are not searchable, and a crash
    /// before it discards the whole generation anyway.
    pub fn write_vectors(
        &mut self,
        job: i64,
        generation: i64,
        rows: &[NewRow],
        done: u64,
        publish: bool,
    ) -> Result<Written, CatalogError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self.write(|tx| {
            // Only into a generation still being written by its processing job: a runner that
            // was cancelled, or whose version was deleted, must not add rows anywhere.
            let live: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM generations n JOIN jobs j ON j.id = n.job_id
                                WHERE n.id = ?1 AND n.job_id = ?2 AND n.state = ?3
                                  AND j.state = ?4)",
                params![
                    generation,
                    job,
                    Generation::Writing,
                    JobState::Processing.as_str()
                ],
                |r| r.get(0),
            )?;
            if !live {
                return Ok((Written::Stopped, Vec::new()));
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO vectors (generation_id, row_no, text, embedding,
                                                 text_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            // The vector is copied inside SQLite: it never travels through the runner.
            let mut copy = tx.prepare_cached(
                "INSERT OR REPLACE INTO vectors (generation_id, row_no, text, embedding,
                                                 text_hash)
                 SELECT ?1, ?2, ?3, embedding, ?4 FROM vectors
                 WHERE generation_id = ?5 AND row_no = ?6
                   AND NOT EXISTS (SELECT 1 FROM vector_trash WHERE generation_id = ?5)",
            )?;
            for new in rows {
                let (row, hash) = (new.row as i64, &new.text_hash[..]);
                match &new.vector {
                    RowVector::Embedded(vector) => {
                        let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                        insert.execute(params![generation, row, new.text, blob, hash])?;
                    }
                    RowVector::Copy {
                        generation: from,
                        row: from_row,
                    } => {
                        let copied = copy.execute(params![
                            generation,
                            row,
                            new.text,
                            hash,
                            from,
                            *from_row as i64
                        ])?;
                        if copied != 1 {
                            // Its generation was deleted meanwhile (the version was removed):
                            // a try that cannot finish, not a row to leave out.
                            return Err(CatalogError::NotFound(format!(
                                "the vector of row {from_row} of generation {from}, to reuse \
                                 for row {row}, is gone"
                            )));
                        }
                    }
                }
            }
            drop((insert, copy));
            tx.execute(
                "UPDATE generations SET rows = rows + ?1 WHERE id = ?2",
                params![rows.len() as i64, generation],
            )?;
            tx.execute(
                "UPDATE jobs SET rows_done = ?1 WHERE id = ?2",
                params![done as i64, job],
            )?;
            Ok((Written::Stored, Vec::new()))
        });
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        let written = result?;
        if written == Written::Stored
            && publish
            && let Some(job) = self.job_info(job)?
        {
            self.job_event(EventKind::JobProgress, &job, None);
        }
        Ok(written)
    }
}
