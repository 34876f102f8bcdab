//! The SQLite catalog: groups, sources, versions and the audit trail, owned by one thread.
//!
//! All SQLite work runs on a dedicated thread that owns the connection; async code sends it
//! closures through a bounded channel and awaits the answer, so no rusqlite call ever runs on
//! a reactor thread. Writes that carry audit records go through [`Db::write`], which appends
//! the records to `audit.jsonl` only after the transaction commits.

mod api;
mod drops;
pub mod fsck;
mod ingest;
pub mod jobs;
mod jobs_page;
mod manage;
pub mod memo;
pub mod pg;
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
#[derive(Clone)]
pub struct Catalog {
    tx: mpsc::Sender<Call>,
    /// Notified whenever a job may have become startable.
    wake: std::sync::Arc<tokio::sync::Notify>,
    /// The database file, for readers with their own connection (search, reuse).
    path: PathBuf,
}

/// Joins the catalog thread at shutdown.
pub struct CatalogThread(std::thread::JoinHandle<()>);

impl CatalogThread {
    /// Wait for the thread to finish its queue (after every [`Catalog`] handle is dropped).
    pub fn join(self) {
        let _ = self.0.join();
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
        let queue = jobs::QueueState::default();
        let wake = std::sync::Arc::clone(&queue.wake);
        let mut db = Db {
            conn,
            audit: AuditLog::new(audit_log),
            events,
            queue,
            retention: retain::Retention::default(),
            memo: memo::Memo::default(),
        };
        let (tx, mut rx) = mpsc::channel::<Call>(QUEUE);
        let thread = std::thread::Builder::new()
            .name("catalog".into())
            .spawn(move || {
                while let Some(call) = rx.blocking_recv() {
                    call(&mut db);
                }
            })
            .map_err(|e| CatalogError::Open {
                path: path.to_path_buf(),
                source: rusqlite::Error::ToSqlConversionFailure(Box::new(e)),
            })?;
        Ok((
            Catalog {
                tx,
                wake,
                path: path.to_path_buf(),
            },
            CatalogThread(thread),
        ))
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
        self.tx
            .send(Self::wrap(f, reply))
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
        let (reply, answer) = oneshot::channel();
        self.tx
            .blocking_send(Self::wrap(f, reply))
            .map_err(|_| CatalogError::Closed)?;
        answer.blocking_recv().map_err(|_| CatalogError::Closed)?
    }
}
