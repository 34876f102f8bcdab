//! The SQLite catalog: groups, sources, versions and the audit trail, owned by one thread.
//!
//! All SQLite work runs on a dedicated thread that owns the connection; async code sends it
//! closures through a bounded channel and awaits the answer, so no rusqlite call ever runs on
//! a reactor thread. Writes that carry audit records go through [`Db::write`], which appends
//! the records to `audit.jsonl` only after the transaction commits.

mod api;
mod checkpoint;
mod drops;
pub mod fsck;
mod ingest;
pub mod jobs;
mod jobs_page;
mod manage;
pub mod memo;
pub mod pg;
mod purge;
mod read;
pub mod read_options;
pub mod retain;
mod schema;
pub mod search;

pub use api::Stopping;
pub use ingest::{Accepted, Decision, Rejected, Reservation};
pub use jobs::{Begun, Claimed, Ending, Finished};
pub use manage::{AuditFilter, PrefsChange, parse_target};

use crate::audit::{AuditLog, AuditRecord};
use crate::events::Events;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for the catalog thread. Senders wait (async) or block (ingest threads)
/// when it is full; nothing is dropped.
const QUEUE: usize = 256;

/// Bulk writes (the chunks of vectors embedding jobs write) waiting for the catalog thread:
/// one per writer thread is all there ever is, as each waits for its answer.
const BULK_QUEUE: usize = 16;

/// Calls of the main queue served in a row, while a bulk write waits, before that write goes
/// next: a flood of requests on the socket slows embedding down but cannot stop it.
const PRIORITY_RUN: u32 = 8;

/// Calls served in a row while dropped generations' vectors wait, before one chunk of them is
/// deleted: jobs and requests that keep the queues busy slow the purge down but cannot stop
/// it.
const PURGE_RUN: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("cannot open the catalog {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "the catalog {path} was written by a newer ingestd (schema {found}, this one knows {known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("catalog query failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Ambiguous(String),
    #[error("the catalog thread has stopped")]
    Closed,
    #[error("catalog task panicked: {0}")]
    Panicked(String),
    /// The PostgreSQL catalog (`catalog.backend = "postgres"`) failed or refused.
    #[error("{0}")]
    Postgres(String),
}

impl From<pg::PgError> for CatalogError {
    fn from(error: pg::PgError) -> Self {
        match error {
            pg::PgError::Catalog(inner) => inner,
            other => CatalogError::Postgres(other.to_string()),
        }
    }
}

/// The connection and the audit log, as the catalog thread holds them. Private to the
/// catalog: everything else goes through the typed methods of [`Catalog`] (`api`).
struct Db {
    conn: Connection,
    audit: AuditLog,
    events: Events,
    /// The embedding queue's settings and round-robin cursor.
    queue: jobs::QueueState,
    /// How many versions to keep, and where their files are.
    retention: retain::Retention,
    /// Listings and counts kept while nothing changes.
    memo: memo::Memo,
    /// Checkpoints the WAL on a thread of its own; `None` leaves it to SQLite's automatic
    /// checkpoint on this connection.
    checkpointer: Option<checkpoint::Checkpointer>,
    /// Dropped generations still have vectors to delete (`purge`).
    trash: bool,
}

#[cfg(test)]
impl Db {
    /// The catalog in `dir` (`c.sqlite`, `audit.jsonl`), migrated, with default settings and
    /// neither a thread nor a checkpointer: for unit tests that drive `Db` directly.
    fn in_dir(dir: &Path) -> Db {
        Db {
            conn: schema::open(&dir.join("c.sqlite")).unwrap(),
            audit: AuditLog::new(&dir.join("audit.jsonl")),
            events: Events::default(),
            queue: jobs::QueueState::default(),
            retention: retain::Retention::default(),
            memo: memo::Memo::default(),
            checkpointer: None,
            trash: false,
        }
    }
}

impl Db {
    /// Run `f` in one transaction; insert the audit records it returns; commit; then append
    /// them to `audit.jsonl`.
    pub fn write<R>(
        &mut self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(R, Vec<AuditRecord>), CatalogError>,
    ) -> Result<R, CatalogError> {
        let tx = self.conn.transaction()?;
        let (value, records) = f(&tx)?;
        for record in &records {
            insert_audit(&tx, record)?;
        }
        tx.commit()?;
        self.audit.append(&records);
        for record in &records {
            self.events.audited(record);
        }
        Ok(value)
    }

    /// Read-only access.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Record audit rows on their own.
    pub fn audit(&mut self, records: Vec<AuditRecord>) -> Result<(), CatalogError> {
        self.write(|_| Ok(((), records)))
    }
}

fn insert_audit(tx: &rusqlite::Transaction<'_>, r: &AuditRecord) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO audit (time, actor_uid, actor_user, via, action, group_name, source, \
         version, job, outcome, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
        rusqlite::params![
            r.time_ms,
            r.actor.uid,
            r.actor.user,
            serde_json::to_value(r.actor.via)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string)),
            r.action,
            r.group,
            r.source,
            r.version,
            r.job,
            r.outcome,
            r.detail,
        ],
    )?;
    Ok(())
}

