//! Embedding yields to everything else (DESIGN §10), run with `cargo bench --bench busy`: what
//! a user waits for, first with nothing running, then while a real MiniLM job embeds, in one
//! run against one release daemon.
//!
//! The daemon runs the `minilm` provider (`MINILM_TEST_MODEL_DIR`, else
//! `data/models/all-MiniLM-L6-v2`; without the model the bench says how to fetch it and exits
//! 0) with its default threads and concurrency, and holds 300 one-row sources in group `big`.
//! Each of `BUSY_BENCH_ROUNDS` rounds (default 10) measures, first with no job running, then
//! while the job of a fresh `BUSY_BENCH_ROWS`-row CSV (default 100,000, different each round,
//! so nothing is reused) embeds in group `load`:
//! 1. drop-to-accepted of a 50 MB CSV, from the rename into the group folder to the commit of
//!    its `accepted` audit record, minus `settle_ms`. The job the accepted file queues is
//!    cancelled at once, so it never adds to the load;
//! 2. the group switch (`use big && ls && prefs`, three whole `ingestctl` processes),
//!    `BUSY_BENCH_RUNS` times in all (default 100), spread over the rounds.
//!
//! It also prints the rows per second the load job embedded while the busy measurements ran:
//! what yielding costs embedding.
//!
//! The load job is cancelled at the end of its round. Quiet and busy alternate within each
//! round because this machine's own cost of a fresh page of memory changes over a run (a
//! virtual machine taking back memory it handed to its host): two phases one after the other
//! would compare two machines. Budgets: the busy accept within 1.3× the quiet one, the busy
//! switch's p99 ≤ 50 ms. Not a test: nothing here asserts a time.

mod common;

use common::{BenchDaemon, ctl, ingestctl, load_average, median, percentile, wait_accepted};
use ingestd::protocol::{JobState, Status, StatusInfo, cmd};
use std::path::Path;
use std::time::{Duration, Instant};

const SETTLE_MS: f64 = 100.0;
const SOURCES: usize = 300;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

fn status(daemon: &BenchDaemon) -> StatusInfo {
    daemon.client().call(&cmd::Status {}).expect("status")
}

