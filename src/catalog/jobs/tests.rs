//! The job state machine, step by step, on a catalog of its own: each case is a setup and a
//! list of steps (what a worker, a user or a restart does), and after every step the table
//! says what the catalog must show — the job's state and try, every version's status, and
//! every generation with its vectors.
//!
//! The promise checked at every step: the previous generation stays active, with all its
//! vectors, until a new generation of the newest version is swapped in.

use super::*;
use crate::catalog::Db;
use crate::clock;
use crate::embed::Identity;
use crate::identity::{Actor, Resolve};
use rusqlite::params;
use std::collections::HashMap;

/// Vectors per row in these tests.
const DIM: usize = 4;

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
    /// Whether `rm` is refused (a job of the source is processing).
    Guarded(bool),
    /// `ingestctl retry JOB`.
    Retry,
    /// `ingestctl reembed s.csv`; whether the queued job was returned rather than a new one.
    Reembed { existing: bool },
    /// The daemon starts again after a kill: (jobs requeued, generations dropped).
    Recover(u64, u64),
}

struct Fixture {
    dir: tempfile::TempDir,
    db: Db,
    job: i64,
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

impl Fixture {
    fn new(setup: Setup, max_attempts: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut db = Db::in_dir(dir.path());
        db.queue.max_attempts = max_attempts;
        db.conn
            .execute_batch(
                "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
                 INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 's.csv', 0);",
            )
            .unwrap();
        let version = |db: &Db, no: i64, status: &str| {
            db.conn
                .execute(
                    "INSERT INTO versions (id, source_id, version_no, status, format, rows,
                                           columns, stored_path, created_at, updated_at)
                     VALUES (?1, 1, ?1, ?2, 'csv', 4, '[\"a\"]', 's.csv', 0, 0)",
                    params![no, status],
                )
                .unwrap();
        };
        let queue_for = match setup {
            Setup::New | Setup::OtherModel => {
                version(&db, 1, "ready");
                1
            }
            Setup::Replace => {
                version(&db, 1, "embedded");
                active(&db, 1, 1, "h", 3);
                version(&db, 2, "ready");
                2
            }
            Setup::Older => {
                version(&db, 1, "ready");
                version(&db, 2, "embedded");
                active(&db, 1, 2, "h", 3);
                1
            }
        };
        if let Setup::OtherModel = setup {
            db.conn
                .execute_batch(
                    "INSERT INTO sources (id, group_id, name, created_at)
                         VALUES (2, 1, 't.csv', 0);
                     INSERT INTO versions (id, source_id, version_no, status, created_at,
                                           updated_at)
                         VALUES (9, 2, 1, 'embedded', 0, 0);",
                )
                .unwrap();
            active(&db, 2, 9, "other", 1);
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
        Self {
            dir,
            db,
            job,
            generation: None,
            written: 0,
        }
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

    fn step(&mut self, step: &Step) {
        match step {
            Step::Claim => {
                let claimed = self.db.claim(3).unwrap();
                let ids: Vec<i64> = claimed.iter().map(|c| c.job).collect();
                assert_eq!(ids, vec![self.job], "claimed");
                self.written = 0;
            }
            Step::ClaimNothing => assert!(self.db.claim(3).unwrap().is_empty(), "nothing to claim"),
            Step::Due(at) => assert_eq!(self.db.next_due().unwrap(), Some(*at), "next due"),
            Step::Begin => {
                let begun = self.db.begin_generation(self.job, &identity()).unwrap();
                let Begun::Started(generation) = begun else {
                    panic!("a generation begins: {begun:?}");
                };
                self.generation = Some(generation);
            }
            Step::BeginCancelled => {
                let begun = self.db.begin_generation(self.job, &identity()).unwrap();
                assert_eq!(begun, Begun::Cancelled, "cancelled before it began");
            }
            Step::BeginRefused => {
                let begun = self.db.begin_generation(self.job, &identity()).unwrap();
                let Begun::Refused(refusal) = begun else {
                    panic!("refused: {begun:?}");
                };
                assert!(refusal.contains("reembed --all -g g"), "{refusal}");
            }
            Step::Write(to) => {
                let rows = self.rows(self.written + 1, *to, &HashMap::new());
                let generation = self.generation.unwrap();
                let written = self
                    .db
                    .write_vectors(self.job, generation, &rows, *to, true);
                assert_eq!(written.unwrap(), Written::Stored);
                self.written = *to;
            }
            Step::WriteStopped => {
                let rows = self.rows(self.written + 1, self.written + 1, &HashMap::new());
                let generation = self.generation.unwrap();
                let written =
                    self.db
                        .write_vectors(self.job, generation, &rows, self.written + 1, true);
                assert_eq!(
                    written.unwrap(),
                    Written::Stopped,
                    "a chunk after the job stopped"
                );
            }
            Step::Resume { rows, reused } => {
                let generation = self.generation.unwrap();
                let path = self.dir.path().join("c.sqlite");
                let known: HashMap<_, _> = reusable_texts(&path, self.job, generation, &identity())
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
                let written = self
                    .db
                    .write_vectors(self.job, generation, &rows, done, true);
                assert_eq!(written.unwrap(), Written::Stored);
                self.written = done;
            }
            Step::Finish(ending, settled) => {
                let generation = self.generation.take();
                let got = self
                    .db
                    .finish_job(self.job, generation, ending.clone())
                    .unwrap();
                assert_eq!(&got, settled, "settled");
            }
            Step::Cancel => {
                let processing = self.processing();
                let (out, stopped) = self.db.cancel(&[self.job], &someone()).unwrap();
                assert!(out[0].ok, "{}", out[0].message);
                assert_eq!(stopped, processing, "workers to stop");
            }
            Step::CancelForDelete => {
                let processing = self.processing();
                let stopped = self
                    .db
                    .cancel_for_delete("g", &["s.csv".to_string()], &someone())
                    .unwrap();
                assert_eq!(stopped, processing, "workers to stop");
            }
            Step::Guarded(guarded) => {
                let jobs = self.db.processing_jobs(1, None).unwrap();
                let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
                assert_eq!(ids, if *guarded { vec![self.job] } else { vec![] });
            }
            Step::Retry => {
                let out = self.db.retry(&[self.job], None, &[], &someone()).unwrap();
                assert!(out[0].ok, "{}", out[0].message);
            }
            Step::Reembed { existing } => {
                let out = self
                    .db
                    .reembed("g", &["s.csv".to_string()], false, &someone())
                    .unwrap();
                assert!(out[0].ok, "{}", out[0].message);
                assert_eq!(out[0].existing, *existing, "existing");
                let job = out[0].job.as_ref().unwrap().id;
                assert_eq!(job == self.job, *existing, "the same job");
                self.job = job;
            }
            Step::Recover(requeued, dropped) => {
                assert_eq!(
                    self.db.recover_jobs().unwrap(),
                    (*requeued, *dropped),
                    "recovered"
                );
                self.generation = None;
            }
        }
    }

    /// The job's id if it is processing: what a cancel must hand to the queue to stop.
    fn processing(&self) -> Vec<i64> {
        let state: String = self
            .db
            .conn
            .query_row("SELECT state FROM jobs WHERE id = ?1", [self.job], |r| {
                r.get(0)
            })
            .unwrap();
        if state == "processing" {
            vec![self.job]
        } else {
            Vec::new()
        }
    }

    /// What the catalog shows of source 1, read with plain SQL (not through the code under
    /// test): `state try N/M | v1 status, v2 status | state vN×vectors, …`, where the
    /// generations are listed oldest first and `active` ones are counted through the
    /// `active_vectors` view, as a searching application sees them.
    fn seen(&self) -> String {
        let conn = &self.db.conn;
        // A dropped generation's vectors wait in the trash (`catalog::purge`); no vector is
        // ever without a generation otherwise.
        let orphans: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM vectors WHERE generation_id NOT IN
                    (SELECT id FROM generations)
                   AND generation_id NOT IN (SELECT generation_id FROM vector_trash)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            orphans, 0,
            "vectors neither in a generation nor in the trash"
        );
        let (state, attempt, max): (String, i64, i64) = conn
            .query_row(
                "SELECT state, attempt, max_attempts FROM jobs WHERE id = ?1",
                [self.job],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        let versions: Vec<String> = conn
            .prepare("SELECT version_no, status FROM versions WHERE source_id = 1 ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok(format!(
                    "v{} {}",
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let generations: Vec<String> = conn
            .prepare(
                "SELECT n.state, v.version_no,
                        CASE n.state WHEN 'active' THEN
                            (SELECT COUNT(*) FROM active_vectors a WHERE a.generation_id = n.id)
                        ELSE (SELECT COUNT(*) FROM vectors x WHERE x.generation_id = n.id) END,
                        n.rows
                 FROM generations n JOIN versions v ON v.id = n.version_id
                 WHERE n.source_id = 1 ORDER BY n.id",
            )
            .unwrap()
            .query_map([], |r| {
                let (state, no, vectors, rows): (String, i64, i64, i64) =
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
                // A generation's row count is what `show` reports: it must match its vectors.
                assert_eq!(vectors, rows, "{state} v{no}: vectors and recorded rows");
                Ok(format!("{state} v{no}×{vectors}"))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
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

/// Insert an active generation of `version_id` of `source` made by `model`, with `rows`
/// vectors whose texts no job of these tests writes.
fn active(db: &Db, source: i64, version_id: i64, model: &str, rows: u64) {
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
        let text = format!("old {row}");
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
    for case in cases {
        let mut fixture = Fixture::new(case.setup, case.max_attempts);
        assert_eq!(fixture.seen(), case.start, "{}: at the start", case.name);
        for (index, (step, expected)) in case.steps.iter().enumerate() {
            fixture.step(step);
            assert_eq!(
                fixture.seen(),
                *expected,
                "{}: after step {} ({step:?})",
                case.name,
                index + 1
            );
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
    // way it did when they were deleted at once, not depend on how far the purge got.
    let mut fixture = Fixture::new(Setup::Replace, 3);
    fixture.step(&Step::Claim);
    fixture.step(&Step::Begin);
    let old: i64 = fixture
        .db
        .conn
        .query_row(
            "SELECT id FROM generations WHERE state = 'active'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    fixture
        .db
        .write(|tx| {
            Ok((
                super::state::drop_generation(tx, old).map(|_| ())?,
                Vec::new(),
            ))
        })
        .unwrap();
    let copy = NewRow {
        row: 1,
        text: "old 1".into(),
        text_hash: text_hash("old 1"),
        vector: RowVector::Copy {
            generation: old,
            row: 1,
        },
    };
    let written =
        fixture
            .db
            .write_vectors(fixture.job, fixture.generation.unwrap(), &[copy], 1, true);
    let error = written.expect_err("a copy of a trashed vector").to_string();
    assert!(error.contains("is gone"), "{error}");
}
