//! The PostgreSQL + pgvector catalog, for several daemons ("nodes") sharing one database:
//! reaching the server (`catalog.url`, `catalog.password_file`), its schema and numbered
//! migrations ([`schema`]), copying a SQLite catalog into it ([`copy`], behind
//! `ingestd catalog migrate`), nearest-row search over its HNSW indexes ([`search`]), and the
//! cluster's queue: claims under one cap, leases and their takeover, the node registry
//! ([`queue`], which also queues jobs), jobs as users steer them ([`jobs`]), storing a
//! dropped file ([`ingest`]), what `ls`, `show` and `groups` read ([`read`]), preferences,
//! current groups, read options, the audit trail and deletes ([`manage`]), retention
//! ([`retain`]), `fsck` of one node ([`fsck`]), a node's start ([`start_up`]), a try's generation
//! begun, written and ended under fencing ([`generations`]),
//! what nodes tell each other over `LISTEN`/`NOTIFY` ([`notify`]), the files
//! one node's delete leaves to the node that holds them ([`deletes`]), vectors kept out of
//! the HNSW index until after the swap ([`staging`]), and the running node ([`node`]).
//!
//! The daemon reaches all of it through `catalog::Catalog` when `catalog.backend =
//! "postgres"`. Everything is synchronous (the `postgres` crate), on blocking threads, never
//! on the async reactor.
//! A password is never logged or shown: it comes only from `catalog.password_file`, and a URL
//! that carries one is refused.

pub mod cli;
pub mod copy;
pub mod deletes;
pub mod fsck;
pub mod generations;
pub mod ingest;
pub mod jobs;
pub mod manage;
pub mod node;
pub mod notify;
pub mod queue;
pub mod read;
pub mod retain;
pub mod schema;
pub mod search;
pub mod staging;

use crate::audit::AuditRecord;
use postgres::error::SqlState;
use postgres::{Client, GenericClient, NoTls};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for the server to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum PgError {
    #[error("{key}: {reason}")]
    BadUrl { key: &'static str, reason: String },
    #[error("cannot read catalog.password_file {path}: {source}")]
    PasswordFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot reach PostgreSQL at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("PostgreSQL at {url} refused the password of role {user}: check catalog.password_file")]
    WrongPassword { url: String, user: String },
    #[error(
        "PostgreSQL at {url} asks for a password for role {user}: put it in a file and name \
         that file in catalog.password_file"
    )]
    NoPassword { url: String, user: String },
    #[error("PostgreSQL at {url} refused the connection: {reason}")]
    Refused { url: String, reason: String },
    #[error(
        "PostgreSQL at {url} has no database {database}: create it first (docs/operations.md, \"Running a cluster\")"
    )]
    NoDatabase { url: String, database: String },
    #[error("{0}")]
    NoVector(String),
    #[error(
        "the PostgreSQL catalog was written by a newer ingestd (schema {found}, this one knows {known})"
    )]
    TooNew { found: i32, known: i32 },
    /// `catalog migrate` will not write into this database.
    #[error("{0}")]
    NotEmpty(String),
    #[error("PostgreSQL: {}", describe(.0))]
    Query(#[from] postgres::Error),
    #[error("reading the SQLite catalog: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Catalog(#[from] super::CatalogError),
    #[error("{0}")]
    Invalid(String),
}

/// The database's clock in ms, as SQL: every time the cluster compares (leases, queue order,
/// audit) comes from one clock, not from nodes whose clocks may disagree.
pub(crate) const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// JSON text of a value stored in a JSON column.
pub(crate) fn json<T: serde::Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

/// What a node's start found left from before and finished.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartUp {
    /// Its jobs that were processing, back in the queue (or failed, with no attempt left).
    pub requeued: Vec<queue::TakenOver>,
    /// Deleted versions whose rows and files it finished removing.
    pub deletions: usize,
    /// Files other nodes' deletes left to it, removed; and those refused (kept for fsck).
    pub carried: deletes::Carried,
    /// Pruned versions whose files it removed.
    pub prunes: usize,
}

/// A node's start on the shared catalog: enter the registry, take back the jobs it left
/// processing, and finish the deletes and prunes of its files that a stop interrupted or that
/// other nodes asked for while it was down. Its reservations are the ingest recovery's
/// ([`ingest::reservations`]).
pub fn start_up(client: &mut Client, node: &str, storage_root: &Path) -> Result<StartUp, PgError> {
    queue::join(client, node)?;
    Ok(StartUp {
        requeued: queue::recover_own(client, node)?,
        deletions: manage::finish_deletions(client, node, storage_root)?,
        carried: deletes::carry_out(client, node, storage_root)?,
        prunes: retain::finish_prunes(client, node, storage_root)?,
    })
}

/// Record `record`, written by `node`, and send it to the other nodes at commit.
pub fn audit(tx: &mut impl GenericClient, node: &str, record: &AuditRecord) -> Result<(), PgError> {
    let via = serde_json::to_value(record.actor.via)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string));
    let id: i64 = tx
        .query_one(
            "INSERT INTO audit (time, actor_uid, actor_user, via, action, group_name, source,
                            version, job, outcome, detail, node)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
            &[
                &record.time_ms,
                &record.actor.uid.map(i64::from),
                &record.actor.user,
                &via,
                &record.action,
                &record.group,
                &record.source,
                &record.version,
                &record.job,
                &record.outcome,
                &record.detail,
                &node,
            ],
        )?
        .get(0);
    notify::publish_record(tx, node, &crate::events::event_of(record), Some(id))
}

/// The server's own words for a failed statement ("ERROR: relation … does not exist"); the
/// client error alone says only "db error".
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => error.to_string(),
    }
}

