//! Opening the database and migrating it, keyed on `PRAGMA user_version`.
//!
//! Each migration runs once, in order, inside a transaction; a database from a newer ingestd
//! is refused rather than guessed at. Never edit a released migration: add the next one.

use super::CatalogError;
use rusqlite::Connection;
use std::path::Path;

const MIGRATIONS: &[&str] = &[
    // 1: groups, sources, versions (accepted versions and rejected attempts), audit.
    "CREATE TABLE groups (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE sources (
        id INTEGER PRIMARY KEY,
        group_id INTEGER NOT NULL REFERENCES groups(id),
        name TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (group_id, name)
    );
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        version_no INTEGER,
        status TEXT NOT NULL,
        reason TEXT,
        format TEXT,
        size INTEGER,
        sha256 TEXT,
        rows INTEGER,
        columns TEXT NOT NULL DEFAULT '[]',
        skipped_columns TEXT NOT NULL DEFAULT '[]',
        notes TEXT NOT NULL DEFAULT '[]',
        stored_path TEXT,
        tmp_path TEXT,
        drop_path TEXT,
        added_by_uid INTEGER,
        added_by TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (source_id, version_no)
    );
    CREATE INDEX versions_by_source ON versions (source_id, id);
    CREATE INDEX versions_by_status ON versions (status);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        time INTEGER NOT NULL,
        actor_uid INTEGER,
        actor_user TEXT,
        via TEXT,
        action TEXT NOT NULL,
        group_name TEXT,
        source TEXT,
        version TEXT,
        job INTEGER,
        outcome TEXT NOT NULL,
        detail TEXT
    );
    CREATE INDEX audit_by_time ON audit (time);",
    // 2: each user's current group, and each group's preferences.
    "CREATE TABLE current_groups (
        uid INTEGER PRIMARY KEY,
        group_name TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE preferences (
        group_id INTEGER PRIMARY KEY REFERENCES groups(id),
        columns TEXT NOT NULL DEFAULT '[]',
        context TEXT NOT NULL DEFAULT '[]',
        template TEXT,
        sheet TEXT,
        updated_at INTEGER NOT NULL,
        updated_by TEXT
    );
    CREATE INDEX audit_by_group ON audit (group_name, time);
    ALTER TABLE sources ADD COLUMN last_version INTEGER NOT NULL DEFAULT 0;",
    // 3: the embedding queue, generations of vectors, and the read interface over the
    // active ones (documented in docs/embedding.md: applications that search read it).
    "CREATE TABLE jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        group_id INTEGER NOT NULL REFERENCES groups(id),
        source_id INTEGER NOT NULL REFERENCES sources(id),
        version_id INTEGER NOT NULL REFERENCES versions(id),
        state TEXT NOT NULL,
        reason TEXT NOT NULL,
        switch_model INTEGER NOT NULL DEFAULT 0,
        attempt INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        error TEXT,
        requested_by TEXT,
        requested_uid INTEGER,
        rows_done INTEGER NOT NULL DEFAULT 0,
        rows_total INTEGER NOT NULL DEFAULT 0,
        queued_at INTEGER NOT NULL,
        not_before INTEGER,
        started_at INTEGER,
        finished_at INTEGER
    );
    CREATE INDEX jobs_by_state ON jobs (state, id);
    CREATE INDEX jobs_by_source ON jobs (source_id, id);
    CREATE TABLE generations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        source_id INTEGER NOT NULL REFERENCES sources(id),
        version_id INTEGER NOT NULL REFERENCES versions(id),
        job_id INTEGER REFERENCES jobs(id),
        state TEXT NOT NULL,
        provider TEXT NOT NULL,
        model TEXT NOT NULL,
        dimension INTEGER NOT NULL,
        weights_hash TEXT NOT NULL,
        rows INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL,
        activated_at INTEGER
    );
    CREATE INDEX generations_by_source ON generations (source_id, state);
    -- A rowid table, not WITHOUT ROWID: a 384-d vector is 1,536 bytes, more than an index
    -- b-tree page keeps inline, so keyed by (generation, row) every row would spill into an
    -- overflow page of its own (about 3x the space and the writes).
    CREATE TABLE vectors (
        generation_id INTEGER NOT NULL,
        row_no INTEGER NOT NULL,
        text TEXT NOT NULL,
        embedding BLOB NOT NULL
    );
    CREATE UNIQUE INDEX vectors_by_row ON vectors (generation_id, row_no);
    CREATE VIEW active_vectors AS
        SELECT g.name AS group_name, s.name AS source, v.version_no AS version_no,
               x.row_no AS row_no, x.text AS text, x.embedding AS embedding,
               n.provider AS provider, n.model AS model, n.dimension AS dimension,
               n.weights_hash AS weights_hash, n.id AS generation_id
        FROM generations n
        JOIN vectors x ON x.generation_id = n.id
        JOIN sources s ON s.id = n.source_id
        JOIN groups g ON g.id = s.group_id
        JOIN versions v ON v.id = n.version_id
        WHERE n.state = 'active';
    -- Catalogs from before the queue: the newest accepted version of every source is queued,
    -- so upgrading embeds what was already there.
    INSERT INTO jobs (group_id, source_id, version_id, state, reason, max_attempts,
                      rows_total, queued_at)
        SELECT s.group_id, s.id, v.id, 'queued', 'new_version', 3, COALESCE(v.rows, 0),
               CAST(strftime('%s', 'now') AS INTEGER) * 1000
        FROM sources s
        JOIN versions v ON v.id = (SELECT MAX(id) FROM versions
                                   WHERE source_id = s.id AND version_no IS NOT NULL
                                     AND status NOT IN ('invalid', 'deleting', 'validating'))
        WHERE v.status = 'ready'
        ORDER BY v.id;
    UPDATE versions SET status = 'queued'
        WHERE status = 'ready' AND id IN (SELECT version_id FROM jobs WHERE state = 'queued');",
    // 4: how each version was read: where the header was found and which encoding the text is in
    // (JSON of `protocol::Reading`); versions from before it read as unknown.
    "ALTER TABLE versions ADD COLUMN reading TEXT NOT NULL DEFAULT '{}';",
    // 5: a hash of each vector's text, so a new version, re-embed or retry reuses the vectors
    // of texts its source already has (docs/embedding.md, "Reuse"). The index covers what a
    // job reads at its start (hash and row of every vector of a generation) without touching
    // the 1.5 KB rows, and makes a lookup by (generation, hash) a point query. Older rows keep
    // a NULL hash and are simply never reused.
    "ALTER TABLE vectors ADD COLUMN text_hash BLOB;
    CREATE INDEX vectors_by_text ON vectors (generation_id, text_hash, row_no)
        WHERE text_hash IS NOT NULL;
    CREATE INDEX generations_by_state ON generations (state);",
    // 6: each source's read options (`ingestctl set`), JSON of `protocol::ReadOverride`: how
    // its files are read instead of what detection finds. They go with the source.
    "CREATE TABLE source_reading (
        source_id INTEGER PRIMARY KEY REFERENCES sources(id) ON DELETE CASCADE,
        options TEXT NOT NULL,
        set_by TEXT,
        set_uid INTEGER,
        set_at INTEGER NOT NULL
    );",
    // 7: generations dropped whose vectors are still to delete. A swap drops the previous
    // generation's row in its own transaction, so nothing reads those vectors any more, and
    // leaves the vectors here for the catalog thread to delete a chunk at a time when it has
    // nothing else to do (`catalog::purge`): a swap replacing a million vectors no longer
    // holds the writer, and every accept behind it, for seconds.
    "CREATE TABLE vector_trash (generation_id INTEGER PRIMARY KEY);",
];

