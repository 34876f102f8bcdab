//! The job state machine, step by step, on a catalog of its own: each case is a setup and a
//! list of steps (what a worker, a user or a restart does), and after every step the table
//! says what the catalog must show — the job's state and try, every version's status, and
//! every generation with its vectors.
//!
//! The promise checked at every step: the previous generation stays active, with all its
//! vectors, until a new generation of the newest version is swapped in.
//!
//! Every case runs on both backends, through the catalog's seam (`Catalog`, what the queue
//! and the workers call): the embedded SQLite catalog, then a PostgreSQL database of its own
//! when `PG_TEST_URL` names a server (`testing::TestDb`; CI requires one). The same table
//! holds for both: a backend that ends a step differently fails it.

use super::*;
use crate::catalog::retain::Retention;
use crate::catalog::{Catalog, CatalogThread, Db};
use crate::clock;
use crate::embed::Identity;
use crate::events::Events;
use crate::identity::{Actor, Resolve};
use crate::protocol::JobState;
use crate::testing::TestDb;
use rusqlite::params;
use std::collections::HashMap;
use std::time::Duration;

/// Vectors per row in these tests.
const DIM: usize = 4;

/// The PostgreSQL node's name (it holds every stored file of these tests).
const NODE: &str = "n1";

/// What is in the catalog before the first step; the job under test is queued for the
/// version named.
#[derive(Debug, Clone, Copy)]
enum Setup {
    /// `v1`, never embedded; a job for it.
    New,
    /// `v1` embedded (3 rows active); a job for `v2`.
    Replace,
    /// `v2` embedded (3 rows active); a job for the older `v1` (it was claimed before `v2`
    /// was swapped in).
    Older,
    /// As `New`, and another source of the group holds embeddings of another model.
    OtherModel,
}

/// One thing that happens to the job. Steps that expect an answer say which.
#[derive(Debug, Clone)]
enum Step {
    /// The scheduler claims it.
    Claim,
    /// The scheduler finds nothing to start (a backoff, a cancelled job).
    ClaimNothing,
    /// The earliest backoff ends at this time.
    Due(i64),
    /// Its worker starts a generation.
    Begin,
    /// Its worker is told the job was cancelled before it began.
    BeginCancelled,
    /// Its worker is refused (another model in the group).
    BeginRefused,
    /// Its worker writes rows up to `n` (texts `row 1`, `row 2`, …).
    Write(u64),
    /// Its worker's next chunk is refused: the job is no longer processing.
    WriteStopped,
    /// Its worker writes rows 1..=`n`, copying the vectors of texts the source already has;
    /// `reused` of them must be copies.
    Resume { rows: u64, reused: u64 },
    /// Its worker reports how the try ended, and the catalog says what it did.
    Finish(Ending, Finished),
    /// `ingestctl cancel JOB`.
    Cancel,
    /// `ingestctl rm --force`: cancel what processes the source.
    CancelForDelete,
    /// Whether `rm` is refused (a job of the source is processing). A refused `rm` is tried
    /// for real; an allowed one is not (it would delete the source), so `false` checks that
    /// no job is processing.
    Guarded(bool),
    /// `ingestctl retry JOB`.
    Retry,
    /// `ingestctl reembed s.csv`; whether the queued job was returned rather than a new one.
    Reembed { existing: bool },
    /// The daemon starts again after a kill: (jobs requeued, generations dropped).
    Recover(u64, u64),
}

/// The backend a case runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

/// The database under the catalog, reached with plain SQL (not through the code under test)
/// to set a case up and to read what it shows.
enum Store {
    Sqlite {
        reader: rusqlite::Connection,
        _thread: CatalogThread,
        _dir: tempfile::TempDir,
    },
    Postgres {
        client: postgres::Client,
        _storage: tempfile::TempDir,
        /// Dropped last: the database goes with it.
        _db: Box<TestDb>,
    },
}

impl Store {
    /// Every row `sql` answers, each column cast to text by the query.
    fn texts(&mut self, sql: &str) -> Vec<Vec<String>> {
        match self {
            Store::Sqlite { reader, .. } => {
                let mut statement = reader.prepare(sql).unwrap();
                let columns = statement.column_count();
                statement
                    .query_map([], |r| (0..columns).map(|i| r.get(i)).collect())
                    .unwrap()
                    .collect::<Result<_, _>>()
                    .unwrap()
            }
            Store::Postgres { client, .. } => client
                .query(sql, &[])
                .unwrap()
                .iter()
                .map(|r| (0..r.len()).map(|i| r.get(i)).collect())
                .collect(),
        }
    }

    /// The single number `sql` answers (cast to text by the query).
    fn number(&mut self, sql: &str) -> i64 {
        self.texts(sql)[0][0].parse().unwrap()
    }
}

struct Fixture {
    backend: Backend,
    /// Dropped first: the catalog's handles go before the database under them.
    catalog: Catalog,
    store: Store,
    runtime: tokio::runtime::Runtime,
    max_attempts: u32,
    job: i64,
    /// On PostgreSQL, the try the last claim started.
    try_id: Option<i64>,
    generation: Option<i64>,
    /// The last row written by the current try.
    written: u64,
}

