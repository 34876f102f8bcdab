//! Staged vectors: what keeps the HNSW index off the embedding path.
//!
//! Inserting a vector into an HNSW index walks the graph to link it, about 2 ms per 384-wide
//! vector on a small server, while the `COPY` of the same row takes microseconds. So a try
//! writes its vectors *staged* (`vectors.staged`): outside every identity's HNSW index, whose
//! predicate leaves them out (`schema::ensure_index`). The swap makes them searchable at once,
//! and a search scans the staged rows of its group exactly next to its index scan of the
//! rest (`search`). A pass on every node ([`index_some`], from `node`) then moves the active
//! generations' staged rows into the index a batch at a time, off the path a user waits on.
//! Rows of a try that is discarded are never indexed. While the pass has a backlog, searches
//! of a group with many staged rows cost an exact scan of them ([`backlog`] says how many;
//! `ingestctl status` shows it).

use super::PgError;
use postgres::Client;

/// Staged rows moved into the index per transaction: about half a second of index inserts,
/// so a delete or a swap never waits long for the pass's row locks.
pub const BATCH: i64 = 256;

/// Move up to `batch` staged rows of active generations into their identity's index; returns
/// how many moved. Rows another node's pass holds are skipped, so passes share the work.
pub fn index_some(client: &mut Client, batch: i64) -> Result<u64, PgError> {
    let mut tx = client.transaction()?;
    // Losing this commit in a crash leaves the rows staged, and the next pass indexes them.
    tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    let moved = tx.execute(
        "UPDATE vectors x SET staged = false
         FROM (SELECT v.generation_id, v.row_no FROM vectors v
               JOIN generations n ON n.id = v.generation_id AND n.state = 'active'
               WHERE v.staged
               LIMIT $1
               FOR UPDATE OF v SKIP LOCKED) picked
         WHERE x.generation_id = picked.generation_id AND x.row_no = picked.row_no",
        &[&batch],
    )?;
    tx.commit()?;
    Ok(moved)
}

/// Rows of active generations still staged: searched exactly until the pass indexes them.
pub fn backlog(client: &mut Client) -> Result<u64, PgError> {
    let n: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM vectors x
             JOIN generations n ON n.id = x.generation_id AND n.state = 'active'
             WHERE x.staged",
            &[],
        )?
        .get(0);
    Ok(n as u64)
}
