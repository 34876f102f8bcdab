//! `ingestd catalog migrate`: copy a SQLite catalog, every table with vectors and audit, into
//! an empty PostgreSQL database, then prove the copy by counts and checksums per table.
//!
//! The SQLite side is read in one read transaction, so the copy is one consistent moment of
//! the catalog (stop the daemon first, or what it writes afterwards is not copied). The
//! PostgreSQL side is written in one transaction with binary COPY, so a copy that fails part
//! way leaves no rows behind; `copied_from` is written first, in its own transaction, so a
//! re-run recognizes its own earlier attempt and either finds the copy already complete (and
//! changes nothing) or empties the tables and copies again. Any other non-empty database is
//! refused: this never overwrites a catalog it did not write.
//!
//! Checksums are SHA-256 over a typed encoding of every value of every row in key order, so
//! both sides hash the same values, not the same text: a row whose `f32`s, integers or bytes
//! changed on the way fails the check.

use super::schema::{self, TABLES};
use super::{PgError, Target};
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, GenericClient};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// How a column is typed on the PostgreSQL side.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Int8,
    Int4,
    Text,
    Bytes,
    Bool,
    Vector,
}

/// One table: its PostgreSQL columns, its key order, and the SQLite query that yields the
/// same columns in the same order (`?1` is the node name).
struct Spec {
    table: &'static str,
    columns: &'static [(&'static str, Kind)],
    order: &'static str,
    sqlite: &'static str,
}

use Kind::*;

/// Distinct identities of the SQLite generations, numbered in a stable order.
const IDENTITIES: &str = "WITH ids AS (
        SELECT ROW_NUMBER() OVER (ORDER BY provider, model, dimension, weights_hash) AS id,
               provider, model, dimension, weights_hash
        FROM (SELECT DISTINCT provider, model, dimension, weights_hash FROM generations))";