fn identity() -> Identity {
    Identity {
        provider: "hashing".into(),
        model: "h".into(),
        dimension: DIM,
        weights_hash: "x".into(),
    }
}

fn vector(row: u64) -> Vec<f32> {
    vec![row as f32; DIM]
}

/// What `setup` puts in the catalog: (version number, status) of `s.csv`'s versions in
/// order, the active generations as (version number, model, rows), and the version number
/// the job is queued for.
type Versions = &'static [(i64, &'static str)];
type Actives = &'static [(i64, &'static str, u64)];

fn layout(setup: Setup) -> (Versions, Actives, i64) {
    match setup {
        Setup::New | Setup::OtherModel => (&[(1, "ready")], &[], 1),
        Setup::Replace => (&[(1, "embedded"), (2, "ready")], &[(1, "h", 3)], 2),
        Setup::Older => (&[(1, "ready"), (2, "embedded")], &[(2, "h", 3)], 1),
    }
}

impl Fixture {
    /// A catalog on `backend` set up as `setup`, started as the daemon starts it; `None`
    /// (after saying why) when PostgreSQL is asked for and no server is set up.
    fn new(backend: Backend, setup: Setup, max_attempts: u32) -> Option<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (catalog, store, job) = match backend {
            Backend::Sqlite => Self::sqlite(setup, max_attempts),
            Backend::Postgres => Self::postgres(setup, max_attempts)?,
        };
        let recovered = runtime
            .block_on(catalog.start_up(max_attempts, Retention::default()))
            .unwrap();
        assert_eq!(recovered, (0, 0), "nothing to recover at the start");
        Some(Self {
            backend,
            catalog,
            store,
            runtime,
            max_attempts,
            job,
            try_id: None,
            generation: None,
            written: 0,
        })
    }

    fn sqlite(setup: Setup, max_attempts: u32) -> (Catalog, Store, i64) {
        let dir = tempfile::tempdir().unwrap();
        let (db, job) = sqlite_setup(dir.path(), setup, max_attempts);
        drop(db);
        let (catalog, thread) = Catalog::open(
            &dir.path().join("c.sqlite"),
            &dir.path().join("audit.jsonl"),
            Events::default(),
        )
        .unwrap();
        let reader = rusqlite::Connection::open(dir.path().join("c.sqlite")).unwrap();
        let store = Store::Sqlite {
            reader,
            _thread: thread,
            _dir: dir,
        };
        (catalog, store, job)
    }

    fn postgres(setup: Setup, max_attempts: u32) -> Option<(Catalog, Store, i64)> {
        let db = TestDb::create()?;
        let storage = tempfile::tempdir().unwrap();
        let target = crate::catalog::pg::Target::new("catalog.url", &db.url(), "".as_ref())
            .expect("the test database's URL");
        let member = crate::catalog::pg::queue::Member {
            name: NODE.into(),
            lease: Duration::from_secs(3600),
            shared_storage: false,
        };
        let (catalog, _none) = Catalog::open_postgres(
            target,
            member,
            storage.path().to_path_buf(),
            Events::default(),
            &storage.path().join("audit.jsonl"),
        )
        .unwrap();
        let mut client = db.client();
        let node = catalog.pg().expect("a PostgreSQL catalog");
        let mut identities = HashMap::new();
        for model in ["h", "other"] {
            let identity = Identity {
                model: model.into(),
                ..identity()
            };
            let id = node.with(|c| node.identity_id(c, &identity)).unwrap();
            identities.insert(model, id);
        }
        let (versions, actives, queue_for) = layout(setup);
        client
            .batch_execute(
                "INSERT INTO groups (name, created_at) VALUES ('g', 0);
                 INSERT INTO sources (group_id, name, created_at, last_version)
                     VALUES (1, 's.csv', 0, 2);",
            )
            .unwrap();
        let version = |client: &mut postgres::Client, source: i64, no: i64, status: &str| -> i64 {
            client
                .query_one(
                    "INSERT INTO versions (source_id, version_no, status, format, rows, columns,
                                           stored_path, node, created_at, updated_at)
                     VALUES ($1, $2, $3, 'csv', 4, '[\"a\"]', 's.csv', $4, 0, 0) RETURNING id",
                    &[&source, &no, &status, &NODE],
                )
                .unwrap()
                .get(0)
        };
        let mut ids = HashMap::new();
        for &(no, status) in versions {
            ids.insert(no, version(&mut client, 1, no, status));
        }
        for &(no, model, rows) in actives {
            pg_active(&mut client, 1, ids[&no], identities[model], rows);
        }
        if let Setup::OtherModel = setup {
            client
                .batch_execute(
                    "INSERT INTO sources (group_id, name, created_at, last_version)
                         VALUES (1, 't.csv', 0, 1);",
                )
                .unwrap();
            let other = version(&mut client, 2, 1, "embedded");
            pg_active(&mut client, 2, other, identities["other"], 1);
        }
        let mut tx = client.transaction().unwrap();
        let mut audit = Vec::new();
        let (job, existing) = crate::catalog::pg::queue::enqueue(
            &mut tx,
            NODE,
            ids[&queue_for],
            NEW_VERSION,
            &Actor::daemon(),
            max_attempts,
            false,
            &mut audit,
        )
        .unwrap();
        assert!(!existing);
        tx.commit().unwrap();
        let store = Store::Postgres {
            client,
            _storage: storage,
            _db: Box::new(db),
        };
        Some((catalog, store, job))
    }

    fn rows(&self, from: u64, to: u64, reuse: &HashMap<[u8; 16], Origin>) -> Vec<NewRow> {
        (from..=to)
            .map(|row| {
                let text = format!("row {row}");
                let hash = text_hash(&text);
                let vector = match reuse.get(&hash) {
                    Some(&(generation, row)) => RowVector::Copy { generation, row },
                    None => RowVector::Embedded(vector(row)),
                };
                NewRow {
                    row,
                    text,
                    text_hash: hash,
                    vector,
                }
            })
            .collect()
    }

    fn begin(&self) -> Begun {
        self.catalog
            .begin_generation_blocking(self.job, self.try_id, identity())
            .unwrap()
    }

    fn write(&self, rows: Vec<NewRow>, done: u64) -> Written {
        self.catalog
            .write_vectors_blocking(self.job, self.try_id, self.generation.unwrap(), rows, done)
            .unwrap()
    }

    fn claim(&self) -> Vec<Claimed> {
        self.runtime.block_on(self.catalog.claim(3, 3)).unwrap()
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::Claim => {
                let claimed = self.claim();
                let ids: Vec<i64> = claimed.iter().map(|c| c.job).collect();
                assert_eq!(ids, vec![self.job], "claimed");
                self.try_id = claimed[0].try_id;
                assert_eq!(self.try_id.is_some(), self.backend == Backend::Postgres);
                self.written = 0;
            }
            Step::ClaimNothing => assert!(self.claim().is_empty(), "nothing to claim"),
            Step::Due(at) => {
                let due = self.runtime.block_on(self.catalog.next_due()).unwrap();
                assert_eq!(due, Some(*at), "next due");
            }
            Step::Begin => {
                let begun = self.begin();
                let Begun::Started(generation) = begun else {
                    panic!("a generation begins: {begun:?}");
                };
                self.generation = Some(generation);
            }
            Step::BeginCancelled => {
                assert_eq!(self.begin(), Begun::Cancelled, "cancelled before it began");
            }
            Step::BeginRefused => {
                let begun = self.begin();
                let Begun::Refused(refusal) = begun else {
                    panic!("refused: {begun:?}");
                };
                assert!(refusal.contains("reembed --all -g g"), "{refusal}");
            }
            Step::Write(to) => {
                let rows = self.rows(self.written + 1, *to, &HashMap::new());
                assert_eq!(self.write(rows, *to), Written::Stored);
                self.written = *to;
            }
            Step::WriteStopped => {
                let next = self.written + 1;
                let rows = self.rows(next, next, &HashMap::new());
                assert_eq!(
                    self.write(rows, next),
                    Written::Stopped,
                    "a chunk after the job stopped"
                );
            }
            Step::Resume { rows, reused } => {
                let generation = self.generation.unwrap();
                let known: HashMap<_, _> = self
                    .catalog
                    .reusable_texts_blocking(self.job, generation, &identity())
                    .unwrap()
                    .into_iter()
                    .collect();
                let rows = self.rows(1, *rows, &known);
                let copies = rows
                    .iter()
                    .filter(|r| matches!(r.vector, RowVector::Copy { .. }))
                    .count() as u64;
                assert_eq!(copies, *reused, "rows reused");
                let done = rows.len() as u64;
                assert_eq!(self.write(rows, done), Written::Stored);
                self.written = done;
            }
            Step::Finish(ending, settled) => {
                let generation = self.generation.take();
                let got = self
                    .catalog
                    .finish_job_blocking(self.job, self.try_id, generation, ending.clone())
                    .unwrap();
                assert_eq!(&got, settled, "settled");
            }
            Step::Cancel => {
                let processing = self.processing();
                let (out, stopped) = self
                    .runtime
                    .block_on(self.catalog.cancel(vec![self.job], someone()))
                    .unwrap();
                assert!(out[0].ok, "{}", out[0].message);
                assert_eq!(stopped, processing, "workers to stop");
            }
            Step::CancelForDelete => {
                let processing = self.processing();
                let stopped = self
                    .runtime
                    .block_on(self.catalog.cancel_for_delete(
                        "g".into(),
                        vec!["s.csv".into()],
                        someone(),
                    ))
                    .unwrap();
                assert_eq!(stopped, processing, "workers to stop");
            }
            Step::Guarded(true) => {
                let out = self
                    .runtime
                    .block_on(
                        self.catalog
                            .delete("g".into(), vec!["s.csv".into()], someone()),
                    )
                    .unwrap();
                assert!(!out[0].ok, "rm is refused: {}", out[0].message);
                let blocking = out[0].job.as_ref().map(|j| j.id);
                assert_eq!(blocking, Some(self.job), "{}", out[0].message);
            }
            Step::Guarded(false) => {
                let counts = self.runtime.block_on(self.catalog.queue_counts()).unwrap();
                let processing = counts.get(&JobState::Processing).copied().unwrap_or(0);
                assert_eq!(processing, 0, "no job processing: rm is not refused");
            }
            Step::Retry => {
                let out = self
                    .runtime
                    .block_on(self.catalog.retry(vec![self.job], None, vec![], someone()))
                    .unwrap();
                assert!(out[0].ok, "{}", out[0].message);
            }
            Step::Reembed { existing } => {
                let out = self
                    .runtime
                    .block_on(self.catalog.reembed(
                        "g".into(),
                        vec!["s.csv".into()],
                        false,
                        someone(),
                    ))
                    .unwrap();
                assert!(out[0].ok, "{}", out[0].message);
                assert_eq!(out[0].existing, *existing, "existing");
                let job = out[0].job.as_ref().unwrap().id;
                assert_eq!(job == self.job, *existing, "the same job");
                self.job = job;
            }
            Step::Recover(requeued, dropped) => {
                let recovered = self
                    .runtime
                    .block_on(
                        self.catalog
                            .start_up(self.max_attempts, Retention::default()),
                    )
                    .unwrap();
                assert_eq!(recovered, (*requeued, *dropped), "recovered");
                self.generation = None;
            }
        }
    }

    /// The job's id if it is processing: what a cancel must hand to the queue to stop.
    fn processing(&mut self) -> Vec<i64> {
        let sql = format!("SELECT state FROM jobs WHERE id = {}", self.job);
        if self.store.texts(&sql)[0][0] == "processing" {
            vec![self.job]
        } else {
            Vec::new()
        }
    }

    /// What the catalog shows of source 1, read with plain SQL (not through the code under
    /// test): `state try N/M | v1 status, v2 status | state vN×vectors, …`, where the
    /// generations are listed oldest first and `active` ones are counted through the
    /// `active_vectors` view, as a searching application sees them.
    fn seen(&mut self) -> String {
        // On SQLite a dropped generation's vectors wait in the trash (`catalog::purge`); on
        // PostgreSQL they go with it. No vector is ever without a generation otherwise.
        let orphans = self.store.number(match self.backend {
            Backend::Sqlite => {
                "SELECT CAST(COUNT(*) AS TEXT) FROM vectors WHERE generation_id NOT IN
                    (SELECT id FROM generations)
                   AND generation_id NOT IN (SELECT generation_id FROM vector_trash)"
            }
            Backend::Postgres => {
                "SELECT CAST(COUNT(*) AS TEXT) FROM vectors WHERE generation_id NOT IN
                    (SELECT id FROM generations)"
            }
        });
        assert_eq!(
            orphans, 0,
            "vectors neither in a generation nor in the trash"
        );
        let job = self.store.texts(&format!(
            "SELECT state, CAST(attempt AS TEXT), CAST(max_attempts AS TEXT) FROM jobs
             WHERE id = {}",
            self.job
        ));
        let [state, attempt, max] = &job[0][..] else {
            panic!("the job's row: {job:?}");
        };
        let versions: Vec<String> = self
            .store
            .texts(
                "SELECT CAST(version_no AS TEXT), status FROM versions WHERE source_id = 1
                 ORDER BY id",
            )
            .iter()
            .map(|r| format!("v{} {}", r[0], r[1]))
            .collect();
        let generations: Vec<String> = self
            .store
            .texts(
                "SELECT n.state, CAST(v.version_no AS TEXT),
                        CAST(CASE n.state WHEN 'active' THEN
                            (SELECT COUNT(*) FROM active_vectors a WHERE a.generation_id = n.id)
                        ELSE (SELECT COUNT(*) FROM vectors x WHERE x.generation_id = n.id) END
                        AS TEXT),
                        CAST(n.rows AS TEXT)
                 FROM generations n JOIN versions v ON v.id = n.version_id
                 WHERE n.source_id = 1 ORDER BY n.id",
            )
            .iter()
            .map(|r| {
                let (state, no, vectors, rows) = (&r[0], &r[1], &r[2], &r[3]);
                // A generation's row count is what `show` reports: it must match its vectors.
                assert_eq!(vectors, rows, "{state} v{no}: vectors and recorded rows");
                format!("{state} v{no}×{vectors}")
            })
            .collect();
        let generations = if generations.is_empty() {
            "-".to_string()
        } else {
            generations.join(", ")
        };
        format!(
            "{state} try {attempt}/{max} | {} | {generations}",
            versions.join(", ")
        )
    }
}