/// Wait until `done` holds, polling the daemon's status.
fn wait_for(daemon: &BenchDaemon, what: &str, done: impl Fn(&StatusInfo) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    while !done(&status(daemon)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The jobs of `group` that have not ended.
fn open_jobs(daemon: &BenchDaemon, group: &str) -> Vec<ingestd::protocol::JobInfo> {
    common::jobs(&mut daemon.client())
        .into_iter()
        .filter(|j| j.group == group && !j.state.is_final())
        .collect()
}

/// Drop-to-accepted of `csv` as `source` of group `accept`, in ms. Its job is cancelled as
/// soon as it exists, and waited for until its worker has let go.
fn accept_once(daemon: &BenchDaemon, csv: &Path, source: &str) -> f64 {
    let audit = daemon.path("audit.jsonl");
    let group = daemon.drop_root().join("accept");
    std::fs::create_dir_all(&group).expect("group folder");
    let aside = group.join(format!(".{source}.part"));
    std::fs::copy(csv, &aside).expect("copy aside");
    let seen = std::fs::read_to_string(&audit).map_or(0, |a| a.lines().count());
    let dropped = jiff::Timestamp::now();
    std::fs::rename(&aside, group.join(source)).expect("rename in");
    let accepted = wait_accepted(&audit, seen, source);
    let ms = accepted.duration_since(dropped).as_secs_f64() * 1000.0 - SETTLE_MS;
    stop_jobs(daemon, "accept");
    ms
}

/// Cancel the open jobs of `group` and wait until their threads are gone: a cancelled job
/// ends in the catalog at once, while its thread finishes the batch it holds.
fn stop_jobs(daemon: &BenchDaemon, group: &str) {
    let ids: Vec<i64> = open_jobs(daemon, group).iter().map(|j| j.id).collect();
    if ids.is_empty() {
        return;
    }
    daemon
        .client()
        .call(&cmd::Cancel { jobs: ids.clone() })
        .expect("cancel");
    // As the kernel shows a thread's name: its first 15 bytes.
    let names: Vec<String> = ids
        .iter()
        .map(|id| format!("embed-job-{id}").chars().take(15).collect())
        .collect();
    let tasks = format!("/proc/{}/task", daemon.child.id());
    let running = || {
        std::fs::read_dir(&tasks)
            .expect("the daemon's threads")
            .flatten()
            .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
            .any(|comm| names.iter().any(|n| n == comm.trim_end()))
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    while !open_jobs(daemon, group).is_empty() || running() {
        assert!(Instant::now() < deadline, "the cancelled jobs did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Rows the processing job of `load` has embedded so far.
fn load_done(daemon: &BenchDaemon) -> Option<u64> {
    open_jobs(daemon, "load")
        .iter()
        .find(|j| j.state == JobState::Processing)
        .map(|j| j.progress.done)
}

/// Drop a new CSV of `rows` rows into group `load` and wait until its job is embedding; the
/// rows it has embedded by then.
fn start_load(daemon: &BenchDaemon, round: usize, rows: usize) -> u64 {
    daemon.drop_file(
        "load",
        &format!("load-{round}.csv"),
        &common::csv_of_rows(rows, 11 + round as u64),
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if let Some(done) = load_done(daemon).filter(|&done| done > 0) {
            return done;
        }
        assert!(Instant::now() < deadline, "the load job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
    let Some(model_dir) = common::minilm_model_dir() else {
        return;
    };
    let rounds = env_number("BUSY_BENCH_ROUNDS", 10).max(1);
    let runs = env_number("BUSY_BENCH_RUNS", 100).max(1);
    let load_rows = env_number("BUSY_BENCH_ROWS", 100_000);
    let ctl_path = ingestctl();
    let daemon = BenchDaemon::start_provider(
        "[ingest]\nsettle_ms = 100\n",
        "minilm",
        &format!("model_dir = {:?}\n", model_dir.display().to_string()),
    );
    let socket = daemon.socket.clone();

    let setup = Instant::now();
    std::fs::create_dir_all(daemon.drop_root().join("other")).expect("group folder");
    for i in 0..SOURCES {
        daemon.drop_file(
            "big",
            &format!("s{i:04}.csv"),
            format!("id,region,amount,comment\n{i},north,{i}.5,row {i}\n").as_bytes(),
        );
    }
    wait_for(&daemon, "the sources to be embedded", |s| {
        s.by_status.get(&Status::Embedded) == Some(&(SOURCES as u64))
            && s.queue.queued == 0
            && s.queue.processing == 0
    });
    ctl(&ctl_path, &socket, &["use", "big"]);
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("bench-50mb.csv");
    // Just under the 50 MB limit: the largest CSV a drop may be.
    std::fs::write(&csv, common::csv_of_bytes(49_900_000, 7)).expect("write csv");
    println!(
        "setup: {SOURCES} sources embedded with MiniLM in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // One untimed drop first: the first 50 MB the daemon copies and parses pays for memory and
    // a cold parse worker that no later drop does.
    accept_once(&daemon, &csv, "warm-up.csv");
    println!("load average at the start: {}", load_average());
    let per_round = runs.div_ceil(rounds);
    let (mut quiet_accepts, mut busy_accepts) = (Vec::new(), Vec::new());
    let (mut quiet_switches, mut busy_switches) = (Vec::new(), Vec::new());
    let (mut embedded, mut busy_secs) = (0, 0.0);
    for round in 0..rounds {
        let quiet = accept_once(&daemon, &csv, &format!("quiet-{round}.csv"));
        quiet_switches.extend(common::switches(
            &ctl_path, &socket, "big", "other", per_round,
        ));
        let done_before = start_load(&daemon, round, load_rows);
        let busy_started = Instant::now();
        let busy = accept_once(&daemon, &csv, &format!("busy-{round}.csv"));
        busy_switches.extend(common::switches(
            &ctl_path, &socket, "big", "other", per_round,
        ));
        let done_after = load_done(&daemon)
            .expect("the load job ended before the busy measurements did: raise BUSY_BENCH_ROWS");
        embedded += done_after - done_before;
        busy_secs += busy_started.elapsed().as_secs_f64();
        stop_jobs(&daemon, "load");
        println!(
            "round {}: accept quiet {quiet:.0} ms, busy {busy:.0} ms",
            round + 1
        );
        quiet_accepts.push(quiet);
        busy_accepts.push(busy);
    }
    println!("load average at the end: {}", load_average());
    println!(
        "the load job embedded {:.0} rows/s during the busy measurements ({embedded} rows in \
         {busy_secs:.1} s)",
        embedded as f64 / busy_secs
    );

    let (quiet, busy) = (median(quiet_accepts), median(busy_accepts));
    println!(
        "drop-to-accepted, 50 MB CSV, median of {rounds}: quiet {quiet:.0} ms, busy {busy:.0} ms \
         beside a MiniLM job: {:.2}× (budget ≤ 1.3×)",
        busy / quiet
    );
    let switched = quiet_switches.len();
    for (phase, ms) in [("quiet", quiet_switches), ("busy", busy_switches)] {
        println!(
            "group switch at {SOURCES} sources, {phase}: median {:.1} ms, p99 {:.1} ms over \
             {switched} runs (budget p99 ≤ 50 ms)",
            median(ms.clone()),
            percentile(ms, 0.99)
        );
    }
}