/// A call waiting for the catalog thread: a closure it runs with the database.
type Call = Box<dyn FnOnce(&mut Db) + Send>;

/// A handle to the catalog thread. Cheap to clone; the thread ends when every handle is gone.
///
/// The thread serves two queues. Everything goes through the main one except the chunks of
/// vectors embedding jobs write, which go through a bulk queue the thread serves only when the
/// main one is empty (or after `PRIORITY_RUN` calls in a row): a file being accepted, or a
/// command on the socket, waits for at most the one chunk being written, never for the chunks
/// of every running job queued before it.
#[derive(Clone)]
pub struct Catalog {
    backend: Backend,
    /// Notified whenever a job may have become startable.
    wake: std::sync::Arc<tokio::sync::Notify>,
}

/// Where the catalog is (docs/architecture.md: an enum of backends, not a trait).
#[derive(Clone)]
enum Backend {
    /// The embedded default: one SQLite file owned by the catalog thread.
    Sqlite {
        tx: mpsc::Sender<Call>,
        bulk: mpsc::Sender<Call>,
        /// The database file, for readers with their own connection (search, reuse).
        path: PathBuf,
    },
    /// A PostgreSQL catalog shared by the nodes of a cluster.
    Postgres(std::sync::Arc<pg::node::Node>),
}

/// Joins the catalog thread at shutdown (SQLite; PostgreSQL has none to join).
pub struct CatalogThread(Option<std::thread::JoinHandle<()>>);

impl CatalogThread {
    /// Wait for the thread to finish its queue (after every [`Catalog`] handle is dropped).
    pub fn join(self) {
        if let Some(thread) = self.0 {
            let _ = thread.join();
        }
    }
}

impl Catalog {
    /// Open (creating if needed) and migrate the database, then start its thread.
    pub fn open(
        path: &Path,
        audit_log: &Path,
        events: Events,
    ) -> Result<(Catalog, CatalogThread), CatalogError> {
        let conn = schema::open(path)?;
        let checkpointer = match checkpoint::Checkpointer::start(path) {
            Ok(checkpointer) => {
                conn.pragma_update(None, "wal_autocheckpoint", 0)?;
                // When the log is started over, a log grown past the limit by one long
                // transaction (a big swap) is cut back to it.
                conn.pragma_update(None, "journal_size_limit", checkpoint::LOG_LIMIT as i64)?;
                Some(checkpointer)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the checkpoint thread; SQLite checkpoints on commit");
                None
            }
        };
        let queue = jobs::QueueState::default();
        let wake = std::sync::Arc::clone(&queue.wake);
        let mut db = Db {
            conn,
            audit: AuditLog::new(audit_log),
            events,
            queue,
            retention: retain::Retention::default(),
            memo: memo::Memo::default(),
            checkpointer,
            trash: false,
        };
        db.trash = db.trash_pending()?;
        let (tx, rx) = mpsc::channel::<Call>(QUEUE);
        let (bulk, bulk_rx) = mpsc::channel::<Call>(BULK_QUEUE);
        let failed = |e: std::io::Error| CatalogError::Open {
            path: path.to_path_buf(),
            source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
        };
        // A runtime of its own, only to wait on two queues at once; it runs nothing else.
        let waiter = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(failed)?;
        let thread = std::thread::Builder::new()
            .name("catalog".into())
            .spawn(move || waiter.block_on(serve(&mut db, rx, bulk_rx)))
            .map_err(failed)?;
        Ok((
            Catalog {
                backend: Backend::Sqlite {
                    tx,
                    bulk,
                    path: path.to_path_buf(),
                },
                wake,
            },
            CatalogThread(Some(thread)),
        ))
    }