/// The SQLite catalog of a case, set up with the daemon's own queueing code, before the
/// catalog thread opens it: (the catalog, the job under test).
fn sqlite_setup(dir: &std::path::Path, setup: Setup, max_attempts: u32) -> (Db, i64) {
    let mut db = Db::in_dir(dir);
    db.queue.max_attempts = max_attempts;
    db.conn
        .execute_batch(
            "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
             INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 's.csv', 0);",
        )
        .unwrap();
    let (versions, actives, queue_for) = layout(setup);
    for &(no, status) in versions {
        db.conn
            .execute(
                "INSERT INTO versions (id, source_id, version_no, status, format, rows,
                                       columns, stored_path, created_at, updated_at)
                 VALUES (?1, 1, ?1, ?2, 'csv', 4, '[\"a\"]', 's.csv', 0, 0)",
                params![no, status],
            )
            .unwrap();
    }
    for &(no, model, rows) in actives {
        sqlite_active(&db, 1, no, model, rows);
    }
    if let Setup::OtherModel = setup {
        db.conn
            .execute_batch(
                "INSERT INTO sources (id, group_id, name, created_at) VALUES (2, 1, 't.csv', 0);
                 INSERT INTO versions (id, source_id, version_no, status, created_at,
                                       updated_at)
                     VALUES (9, 2, 1, 'embedded', 0, 0);",
            )
            .unwrap();
        sqlite_active(&db, 2, 9, "other", 1);
    }
    let job = db
        .write(|tx| {
            let mut audit = Vec::new();
            let (job, existing) = enqueue(
                tx,
                queue_for,
                NEW_VERSION,
                &Actor::daemon(),
                max_attempts,
                false,
                &mut audit,
            )?;
            assert!(!existing);
            Ok((job, audit))
        })
        .unwrap();
    (db, job)
}

