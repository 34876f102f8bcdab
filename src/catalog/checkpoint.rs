//! WAL checkpoints off the catalog thread: a thread of its own, with a connection of its own,
//! copies committed pages from the write-ahead log into the database file.
//!
//! SQLite's automatic checkpoint runs inside the commit that makes the log pass 1,000 pages,
//! on the committing connection: the catalog thread. That commit then also writes those pages
//! into the database file and syncs it, which took 0.6 s on a catalog of 1 GB while a job was
//! writing vectors, and any accept or command queued behind it waited as long. With the
//! automatic checkpoint off on the catalog's connection, this thread checkpoints instead,
//! `PASSIVE`ly (it never waits for, nor blocks, the writer or the readers), shortly after the
//! catalog thread reports a change.
//!
//! A passive checkpoint cannot start the log over, though: only a writer does, at its next
//! transaction, and only if every frame was copied by then. A writer that commits while the
//! copy runs (three jobs writing vectors) finds the log not wholly copied and appends to it,
//! round after round, until the disk is full. So when this thread finds the log past
//! [`LOG_LIMIT`], it asks the catalog thread, the only writer, to finish the copy itself with a
//! `RESTART` checkpoint between two calls ([`Checkpointer::restart_if_asked`]): little is left
//! to copy by then, and the next commit starts the log over.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Changes are gathered this long before a checkpoint, so a burst of commits costs one.
const GATHER: Duration = Duration::from_millis(100);

/// The log's size past which it is started over (a `RESTART` checkpoint); also the size the
/// catalog's connection cuts it back to when it starts over (`journal_size_limit`).
pub const LOG_LIMIT: u64 = 64 << 20;

/// How long a `RESTART` checkpoint may wait for readers to leave the log (a search, a job
/// reading reusable texts); the catalog thread waits as long. When it runs out, the log is
/// copied but not started over.
const RESTART_WAIT: Duration = Duration::from_millis(250);

/// After a `RESTART` that ran out of time, the next one is asked for no sooner than this, so a
/// reader that stays in the log does not cost the catalog thread a wait every round.
const RESTART_BACKOFF: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    /// The catalog changed since the last checkpoint.
    changed: bool,
    stop: bool,
    /// No restart is asked for before this (set after one ran out of time).
    restart_from: Option<Instant>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// The log is past [`LOG_LIMIT`]: the writer should finish the copy and start it over.
    restart: AtomicBool,
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
        Self::start_with(path, LOG_LIMIT)
    }

    /// [`Checkpointer::start`], starting the log over once it holds `limit` bytes.
    fn start_with(path: &Path, limit: u64) -> rusqlite::Result<Self> {
        let conn = rusqlite::Connection::open(path)?;
        conn.busy_timeout(super::schema::BUSY_TIMEOUT)?;
        let page: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
        let limit_pages = (limit / page.max(512) as u64).max(1) as i64;
        let shared = Arc::new(Shared::default());
        let ours = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("catalog-checkpoint".into())
            .spawn(move || run(&conn, &ours, limit_pages))
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

    /// Run by the writer (the catalog thread) between two calls: if the thread asked for it,
    /// finish copying the log and let the next commit start it over. `busy` is the
    /// connection's usual busy timeout, restored afterwards.
    pub fn restart_if_asked(&self, conn: &rusqlite::Connection, busy: Duration) {
        if !self.shared.restart.swap(false, Ordering::Relaxed) {
            return;
        }
        let result = conn
            .busy_timeout(RESTART_WAIT)
            .and_then(|()| checkpoint(conn, "RESTART", &self.shared));
        let _ = conn.busy_timeout(busy);
        let out_of_time = match result {
            Ok((busy, _)) => busy,
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the WAL over; trying again later");
                true
            }
        };
        if out_of_time && let Ok(mut state) = self.shared.state.lock() {
            state.restart_from = Some(Instant::now() + RESTART_BACKOFF);
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

fn run(conn: &rusqlite::Connection, shared: &Shared, limit_pages: i64) {
    loop {
        let restart_from = {
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
            state.restart_from
        };
        std::thread::sleep(GATHER);
        // PASSIVE copies what it can now, waiting for no one.
        match checkpoint(conn, "PASSIVE", shared) {
            Ok((_, log)) => {
                if log >= limit_pages && restart_from.is_none_or(|from| Instant::now() >= from) {
                    shared.restart.store(true, Ordering::Relaxed);
                }
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; trying again later"),
        }
    }
}

/// One checkpoint in `mode`: whether it ran out of time (busy), and the pages in the log.
fn checkpoint(
    conn: &rusqlite::Connection,
    mode: &str,
    shared: &Shared,
) -> rusqlite::Result<(bool, i64)> {
    // (busy, frames in the log, frames checkpointed)
    let sql = format!("PRAGMA wal_checkpoint({mode})");
    let started = Instant::now();
    let (busy, log, copied) = conn.query_row(&sql, [], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    if copied > 0 {
        shared.done.fetch_add(1, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    if elapsed >= Duration::from_millis(1) || busy != 0 {
        // SQLite reports the log's pages and how many of them are in the database file so far
        // (not what this call copied).
        tracing::debug!(
            mode,
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            log_pages = log,
            log_pages_in_database = copied,
            busy = busy != 0,
            "WAL checkpoint"
        );
    }
    Ok((busy != 0, log))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database `c.sqlite` in a new folder, in WAL mode without SQLite's automatic
    /// checkpoint (as the catalog's connection is), with one table `t (x BLOB)`.
    fn writer() -> (tempfile::TempDir, std::path::PathBuf, rusqlite::Connection) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer
            .execute_batch(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
                 PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x BLOB);",
            )
            .unwrap();
        writer.busy_timeout(Duration::from_secs(5)).unwrap();
        (dir, path, writer)
    }

    #[test]
    fn changes_are_checkpointed_by_the_thread_not_the_writer() {
        let (_dir, path, writer) = writer();
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

    #[test]
    fn the_log_stays_bounded_while_the_writer_never_pauses() {
        // Under a writer that never pauses, passive checkpoints alone never let it start the
        // log over, and the log grew until the disk was full.
        let (_dir, path, writer) = writer();
        let checkpointer = Checkpointer::start_with(&path, 1 << 20).unwrap();
        let (rows, row) = (640, 64 * 1024);
        for _ in 0..rows {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(?1))", [row])
                .unwrap();
            // As the catalog thread does after each call.
            checkpointer.changed();
            checkpointer.restart_if_asked(&writer, Duration::from_secs(5));
            // About 30 MB/s, as three jobs' vector writes; a faster writer gets further
            // between two rounds, so its log's bound is higher (still a bound).
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut wal = path.as_os_str().to_os_string();
        wal.push("-wal");
        let log = std::fs::metadata(&wal).unwrap().len();
        let written = (rows * row) as u64;
        assert!(
            log < written / 4,
            "the log is started over: {log} bytes of log after {written} bytes written"
        );
        drop(checkpointer);
    }
}
