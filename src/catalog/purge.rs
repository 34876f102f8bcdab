//! The vectors of dropped generations (`vector_trash`), deleted a chunk at a time on the
//! catalog thread when both of its queues are empty, or after 32 calls in a row while some
//! wait.
//!
//! A swap drops the previous generation in its own transaction: the generation's row goes, so
//! from that commit on no search and no reuse reads its vectors, and the vectors wait in
//! `vector_trash`. Deleting them in the swap's transaction took 1.27 s for a million
//! vectors (2.07 s in an earlier measurement), and every accept and command queued behind it
//! waited as long. Here each chunk is a transaction of its own, run when nothing else waits,
//! so a request waits for one chunk at most; under calls that never stop (jobs writing
//! vectors, a flood of requests), one chunk goes after every 32 of them, so the purge slows
//! down but never stops. The trash is in the database: a stop or a crash mid-way leaves the
//! rest for the next start.

use super::{CatalogError, Db};
use rusqlite::OptionalExtension;

/// Vectors deleted per transaction: a few milliseconds of the catalog thread.
pub const CHUNK: i64 = 2048;

impl Db {
    /// Whether any dropped generation still has vectors to delete.
    pub(super) fn trash_pending(&self) -> Result<bool, CatalogError> {
        Ok(self
            .conn
            .query_row("SELECT EXISTS (SELECT 1 FROM vector_trash)", [], |r| {
                r.get(0)
            })?)
    }

    /// Delete up to [`CHUNK`] vectors of one dropped generation, and forget the generation
    /// once none is left. Returns whether any trash remains.
    pub(super) fn purge_chunk(&mut self) -> Result<bool, CatalogError> {
        let generation: Option<i64> = self
            .conn
            .query_row(
                "SELECT generation_id FROM vector_trash ORDER BY generation_id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        let Some(generation) = generation else {
            return Ok(false);
        };
        // Losing a chunk's commit to a power cut only means deleting it again: no need to
        // sync the log for it.
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let deleted = (|| {
            let tx = self.conn.transaction()?;
            let deleted = tx.execute(
                "DELETE FROM vectors WHERE rowid IN
                    (SELECT rowid FROM vectors WHERE generation_id = ?1 LIMIT ?2)",
                [generation, CHUNK],
            )?;
            if (deleted as i64) < CHUNK {
                tx.execute(
                    "DELETE FROM vector_trash WHERE generation_id = ?1",
                    [generation],
                )?;
            }
            tx.commit()?;
            Ok::<_, rusqlite::Error>(deleted)
        })();
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        deleted?;
        self.trash_pending()
    }
}

#[cfg(test)]
mod tests;
