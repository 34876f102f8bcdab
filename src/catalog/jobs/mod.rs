//! The embedding queue and generations in the catalog: queueing, claiming, progress, the
//! swap, failure, cancel, retry and start-up recovery of jobs.
//!
//! Every state change of a job is one transaction that also keeps its version's status in
//! step (`queued` → `embedding` → `embedded` / `failed`). The swap is the one transaction that
//! makes a new generation active and deletes the source's previous one, so a search sees the
//! old rows or the new rows, never neither. Vectors are written in chunks before the swap with
//! relaxed durability: a crash loses only a generation that was never active, and start-up
//! recovery keeps it only as a source of vectors to reuse.
//!
//! Reuse: every vector carries a hash of its text. A try that fails with tries left keeps its
//! generation as `retained`: never searchable, only read by the job's next try, which copies
//! the vectors of identical texts instead of embedding them again. A retained generation lives
//! exactly as long as its job is queued or processing; every transaction that ends a job
//! sweeps the retained generations of jobs that ended, so nothing is left behind.
//!
//! The files follow a job's life: `requests` (queue, re-embed, retry, cancel), `order` (which
//! starts next), `claim` (start it and its generation), `vectors` (its rows), `finish` (swap,
//! requeue, fail, cancel), `recover` (after a crash); `query` reads, and `state` holds the
//! stored states and the writes that keep versions and generations in step. This module never
//! starts a thread or calls a provider (the queue does), and it never imports the queue: the
//! queue imports it.

mod claim;
mod finish;
pub(in crate::catalog) mod order;
mod query;
mod recover;
mod requests;
mod state;
mod vectors;

#[cfg(test)]
mod tests;

pub use claim::{Begun, Claimed};
pub use finish::{Ending, Finished};
pub(in crate::catalog) use requests::enqueue;
pub use state::Generation;
pub use vectors::{NewRow, Origin, RowVector, Written, reusable_texts, text_hash};

/// Why a job exists.
pub const NEW_VERSION: &str = "new_version";
pub const REEMBED: &str = "reembed";
pub const RETRY: &str = "retry";

/// What the queue side of the catalog needs from the daemon.
#[derive(Debug)]
pub struct QueueState {
    /// Woken whenever a job may be startable (queued, retried, a worker freed).
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// `embedding.max_attempts` for jobs queued from now on.
    pub max_attempts: u32,
    /// The group that last got a job (round robin).
    pub cursor: Option<i64>,
}

impl Default for QueueState {
    fn default() -> Self {
        Self {
            wake: Default::default(),
            max_attempts: 3,
            cursor: None,
        }
    }
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}
