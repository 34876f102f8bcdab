//! WAL checkpoints off the catalog thread: a thread of its own, with a connection of its own,
//! copies committed pages from the write-ahead log into the database file.
//!
//! SQLite's automatic checkpoint runs inside the commit that makes the log pass 1,000 pages,
//! on the committing connection: the catalog thread. That commit then also writes those pages
//! into the database file and syncs it, which took 0.6 s on a catalog of 1 GB while a job was
//! writing vectors, and any accept or command queued behind it waited as long. With the
//! automatic checkpoint off on the catalog's connection, this thread checkpoints instead,
//! `PASSIVE`ly (it never waits for, nor blocks, the writer or the readers), shortly after the
//! catalog thread reports a change. The log stays bounded as before: each checkpoint lets the
//! next commit start the log over.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// Changes are gathered this long before a checkpoint, so a burst of commits costs one.
const GATHER: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    /// The catalog changed since the last checkpoint.
    changed: bool,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Checkpoints that copied at least one page (for tests).
    done: AtomicU64,
}

/// The checkpoint thread; stopped (and joined) when dropped.
pub struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Open a connection to the database at `path` and start the thread.
    pub fn start(path: &Path) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let shared = Arc::new(Shared::default());
        let ours = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("catalog-checkpoint".into())
            .spawn(move || run(&conn, &ours))
            .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The catalog changed: checkpoint soon.
    pub fn changed(&self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.changed = true;
            self.shared.wake.notify_one();
        }
    }

    /// Checkpoints so far that copied pages.
    #[cfg(test)]
    pub fn done(&self) -> u64 {
        self.shared.done.load(Ordering::Relaxed)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        if let Ok(mut state) = self.shared.state.lock() {
            state.stop = true;
            self.shared.wake.notify_one();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &rusqlite::Connection, shared: &Shared) {
    loop {
        {
            let Ok(mut state) = shared.state.lock() else {
                return;
            };
            while !state.changed && !state.stop {
                state = match shared.wake.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
            if state.stop {
                return;
            }
            state.changed = false;
        }
        std::thread::sleep(GATHER);
        // (busy, frames in the log, frames checkpointed); PASSIVE copies what it can now.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        }) {
            Ok((_, _, copied)) if copied > 0 => {
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again later"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_checkpointed_by_the_thread_not_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (x BLOB);",
            )
            .unwrap();
        let checkpointer = Checkpointer::start(&path).unwrap();
        for _ in 0..50 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(8192))", [])
                .unwrap();
        }
        let size = || std::fs::metadata(&path).unwrap().len();
        std::thread::sleep(GATHER * 2);
        assert_eq!(
            checkpointer.done(),
            0,
            "nothing is checkpointed before a change is reported"
        );
        assert!(
            size() < 50 * 8192,
            "the pages are still in the log: {}",
            size()
        );
        checkpointer.changed();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while checkpointer.done() == 0 {
            assert!(std::time::Instant::now() < deadline, "no checkpoint");
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            size() >= 50 * 8192,
            "the pages are in the database file: {}",
            size()
        );
        drop(checkpointer);
    }
}