/// The texts of a setup's active generations: no job of these tests writes them.
fn old_text(row: u64) -> String {
    format!("old {row}")
}

/// Insert an active generation of `version_id` of `source` made by `model`, with `rows`
/// vectors whose texts no job of these tests writes.
fn sqlite_active(db: &Db, source: i64, version_id: i64, model: &str, rows: u64) {
    db.conn
        .execute(
            "INSERT INTO generations (source_id, version_id, state, provider, model, dimension,
                                      weights_hash, rows, created_at, activated_at)
             VALUES (?1, ?2, 'active', 'hashing', ?3, ?4, 'x', ?5, 0, 0)",
            params![source, version_id, model, DIM as i64, rows as i64],
        )
        .unwrap();
    let generation = db.conn.last_insert_rowid();
    for row in 1..=rows {
        let text = old_text(row);
        let blob: Vec<u8> = vector(row).iter().flat_map(|x| x.to_le_bytes()).collect();
        db.conn
            .execute(
                "INSERT INTO vectors (generation_id, row_no, text, embedding, text_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![generation, row as i64, text, blob, &text_hash(&text)[..]],
            )
            .unwrap();
    }
}

/// [`sqlite_active`] on PostgreSQL, under the model's identity `identity_id`.
fn pg_active(
    client: &mut postgres::Client,
    source: i64,
    version_id: i64,
    identity_id: i32,
    rows: u64,
) {
    let generation: i64 = client
        .query_one(
            "INSERT INTO generations (source_id, version_id, state, identity_id, rows,
                                      created_at, activated_at)
             VALUES ($1, $2, 'active', $3, $4, 0, 0) RETURNING id",
            &[&source, &version_id, &identity_id, &(rows as i64)],
        )
        .unwrap()
        .get(0);
    for row in 1..=rows {
        let text = old_text(row);
        let embedding = format!("{:?}", vector(row));
        client
            .execute(
                "INSERT INTO vectors (generation_id, row_no, identity_id, group_id, text,
                                      text_hash, embedding)
                 VALUES ($1, $2, $3, 1, $4, $5, $6::text::vector)",
                &[
                    &generation,
                    &(row as i64),
                    &identity_id,
                    &text,
                    &&text_hash(&text)[..],
                    &embedding,
                ],
            )
            .unwrap();
    }
}

