//! Cluster benchmarks (issue 12), run with `cargo bench --bench cluster [claim] [pipeline]
//! [search]`;
//! prints medians, asserts no time. Both need a PostgreSQL with pgvector: `eval
//! "$(tests/pg/start.sh)"` exports `PG_TEST_URL` (without it the bench says so and measures
//! nothing). Each part works in a fresh database of its own, dropped at the end.
//!
//! - `claim`: "claim latency with 2 nodes and 1,000 queued jobs". 1,000 jobs wait in 10
//!   groups; each claim of one job (`catalog::pg::queue::claim`, the takeover sweep included,
//!   as a scheduler calls it) is timed, and the job is completed and queued again at the end
//!   of the line, so the queue stays 1,000 deep. First one node claims alone, then two nodes
//!   (two threads, two connections) claim at once and contend for the claim lock. The
//!   yardstick is one `SELECT 1` round trip on the same kind of connection.
//! - `pipeline`: "pipeline rows/s (hashing provider) on PostgreSQL vs SQLite on the same
//!   file": whole embedding jobs through two real daemons, one on each catalog, from the
//!   job's start to its swap, alternating on the same files (`CLUSTER_BENCH_ROWS` rows each,
//!   default 200,000). On PostgreSQL the rows are searchable from the swap on; the time its
//!   indexing pass then takes to move them into the HNSW index is reported too.
//! - `search`: "search p50/p99 at 1,000,000 vectors of 384 dimensions: pgvector HNSW vs SQLite
//!   exact scan". `CLUSTER_BENCH_VECTORS` (default 1,000,000) vectors shaped like embeddings
//!   (points around 1,000 topic centres, as in tests/e2e/pg/search.rs) are written as one
//!   group's active generation into a SQLite catalog and into PostgreSQL, the HNSW index is
//!   built, and 100 queries are timed through each backend's search function, the SQLite
//!   one being what the daemon answers `search` with today; HNSW at `hnsw.ef_search` 40
//!   (pgvector's default), 100 (ours) and 400, each with its top-10 overlap with the exact
//!   answer.

use ingestd::catalog::pg::{queue, schema};
use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

mod common;

use common::median;

const QUEUED: usize = 1_000;
const GROUPS: usize = 10;
const CLAIMS: usize = 1_000;
const CAP: usize = 3;