    /// Join the cluster's catalog in PostgreSQL as `member`, whose stored files are under
    /// `storage_root`: connect, migrate, start listening and the heartbeat.
    pub fn open_postgres(
        target: pg::Target,
        member: pg::queue::Member,
        storage_root: PathBuf,
        events: Events,
        audit_log: &Path,
    ) -> Result<(Catalog, CatalogThread), CatalogError> {
        let wake = std::sync::Arc::new(tokio::sync::Notify::new());
        let node = pg::node::Node::start(
            target,
            member,
            storage_root,
            events,
            std::sync::Arc::clone(&wake),
            audit_log,
        )?;
        Ok((
            Catalog {
                backend: Backend::Postgres(node),
                wake,
            },
            CatalogThread(None),
        ))
    }

    /// The PostgreSQL node, when the catalog is PostgreSQL.
    fn pg(&self) -> Option<&std::sync::Arc<pg::node::Node>> {
        match &self.backend {
            Backend::Postgres(node) => Some(node),
            Backend::Sqlite { .. } => None,
        }
    }

    /// The SQLite queues, or the error a call on the wrong backend is (a bug: every method
    /// takes the PostgreSQL arm first).
    fn sqlite(&self) -> Result<(&mpsc::Sender<Call>, &mpsc::Sender<Call>, &Path), CatalogError> {
        match &self.backend {
            Backend::Sqlite { tx, bulk, path } => Ok((tx, bulk, path)),
            Backend::Postgres(_) => Err(CatalogError::Panicked(
                "a SQLite call on the PostgreSQL catalog".into(),
            )),
        }
    }

    /// Run `f` on a pooled PostgreSQL connection on a blocking thread, and await it.
    async fn on_pg<R, F>(node: &std::sync::Arc<pg::node::Node>, f: F) -> Result<R, CatalogError>
    where
        F: FnOnce(&mut postgres::Client, &pg::node::Node) -> Result<R, pg::PgError>
            + Send
            + 'static,
        R: Send + 'static,
    {
        let node = std::sync::Arc::clone(node);
        tokio::task::spawn_blocking(move || node.with(|c| f(c, &node)))
            .await
            .map_err(|e| CatalogError::Panicked(e.to_string()))?
            .map_err(CatalogError::from)
    }

    /// [`Catalog::on_pg`] from a blocking thread.
    fn on_pg_blocking<R>(
        node: &pg::node::Node,
        f: impl FnOnce(&mut postgres::Client, &pg::node::Node) -> Result<R, pg::PgError>,
    ) -> Result<R, CatalogError> {
        node.with(|c| f(c, node)).map_err(CatalogError::from)
    }

    /// Notified whenever a job may have become startable (queued, retried, a worker freed).
    pub fn wake(&self) -> std::sync::Arc<tokio::sync::Notify> {
        std::sync::Arc::clone(&self.wake)
    }