fn someone() -> Actor {
    Actor {
        uid: Some(1000),
        user: Some("alice".into()),
        via: crate::identity::Via::Socket,
    }
}

/// A case: its name, setup, tries allowed, what the catalog shows before the first step, and
/// each step with what it shows after it.
struct Case {
    name: &'static str,
    setup: Setup,
    max_attempts: u32,
    start: &'static str,
    steps: Vec<(Step, &'static str)>,
}

fn run(cases: Vec<Case>) {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for case in &cases {
            let Some(mut fixture) = Fixture::new(backend, case.setup, case.max_attempts) else {
                // No PostgreSQL here (said once, by the first case).
                break;
            };
            let name = format!("{} ({backend:?})", case.name);
            assert_eq!(fixture.seen(), case.start, "{name}: at the start");
            for (index, (step, expected)) in case.steps.iter().enumerate() {
                fixture.step(step);
                assert_eq!(
                    fixture.seen(),
                    *expected,
                    "{name}: after step {} ({step:?})",
                    index + 1
                );
            }
        }
    }
}

fn retry_at(at_ms: i64) -> Ending {
    Ending::Retry {
        error: "attempt failed: HTTP 503".into(),
        at_ms,
    }
}

fn swapped(rows: u64, replaced: u64) -> Finished {
    Finished::Swapped { rows, replaced }
}