fn percentile(mut xs: Vec<f64>, p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Claim, complete and queue again, `n` times, as node `name`: each claim's time.
fn claims(client: &mut Client, name: &str, n: usize) -> Vec<f64> {
    let member = queue::Member {
        name: name.into(),
        lease: Duration::from_secs(30),
        shared_storage: true,
    };
    let mut times = Vec::with_capacity(n);
    while times.len() < n {
        let start = Instant::now();
        let (started, _) = queue::claim(client, &member, CAP, 1).expect("claim");
        let took = start.elapsed();
        let Some(job) = started.first() else {
            continue; // the other node holds every slot for a moment
        };
        times.push(ms(took));
        client
            .execute(
                "UPDATE jobs SET state = 'queued', node = NULL, lease_until = NULL,
                        attempt = 0, queued_at = (SELECT MAX(queued_at) + 1 FROM jobs)
                 WHERE id = $1",
                &[&job.job],
            )
            .expect("queue the job again");
    }
    times
}

fn report(what: &str, times: &[f64], floor: f64) {
    let p50 = median(times.to_vec());
    println!(
        "{what:<34} claims {:>5}  p50 {p50:>6.2} ms  p99 {:>6.2} ms  p50/round trip {:>5.1}x",
        times.len(),
        percentile(times.to_vec(), 0.99),
        p50 / floor
    );
}

/// A fresh database of the bench's own on the server of `PG_TEST_URL`, dropped at the end.
struct BenchDb {
    admin: postgres::Config,
    config: postgres::Config,
    name: String,
}

impl BenchDb {
    fn create(admin: &postgres::Config, part: &str) -> Self {
        let name = format!("ingestd_bench_{part}_{}", std::process::id());
        admin
            .connect(NoTls)
            .expect("connect")
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the bench database");
        let mut config = admin.clone();
        config.dbname(&name);
        let db = Self {
            admin: admin.clone(),
            config,
            name,
        };
        let mut client = db.connect();
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
            .unwrap();
        schema::migrate(&mut client).unwrap();
        db
    }

    fn connect(&self) -> Client {
        self.config
            .connect(NoTls)
            .expect("connect to the bench database")
    }
}

impl Drop for BenchDb {
    fn drop(&mut self) {
        if let Ok(mut client) = self.admin.connect(NoTls) {
            let _ = client.batch_execute(&format!("DROP DATABASE {} WITH (FORCE)", self.name));
        }
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn main() {
    let wanted = common::wanted();
    let Some(url) = std::env::var("PG_TEST_URL").ok().filter(|u| !u.is_empty()) else {
        println!("cluster: PG_TEST_URL is not set; run eval \"$(tests/pg/start.sh)\" first");
        return;
    };
    let admin: postgres::Config = url.parse().expect("PG_TEST_URL is a PostgreSQL URL");
    if wanted("claim") {
        claim_latency(&admin);
    }
    if wanted("search") {
        search_latency(&admin);
    }
    if wanted("pipeline") {
        pipeline();
    }
}

/// Rows/s of whole embedding jobs (hashing provider) through the real daemon, on SQLite and on
/// PostgreSQL, for the same files, alternating, `PIPELINE_RUNS` jobs each.
fn pipeline() {
    use common::{BenchDaemon, csv_of_rows, job_secs};
    const PIPELINE_RUNS: usize = 3;
    let rows: usize = std::env::var("CLUSTER_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    // A database of its own; the daemon brings its schema up to date.
    let db = ingestd::testing::TestDb::create().expect("PG_TEST_URL is set");
    let url = db.url();
    let common_toml = "[ingest]\nsettle_ms = 100\n";
    let sqlite = BenchDaemon::start(common_toml, "batch_size = 256\n");
    let pg = BenchDaemon::start(
        &format!(
            "{common_toml}[catalog]\nbackend = \"postgres\"\nurl = \"{url}\"\n\
             [cluster]\nnode = \"bench\"\n"
        ),
        "batch_size = 256\n",
    );
    let mut catalog = db.client();
    println!("pipeline: load average before: {}", load());
    let (mut on_sqlite, mut on_pg, mut indexing) = (Vec::new(), Vec::new(), Vec::new());
    for run in 0..PIPELINE_RUNS {
        let content = csv_of_rows(rows, 7 + run as u64);
        let name = format!("rows{run}.csv");
        for (daemon, rates) in [(&sqlite, &mut on_sqlite), (&pg, &mut on_pg)] {
            daemon.drop_file("g", &name, &content);
            let secs = job_secs(&mut daemon.client(), &name, "v1");
            rates.push(rows as f64 / secs);
        }
        // The PostgreSQL node's pass moves the swapped rows into the HNSW index after the
        // swap; timed from the end of the job to an empty backlog, and awaited, so it never
        // runs under the next job's measurement.
        let swapped = Instant::now();
        while ingestd::catalog::pg::staging::backlog(&mut catalog).unwrap() > 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
        indexing.push(rows as f64 / swapped.elapsed().as_secs_f64());
    }
    println!("pipeline: load average after: {}", load());
    let (a, b) = (median(on_sqlite), median(on_pg));
    println!(
        "pipeline, hashing provider, {rows} rows per job, median of {PIPELINE_RUNS}: \
         SQLite {a:.0} rows/s, PostgreSQL {b:.0} rows/s (PostgreSQL/SQLite {:.2}), job start \
         to swap",
        b / a
    );
    println!(
        "pipeline: PostgreSQL's background pass then indexed {:.0} rows/s (median), swap to \
         an empty backlog; searches scan the backlog exactly meanwhile",
        median(indexing)
    );
}

fn claim_latency(admin: &postgres::Config) {
    let db = BenchDb::create(admin, "claim");
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "INSERT INTO groups (name, created_at) SELECT 'g' || g, 0 FROM generate_series(1, {GROUPS}) g;
             INSERT INTO sources (group_id, name, created_at)
                 SELECT 1 + i % {GROUPS}, 's' || i, 0 FROM generate_series(0, {QUEUED} - 1) i;
             INSERT INTO versions (source_id, version_no, status, node, created_at, updated_at)
                 SELECT id, 1, 'queued', CASE WHEN id % 2 = 0 THEN 'a' ELSE 'b' END, 0, 0
                 FROM sources;
             INSERT INTO jobs (group_id, source_id, version_id, state, reason, max_attempts,
                               queued_at)
                 SELECT s.group_id, s.id, v.id, 'queued', 'new_version', 3, v.id
                 FROM sources s JOIN versions v ON v.source_id = s.id;
             ANALYZE;"
        ))
        .unwrap();

    println!("claim: load average before: {}", load());
    let mut trips = Vec::new();
    for _ in 0..CLAIMS {
        let start = Instant::now();
        client.query_one("SELECT 1", &[]).unwrap();
        trips.push(ms(start.elapsed()));
    }
    let floor = median(trips.clone());
    println!(
        "{:<34} p50 {floor:>6.3} ms  p99 {:>6.3} ms",
        "SELECT 1 round trip (yardstick)",
        percentile(trips, 0.99)
    );

    let alone = claims(&mut client, "a", CLAIMS);
    report("1 node, 1,000 queued", &alone, floor);

    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let mut client = db.connect();
            std::thread::spawn(move || claims(&mut client, node, CLAIMS / 2))
        })
        .collect();
    let both: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a node's claims"))
        .collect();
    report("2 nodes at once, 1,000 queued", &both, floor);
    let queued: i64 = client
        .query_one("SELECT COUNT(*) FROM jobs WHERE state = 'queued'", &[])
        .unwrap()
        .get(0);
    assert_eq!(queued as usize, QUEUED, "the queue stayed {QUEUED} deep");
    println!("claim: load average after: {}", load());
}

