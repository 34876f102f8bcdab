//! Reuse benchmark (issue 13, DESIGN §10: "re-embed of a v2 with 1 % of rows changed ≥ 20×
//! faster than v1"), run with `cargo bench --bench reuse`; prints medians, asserts no time.
//!
//! Through the real daemon: a source of `REUSE_BENCH_ROWS` rows (default 20,000) is dropped
//! as v1, then as v2 with every hundredth row changed. Each job is timed from its start to its
//! swap (the job's `started_at` and `finished_at`), v1 against v2, for `RUNS` sources.
//! The provider is `REUSE_BENCH_PROVIDER`:
//! - `stub` (default): an OpenAI-compatible server answering each request of 32 texts in
//!   `REUSE_BENCH_LATENCY_MS` (default 250, about MiniLM's pace on one core here), one
//!   request in flight: a model of known speed, without its noise;
//! - `minilm`: the real model from `REUSE_BENCH_MODEL_DIR` (v1 of 20,000 rows takes minutes);
//! - `hashing`: no model cost at all, so both jobs are bound by SQLite (writing against
//!   copying vectors): the floor of what reuse costs.
//!
//! `REUSE_BENCH_CATALOG=postgres` runs the daemon on a PostgreSQL catalog of its own (a fresh
//! database on the server `PG_TEST_URL` names, from `tests/pg/start.sh`), where a reused
//! vector is copied inside the database.

use std::time::Duration;

mod common;

use common::stub::Stub;
use common::{BenchDaemon, csv_of_rows, job_secs, median};

const RUNS: usize = 3;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `v1` with every hundredth data row's comment changed.
fn one_percent_changed(v1: &[u8]) -> (Vec<u8>, usize) {
    let text = String::from_utf8(v1.to_vec()).unwrap();
    let mut changed = 0;
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 && i % 100 == 50 {
            out.push_str(&line.replacen(",\"", ",\"changed ", 1));
            changed += 1;
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    (out.into_bytes(), changed)
}

fn main() {
    let rows: usize = env("REUSE_BENCH_ROWS")
        .and_then(|r| r.parse().ok())
        .unwrap_or(20_000);
    let provider = env("REUSE_BENCH_PROVIDER").unwrap_or_else(|| "stub".into());
    let latency_ms: u64 = env("REUSE_BENCH_LATENCY_MS")
        .and_then(|r| r.parse().ok())
        .unwrap_or(250);
    let mut stub = None;
    let (name, embedding) = match provider.as_str() {
        "hashing" => ("hashing", "batch_size = 256\n".to_string()),
        "minilm" => {
            let dir = env("REUSE_BENCH_MODEL_DIR").expect("REUSE_BENCH_MODEL_DIR");
            (
                "minilm",
                format!("model_dir = \"{dir}\"\nauto_fetch = false\n"),
            )
        }
        _ => {
            let s = Stub::start(Duration::from_millis(latency_ms));
            let toml = s.embedding_toml(32, 1);
            stub = Some(s);
            ("openai", toml)
        }
    };
    let catalog = env("REUSE_BENCH_CATALOG").unwrap_or_else(|| "sqlite".into());
    let (_db, catalog_toml) = match catalog.as_str() {
        "postgres" => {
            let db = ingestd::testing::TestDb::create()
                .expect("REUSE_BENCH_CATALOG=postgres needs PG_TEST_URL");
            let toml = format!(
                "[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n[cluster]\nnode = \"bench\"\n",
                db.url()
            );
            (Some(db), toml)
        }
        "sqlite" => (None, String::new()),
        other => panic!("REUSE_BENCH_CATALOG is sqlite or postgres, not {other:?}"),
    };
    let daemon = BenchDaemon::start_provider(
        &format!("[ingest]\nsettle_ms = 100\n{catalog_toml}"),
        name,
        &embedding,
    );
    let mut client = daemon.client();
    let (mut v1s, mut v2s) = (Vec::new(), Vec::new());
    for run in 0..RUNS {
        let source = format!("rows{run}.csv");
        let v1 = csv_of_rows(rows, 11 + run as u64);
        daemon.drop_file("g", &source, &v1);
        let first = job_secs(&mut client, &source, "v1");
        let sent_before = stub.as_ref().map(Stub::texts);
        let (v2, changed) = one_percent_changed(&v1);
        daemon.drop_file("g", &source, &v2);
        let second = job_secs(&mut client, &source, "v2");
        let sent = stub.as_ref().map(|s| s.texts() - sent_before.unwrap_or(0));
        println!(
            "run {}: v1 {first:.2} s, v2 {second:.3} s ({changed} of {rows} rows changed{}), {:.1}x",
            run + 1,
            sent.map_or(String::new(), |n| format!("; v2 sent {n} texts")),
            first / second
        );
        v1s.push(first);
        v2s.push(second);
    }
    let (v1, v2) = (median(v1s), median(v2s));
    let model = match name {
        "openai" => format!("a stub server at {latency_ms} ms per 32 texts"),
        other => other.to_string(),
    };
    println!(
        "reuse on {catalog}, {rows} rows, 1 % changed, with {model}: v1 {v1:.2} s, v2 {v2:.3} s (median of \
         {RUNS}, job start to swap through the daemon): v2 is {:.1}x faster (budget ≥ 20x)",
        v1 / v2
    );
}