#[test]
fn a_success_swaps_in_the_new_generation_and_only_then_drops_the_old_one() {
    run(vec![
        Case {
            name: "first version",
            setup: Setup::New,
            max_attempts: 3,
            start: "queued try 0/3 | v1 queued | -",
            steps: vec![
                (Step::Guarded(false), "queued try 0/3 | v1 queued | -"),
                (Step::Claim, "processing try 1/3 | v1 embedding | -"),
                (Step::Guarded(true), "processing try 1/3 | v1 embedding | -"),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedding | writing v1×0",
                ),
                (
                    Step::Write(4),
                    "processing try 1/3 | v1 embedding | writing v1×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 0)),
                    "completed try 1/3 | v1 embedded | active v1×4",
                ),
                (
                    Step::Guarded(false),
                    "completed try 1/3 | v1 embedded | active v1×4",
                ),
            ],
        },
        Case {
            name: "a new version",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(2),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×2",
                ),
                (
                    Step::Write(4),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 3)),
                    "completed try 1/3 | v1 ready, v2 embedded | active v2×4",
                ),
            ],
        },
        Case {
            name: "a re-embed of the embedded version reuses every vector",
            setup: Setup::New,
            max_attempts: 3,
            start: "queued try 0/3 | v1 queued | -",
            steps: vec![
                (Step::Claim, "processing try 1/3 | v1 embedding | -"),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedding | writing v1×0",
                ),
                (
                    Step::Write(4),
                    "processing try 1/3 | v1 embedding | writing v1×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 0)),
                    "completed try 1/3 | v1 embedded | active v1×4",
                ),
                (
                    Step::Reembed { existing: false },
                    "queued try 0/3 | v1 queued | active v1×4",
                ),
                (
                    Step::Reembed { existing: true },
                    "queued try 0/3 | v1 queued | active v1×4",
                ),
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedding | active v1×4",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedding | active v1×4, writing v1×0",
                ),
                (
                    Step::Resume { rows: 4, reused: 4 },
                    "processing try 1/3 | v1 embedding | active v1×4, writing v1×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 4)),
                    "completed try 1/3 | v1 embedded | active v1×4",
                ),
            ],
        },
        Case {
            name: "a re-embed while the job is queued returns that job",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![(
                Step::Reembed { existing: true },
                "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            )],
        },
    ]);
}

#[test]
fn failures_keep_the_previous_generation_active() {
    let later = clock::now_ms() + 3_600_000;
    run(vec![
        Case {
            name: "a transient failure is queued again after a backoff, keeping its rows",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(2),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×2",
                ),
                (
                    Step::Finish(retry_at(later), Finished::Requeued),
                    "queued try 1/3 | v1 embedded, v2 queued | active v1×3, retained v2×2",
                ),
                (
                    Step::ClaimNothing,
                    "queued try 1/3 | v1 embedded, v2 queued | active v1×3, retained v2×2",
                ),
                (
                    Step::Due(later),
                    "queued try 1/3 | v1 embedded, v2 queued | active v1×3, retained v2×2",
                ),
            ],
        },
        Case {
            name: "a permanent failure drops what it wrote",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(2),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×2",
                ),
                (
                    Step::Finish(Ending::Failed("the file is gone".into()), Finished::Failed),
                    "failed try 1/3 | v1 embedded, v2 failed | active v1×3",
                ),
                (
                    Step::ClaimNothing,
                    "failed try 1/3 | v1 embedded, v2 failed | active v1×3",
                ),
            ],
        },
        Case {
            name: "the last try resumes the retained rows, then fails for good",
            setup: Setup::Replace,
            max_attempts: 2,
            start: "queued try 0/2 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/2 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/2 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(2),
                    "processing try 1/2 | v1 embedded, v2 embedding | active v1×3, writing v2×2",
                ),
                (
                    Step::Finish(retry_at(0), Finished::Requeued),
                    "queued try 1/2 | v1 embedded, v2 queued | active v1×3, retained v2×2",
                ),
                (
                    Step::Claim,
                    "processing try 2/2 | v1 embedded, v2 embedding | active v1×3, retained v2×2",
                ),
                (
                    Step::Begin,
                    "processing try 2/2 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×2, writing v2×0",
                ),
                (
                    Step::Resume { rows: 3, reused: 2 },
                    "processing try 2/2 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×2, writing v2×3",
                ),
                (
                    Step::Finish(
                        Ending::Failed("gave up after 2 attempts: HTTP 503".into()),
                        Finished::Failed,
                    ),
                    "failed try 2/2 | v1 embedded, v2 failed | active v1×3",
                ),
            ],
        },
        Case {
            name: "a retried failure starts over and swaps",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Finish(Ending::Failed("HTTP 400".into()), Finished::Failed),
                    "failed try 1/3 | v1 embedded, v2 failed | active v1×3",
                ),
                (
                    Step::Retry,
                    "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
                ),
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(4),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 3)),
                    "completed try 1/3 | v1 ready, v2 embedded | active v2×4",
                ),
            ],
        },
        Case {
            name: "a group of another model refuses the generation",
            setup: Setup::OtherModel,
            max_attempts: 3,
            start: "queued try 0/3 | v1 queued | -",
            steps: vec![
                (Step::Claim, "processing try 1/3 | v1 embedding | -"),
                (Step::BeginRefused, "processing try 1/3 | v1 embedding | -"),
                (
                    Step::Finish(Ending::Failed("another model".into()), Finished::Failed),
                    "failed try 1/3 | v1 failed | -",
                ),
            ],
        },
    ]);
}