const DIMENSION: usize = 384;
const TOPICS: usize = 1_000;
const SPREAD: f32 = 0.6;
const QUERIES: usize = 100;
const K: usize = 10;

/// splitmix64 with Box–Muller: the same numbers on every machine.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        ((self.next() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn gaussian(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
    fn direction(&mut self) -> Vec<f32> {
        normalized((0..DIMENSION).map(|_| self.gaussian()).collect())
    }
    /// A point near one of the topic centres.
    fn point(&mut self, centres: &[Vec<f32>]) -> Vec<f32> {
        let centre = &centres[(self.next() % centres.len() as u64) as usize];
        let noise = self.direction();
        normalized(
            centre
                .iter()
                .zip(&noise)
                .map(|(c, n)| c + SPREAD * n)
                .collect(),
        )
    }
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

fn search_latency(admin: &postgres::Config) {
    use ingestd::catalog::jobs::text_hash;
    use ingestd::catalog::pg::search as pg_search;
    use ingestd::embed::Identity;
    use postgres::binary_copy::BinaryCopyInWriter;
    use postgres::types::Type;

    let vectors: usize = std::env::var("CLUSTER_BENCH_VECTORS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(1_000_000);
    let identity = Identity {
        provider: "bench".into(),
        model: "clustered-384".into(),
        dimension: DIMENSION,
        weights_hash: "seed-7".into(),
    };
    let db = BenchDb::create(admin, "search");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sqlite = dir.path().join("catalog.sqlite");
    {
        // The daemon's own schema, then its rows written as the daemon writes them.
        let (catalog, thread) = ingestd::catalog::Catalog::open(
            &sqlite,
            &dir.path().join("audit.jsonl"),
            ingestd::events::Events::default(),
        )
        .expect("create the SQLite catalog");
        drop(catalog);
        thread.join();
    }
    let started = Instant::now();
    let mut random = Random(7);
    let centres: Vec<Vec<f32>> = (0..TOPICS).map(|_| random.direction()).collect();
    let mut conn = rusqlite::Connection::open(&sqlite).unwrap();
    let lite = conn.transaction().unwrap();
    lite.execute_batch(&format!(
        "INSERT INTO groups (id, name, created_at) VALUES (1, 'big', 0);
         INSERT INTO sources (id, group_id, name, created_at, last_version)
             VALUES (1, 1, 'rows.csv', 0, 1);
         INSERT INTO versions (id, source_id, version_no, status, format, rows, stored_path,
                               created_at, updated_at)
             VALUES (1, 1, 1, 'embedded', 'csv', {vectors}, '/nowhere/rows_v1.csv', 0, 0);
         INSERT INTO jobs (id, group_id, source_id, version_id, state, reason, max_attempts,
                           rows_done, rows_total, queued_at)
             VALUES (1, 1, 1, 1, 'completed', 'new_version', 3, {vectors}, {vectors}, 0);
         INSERT INTO generations (id, source_id, version_id, job_id, state, provider, model,
                                  dimension, weights_hash, rows, created_at, activated_at)
             VALUES (1, 1, 1, 1, 'active', '{}', '{}', {DIMENSION}, '{}', {vectors}, 0, 0);",
        identity.provider, identity.model, identity.weights_hash
    ))
    .unwrap();
    let mut client = db.connect();
    client
        .batch_execute(&format!(
            "INSERT INTO groups (id, name, created_at) VALUES (1, 'big', 0);
             INSERT INTO sources (id, group_id, name, created_at, last_version)
                 VALUES (1, 1, 'rows.csv', 0, 1);
             INSERT INTO versions (id, source_id, version_no, status, format, rows, stored_path,
                                   node, created_at, updated_at)
                 VALUES (1, 1, 1, 'embedded', 'csv', {vectors}, '/nowhere/rows_v1.csv', 'a',
                         0, 0);
             INSERT INTO jobs (id, group_id, source_id, version_id, state, reason,
                               max_attempts, rows_done, rows_total, queued_at)
                 VALUES (1, 1, 1, 1, 'completed', 'new_version', 3, {vectors}, {vectors}, 0);
             INSERT INTO identities (id, provider, model, dimension, weights_hash)
                 VALUES (1, '{}', '{}', {DIMENSION}, '{}');
             INSERT INTO generations (id, source_id, version_id, job_id, state, identity_id,
                                      rows, created_at, activated_at)
                 VALUES (1, 1, 1, 1, 'active', 1, {vectors}, 0, 0);",
            identity.provider, identity.model, identity.weights_hash
        ))
        .unwrap();
    let mut pg = client.transaction().unwrap();
    let vector = pg.prepare("SELECT $1::vector").unwrap().params()[0].clone();
    let sink = pg
        .copy_in(
            "COPY vectors (generation_id, row_no, identity_id, group_id, text, text_hash,
                           embedding) FROM STDIN (FORMAT binary)",
        )
        .unwrap();
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::BYTEA,
        vector,
    ];
    let mut writer = BinaryCopyInWriter::new(sink, &types);
    {
        let mut insert = lite
            .prepare(
                "INSERT INTO vectors (generation_id, row_no, text, embedding, text_hash)
                 VALUES (1, ?1, ?2, ?3, ?4)",
            )
            .unwrap();
        for row in 1..=vectors as i64 {
            let text = format!("row {row}");
            let point = random.point(&centres);
            let hash = text_hash(&text);
            let blob: Vec<u8> = point.iter().flat_map(|x| x.to_le_bytes()).collect();
            insert
                .execute(rusqlite::params![row, text, blob, &hash[..]])
                .unwrap();
            writer
                .write(&[
                    &1i64,
                    &row,
                    &1i32,
                    &1i64,
                    &text,
                    &&hash[..],
                    &pgvector::Vector::from(point),
                ])
                .unwrap();
        }
    }
    writer.finish().unwrap();
    pg.commit().unwrap();
    lite.commit().unwrap();
    drop(conn);
    println!(
        "search: wrote {vectors} vectors of {DIMENSION} dimensions to both in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    // In memory, as `catalog migrate` builds it (1 GB there; the graph of a million
    // vectors needs more to stay in memory).
    client
        .batch_execute("SET maintenance_work_mem = '4GB'; SET max_parallel_maintenance_workers = 1")
        .unwrap();
    assert!(schema::ensure_index(&mut client, 1, DIMENSION).unwrap());
    client.batch_execute("ANALYZE vectors").unwrap();
    println!(
        "search: HNSW index built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    println!("search: load average before: {}", load());
    // The exact answer once per query; HNSW at pgvector's default, ours, and a wider one.
    const EF: [u32; 3] = [40, pg_search::DEFAULT_EF_SEARCH, 400];
    let mut exact = Vec::new();
    let mut hnsw: Vec<Vec<f64>> = vec![Vec::new(); EF.len()];
    let mut overlap = [0.0; EF.len()];
    for _ in 0..QUERIES {
        let query = random.point(&centres);
        let t = Instant::now();
        let a = ingestd::catalog::search::search(&sqlite, "big", &identity, &query, K).unwrap();
        exact.push(ms(t.elapsed()));
        assert_eq!(a.hits.len(), K);
        let rows: std::collections::HashSet<u64> = a.hits.iter().map(|h| h.row).collect();
        for (i, ef) in EF.iter().enumerate() {
            let t = Instant::now();
            let b = pg_search::search(&mut client, "big", &identity, &query, K, *ef).unwrap();
            hnsw[i].push(ms(t.elapsed()));
            assert_eq!(b.hits.len(), K);
            overlap[i] += b.hits.iter().filter(|h| rows.contains(&h.row)).count() as f64 / K as f64;
        }
    }
    println!("search: load average after: {}", load());
    let e50 = median(exact.clone());
    println!(
        "{:<38} p50 {e50:>8.2} ms  p99 {:>8.2} ms",
        format!("SQLite exact scan, {vectors}"),
        percentile(exact, 0.99)
    );
    for (i, ef) in EF.iter().enumerate() {
        let h50 = median(hnsw[i].clone());
        println!(
            "{:<38} p50 {h50:>8.2} ms  p99 {:>8.2} ms  {:>4.0}x faster  top-{K} overlap {:.3}{}",
            format!("pgvector HNSW, ef_search {ef}"),
            percentile(hnsw[i].clone(), 0.99),
            e50 / h50,
            overlap[i] / QUERIES as f64,
            if *ef == pg_search::DEFAULT_EF_SEARCH {
                " (default)"
            } else {
                ""
            }
        );
    }
}
