//! Embedding pipeline benchmarks (DESIGN §10), run with `cargo bench --bench pipeline`;
//! prints medians, asserts no time.
//!
//! 1. `overhead`: rows/s of the whole pipeline with the `hashing` provider (rows streamed from
//!    a parse worker, rendered, embedded, written as a generation, swapped) through the real
//!    daemon, from the job's start to its end; the budget is ≥ 50,000 rows/s, i.e. bound by
//!    SQLite, not by our code. Also the daemon's peak RSS.
//! 2. `swap`: the one transaction that makes a generation of N vectors (default 1,000,000,
//!    `PIPELINE_BENCH_VECTORS`) active and drops the previous generation of N; then, while the
//!    catalog thread deletes the dropped vectors a chunk at a time, a request every 10 ms
//!    (what an accept or a command waits for: its median and worst wait, and how long the
//!    purge took); then the delete of the source with its N vectors, and their purge. 384
//!    dimensions, as MiniLM's; the database holds about 4 GB during this part.

use ingestd::catalog::jobs::{NewRow, RowVector, Written, text_hash};
use ingestd::catalog::{Catalog, Ending};
use ingestd::events::Events;
use ingestd::identity::{Actor, Resolve};
use std::time::Instant;

mod common;

use common::{BenchDaemon, csv_of_rows, job_secs, median, peak_rss_mb};

const RUNS: usize = 3;