    fn wrap<R, F>(f: F, reply: oneshot::Sender<Result<R, CatalogError>>) -> Call
    where
        F: FnOnce(&mut Db) -> Result<R, CatalogError> + Send + 'static,
        R: Send + 'static,
    {
        Box::new(move |db: &mut Db| {
            // A bug in one request must not take the catalog down for everyone else.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(db)))
                .unwrap_or_else(|panic| {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(CatalogError::Panicked(what))
                });
            let _ = reply.send(result);
        })
    }

    /// Run `f` on the catalog thread and await its result.
    async fn call<R, F>(&self, f: F) -> Result<R, CatalogError>
    where
        F: FnOnce(&mut Db) -> Result<R, CatalogError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let (tx, _, _) = self.sqlite()?;
        tx.send(Self::wrap(f, reply))
            .await
            .map_err(|_| CatalogError::Closed)?;
        answer.await.map_err(|_| CatalogError::Closed)?
    }

    /// Run `f` on the catalog thread from a blocking thread (never from async code).
    fn call_blocking<R, F>(&self, f: F) -> Result<R, CatalogError>
    where
        F: FnOnce(&mut Db) -> Result<R, CatalogError> + Send + 'static,
        R: Send + 'static,
    {
        Self::send_blocking(self.sqlite()?.0, f)
    }

    /// [`Catalog::call_blocking`] through the bulk queue, for writes that may wait for
    /// everything else.
    fn call_bulk_blocking<R, F>(&self, f: F) -> Result<R, CatalogError>
    where
        F: FnOnce(&mut Db) -> Result<R, CatalogError> + Send + 'static,
        R: Send + 'static,
    {
        Self::send_blocking(self.sqlite()?.1, f)
    }

    fn send_blocking<R, F>(queue: &mpsc::Sender<Call>, f: F) -> Result<R, CatalogError>
    where
        F: FnOnce(&mut Db) -> Result<R, CatalogError> + Send + 'static,
        R: Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        queue
            .blocking_send(Self::wrap(f, reply))
            .map_err(|_| CatalogError::Closed)?;
        answer.blocking_recv().map_err(|_| CatalogError::Closed)?
    }
}

