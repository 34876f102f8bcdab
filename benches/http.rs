//! Pipelined HTTP benchmark (issue 13, DESIGN §10: "OpenAI-compatible provider, 50 ms per
//! request: ≥ 80 % of max_in_flight × batch / latency"), run with `cargo bench --bench http`;
//! prints medians, asserts no time.
//!
//! Through the real daemon: one job of `HTTP_BENCH_ROWS` rows (default 12,800) against a stub
//! server that answers every request in 50 ms, batch 32, for each `max_in_flight` in
//! `HTTP_BENCH_IN_FLIGHT` (default "1,4"); rows/s from the job's start to its swap, against
//! the yardstick `max_in_flight × 32 / 0.05`.

use ingestd::client::Client;
use ingestd::protocol::{Command, JobInfo, JobState};
use std::time::{Duration, Instant};

mod common;

use common::stub::Stub;
use common::{BenchDaemon, csv_of_rows, median};

const RUNS: usize = 3;
const BATCH: usize = 32;
const LATENCY: Duration = Duration::from_millis(50);

fn jobs(client: &mut Client) -> Vec<JobInfo> {
    client
        .call(&Command::Jobs {
            group: None,
            all: true,
            state: None,
            ids: Vec::new(),
            limit: None,
        })
        .unwrap()
}

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
            let deadline = Instant::now() + Duration::from_secs(600);
            let job = loop {
                let all = jobs(&mut client);
                if all.len() == run + 1
                    && let Some(job) = all.last().filter(|j| j.state.is_final())
                {
                    break job.clone();
                }
                assert!(Instant::now() < deadline, "the job did not end");
                std::thread::sleep(Duration::from_millis(20));
            };
            assert_eq!(job.state, JobState::Completed, "{job:?}");
            let ms = |t: &Option<String>| {
                t.as_deref()
                    .unwrap()
                    .parse::<jiff::Timestamp>()
                    .unwrap()
                    .as_millisecond()
            };
            let secs = (ms(&job.finished_at) - ms(&job.started_at)) as f64 / 1000.0;
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
