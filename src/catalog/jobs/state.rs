//! The states a job and a generation are stored in, and the small writes every change of a
//! job makes to keep its version's status and the generations in step.
//!
//! Job states are bound through [`JobState`] and generation states through [`Generation`],
//! always as SQL parameters, so no state is spelled as a literal in the catalog's queries and
//! a renamed state cannot leave one query behind. This file never decides which change is
//! allowed: the files that make a change (`claim`, `finish`, `requests`, `recover`) do.

use crate::clock;
use crate::protocol::{JobState, Status};
use rusqlite::types::{ToSql, ToSqlOutput};
use rusqlite::{OptionalExtension, Transaction, params};

/// Read a job state column. A word no ingestd writes reads as `failed`, the state that asks
/// for a person's attention, rather than failing the whole listing.
pub(super) fn job_state(r: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<JobState> {
    let text: String = r.get(index)?;
    Ok(JobState::parse(&text).unwrap_or(JobState::Failed))
}

/// The state of a generation of vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generation {
    /// Being written by its processing job; never searchable.
    Writing,
    /// The source's searchable set (at most one per source).
    Active,
    /// Written by a try that failed or was stopped: kept only for the job's next try to
    /// reuse, never searchable.
    Retained,
}

impl Generation {
    pub const fn as_str(self) -> &'static str {
        match self {
            Generation::Writing => "writing",
            Generation::Active => "active",
            Generation::Retained => "retained",
        }
    }
}

impl ToSql for Generation {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(self.as_str()))
    }
}

pub(super) fn set_version_status(
    tx: &Transaction<'_>,
    version_id: i64,
    status: Status,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE versions SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status != 'deleting'",
        params![status.as_str(), clock::now_ms(), version_id],
    )?;
    Ok(())
}

/// The status a version returns to when its job stops without a swap: `embedded` if it holds
/// the source's active generation, else `ready`.
pub(super) fn settle_version_status(tx: &Transaction<'_>, version_id: i64) -> rusqlite::Result<()> {
    let active: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM generations WHERE version_id = ?1 AND state = ?2)",
        params![version_id, Generation::Active],
        |r| r.get(0),
    )?;
    set_version_status(
        tx,
        version_id,
        if active {
            Status::Embedded
        } else {
            Status::Ready
        },
    )
}

/// Drop one generation; returns how many vectors it held. Its row goes in `tx`, so from the
/// commit on nothing reads its vectors (search and reuse go through `generations`); the
/// vectors themselves are left in `vector_trash` for the catalog thread to delete a chunk at a
/// time (`catalog::purge`), not in this transaction.
pub(super) fn drop_generation(tx: &Transaction<'_>, generation: i64) -> rusqlite::Result<u64> {
    let rows: i64 = tx
        .query_row(
            "SELECT rows FROM generations WHERE id = ?1",
            [generation],
            |r| r.get(0),
        )
        .optional()?
        .unwrap_or(0);
    tx.execute(
        "INSERT OR IGNORE INTO vector_trash (generation_id) VALUES (?1)",
        [generation],
    )?;
    tx.execute("DELETE FROM generations WHERE id = ?1", [generation])?;
    Ok(rows.max(0) as u64)
}

/// Delete the retained generations of jobs that are no longer queued or processing (ended,
/// or deleted): what makes "retained only while its job may still run" hold. Called in every
/// transaction that ends a job.
pub(super) fn sweep_retained(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let stale: Vec<i64> = tx
        .prepare_cached(
            "SELECT n.id FROM generations n LEFT JOIN jobs j ON j.id = n.job_id
             WHERE n.state = ?1 AND (j.id IS NULL OR j.state NOT IN (?2, ?3))",
        )?
        .query_map(
            params![
                Generation::Retained,
                JobState::Queued.as_str(),
                JobState::Processing.as_str()
            ],
            |r| r.get(0),
        )?
        .collect::<Result<_, _>>()?;
    for id in stale {
        drop_generation(tx, id)?;
    }
    Ok(())
}

/// Delete every generation of `job` that is still being written.
pub(super) fn drop_unfinished(tx: &Transaction<'_>, job: i64) -> rusqlite::Result<()> {
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM generations WHERE job_id = ?1 AND state = ?2")?
        .query_map(params![job, Generation::Writing], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        drop_generation(tx, id)?;
    }
    Ok(())
}
