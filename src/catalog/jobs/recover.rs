//! Start-up recovery of the queue: what a stop or a crash left half done.
//!
//! A job left `processing` goes back to the queue with its attempt count; what its generation
//! holds (every chunk that was committed) is kept as `retained` for its next try to reuse, and
//! any other generation still being written is deleted. Active generations are never touched,
//! so a source's previous embeddings stay searchable across a crash.

use super::state::{Generation, drop_generation, set_version_status, sweep_retained};
use crate::catalog::{CatalogError, Db};
use crate::protocol::{JobState, Status};
use rusqlite::params;

impl Db {
    /// Start-up: jobs left `processing` by a stop go back to the queue with their attempt
    /// count. What their generations hold (every chunk that was committed) is retained for
    /// their next try to reuse; any other generation still being written is deleted.
    /// Returns (requeued, dropped).
    pub fn recover_jobs(&mut self) -> Result<(u64, u64), CatalogError> {
        let result = self.write(|tx| {
            tx.execute(
                "UPDATE generations SET state = ?1 WHERE state = ?2
                 AND job_id IN (SELECT id FROM jobs WHERE state = ?3)",
                params![
                    Generation::Retained,
                    Generation::Writing,
                    JobState::Processing.as_str()
                ],
            )?;
            let writing: Vec<i64> = tx
                .prepare("SELECT id FROM generations WHERE state = ?1")?
                .query_map([Generation::Writing], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &writing {
                drop_generation(tx, *id)?;
            }
            let stuck: Vec<(i64, i64)> = tx
                .prepare("SELECT id, version_id FROM jobs WHERE state = ?1")?
                .query_map([JobState::Processing.as_str()], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?
                .collect::<Result<_, _>>()?;
            for (id, version_id) in &stuck {
                tx.execute(
                    "UPDATE jobs SET state = ?2, rows_done = 0, not_before = NULL,
                            error = 'the daemon stopped while this job ran; queued again'
                     WHERE id = ?1",
                    params![id, JobState::Queued.as_str()],
                )?;
                set_version_status(tx, *version_id, Status::Queued)?;
            }
            sweep_retained(tx)?;
            Ok(((stuck.len() as u64, writing.len() as u64), Vec::new()))
        })?;
        self.queue.wake.notify_one();
        Ok(result)
    }
}
