//! Ending a try: the swap on success, a requeue (after a backoff, or after a daemon stop),
//! a failure, a cancel — each one small function, all inside the one transaction
//! [`Db::finish_job`] opens.
//!
//! The promise kept here: the source's active generation is replaced only by a complete
//! generation of a version at least as new, in the same transaction that drops it, so a
//! search sees the old rows or the new rows, never neither. A dropped generation's vectors
//! are deleted after the commit (`catalog::purge`). Every other ending leaves it
//! active. A try that may run again (a retry, a stop) keeps what it wrote as `retained` for
//! its next try to reuse; any other ending drops it, and every ending sweeps the retained
//! generations of jobs that ended. This file never queues or claims a job.

use super::plural;
use super::state::{
    Generation, drop_generation, drop_unfinished, set_version_status, settle_version_status,
    sweep_retained,
};
use crate::audit::AuditRecord;
use crate::catalog::{CatalogError, Db};
use crate::clock;
use crate::identity::{Actor, Resolve};
use crate::protocol::{EventKind, JobInfo, JobState, Status};
use rusqlite::{OptionalExtension, Transaction, params};

/// How a job ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every row written: swap.
    Done,
    /// A transient error with tries left: queue again, not before `at_ms`.
    Retry { error: String, at_ms: i64 },
    /// Failed for good.
    Failed(String),
    /// Stopped by `cancel` (or `rm --force`).
    Cancelled,
    /// Stopped by a daemon shutdown: back to the queue, the try not counted.
    Interrupted,
}

/// What the end of a try did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// The try's generation is active; the previous one, of `replaced` vectors, is dropped.
    Swapped {
        rows: u64,
        replaced: u64,
    },
    /// The job was no longer processing (deleted meanwhile), or its version is older than
    /// the active one: its vectors were dropped.
    Dropped,
    /// Queued again: after a backoff, or after a daemon stop.
    Requeued,
    Failed,
    Cancelled,
}

/// The job a finishing transaction ends, and when.
struct Ended<'a> {
    job: i64,
    info: &'a JobInfo,
    version_id: i64,
    source_id: i64,
    now: i64,
}

/// What a finishing step did and the audit records it leaves.
type Outcome = (Finished, Vec<AuditRecord>);

impl Ended<'_> {
    fn record(&self, action: &'static str, outcome: &'static str, detail: String) -> AuditRecord {
        let mut r = AuditRecord::new(Actor::daemon(), action, outcome)
            .on(&self.info.group, &self.info.source)
            .version(Some(self.info.version.clone()))
            .detail(detail);
        r.job = Some(self.job);
        r
    }

    fn set_job(
        &self,
        tx: &Transaction<'_>,
        state: JobState,
        error: Option<&str>,
    ) -> rusqlite::Result<()> {
        tx.execute(
            "UPDATE jobs SET state = ?1, finished_at = ?2, error = ?3 WHERE id = ?4",
            params![state.as_str(), self.now, error, self.job],
        )?;
        Ok(())
    }
}