const SPECS: &[Spec] = &[
    Spec {
        table: "groups",
        columns: &[("id", Int8), ("name", Text), ("created_at", Int8)],
        order: "id",
        sqlite: "SELECT id, name, created_at FROM groups WHERE ?1 IS NOT NULL ORDER BY id",
    },
    Spec {
        table: "sources",
        columns: &[
            ("id", Int8),
            ("group_id", Int8),
            ("name", Text),
            ("created_at", Int8),
            ("last_version", Int8),
        ],
        order: "id",
        sqlite: "SELECT id, group_id, name, created_at, last_version FROM sources
                 WHERE ?1 IS NOT NULL ORDER BY id",
    },
    Spec {
        table: "versions",
        columns: &[
            ("id", Int8),
            ("source_id", Int8),
            ("version_no", Int8),
            ("status", Text),
            ("reason", Text),
            ("format", Text),
            ("size", Int8),
            ("sha256", Text),
            ("rows", Int8),
            ("columns", Text),
            ("skipped_columns", Text),
            ("notes", Text),
            ("reading", Text),
            ("stored_path", Text),
            ("tmp_path", Text),
            ("drop_path", Text),
            ("node", Text),
            ("added_by_uid", Int8),
            ("added_by", Text),
            ("created_at", Int8),
            ("updated_at", Int8),
        ],
        order: "id",
        sqlite: "SELECT id, source_id, version_no, status, reason, format, size, sha256, rows,
                        columns, skipped_columns, notes, reading, stored_path, tmp_path,
                        drop_path, ?1, added_by_uid, added_by, created_at, updated_at
                 FROM versions ORDER BY id",
    },
    Spec {
        table: "audit",
        columns: &[
            ("id", Int8),
            ("time", Int8),
            ("actor_uid", Int8),
            ("actor_user", Text),
            ("via", Text),
            ("action", Text),
            ("group_name", Text),
            ("source", Text),
            ("version", Text),
            ("job", Int8),
            ("outcome", Text),
            ("detail", Text),
        ],
        order: "id",
        sqlite: "SELECT id, time, actor_uid, actor_user, via, action, group_name, source,
                        version, job, outcome, detail
                 FROM audit WHERE ?1 IS NOT NULL ORDER BY id",
    },
    Spec {
        table: "current_groups",
        columns: &[("uid", Int8), ("group_name", Text), ("updated_at", Int8)],
        order: "uid",
        sqlite: "SELECT uid, group_name, updated_at FROM current_groups
                 WHERE ?1 IS NOT NULL ORDER BY uid",
    },
    Spec {
        table: "preferences",
        columns: &[
            ("group_id", Int8),
            ("columns", Text),
            ("context", Text),
            ("template", Text),
            ("sheet", Text),
            ("updated_at", Int8),
            ("updated_by", Text),
        ],
        order: "group_id",
        sqlite: "SELECT group_id, columns, context, template, sheet, updated_at, updated_by
                 FROM preferences WHERE ?1 IS NOT NULL ORDER BY group_id",
    },
    Spec {
        table: "source_reading",
        columns: &[
            ("source_id", Int8),
            ("options", Text),
            ("set_by", Text),
            ("set_uid", Int8),
            ("set_at", Int8),
        ],
        order: "source_id",
        sqlite: "SELECT source_id, options, set_by, set_uid, set_at
                 FROM source_reading WHERE ?1 IS NOT NULL ORDER BY source_id",
    },
    Spec {
        table: "jobs",
        columns: &[
            ("id", Int8),
            ("group_id", Int8),
            ("source_id", Int8),
            ("version_id", Int8),
            ("state", Text),
            ("reason", Text),
            ("switch_model", Bool),
            ("attempt", Int4),
            ("max_attempts", Int4),
            ("error", Text),
            ("requested_by", Text),
            ("requested_uid", Int8),
            ("rows_done", Int8),
            ("rows_total", Int8),
            ("queued_at", Int8),
            ("not_before", Int8),
            ("started_at", Int8),
            ("finished_at", Int8),
            ("node", Text),
            ("lease_until", Int8),
        ],
        order: "id",
        // A job the SQLite daemon left processing is the copy's node's, its lease run out:
        // that node takes it back at its start (or any node, after its lease), as SQLite's
        // start-up recovery would have.
        sqlite: "SELECT id, group_id, source_id, version_id, state, reason, switch_model,
                        attempt, max_attempts, error, requested_by, requested_uid, rows_done,
                        rows_total, queued_at, not_before, started_at, finished_at,
                        CASE WHEN state = 'processing' THEN ?1 END,
                        CASE WHEN state = 'processing' THEN 0 END
                 FROM jobs WHERE ?1 IS NOT NULL ORDER BY id",
    },
    Spec {
        table: "identities",
        columns: &[
            ("id", Int4),
            ("provider", Text),
            ("model", Text),
            ("dimension", Int4),
            ("weights_hash", Text),
        ],
        order: "id",
        sqlite: "SELECT id, provider, model, dimension, weights_hash FROM ids
                 WHERE ?1 IS NOT NULL ORDER BY id",
    },
    Spec {
        table: "generations",
        columns: &[
            ("id", Int8),
            ("source_id", Int8),
            ("version_id", Int8),
            ("job_id", Int8),
            ("state", Text),
            ("identity_id", Int4),
            ("rows", Int8),
            ("created_at", Int8),
            ("activated_at", Int8),
        ],
        order: "id",
        sqlite: "SELECT n.id, n.source_id, n.version_id, n.job_id, n.state, ids.id, n.rows,
                        n.created_at, n.activated_at
                 FROM generations n
                 JOIN ids ON ids.provider = n.provider AND ids.model = n.model
                         AND ids.dimension = n.dimension AND ids.weights_hash = n.weights_hash
                 WHERE ?1 IS NOT NULL ORDER BY n.id",
    },
    Spec {
        table: "vectors",
        columns: &[
            ("generation_id", Int8),
            ("row_no", Int8),
            ("identity_id", Int4),
            ("group_id", Int8),
            ("text", Text),
            ("text_hash", Bytes),
            ("embedding", Vector),
        ],
        order: "generation_id, row_no",
        sqlite: "SELECT x.generation_id, x.row_no, ids.id, s.group_id, x.text, x.text_hash,
                        x.embedding
                 FROM vectors x
                 JOIN generations n ON n.id = x.generation_id
                 JOIN ids ON ids.provider = n.provider AND ids.model = n.model
                         AND ids.dimension = n.dimension AND ids.weights_hash = n.weights_hash
                 JOIN sources s ON s.id = n.source_id
                 WHERE ?1 IS NOT NULL ORDER BY x.generation_id, x.row_no",
    },
];