fn overhead() {
    let rows: usize = std::env::var("PIPELINE_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(200_000);
    let daemon = BenchDaemon::start("[ingest]\nsettle_ms = 100\n", "batch_size = 256\n");
    let mut client = daemon.client();
    let mut rates = Vec::new();
    for run in 0..RUNS {
        // A new source each run: a re-embed of the same one would reuse every vector and
        // measure the copy (benches/reuse.rs does that), not the pipeline.
        daemon.drop_file("g", &format!("rows{run}.csv"), &csv_of_rows(rows, 7));
        let secs = job_secs(&mut client, &format!("rows{run}.csv"), "v1");
        rates.push(rows as f64 / secs);
    }
    println!(
        "pipeline with the hashing provider: {:.0} rows/s median of {RUNS} jobs of {rows} rows \
         (stream from a parse worker, render, embed, write, swap); daemon peak RSS {:.1} MB",
        median(rates),
        peak_rss_mb(daemon.child.id())
    );
}

/// Fill a generation with `n` 384-d vectors through a plain connection (setup, not timed).
fn fill(conn: &rusqlite::Connection, generation: i64, n: usize) {
    let tx = conn.unchecked_transaction().unwrap();
    {
        let mut insert = tx
            .prepare("INSERT INTO vectors (generation_id, row_no, text, embedding) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        let blob: Vec<u8> = (0..384u32)
            .flat_map(|i| (i as f32 / 384.0).to_le_bytes())
            .collect();
        for row in 0..n {
            insert
                .execute(rusqlite::params![
                    generation,
                    row as i64 + 1,
                    "row text of about twenty words",
                    blob
                ])
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn swap() {
    let n: usize = std::env::var("PIPELINE_BENCH_VECTORS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("c.sqlite");
    // Create the schema, then the rows a swap needs: a source with an active generation of n
    // vectors (v1) and a processing job whose generation of n vectors (v2) is written.
    let (catalog, thread) =
        Catalog::open(&db, &dir.path().join("a.jsonl"), Events::default()).unwrap();
    drop(catalog);
    thread.join();
    let setup = Instant::now();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "PRAGMA synchronous = OFF;
         INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
         INSERT INTO sources (id, group_id, name, created_at, last_version) VALUES (1, 1, 'big.csv', 0, 2);
         INSERT INTO versions (id, source_id, version_no, status, format, rows, stored_path, created_at, updated_at)
             VALUES (1, 1, 1, 'embedded', 'csv', 0, '/nonexistent/big_v1.csv', 0, 0),
                    (2, 1, 2, 'embedding', 'csv', 0, '/nonexistent/big_v2.csv', 0, 0);
         INSERT INTO jobs (id, group_id, source_id, version_id, state, reason, max_attempts, rows_total, queued_at, started_at)
             VALUES (1, 1, 1, 2, 'processing', 'new_version', 3, 0, 0, 0);
         INSERT INTO generations (id, source_id, version_id, job_id, state, provider, model, dimension, weights_hash, rows, created_at, activated_at)
             VALUES (1, 1, 1, NULL, 'active', 'hashing', 'm', 384, 'none', 0, 0, 0),
                    (2, 1, 2, 1, 'writing', 'hashing', 'm', 384, 'none', 0, 0, NULL);",
    )
    .unwrap();
    fill(&conn, 1, n);
    fill(&conn, 2, n);
    conn.execute("UPDATE generations SET rows = ?1", [n as i64])
        .unwrap();
    drop(conn);
    let size = std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0) as f64 / 1e9;
    println!(
        "setup: two generations of {n} vectors written in {:.1} s ({size:.2} GB)",
        setup.elapsed().as_secs_f64()
    );

    let (catalog, thread) =
        Catalog::open(&db, &dir.path().join("a.jsonl"), Events::default()).unwrap();
    let started = Instant::now();
    let settled = catalog
        .finish_job_blocking(1, None, Some(2), Ending::Done)
        .unwrap();
    let swap_secs = started.elapsed().as_secs_f64();
    println!(
        "swap: generation of {n} vectors activated, previous {n} dropped, one transaction: {:.1} ms ({settled:?})",
        swap_secs * 1000.0
    );

    // The dropped generation's vectors are deleted behind the swap; requests keep coming.
    let reader = rusqlite::Connection::open(&db).unwrap();
    let left = || -> i64 {
        reader
            .query_row("SELECT COUNT(*) FROM vector_trash", [], |r| r.get(0))
            .unwrap()
    };
    let mut waits = Vec::new();
    while left() > 0 {
        let asked = Instant::now();
        catalog.reservations_blocking().unwrap();
        waits.push(asked.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let purge_secs = started.elapsed().as_secs_f64() - swap_secs;
    waits.sort_by(f64::total_cmp);
    let at = |q: f64| {
        waits
            .get(((waits.len() as f64 - 1.0) * q) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "purge: the dropped {n} vectors deleted behind the swap in {purge_secs:.2} s; {} requests meanwhile waited {:.1} ms median, {:.1} ms p99, {:.1} ms worst",
        waits.len(),
        at(0.5),
        at(0.99),
        at(1.0)
    );

    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let outcome = runtime
        .block_on(catalog.delete("g".into(), vec!["big.csv".into()], Actor::daemon()))
        .unwrap()
        .remove(0);
    let delete_secs = started.elapsed().as_secs_f64();
    assert!(outcome.ok, "{outcome:?}");
    println!(
        "delete: the source with its {n} active vectors, one transaction: {:.1} ms",
        delete_secs * 1000.0
    );
    let started = Instant::now();
    while left() > 0 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    println!(
        "purge: its vectors deleted behind the delete in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    drop(catalog);
    thread.join();
}

/// Where the pipeline's time goes, each part alone on the same rows, in-process: reading the
/// rows, rendering them, the hashing provider, and writing vectors in the runner's chunks.
fn parts() {
    use ingestd::embed::Provider;
    use ingestd::embed::render::Renderer;
    use ingestd::ingest::formats::{self, Format, ReadOptions, RowEvent};
    use std::ops::ControlFlow;
    let rows = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rows.csv");
    std::fs::write(&path, csv_of_rows(rows, 7)).unwrap();
    let rate = |what: &str, started: Instant| {
        println!(
            "  {what}: {:.0} rows/s",
            rows as f64 / started.elapsed().as_secs_f64()
        );
    };
    println!("parts, {rows} rows:");
    let started = Instant::now();
    let mut header = Vec::new();
    let mut table: Vec<Vec<String>> = Vec::with_capacity(rows);
    formats::stream_rows(Format::Csv, &path, &ReadOptions::default(), &mut |event| {
        match event {
            RowEvent::Columns(c) => header = c.to_vec(),
            RowEvent::Row(r) => table.push(r.to_vec()),
        }
        ControlFlow::Continue(())
    })
    .unwrap();
    rate("read (in-process CSV reader)", started);
    let prefs = ingestd::protocol::PrefsInfo {
        group: "g".into(),
        ..Default::default()
    };
    let renderer = Renderer::new("rows.csv", &prefs, &header);
    let started = Instant::now();
    let texts: Vec<String> = table.iter().map(|r| renderer.render(r)).collect();
    rate("render", started);
    let hashing = ingestd::embed::hashing::Hashing::default();
    let started = Instant::now();
    let vectors: Vec<Vec<f32>> = texts
        .chunks(256)
        .flat_map(|batch| hashing.embed(batch).unwrap())
        .collect();
    rate("hashing provider", started);
    let db = dir.path().join("c.sqlite");
    let (catalog, thread) =
        Catalog::open(&db, &dir.path().join("a.jsonl"), Events::default()).unwrap();
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
         INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 'rows.csv', 0);
         INSERT INTO versions (id, source_id, version_no, status, created_at, updated_at)
             VALUES (1, 1, 1, 'embedding', 0, 0);
         INSERT INTO jobs (id, group_id, source_id, version_id, state, reason, max_attempts,
                           queued_at) VALUES (1, 1, 1, 1, 'processing', 'new_version', 3, 0);
         INSERT INTO generations (id, source_id, version_id, job_id, state, provider, model,
                                  dimension, weights_hash, created_at)
             VALUES (1, 1, 1, 1, 'writing', 'hashing', 'm', 384, 'none', 0);",
    )
    .unwrap();
    drop(conn);
    let mut rows_out: Vec<NewRow> = texts
        .into_iter()
        .zip(vectors)
        .enumerate()
        .map(|(i, (text, v))| NewRow {
            row: i as u64 + 1,
            text_hash: text_hash(&text),
            text,
            vector: RowVector::Embedded(v),
        })
        .collect();
    let started = Instant::now();
    let mut done = 0;
    while !rows_out.is_empty() {
        let chunk: Vec<_> = rows_out.drain(..rows_out.len().min(2048)).collect();
        done += chunk.len() as u64;
        let written = catalog
            .write_vectors_blocking(1, None, 1, chunk, done)
            .unwrap();
        assert_eq!(written, Written::Stored);
    }
    rate("write vectors (2,048-row transactions)", started);
    drop(catalog);
    thread.join();
}

fn main() {
    let wanted = common::wanted();
    if wanted("overhead") {
        overhead();
    }
    if wanted("parts") {
        parts();
    }
    if wanted("swap") {
        swap();
    }
}