impl Db {
    /// End a processing job: swap on success, otherwise keep the previous generation.
    pub fn finish_job(
        &mut self,
        job: i64,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Finished, CatalogError> {
        let Some(info) = self.job_info(job)? else {
            // Deleted with its source: nothing of it may remain.
            if let Some(generation) = generation {
                self.write(|tx| Ok((drop_generation(tx, generation).map(|_| ())?, Vec::new())))?;
            }
            return Ok(Finished::Dropped);
        };
        let finished = self.write(|tx| {
            let (version_id, source_id): (i64, i64) = tx.query_row(
                "SELECT version_id, source_id FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let ended = Ended {
                job,
                info: &info,
                version_id,
                source_id,
                now: clock::now_ms(),
            };
            let outcome = if info.state != JobState::Processing {
                stopped_meanwhile(tx, &ended, generation)?
            } else {
                match ending {
                    Ending::Done => swap(tx, &ended, generation)?,
                    Ending::Retry { error, at_ms } => {
                        requeue_after_backoff(tx, &ended, generation, &error, at_ms)?
                    }
                    Ending::Interrupted => requeue_after_stop(tx, &ended, generation)?,
                    Ending::Failed(error) => fail(tx, &ended, generation, error)?,
                    Ending::Cancelled => cancel(tx, &ended, generation)?,
                }
            };
            sweep_retained(tx)?;
            Ok(outcome)
        })?;
        if finished == Finished::Requeued
            && let Some(job) = self.job_info(job)?
        {
            let detail = job.error.clone();
            self.job_event(EventKind::JobRetrying, &job, detail);
        }
        if matches!(finished, Finished::Swapped { .. }) {
            self.prune_after_change(&info.group, &info.source);
        }
        self.queue.wake.notify_one();
        Ok(finished)
    }
}

/// The job was cancelled while it ran (or deleted): whatever it wrote goes, the previous
/// generation stays.
fn stopped_meanwhile(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
) -> Result<Outcome, CatalogError> {
    if let Some(generation) = generation {
        drop_generation(tx, generation)?;
    }
    drop_unfinished(tx, e.job)?;
    let finished = if e.info.state == JobState::Cancelled {
        Finished::Cancelled
    } else {
        Finished::Dropped
    };
    Ok((finished, Vec::new()))
}

/// Every row was written: make the try's generation the source's active one and delete the
/// previous one, unless a newer version is active already.
fn swap(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
) -> Result<Outcome, CatalogError> {
    let Some(generation) = generation else {
        return Err(CatalogError::NotFound(format!(
            "job {} finished without a generation",
            e.job
        )));
    };
    let newer: Option<i64> = tx
        .query_row(
            "SELECT v.version_no FROM generations n
             JOIN versions v ON v.id = n.version_id
             WHERE n.source_id = ?1 AND n.state = ?3
               AND v.version_no > (SELECT version_no FROM versions WHERE id = ?2)",
            params![e.source_id, e.version_id, Generation::Active],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(newer) = newer {
        return superseded(tx, e, generation, newer);
    }
    let previous: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, version_id FROM generations WHERE source_id = ?1 AND state = ?2",
        )?
        .query_map(params![e.source_id, Generation::Active], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
        .collect::<Result<_, _>>()?;
    let mut replaced = 0;
    for (old, old_version) in &previous {
        replaced += drop_generation(tx, *old)?;
        if *old_version != e.version_id {
            set_version_status(tx, *old_version, Status::Ready)?;
        }
    }
    let rows: i64 = tx.query_row(
        "SELECT rows FROM generations WHERE id = ?1",
        [generation],
        |r| r.get(0),
    )?;
    tx.execute(
        "UPDATE generations SET state = ?1, activated_at = ?2 WHERE id = ?3",
        params![Generation::Active, e.now, generation],
    )?;
    tx.execute(
        "UPDATE jobs SET state = ?1, finished_at = ?2, error = NULL,
                rows_done = MAX(rows_total, ?3) WHERE id = ?4",
        params![JobState::Completed.as_str(), e.now, rows, e.job],
    )?;
    set_version_status(tx, e.version_id, Status::Embedded)?;
    let detail = format!(
        "{} now active{}",
        plural(rows as u64, "row"),
        if previous.is_empty() {
            String::new()
        } else {
            format!(", replacing {}", plural(replaced, "row"))
        }
    );
    Ok((
        Finished::Swapped {
            rows: rows as u64,
            replaced,
        },
        vec![e.record("swap", "ok", detail)],
    ))
}

/// A newer version's generation was swapped in while this try ran: this older one is never
/// made active over it.
fn superseded(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: i64,
    newer: i64,
) -> Result<Outcome, CatalogError> {
    drop_generation(tx, generation)?;
    e.set_job(
        tx,
        JobState::Cancelled,
        Some(&format!(
            "v{newer} was embedded meanwhile; this older version's embeddings were not kept"
        )),
    )?;
    settle_version_status(tx, e.version_id)?;
    Ok((Finished::Dropped, Vec::new()))
}

/// Keep what the try wrote for the next try to reuse.
fn retain(tx: &Transaction<'_>, generation: Option<i64>) -> rusqlite::Result<()> {
    if let Some(generation) = generation {
        tx.execute(
            "UPDATE generations SET state = ?1 WHERE id = ?2",
            params![Generation::Retained, generation],
        )?;
    }
    Ok(())
}

/// A transient error with tries left: queued again, not before `at_ms`; the try counts.
fn requeue_after_backoff(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
    error: &str,
    at_ms: i64,
) -> Result<Outcome, CatalogError> {
    retain(tx, generation)?;
    tx.execute(
        "UPDATE jobs SET state = ?1, error = ?2, not_before = ?3 WHERE id = ?4",
        params![JobState::Queued.as_str(), error, at_ms, e.job],
    )?;
    set_version_status(tx, e.version_id, Status::Queued)?;
    Ok((Finished::Requeued, Vec::new()))
}

/// Stopped by a daemon stop: queued again at once, and the try does not count.
fn requeue_after_stop(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
) -> Result<Outcome, CatalogError> {
    retain(tx, generation)?;
    tx.execute(
        "UPDATE jobs SET state = ?1, attempt = MAX(attempt - 1, 0),
                rows_done = 0, error = 'interrupted by a daemon stop; queued again'
         WHERE id = ?2",
        params![JobState::Queued.as_str(), e.job],
    )?;
    set_version_status(tx, e.version_id, Status::Queued)?;
    Ok((Finished::Requeued, Vec::new()))
}

/// Failed for good: what the try wrote goes.
fn fail(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
    error: String,
) -> Result<Outcome, CatalogError> {
    if let Some(generation) = generation {
        drop_generation(tx, generation)?;
    }
    e.set_job(tx, JobState::Failed, Some(&error))?;
    set_version_status(tx, e.version_id, Status::Failed)?;
    Ok((Finished::Failed, vec![e.record("embed", "failed", error)]))
}

/// Its worker stopped for a cancel while the catalog still shows the job processing: what
/// the try wrote goes.
fn cancel(
    tx: &Transaction<'_>,
    e: &Ended<'_>,
    generation: Option<i64>,
) -> Result<Outcome, CatalogError> {
    if let Some(generation) = generation {
        drop_generation(tx, generation)?;
    }
    tx.execute(
        "UPDATE jobs SET state = ?1, finished_at = ?2 WHERE id = ?3",
        params![JobState::Cancelled.as_str(), e.now, e.job],
    )?;
    settle_version_status(tx, e.version_id)?;
    Ok((Finished::Cancelled, Vec::new()))
}