/// One value as both sides hold it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Null,
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
    Bool(bool),
    Vector(Vec<f32>),
}

impl Value {
    /// Feed a typed, unambiguous encoding of the value to the checksum.
    fn hash(&self, h: &mut Sha256) {
        match self {
            Value::Null => h.update([0]),
            Value::Int(i) => {
                h.update([1]);
                h.update(i.to_le_bytes());
            }
            Value::Text(s) => {
                h.update([2]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            Value::Bytes(b) => {
                h.update([3]);
                h.update((b.len() as u64).to_le_bytes());
                h.update(b);
            }
            Value::Bool(b) => h.update([4, *b as u8]),
            Value::Vector(v) => {
                h.update([5]);
                h.update((v.len() as u64).to_le_bytes());
                for x in v {
                    h.update(x.to_le_bytes());
                }
            }
        }
    }

    fn from_sqlite(
        value: rusqlite::types::ValueRef<'_>,
        kind: Kind,
        column: &str,
    ) -> Result<Value, String> {
        use rusqlite::types::ValueRef as V;
        Ok(match (value, kind) {
            (V::Null, _) => Value::Null,
            (V::Integer(i), Int8 | Int4) => Value::Int(i),
            (V::Integer(i), Bool) => Value::Bool(i != 0),
            (V::Text(t), Text) => Value::Text(
                String::from_utf8(t.to_vec())
                    .map_err(|_| format!("{column} holds text that is not UTF-8"))?,
            ),
            (V::Blob(b), Bytes) => Value::Bytes(b.to_vec()),
            (V::Blob(b), Vector) if b.len() % 4 == 0 => {
                Value::Vector(crate::catalog::search::decode(b))
            }
            (other, kind) => {
                return Err(format!(
                    "{column} holds a {:?} where {kind:?} was expected",
                    other.data_type()
                ));
            }
        })
    }

    fn from_pg(row: &postgres::Row, index: usize, kind: Kind) -> Result<Value, postgres::Error> {
        Ok(match kind {
            Int8 => row.try_get::<_, Option<i64>>(index)?.map(Value::Int),
            Int4 => row
                .try_get::<_, Option<i32>>(index)?
                .map(|i| Value::Int(i.into())),
            Text => row.try_get::<_, Option<String>>(index)?.map(Value::Text),
            Bytes => row.try_get::<_, Option<Vec<u8>>>(index)?.map(Value::Bytes),
            Bool => row.try_get::<_, Option<bool>>(index)?.map(Value::Bool),
            Vector => row
                .try_get::<_, Option<pgvector::Vector>>(index)?
                .map(|v| Value::Vector(v.to_vec())),
        }
        .unwrap_or(Value::Null))
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) if *ty == Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
            Value::Int(i) => i.to_sql(ty, out),
            Value::Text(s) => s.to_sql(ty, out),
            Value::Bytes(b) => b.to_sql(ty, out),
            Value::Bool(b) => b.to_sql(ty, out),
            Value::Vector(v) => pgvector::Vector::from(v.clone()).to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT4, Type::TEXT, Type::BYTEA, Type::BOOL].contains(ty)
            || ty.name() == "vector"
    }

    to_sql_checked!();
}

/// Rows and checksum of one table on one side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    pub rows: u64,
    /// SHA-256 of the table's rows, hex.
    pub checksum: String,
}

struct Summer {
    rows: u64,
    hash: Sha256,
}