#[test]
fn a_cancel_keeps_the_previous_generation_at_every_moment() {
    run(vec![
        Case {
            name: "cancel while queued",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Cancel,
                    "cancelled try 0/3 | v1 embedded, v2 ready | active v1×3",
                ),
                (
                    Step::ClaimNothing,
                    "cancelled try 0/3 | v1 embedded, v2 ready | active v1×3",
                ),
                (
                    Step::Retry,
                    "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
                ),
            ],
        },
        Case {
            name: "cancel while processing",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(2),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×2",
                ),
                (
                    Step::Cancel,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×2",
                ),
                (
                    Step::WriteStopped,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×2",
                ),
                (
                    Step::Finish(Ending::Cancelled, Finished::Cancelled),
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
            ],
        },
        Case {
            name: "cancel between the claim and the start of the generation",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Cancel,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
                (
                    Step::BeginCancelled,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
                (
                    Step::Finish(Ending::Cancelled, Finished::Cancelled),
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
            ],
        },
        Case {
            // The worker's last chunk is refused; it reports a catalog error as a try to
            // repeat, and the catalog still ends the job as cancelled.
            name: "cancel while the last chunk is written",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(3),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×3",
                ),
                (
                    Step::Cancel,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×3",
                ),
                (
                    Step::WriteStopped,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×3",
                ),
                (
                    Step::Finish(retry_at(0), Finished::Cancelled),
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
                (
                    Step::ClaimNothing,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
            ],
        },
        Case {
            name: "rm --force cancels the processing job, then the delete is no longer guarded",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Guarded(false),
                    "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
                ),
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Guarded(true),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(1),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×1",
                ),
                (
                    Step::CancelForDelete,
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×1",
                ),
                (
                    Step::Guarded(false),
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3, writing v2×1",
                ),
                (
                    Step::Finish(Ending::Cancelled, Finished::Cancelled),
                    "cancelled try 1/3 | v1 embedded, v2 ready | active v1×3",
                ),
            ],
        },
    ]);
}

#[test]
fn a_stop_or_a_crash_keeps_what_was_written_for_the_next_try() {
    run(vec![
        Case {
            // Every row was written when the stop came: the try is not counted and the next
            // one copies every vector instead of embedding it again.
            name: "a daemon stop while the last chunk is written",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(4),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×4",
                ),
                (
                    Step::Finish(Ending::Interrupted, Finished::Requeued),
                    "queued try 0/3 | v1 embedded, v2 queued | active v1×3, retained v2×4",
                ),
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, retained v2×4",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×4, writing v2×0",
                ),
                (
                    Step::Resume { rows: 4, reused: 4 },
                    "processing try 1/3 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×4, writing v2×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 3)),
                    "completed try 1/3 | v1 ready, v2 embedded | active v2×4",
                ),
            ],
        },
        Case {
            name: "a kill -9 mid-way, then a restart",
            setup: Setup::Replace,
            max_attempts: 3,
            start: "queued try 0/3 | v1 embedded, v2 queued | active v1×3",
            steps: vec![
                (
                    Step::Claim,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3",
                ),
                (
                    Step::Begin,
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×0",
                ),
                (
                    Step::Write(3),
                    "processing try 1/3 | v1 embedded, v2 embedding | active v1×3, writing v2×3",
                ),
                (
                    Step::Recover(1, 0),
                    "queued try 1/3 | v1 embedded, v2 queued | active v1×3, retained v2×3",
                ),
                (
                    Step::Recover(0, 0),
                    "queued try 1/3 | v1 embedded, v2 queued | active v1×3, retained v2×3",
                ),
                (
                    Step::Claim,
                    "processing try 2/3 | v1 embedded, v2 embedding | active v1×3, retained v2×3",
                ),
                (
                    Step::Begin,
                    "processing try 2/3 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×3, writing v2×0",
                ),
                (
                    Step::Resume { rows: 4, reused: 3 },
                    "processing try 2/3 | v1 embedded, v2 embedding \
                     | active v1×3, retained v2×3, writing v2×4",
                ),
                (
                    Step::Finish(Ending::Done, swapped(4, 3)),
                    "completed try 2/3 | v1 ready, v2 embedded | active v2×4",
                ),
            ],
        },
        Case {
            name: "a kill -9 before the generation began",
            setup: Setup::New,
            max_attempts: 3,
            start: "queued try 0/3 | v1 queued | -",
            steps: vec![
                (Step::Claim, "processing try 1/3 | v1 embedding | -"),
                (Step::Recover(1, 0), "queued try 1/3 | v1 queued | -"),
                (Step::Claim, "processing try 2/3 | v1 embedding | -"),
            ],
        },
    ]);
}

