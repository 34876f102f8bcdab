//! HNSW search on the migrated catalog agrees with SQLite's exact scan: top-10 overlap of at
//! least 0.95 on the same 100,000 vectors of 384 dimensions.
//!
//! The vectors are deterministic and random but shaped like real embeddings: points scattered
//! around 1,000 topic centres (real sentence embeddings cluster by topic; uniformly random
//! points in 384 dimensions have no near neighbours at all, which no approximate index is
//! built for). The catalog is written as the daemon writes it (one active generation per
//! source), copied by the real `ingestd catalog migrate`, and searched through
//! `catalog::pg::search` with its default `hnsw.ef_search`.

use super::{TestDb, migrate, text};
use crate::helper::Daemon;
use ingestd::catalog::pg;
use ingestd::embed::Identity;
use std::collections::HashSet;
use std::time::Instant;

const DIMENSION: usize = 384;
const BIG: usize = 100_000;
const SMALL: usize = 2_000;
const TOPICS: usize = 1_000;
const SPREAD: f32 = 0.6;
const QUERIES: usize = 50;
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
}

fn normalized(mut v: Vec<f32>) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// A point near one of the topic centres.
fn point(random: &mut Random, centres: &[Vec<f32>]) -> Vec<f32> {
    let centre = &centres[(random.next() % centres.len() as u64) as usize];
    let noise = random.direction();
    normalized(
        centre
            .iter()
            .zip(&noise)
            .map(|(c, n)| c + SPREAD * n)
            .collect(),
    )
}

fn identity() -> Identity {
    Identity {
        provider: "test".into(),
        model: "clustered-384".into(),
        dimension: DIMENSION,
        weights_hash: "seed-12".into(),
    }
}

/// Write one source of `group` with `count` vectors as its active generation.
fn write_source(
    tx: &rusqlite::Transaction<'_>,
    group: &str,
    count: usize,
    random: &mut Random,
    centres: &[Vec<f32>],
) {
    let identity = identity();
    tx.execute(
        "INSERT INTO groups (name, created_at) VALUES (?1, 0)",
        [group],
    )
    .unwrap();
    let group_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO sources (group_id, name, created_at, last_version) VALUES (?1, 'rows.csv', 0, 1)",
        [group_id],
    )
    .unwrap();
    let source_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO versions (source_id, version_no, status, format, rows, stored_path,
                               created_at, updated_at)
         VALUES (?1, 1, 'embedded', 'csv', ?2, '/nowhere/rows_v1.csv', 0, 0)",
        rusqlite::params![source_id, count as i64],
    )
    .unwrap();
    let version_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO jobs (group_id, source_id, version_id, state, reason, max_attempts,
                           rows_done, rows_total, queued_at)
         VALUES (?1, ?2, ?3, 'completed', 'new_version', 3, ?4, ?4, 0)",
        rusqlite::params![group_id, source_id, version_id, count as i64],
    )
    .unwrap();
    let job_id = tx.last_insert_rowid();
    tx.execute(
        "INSERT INTO generations (source_id, version_id, job_id, state, provider, model,
                                  dimension, weights_hash, rows, created_at, activated_at)
         VALUES (?1, ?2, ?3, 'active', ?4, ?5, ?6, ?7, ?8, 0, 0)",
        rusqlite::params![
            source_id,
            version_id,
            job_id,
            identity.provider,
            identity.model,
            DIMENSION as i64,
            identity.weights_hash,
            count as i64
        ],
    )
    .unwrap();
    let generation = tx.last_insert_rowid();
    let mut insert = tx
        .prepare(
            "INSERT INTO vectors (generation_id, row_no, text, embedding, text_hash)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .unwrap();
    for row in 1..=count {
        let text = format!("{group} row {row}");
        let blob: Vec<u8> = point(random, centres)
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        insert
            .execute(rusqlite::params![
                generation,
                row as i64,
                text,
                blob,
                ingestd::catalog::jobs::text_hash(&text).to_vec()
            ])
            .unwrap();
    }
}

fn rows(result: &ingestd::protocol::SearchResult) -> HashSet<u64> {
    result.hits.iter().map(|h| h.row).collect()
}

#[test]
fn pg_hnsw_top10_agrees_with_the_exact_scan_on_100k_vectors() {
    let Some(db) = TestDb::create() else { return };
    let mut daemon = Daemon::start();
    daemon.stop();
    let database = daemon.dir.path().join("state/ingestd.sqlite");
    let mut random = Random(12);
    let centres: Vec<Vec<f32>> = (0..TOPICS).map(|_| random.direction()).collect();
    let started = Instant::now();
    {
        let mut conn = rusqlite::Connection::open(&database).unwrap();
        let tx = conn.transaction().unwrap();
        write_source(&tx, "big", BIG, &mut random, &centres);
        write_source(&tx, "small", SMALL, &mut random, &centres);
        tx.commit().unwrap();
    }
    eprintln!(
        "wrote {} vectors to SQLite in {:?}",
        BIG + SMALL,
        started.elapsed()
    );

    let started = Instant::now();
    let out = migrate(&daemon.config, &["--to", &db.url(), "--node", "node-a"]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!(
        "migrate (COPY, HNSW build, verify) took {:?}",
        started.elapsed()
    );

    let identity = identity();
    let mut client = db.client();
    let (mut overlap, mut exact_time, mut hnsw_time) = (0.0, 0.0, 0.0);
    for _ in 0..QUERIES {
        let query = point(&mut random, &centres);
        let t = Instant::now();
        let exact =
            ingestd::catalog::search::search(&database, "big", &identity, &query, K).unwrap();
        exact_time += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let hnsw = pg::search::search(
            &mut client,
            "big",
            &identity,
            &query,
            K,
            pg::search::DEFAULT_EF_SEARCH,
        )
        .unwrap();
        hnsw_time += t.elapsed().as_secs_f64();
        assert_eq!(exact.hits.len(), K);
        assert_eq!(hnsw.searched, BIG as u64);
        overlap += rows(&exact).intersection(&rows(&hnsw)).count() as f64 / K as f64;
    }
    let overlap = overlap / QUERIES as f64;
    eprintln!(
        "top-{K} overlap {overlap:.3} over {QUERIES} queries; mean exact scan {:.1} ms, \
         HNSW {:.2} ms (ef_search {})",
        exact_time * 1000.0 / QUERIES as f64,
        hnsw_time * 1000.0 / QUERIES as f64,
        pg::search::DEFAULT_EF_SEARCH
    );
    assert!(overlap >= 0.95, "top-{K} overlap {overlap:.3} < 0.95");

    // The group filter: a small group inside the same index still gets its own k nearest.
    let query = point(&mut random, &centres);
    let exact = ingestd::catalog::search::search(&database, "small", &identity, &query, K).unwrap();
    let hnsw = pg::search::search(
        &mut client,
        "small",
        &identity,
        &query,
        K,
        pg::search::DEFAULT_EF_SEARCH,
    )
    .unwrap();
    assert_eq!(hnsw.hits.len(), K, "{hnsw:?}");
    assert!(hnsw.hits.iter().all(|h| h.text.starts_with("small row ")));
    let small_overlap = rows(&exact).intersection(&rows(&hnsw)).count();
    assert!(
        small_overlap >= 8,
        "small group overlap {small_overlap}/{K}"
    );
}