/// Where the PostgreSQL catalog is: the parsed URL, with the password read from its file.
/// `Debug` shows the URL only.
#[derive(Clone)]
pub struct Target {
    config: postgres::Config,
    /// The URL as given (it holds no password: such a URL is refused), for messages.
    shown: String,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target").field("url", &self.shown).finish()
    }
}

/// Check a `catalog.url` value (without connecting): a libpq URL or key=value string that
/// holds no password. `key` names where it came from, for the message.
pub fn check_url(key: &'static str, url: &str) -> Result<postgres::Config, PgError> {
    crate::config::pg_url(url).map_err(|reason| PgError::BadUrl { key, reason })
}

impl Target {
    /// `url` (checked by [`check_url`]) with the password from `password_file`, if one is
    /// named (empty path: none).
    pub fn new(key: &'static str, url: &str, password_file: &Path) -> Result<Self, PgError> {
        let mut config = check_url(key, url)?;
        if !password_file.as_os_str().is_empty() {
            let text =
                std::fs::read_to_string(password_file).map_err(|source| PgError::PasswordFile {
                    path: password_file.to_path_buf(),
                    source,
                })?;
            // One line, as `echo secret > file` writes it; a password never ends in a newline.
            config.password(text.trim_end_matches(['\n', '\r']));
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("ingestd");
        Ok(Self {
            config,
            shown: url.to_string(),
        })
    }

    /// The URL, safe to show.
    pub fn url(&self) -> &str {
        &self.shown
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.config.get_dbname().unwrap_or("")
    }

    fn user(&self) -> String {
        self.config
            .get_user()
            .map(str::to_string)
            .or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "(the current user)".into())
    }

    /// Connect, turning the usual failures into messages a person can act on.
    pub fn connect(&self) -> Result<Client, PgError> {
        self.config.connect(NoTls).map_err(|e| self.explain(e))
    }

    fn explain(&self, error: postgres::Error) -> PgError {
        let url = self.shown.clone();
        if let Some(db) = error.as_db_error() {
            let code = db.code();
            return if *code == SqlState::INVALID_PASSWORD {
                PgError::WrongPassword {
                    url,
                    user: self.user(),
                }
            } else if *code == SqlState::INVALID_CATALOG_NAME {
                PgError::NoDatabase {
                    url,
                    database: self.database().to_string(),
                }
            } else {
                PgError::Refused {
                    url,
                    reason: db.message().to_string(),
                }
            };
        }
        let text = error.to_string();
        if text.contains("password missing") {
            return PgError::NoPassword {
                url,
                user: self.user(),
            };
        }
        // An I/O failure: the reason is in the source (no socket, connection refused).
        let reason = std::error::Error::source(&error)
            .map(|source| format!("{text}: {source}"))
            .unwrap_or(text);
        PgError::Unreachable { url, reason }
    }
}

/// Make sure pgvector is enabled in the connected database; enable it when the role may.
pub fn ensure_vector(client: &mut Client, target: &Target) -> Result<String, PgError> {
    let enabled = client.query_opt(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        &[],
    )?;
    if let Some(row) = enabled {
        return Ok(row.get(0));
    }
    let available = client.query_opt(
        "SELECT default_version FROM pg_available_extensions WHERE name = 'vector'",
        &[],
    )?;
    if available.is_none() {
        return Err(PgError::NoVector(format!(
            "PostgreSQL at {} has no pgvector: install it on the database server (Debian: \
             postgresql-<version>-pgvector), then run CREATE EXTENSION vector; in database {} \
             as a superuser",
            target.url(),
            target.database()
        )));
    }
    match client.batch_execute("CREATE EXTENSION IF NOT EXISTS vector") {
        Ok(()) => {}
        Err(e) if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
            return Err(PgError::NoVector(format!(
                "pgvector is installed on the server at {} but not enabled in database {}, and \
                 role {} may not enable it: a superuser must run CREATE EXTENSION vector; in \
                 that database",
                target.url(),
                target.database(),
                target.user()
            )));
        }
        Err(e) => return Err(e.into()),
    }
    let row = client.query_one(
        "SELECT extversion FROM pg_extension WHERE extname = 'vector'",
        &[],
    )?;
    Ok(row.get(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_with_a_password_or_no_database_are_refused() {
        let with_password = check_url("catalog.url", "postgresql://u:secret@/db?host=/run/pg");
        let message = with_password.unwrap_err().to_string();
        assert!(message.contains("catalog.password_file"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(check_url("catalog.url", "postgresql:///?host=/run/pg").is_err());
        assert!(check_url("catalog.url", "http://x").is_err());
        let ok = check_url(
            "catalog.url",
            "postgresql:///ingestd?host=/run/postgresql&user=ingestd",
        )
        .unwrap();
        assert_eq!(ok.get_dbname(), Some("ingestd"));
        assert_eq!(ok.get_user(), Some("ingestd"));
    }

    #[test]
    fn the_password_comes_from_its_file_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let target =
            Target::new("catalog.url", "postgresql:///db?host=/tmp&user=u", &file).unwrap();
        assert_eq!(target.config.get_password(), Some(&b"s3cret"[..]));
        assert!(!format!("{target:?}").contains("s3cret"));
        let missing = Target::new(
            "catalog.url",
            "postgresql:///db?host=/tmp",
            &dir.path().join("none"),
        );
        assert!(matches!(missing, Err(PgError::PasswordFile { .. })));
    }

    #[test]
    fn an_absent_server_is_unreachable_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("postgresql:///db?host={}", dir.path().display());
        let error = Target::new("--to", &url, Path::new(""))
            .unwrap()
            .connect()
            .err()
            .expect("no server there");
        assert!(matches!(error, PgError::Unreachable { .. }), "{error}");
        assert!(error.to_string().contains(&url), "{error}");
    }
}