#[test]
fn a_job_for_a_version_older_than_the_active_one_never_replaces_it() {
    run(vec![Case {
        name: "v2 was swapped in while v1's job ran",
        setup: Setup::Older,
        max_attempts: 3,
        start: "queued try 0/3 | v1 queued, v2 embedded | active v2×3",
        steps: vec![
            (
                Step::Claim,
                "processing try 1/3 | v1 embedding, v2 embedded | active v2×3",
            ),
            (
                Step::Begin,
                "processing try 1/3 | v1 embedding, v2 embedded | active v2×3, writing v1×0",
            ),
            (
                Step::Write(4),
                "processing try 1/3 | v1 embedding, v2 embedded | active v2×3, writing v1×4",
            ),
            (
                Step::Finish(Ending::Done, Finished::Dropped),
                "cancelled try 1/3 | v1 ready, v2 embedded | active v2×3",
            ),
        ],
    }]);
}

#[test]
fn a_copy_from_a_dropped_generation_is_refused_even_before_its_vectors_are_deleted() {
    // v1's active generation is dropped (its version deleted) while v2's try runs: its
    // vectors wait in the trash, and a row planned as a copy of one of them must fail the
    // way it did when they were deleted at once, not depend on how far the purge got. SQLite
    // only: PostgreSQL deletes a generation's vectors with it, and has no trash.
    let dir = tempfile::tempdir().unwrap();
    let (mut db, job) = sqlite_setup(dir.path(), Setup::Replace, 3);
    let claimed = db.claim(3).unwrap();
    assert_eq!(claimed.len(), 1);
    let Begun::Started(generation) = db.begin_generation(job, &identity()).unwrap() else {
        panic!("a generation begins");
    };
    let old: i64 = db
        .conn
        .query_row(
            "SELECT id FROM generations WHERE state = 'active'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    db.write(|tx| {
        Ok((
            super::state::drop_generation(tx, old).map(|_| ())?,
            Vec::new(),
        ))
    })
    .unwrap();
    let copy = NewRow {
        row: 1,
        text: old_text(1),
        text_hash: text_hash(&old_text(1)),
        vector: RowVector::Copy {
            generation: old,
            row: 1,
        },
    };
    let written = db.write_vectors(job, generation, &[copy], 1, true);
    let error = written.expect_err("a copy of a trashed vector").to_string();
    assert!(error.contains("is gone"), "{error}");
}

#[test]
fn on_postgres_a_copy_from_a_generation_deleted_meanwhile_fails_naming_it_and_writes_nothing() {
    // PostgreSQL copies reused vectors inside the database, a chunk's copies in one statement:
    // one that finds its source gone fails the chunk, and none of the chunk's rows land.
    let Some(mut fixture) = Fixture::new(Backend::Postgres, Setup::Replace, 3) else {
        return;
    };
    fixture.step(&Step::Claim);
    fixture.step(&Step::Begin);
    let old = fixture
        .store
        .number("SELECT CAST(id AS TEXT) FROM generations WHERE state = 'active'");
    let mut rows = fixture.rows(1, 1, &HashMap::new());
    for (row, from_row) in [(2, 1), (3, 2)] {
        rows.push(NewRow {
            row,
            text: old_text(from_row),
            text_hash: text_hash(&old_text(from_row)),
            vector: RowVector::Copy {
                generation: old,
                row: from_row,
            },
        });
    }
    if let Store::Postgres { client, .. } = &mut fixture.store {
        client
            .execute("DELETE FROM generations WHERE id = $1", &[&old])
            .unwrap();
    }
    let error = fixture
        .catalog
        .write_vectors_blocking(
            fixture.job,
            fixture.try_id,
            fixture.generation.unwrap(),
            rows,
            3,
        )
        .expect_err("a copy of a deleted vector");
    assert!(
        error.to_string().contains(&format!(
            "the vector of row 1 of generation {old}, to reuse for row 2, is gone"
        )),
        "{error}"
    );
    assert_eq!(
        fixture.seen(),
        "processing try 1/3 | v1 embedded, v2 embedding | writing v2×0"
    );
}

#[test]
fn on_postgres_a_try_can_swap_in_only_the_generation_it_is_writing() {
    // A takeover or a restart keeps what a try wrote as a retained generation of the same
    // job: ending the next try with that generation's id must not make it searchable.
    let Some(mut fixture) = Fixture::new(Backend::Postgres, Setup::Replace, 3) else {
        return;
    };
    fixture.step(&Step::Claim);
    fixture.step(&Step::Begin);
    fixture.step(&Step::Write(3));
    fixture.step(&Step::Recover(1, 0));
    let retained = fixture
        .store
        .number("SELECT CAST(id AS TEXT) FROM generations WHERE state = 'retained'");
    fixture.step(&Step::Claim);
    fixture.step(&Step::Begin);
    let before = fixture.seen();
    assert_eq!(
        before,
        "processing try 2/3 | v1 embedded, v2 embedding \
         | active v1×3, retained v2×3, writing v2×0"
    );
    let error = fixture
        .catalog
        .finish_job_blocking(fixture.job, fixture.try_id, Some(retained), Ending::Done)
        .expect_err("a retained generation swapped in");
    assert!(
        error.to_string().contains("not the one it is writing"),
        "{error}"
    );
    assert_eq!(fixture.seen(), before, "nothing changed");
}