impl Summer {
    fn new() -> Self {
        Self {
            rows: 0,
            hash: Sha256::new(),
        }
    }
    fn row(&mut self, values: &[Value]) {
        self.rows += 1;
        for value in values {
            value.hash(&mut self.hash);
        }
    }
    fn finish(self) -> Tally {
        Tally {
            rows: self.rows,
            checksum: self
                .hash
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

/// One table of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct TableReport {
    pub table: &'static str,
    pub sqlite: Tally,
    pub postgres: Tally,
}

impl TableReport {
    pub fn matches(&self) -> bool {
        self.sqlite == self.postgres
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The tables were (re)filled from SQLite.
    Copied,
    /// An earlier run had already copied exactly this content: nothing was written.
    AlreadyCopied,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub outcome: Outcome,
    pub sqlite: PathBuf,
    pub url: String,
    pub schema: i32,
    pub pgvector: String,
    pub tables: Vec<TableReport>,
    /// HNSW indexes of the copied identities.
    pub indexes: Vec<String>,
    /// SQLite vectors whose generation is gone (never searched); not copied.
    pub orphan_vectors: u64,
}

/// What the database holds before the copy.
enum Found {
    Empty,
    /// Our schema; where it was copied from (path, finished) if a copy wrote it; its rows.
    Ours {
        copied_from: Option<(String, bool)>,
        rows: u64,
    },
    Foreign(Vec<String>),
}

fn inspect(client: &mut Client) -> Result<Found, PgError> {
    // Tables and views outside the system schemas that no extension owns (pgvector's own
    // objects do not make a database non-empty).
    let names: Vec<String> = client
        .query(
            "SELECT CASE WHEN n.nspname = 'public' THEN c.relname
                         ELSE n.nspname || '.' || c.relname END
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
               AND n.nspname NOT IN ('pg_catalog', 'information_schema')
               AND n.nspname NOT LIKE 'pg_toast%'
               AND NOT EXISTS (SELECT 1 FROM pg_depend d
                               WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                                 AND d.deptype = 'e')
             ORDER BY 1",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if names.is_empty() {
        return Ok(Found::Empty);
    }
    let ours = |name: &str| {
        TABLES.contains(&name)
            || schema::STATE_TABLES.contains(&name)
            || name == "schema_migrations"
            || name == "active_vectors"
    };
    let foreign: Vec<String> = names.iter().filter(|n| !ours(n)).cloned().collect();
    if !foreign.is_empty() || !names.iter().any(|n| n == "schema_migrations") {
        return Ok(Found::Foreign(foreign));
    }
    let mut rows = 0u64;
    for table in TABLES {
        if *table == "copied_from" {
            continue;
        }
        if names.iter().any(|n| n == table) {
            let count: i64 = client
                .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])?
                .get(0);
            rows += count as u64;
        }
    }
    let copied_from = if names.iter().any(|n| n == "copied_from") {
        client
            .query_opt(
                "SELECT sqlite_path, finished_at IS NOT NULL FROM copied_from",
                &[],
            )?
            .map(|r| (r.get(0), r.get(1)))
    } else {
        None
    };
    Ok(Found::Ours { copied_from, rows })
}

/// The SQLite catalog, brought to this ingestd's schema and read in one transaction.
fn open_sqlite(path: &Path) -> Result<rusqlite::Connection, PgError> {
    if !path.is_file() {
        return Err(PgError::Invalid(format!(
            "no SQLite catalog at {} (paths.database)",
            path.display()
        )));
    }
    // Migrated first, as the daemon would at its next start: the copy mirrors the newest
    // SQLite schema, and a catalog from a newer ingestd is refused here.
    let conn = crate::catalog::schema::open(path)?;
    Ok(conn)
}

fn sqlite_schema(conn: &rusqlite::Connection) -> Result<i32, PgError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

/// Stream one table of SQLite, handing each row to `each`.
fn read_sqlite(
    conn: &rusqlite::Connection,
    spec: &Spec,
    node: &str,
    mut each: impl FnMut(Vec<Value>) -> Result<(), PgError>,
) -> Result<Tally, PgError> {
    let sql = format!("{IDENTITIES} {}", spec.sqlite);
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query([node])?;
    let mut sum = Summer::new();
    while let Some(row) = rows.next()? {
        let mut values = Vec::with_capacity(spec.columns.len());
        for (index, (column, kind)) in spec.columns.iter().enumerate() {
            let value =
                Value::from_sqlite(row.get_ref(index)?, *kind, column).map_err(|reason| {
                    PgError::Invalid(format!("SQLite table {}: {reason}", spec.table))
                })?;
            values.push(value);
        }
        sum.row(&values);
        each(values)?;
    }
    Ok(sum.finish())
}

/// Count and checksum one table of PostgreSQL, in the same order and encoding.
fn read_pg(client: &mut impl GenericClient, spec: &Spec) -> Result<Tally, PgError> {
    let columns: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {}",
        columns.join(", "),
        spec.table,
        spec.order
    );
    let mut sum = Summer::new();
    let mut rows = client.query_raw(&sql, std::iter::empty::<i32>())?;
    use postgres::fallible_iterator::FallibleIterator as _;
    let mut values = Vec::with_capacity(columns.len());
    while let Some(row) = rows.next()? {
        values.clear();
        for (index, (_, kind)) in spec.columns.iter().enumerate() {
            values.push(Value::from_pg(&row, index, *kind)?);
        }
        sum.row(&values);
    }
    Ok(sum.finish())
}