/// Open `path` in WAL mode and bring its schema up to date.
pub fn open(path: &Path) -> Result<Connection, CatalogError> {
    let open_err = |source| CatalogError::Open {
        path: path.to_path_buf(),
        source,
    };
    // Created 0640 before SQLite sees it (never the umask): the catalog holds every row's
    // text. SQLite gives its -wal and -shm files the database file's mode; they are
    // checked here too in case an older version left them wider.
    let io_err = |e: std::io::Error| CatalogError::Open {
        path: path.to_path_buf(),
        source: rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!("cannot create it with mode 0640: {e}")),
        ),
    };
    //
    // All of this happens before the connection opens, never after: closing any descriptor
    // of a file drops every POSIX lock this process holds on it, and SQLite's locks on the
    // database and on the -shm file are such locks. Without its lock on the -shm file, the
    // next connection of another process (a backup, the searching application) believes
    // it is alone, resets the shared WAL index under this one's feet, and this process dies
    // of SIGBUS or reads a half-built index.
    crate::dirs::open_private(path, crate::audit::PRIVATE_MODE, false).map_err(io_err)?;
    for suffix in ["-wal", "-shm"] {
        let mut side = path.as_os_str().to_os_string();
        side.push(suffix);
        crate::dirs::restrict_existing(Path::new(&side), crate::audit::PRIVATE_MODE)
            .map_err(io_err)?;
    }
    let mut conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
    // WAL lets readers (backups, the searching application) work while we write. FULL makes
    // each commit durable before it returns: the ingest path deletes the drop original right
    // after the commit that records its stored copy, so that commit must survive power loss.
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open_err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(open_err)?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// How long a connection waits for another's lock before it gives up.
pub const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// A read-only connection of its own to the catalog at `path`, for reads too long to hold up
/// the catalog thread (search, a job's reusable texts, a row stream's read options). It never
/// creates or migrates anything; SQLite shares its locks with the daemon's own connection.
pub fn open_reader(path: &Path) -> Result<Connection, CatalogError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| CatalogError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), CatalogError> {
    let known = MIGRATIONS.len() as i64;
    let found: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if found > known {
        return Err(CatalogError::TooNew {
            path: path.to_path_buf(),
            found,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        tracing::info!(version = index + 1, "catalog schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_catalog_from_before_the_queue_gets_jobs_for_its_newest_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 2;
                 INSERT INTO groups VALUES (1, 'g', 0);
                 INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 'a.csv', 0),
                                                                        (2, 1, 'b.csv', 0);
                 INSERT INTO versions (id, source_id, version_no, status, rows, created_at,
                                       updated_at)
                     VALUES (1, 1, 1, 'ready', 5, 0, 0), (2, 1, 2, 'ready', 7, 0, 0),
                            (3, 2, NULL, 'invalid', NULL, 0, 0);",
            )
            .unwrap();
        }
        let conn = open(&path).unwrap();
        let jobs: Vec<(i64, String, i64)> = conn
            .prepare("SELECT version_id, state, rows_total FROM jobs")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            jobs,
            vec![(2, "queued".to_string(), 7)],
            "only a.csv's newest version"
        );
        let status: String = conn
            .query_row("SELECT status FROM versions WHERE id = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(status, "queued");
    }

    #[test]
    fn migrates_once_and_refuses_newer() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.sqlite");
        drop(open(&path).unwrap());
        let conn = open(&path).unwrap();
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            open(&path),
            Err(CatalogError::TooNew { found: 99, .. })
        ));
    }
}
