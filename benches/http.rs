//! Pipelined HTTP benchmark (issue 13, DESIGN §10: "OpenAI-compatible provider, 50 ms per
//! request: ≥ 80 % of max_in_flight × batch / latency"), run with `cargo bench --bench http`;
//! prints medians, asserts no time.
//!
//! Through the real daemon: one job of `HTTP_BENCH_ROWS` rows (default 12,800) against a stub
//! server that answers every request in 50 ms, batch 32, for each `max_in_flight` in
//! `HTTP_BENCH_IN_FLIGHT` (default "1,4"); rows/s from the job's start to its swap, against
//! the yardstick `max_in_flight × 32 / 0.05`.

use std::time::Duration;

mod common;

use common::stub::Stub;
use common::{BenchDaemon, csv_of_rows, job_secs, median};

const RUNS: usize = 3;
const BATCH: usize = 32;
const LATENCY: Duration = Duration::from_millis(50);

fn main() {
    let rows: usize = std::env::var("HTTP_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(12_800);
    let in_flight: Vec<usize> = std::env::var("HTTP_BENCH_IN_FLIGHT")
        .unwrap_or_else(|_| "1,4".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let stub = Stub::start(LATENCY);
    for n in in_flight {
        let daemon = BenchDaemon::start_provider(
            "[ingest]\nsettle_ms = 100\n",
            "openai",
            &format!("concurrency = 1\n{}", stub.embedding_toml(BATCH, n)),
        );
        let mut client = daemon.client();
        let mut rates = Vec::new();
        for run in 0..RUNS {
            // A new source each run, with texts of its own: nothing to reuse.
            daemon.drop_file(
                "g",
                &format!("rows{run}.csv"),
                &csv_of_rows(rows, 100 + run as u64),
            );
            let secs = job_secs(&mut client, &format!("rows{run}.csv"), "v1");
            rates.push(rows as f64 / secs);
        }
        let rate = median(rates);
        let yardstick = n as f64 * BATCH as f64 / LATENCY.as_secs_f64();
        println!(
            "openai provider, max_in_flight {n}, batch {BATCH}, {} ms per request: {rate:.0} \
             rows/s median of {RUNS} jobs of {rows} rows = {:.0} % of {yardstick:.0} rows/s \
             (budget ≥ 80 %)",
            LATENCY.as_millis(),
            100.0 * rate / yardstick
        );
    }
}