/// Every table's tally on the SQLite side (reading only).
fn tally_sqlite(conn: &rusqlite::Connection, node: &str) -> Result<Vec<Tally>, PgError> {
    SPECS
        .iter()
        .map(|spec| read_sqlite(conn, spec, node, |_| Ok(())))
        .collect()
}

fn tally_pg(client: &mut impl GenericClient) -> Result<Vec<Tally>, PgError> {
    SPECS.iter().map(|spec| read_pg(client, spec)).collect()
}

fn report_of(sqlite: Vec<Tally>, postgres: Vec<Tally>) -> Vec<TableReport> {
    SPECS
        .iter()
        .zip(sqlite.into_iter().zip(postgres))
        .map(|(spec, (sqlite, postgres))| TableReport {
            table: spec.table,
            sqlite,
            postgres,
        })
        .collect()
}

/// The type of the `vector` column, whose OID differs between databases.
fn vector_type(client: &mut impl GenericClient) -> Result<Type, PgError> {
    let stmt = client.prepare("SELECT $1::vector")?;
    Ok(stmt.params()[0].clone())
}

fn pg_type(kind: Kind, vector: &Type) -> Type {
    match kind {
        Int8 => Type::INT8,
        Int4 => Type::INT4,
        Text => Type::TEXT,
        Bytes => Type::BYTEA,
        Bool => Type::BOOL,
        Vector => vector.clone(),
    }
}