/// The catalog thread's loop: the main queue first, a bulk write when the main queue is empty
/// or after [`PRIORITY_RUN`] calls in a row while one waits, a chunk of dropped vectors when
/// both are empty or after [`PURGE_RUN`] calls in a row while some wait. Ends when both queues
/// are closed (every [`Catalog`] handle dropped) and empty.
async fn serve(db: &mut Db, mut main: mpsc::Receiver<Call>, mut bulk: mpsc::Receiver<Call>) {
    let mut in_a_row = 0;
    let mut since_purge: u32 = 0;
    let mut changes = db.conn.total_changes();
    loop {
        let call = if db.trash && since_purge >= PURGE_RUN {
            None
        } else if in_a_row >= PRIORITY_RUN
            && let Ok(call) = bulk.try_recv()
        {
            in_a_row = 0;
            Some(call)
        } else {
            // Trash is deleted when both queues are empty (and after PURGE_RUN calls in a
            // row), not once they are closed: what is left is deleted after the next start.
            let purge = db.trash && !(main.is_closed() && bulk.is_closed());
            let (call, from_main) = tokio::select! {
                biased;
                Some(call) = main.recv() => (Some(call), true),
                Some(call) = bulk.recv() => (Some(call), false),
                () = std::future::ready(()), if purge => (None, false),
                else => break,
            };
            in_a_row = if from_main { in_a_row + 1 } else { 0 };
            call
        };
        match call {
            Some(call) => {
                call(db);
                since_purge = since_purge.saturating_add(1);
            }
            None => match db.purge_chunk() {
                Ok(more) => {
                    db.trash = more;
                    since_purge = 0;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot delete the vectors of dropped generations; trying again after the next change");
                    db.trash = false;
                    since_purge = 0;
                    // A failed commit still moves the count of changed rows: it must not look
                    // like the next change, or a full disk would make this a busy loop.
                    changes = db.conn.total_changes();
                }
            },
        }
        // Something was written: the checkpoint thread copies it into the database file
        // shortly, instead of a later commit doing it on this thread.
        if db.conn.total_changes() != changes {
            changes = db.conn.total_changes();
            if let Some(checkpointer) = &db.checkpointer {
                checkpointer.changed();
            }
            // A call may have dropped a generation (a swap, a job's end).
            if !db.trash {
                db.trash = db.trash_pending().unwrap_or(false);
            }
        }
        if let Some(checkpointer) = &db.checkpointer {
            checkpointer.restart_if_asked(&db.conn, schema::BUSY_TIMEOUT);
        }
    }
    // Stopped before the catalog's connection closes, which checkpoints what is left.
    db.checkpointer = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A catalog whose thread is held by a call until the returned sender is used (or
    /// dropped), so that calls can be queued behind it.
    fn held() -> (tempfile::TempDir, Catalog, std::sync::mpsc::Sender<()>) {
        held_at(tempfile::tempdir().unwrap())
    }

    /// [`held`], on the catalog `c.sqlite` in `dir`.
    pub(super) fn held_at(
        dir: tempfile::TempDir,
    ) -> (tempfile::TempDir, Catalog, std::sync::mpsc::Sender<()>) {
        let (catalog, _thread) = Catalog::open(
            &dir.path().join("c.sqlite"),
            &dir.path().join("audit.jsonl"),
            Events::default(),
        )
        .unwrap();
        let (release, wait) = std::sync::mpsc::channel::<()>();
        let (started, running) = std::sync::mpsc::channel::<()>();
        let holder = catalog.clone();
        std::thread::spawn(move || {
            holder.call_blocking(move |_| {
                started.send(()).unwrap();
                let _ = wait.recv();
                Ok(())
            })
        });
        running.recv().unwrap();
        (dir, catalog, release)
    }

    /// Queue a call that records what `record` says when it runs, on the main queue or the
    /// bulk one, and wait until it is queued.
    pub(super) fn queue(
        catalog: &Catalog,
        bulk: bool,
        record: impl FnOnce(&mut Db) -> String + Send + 'static,
        ran: &Arc<Mutex<Vec<String>>>,
    ) -> std::thread::JoinHandle<()> {
        let (tx, bulk_tx, _) = catalog.sqlite().unwrap();
        let queue = if bulk { bulk_tx } else { tx };
        let before = queue.capacity();
        let (catalog_, ran) = (catalog.clone(), Arc::clone(ran));
        let call = move |db: &mut Db| {
            let seen = record(db);
            ran.lock().unwrap().push(seen);
            Ok(())
        };
        let thread = std::thread::spawn(move || {
            let result = if bulk {
                catalog_.call_bulk_blocking(call)
            } else {
                catalog_.call_blocking(call)
            };
            result.unwrap();
        });
        while queue.capacity() == before {
            std::thread::yield_now();
        }
        thread
    }

    #[test]
    fn requests_go_before_queued_bulk_writes_but_never_starve_them() {
        let (_dir, catalog, release) = held();
        let ran = Arc::new(Mutex::new(Vec::new()));
        let mut threads = Vec::new();
        for i in 0..2 {
            threads.push(queue(&catalog, true, move |_| format!("bulk{i}"), &ran));
        }
        let mains = PRIORITY_RUN as usize + 2;
        for i in 0..mains {
            threads.push(queue(&catalog, false, move |_| format!("main{i}"), &ran));
        }
        release.send(()).unwrap();
        for thread in threads {
            thread.join().unwrap();
        }
        let ran = ran.lock().unwrap().clone();
        // The call holding the thread was the first of the run of main calls.
        let run = PRIORITY_RUN as usize - 1;
        let mut want: Vec<String> = (0..run).map(|i| format!("main{i}")).collect();
        want.push("bulk0".into());
        want.extend((run..mains).map(|i| format!("main{i}")));
        want.push("bulk1".into());
        assert_eq!(ran, want);
    }
}