/// Copy `sqlite` into the database at `target`, recording `node` as the node that holds the
/// stored files; verify; report. See the module comment for what is refused and re-run.
pub fn migrate(sqlite_path: &Path, target: &Target, node: &str) -> Result<Report, PgError> {
    let sqlite_path = std::path::absolute(sqlite_path).unwrap_or_else(|_| sqlite_path.into());
    let mut conn = open_sqlite(&sqlite_path)?;
    let mut client = target.connect()?;
    let pgvector = super::ensure_vector(&mut client, target)?;
    let shown_path = sqlite_path.display().to_string();
    let rerun = match inspect(&mut client)? {
        Found::Empty
        | Found::Ours {
            rows: 0,
            copied_from: None,
        } => false,
        Found::Ours {
            copied_from: Some((path, finished)),
            ..
        } if path == shown_path => finished,
        Found::Ours { copied_from, rows } => {
            let from = match copied_from {
                Some((path, _)) => format!("copied from {path}"),
                None => "written by ingestd nodes".into(),
            };
            return Err(PgError::NotEmpty(format!(
                "database {} at {} already holds an ingestd catalog ({from}, {rows} rows): \
                 migrate copies into an empty database only; nothing was changed",
                target.database(),
                target.url()
            )));
        }
        Found::Foreign(tables) => {
            let mut list = tables
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            if tables.len() > 5 {
                list.push_str(&format!(" and {} more", tables.len() - 5));
            }
            return Err(PgError::NotEmpty(format!(
                "database {} at {} is not empty (tables: {list}): migrate copies into an \
                 empty database only, so it never overwrites data it did not write; create a \
                 new database for ingestd; nothing was changed",
                target.database(),
                target.url()
            )));
        }
    };
    let schema = schema::migrate(&mut client)?;

    // One read transaction: every table from the same moment of the catalog.
    let snapshot = conn.transaction()?;
    let sqlite_version = sqlite_schema(&snapshot)?;
    let orphan_vectors: i64 = snapshot.query_row(
        "SELECT COUNT(*) FROM vectors WHERE generation_id NOT IN (SELECT id FROM generations)
           AND generation_id NOT IN (SELECT generation_id FROM vector_trash)",
        [],
        |r| r.get(0),
    )?;
    let base = Report {
        outcome: Outcome::AlreadyCopied,
        sqlite: sqlite_path.clone(),
        url: target.url().to_string(),
        schema,
        pgvector,
        tables: Vec::new(),
        indexes: Vec::new(),
        orphan_vectors: orphan_vectors as u64,
    };
    if rerun {
        let sqlite = tally_sqlite(&snapshot, node)?;
        let postgres = tally_pg(&mut client)?;
        let tables = report_of(sqlite, postgres);
        if tables.iter().all(TableReport::matches) {
            let indexes = existing_indexes(&mut client)?;
            return Ok(Report {
                tables,
                indexes,
                ..base
            });
        }
        // A node has run on the copy since (the copy writes no node): what the cluster did
        // since is only in PostgreSQL, and copying again would replace it. The audit trail
        // names every node that wrote to it, and stays when `catalog forget-node` takes a node
        // off the registry (and records that, with a node's name too).
        let joined: Vec<String> = client
            .query(
                "SELECT name FROM nodes
                 UNION SELECT DISTINCT node FROM audit WHERE node IS NOT NULL
                 ORDER BY 1",
                &[],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if !joined.is_empty() {
            return Err(PgError::NotEmpty(format!(
                "database {} at {} holds the copy of {shown_path}, and nodes have run on it \
                 since ({}): it now holds what they did, which copying again would replace; \
                 nothing was changed",
                target.database(),
                target.url(),
                joined.join(", ")
            )));
        }
        tracing::info!("the earlier copy differs from the SQLite catalog now; copying again");
    }

    // Recorded before the data, in its own transaction, so a failed run is recognized.
    client.execute(
        "INSERT INTO copied_from (sqlite_path, sqlite_schema, node, started_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (only_row) DO UPDATE SET sqlite_path = EXCLUDED.sqlite_path,
             sqlite_schema = EXCLUDED.sqlite_schema, node = EXCLUDED.node,
             started_at = EXCLUDED.started_at, finished_at = NULL",
        &[&shown_path, &sqlite_version, &node, &crate::clock::now_ms()],
    )?;

    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK_KEY])?;
    let data: Vec<&str> = TABLES
        .iter()
        .copied()
        .filter(|t| *t != "copied_from")
        .collect();
    tx.batch_execute(&format!("TRUNCATE {} RESTART IDENTITY", data.join(", ")))?;
    // The HNSW builds below work in memory up to this much, and much slower beyond it.
    tx.batch_execute("SET LOCAL maintenance_work_mem = '1GB'")?;
    let vector = vector_type(&mut tx)?;
    let mut dimensions: HashMap<i64, i64> = HashMap::new();
    let mut sqlite_tallies = Vec::new();
    for spec in SPECS {
        let columns: Vec<&str> = spec.columns.iter().map(|(name, _)| *name).collect();
        let types: Vec<Type> = spec
            .columns
            .iter()
            .map(|(_, kind)| pg_type(*kind, &vector))
            .collect();
        let sink = tx.copy_in(&format!(
            "COPY {} ({}) FROM STDIN (FORMAT binary)",
            spec.table,
            columns.join(", ")
        ))?;
        let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
        let tally = read_sqlite(&snapshot, spec, node, |values| {
            if spec.table == "identities"
                && let (Value::Int(id), Value::Int(dimension)) = (&values[0], &values[3])
            {
                dimensions.insert(*id, *dimension);
            }
            if spec.table == "vectors"
                && let (Value::Int(identity), Value::Vector(v)) = (&values[2], &values[6])
                && dimensions.get(identity) != Some(&(v.len() as i64))
            {
                return Err(PgError::Invalid(format!(
                    "SQLite vector of generation {:?} row {:?} has {} dimensions, not its \
                     generation's {:?}",
                    values[0],
                    values[1],
                    v.len(),
                    dimensions.get(identity)
                )));
            }
            writer.write_raw(values.iter())?;
            Ok(())
        })?;
        writer.finish()?;
        tracing::info!(table = spec.table, rows = tally.rows, "copied");
        sqlite_tallies.push(tally);
    }
    // Identity columns continue after the copied ids, and after any id SQLite ever gave
    // (AUTOINCREMENT tables), so the audit trail's job numbers never name two jobs.
    let mut issued: HashMap<String, i64> = HashMap::new();
    if snapshot
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE name = 'sqlite_sequence'",
            [],
            |_| Ok(()),
        )
        .is_ok()
    {
        let mut stmt = snapshot.prepare("SELECT name, seq FROM sqlite_sequence")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (name, seq) = row?;
            issued.insert(name, seq);
        }
    }
    for table in [
        "groups",
        "sources",
        "versions",
        "audit",
        "jobs",
        "identities",
        "generations",
        "pending_deletes",
    ] {
        let floor = issued.get(table).copied().unwrap_or(0);
        tx.execute(
            &format!(
                "SELECT setval(pg_get_serial_sequence('{table}', 'id'), GREATEST(v, 1), v > 0)
                 FROM (SELECT GREATEST(COALESCE(MAX(id), 0), $1::BIGINT) AS v FROM {table}) m"
            ),
            &[&floor],
        )?;
    }
    let mut identities: Vec<(i32, i32)> = tx
        .query("SELECT id, dimension FROM identities ORDER BY id", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    identities.sort();
    for (id, dimension) in identities {
        if !schema::ensure_index(&mut tx, id, dimension as usize)? {
            tracing::warn!(
                identity = id,
                dimension,
                "no HNSW index: wider than pgvector indexes; searched exactly"
            );
        }
    }
    tx.execute(
        "UPDATE copied_from SET finished_at = $1",
        &[&crate::clock::now_ms()],
    )?;
    tx.commit()?;
    snapshot.commit()?;

    let postgres = tally_pg(&mut client)?;
    let tables = report_of(sqlite_tallies, postgres);
    let indexes = existing_indexes(&mut client)?;
    let report = Report {
        outcome: Outcome::Copied,
        tables,
        indexes,
        ..base
    };
    if let Some(bad) = report.tables.iter().find(|t| !t.matches()) {
        return Err(PgError::Invalid(format!(
            "the copy of table {} does not match: SQLite {} rows (sha256 {}), PostgreSQL {} \
             rows (sha256 {}); run migrate again to redo the copy",
            bad.table,
            bad.sqlite.rows,
            bad.sqlite.checksum,
            bad.postgres.rows,
            bad.postgres.checksum
        )));
    }
    Ok(report)
}

fn existing_indexes(client: &mut Client) -> Result<Vec<String>, PgError> {
    Ok(client
        .query(
            "SELECT indexname FROM pg_indexes
             WHERE tablename = 'vectors' AND indexname LIKE 'vectors_hnsw_%' ORDER BY indexname",
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}
