//! Embedding yields to everything else (DESIGN §10), run with `cargo bench --bench busy`: what
//! a user waits for, first with nothing running, then while a real MiniLM job embeds, in one
//! run against one release daemon.
//!
//! The daemon runs the `minilm` provider (`MINILM_TEST_MODEL_DIR`, else
//! `data/models/all-MiniLM-L6-v2`; without the model the bench says how to fetch it and exits
//! 0) with its default threads and concurrency, and holds 300 one-row sources in group `big`.
//! Each phase measures:
//! 1. drop-to-accepted of a 50 MB CSV, from the rename into the group folder to the commit of
//!    its `accepted` audit record, minus `settle_ms`; `BUSY_BENCH_ROUNDS` rounds (default 5)
//!    after one untimed drop. The job each accepted file queues is cancelled at once, so it
//!    never adds to the load;
//! 2. the group switch (`use big && ls && prefs`, three whole `ingestctl` processes);
//!    `BUSY_BENCH_RUNS` runs (default 100): median and p99.
//!
//! The busy phase runs while the job of a `BUSY_BENCH_ROWS`-row CSV (default 100,000: longer
//! than the phase) embeds in group `load`; the bench checks that it is still processing at the
//! end. Budgets: the busy accept within 1.3× the quiet one, the busy switch's p99 ≤ 50 ms. Not a
//! test: nothing here asserts a time.

mod common;

use common::{BenchDaemon, median};
use ingestd::protocol::{JobState, Status, StatusInfo, cmd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SETTLE_MS: f64 = 100.0;
const SOURCES: usize = 300;

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: a number")))
        .unwrap_or(default)
}

fn ingestctl() -> PathBuf {
    escargot::CargoBuild::new()
        .package("ingestctl")
        .bin("ingestctl")
        .release()
        .run()
        .expect("build ingestctl")
        .path()
        .to_path_buf()
}

fn ctl(ctl: &Path, socket: &Path, args: &[&str]) {
    let out = Command::new(ctl)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .expect("run ingestctl");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

/// When the `accepted` audit record of `source` was committed, among the records after the
/// first `seen`.
fn wait_accepted(audit: &Path, seen: usize, source: &str) -> jiff::Timestamp {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let text = std::fs::read_to_string(audit).unwrap_or_default();
        for line in text.lines().skip(seen) {
            let record: serde_json::Value = serde_json::from_str(line).expect("audit line");
            if record["source"] == source && record["action"] == "add" {
                assert_eq!(record["outcome"], "accepted", "{record}");
                return record["time"]
                    .as_str()
                    .expect("time")
                    .parse()
                    .expect("audit time");
            }
        }
        assert!(Instant::now() < deadline, "{source} was not accepted");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Drop-to-accepted of `csv` in ms, `rounds` times, each a new source of group `accept`
/// whose job is cancelled as soon as it exists.
fn accepts(daemon: &BenchDaemon, csv: &Path, phase: &str, rounds: usize) -> Vec<f64> {
    let audit = daemon.path("audit.jsonl");
    let group = daemon.drop_root().join("accept");
    std::fs::create_dir_all(&group).expect("group folder");
    (0..rounds)
        .map(|round| {
            let source = format!("{phase}-{round}.csv");
            let aside = group.join(format!(".{source}.part"));
            std::fs::copy(csv, &aside).expect("copy aside");
            let seen = std::fs::read_to_string(&audit).map_or(0, |a| a.lines().count());
            let dropped = jiff::Timestamp::now();
            std::fs::rename(&aside, group.join(&source)).expect("rename in");
            let accepted = wait_accepted(&audit, seen, &source);
            let ms = accepted.duration_since(dropped).as_secs_f64() * 1000.0 - SETTLE_MS;
            let ids: Vec<i64> = open_jobs(daemon, "accept").iter().map(|j| j.id).collect();
            if !ids.is_empty() {
                daemon
                    .client()
                    .call(&cmd::Cancel { jobs: ids })
                    .expect("cancel");
            }
            // Until its worker has let go, it still computes beside the next round.
            let deadline = Instant::now() + Duration::from_secs(600);
            while !open_jobs(daemon, "accept").is_empty() {
                assert!(Instant::now() < deadline, "the cancelled job did not end");
                std::thread::sleep(Duration::from_millis(20));
            }
            ms
        })
        .collect()
}

/// Milliseconds of `runs` group switches (away first, untimed, so each one changes the group).
fn switches(ctl_path: &Path, socket: &Path, runs: usize) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            ctl(ctl_path, socket, &["use", "other"]);
            let t = Instant::now();
            ctl(ctl_path, socket, &["use", "big"]);
            ctl(ctl_path, socket, &["ls"]);
            ctl(ctl_path, socket, &["prefs"]);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

fn p99(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() as f64 - 1.0) * 0.99).round() as usize]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let model_dir = std::env::var_os("MINILM_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/all-MiniLM-L6-v2")
        });
    if !model_dir.join("model.safetensors").is_file() {
        println!(
            "no all-MiniLM-L6-v2 in {}; fetch it with\n  cargo run --bin ingestd -- model fetch \
             --config config/ingestd.toml\nor point MINILM_TEST_MODEL_DIR at a model folder",
            model_dir.display()
        );
        return;
    }
    let rounds = env_number("BUSY_BENCH_ROUNDS", 5);
    let runs = env_number("BUSY_BENCH_RUNS", 100);
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
    accepts(&daemon, &csv, "warm-up", 1);
    println!("quiet (load average {}):", load_average());
    let quiet_accepts = accepts(&daemon, &csv, "quiet", rounds);
    let quiet_switches = switches(&ctl_path, &socket, runs);

    daemon.drop_file("load", "load.csv", &common::csv_of_rows(load_rows, 11));
    let deadline = Instant::now() + Duration::from_secs(600);
    let done_before = loop {
        let jobs = open_jobs(&daemon, "load");
        if let Some(job) = jobs
            .iter()
            .find(|j| j.state == JobState::Processing && j.progress.done > 0)
        {
            break job.progress.done;
        }
        assert!(Instant::now() < deadline, "the load job did not start");
        std::thread::sleep(Duration::from_millis(50));
    };
    let busy_started = Instant::now();
    println!(
        "busy: a MiniLM job of {load_rows} rows embedding, {done_before} done (load average {}):",
        load_average()
    );
    let busy_accepts = accepts(&daemon, &csv, "busy", rounds);
    let busy_switches = switches(&ctl_path, &socket, runs);
    let still = open_jobs(&daemon, "load");
    let done = still.first().map(|j| j.progress.done);
    assert!(
        still.iter().any(|j| j.state == JobState::Processing),
        "the load job ended during the busy phase: raise BUSY_BENCH_ROWS"
    );
    println!(
        "  the load job embedded {} rows in the {:.1} s of this phase (load average {})",
        done.unwrap_or(0) - done_before,
        busy_started.elapsed().as_secs_f64(),
        load_average()
    );

    let (quiet, busy) = (median(quiet_accepts.clone()), median(busy_accepts.clone()));
    println!(
        "drop-to-accepted, 50 MB CSV, median of {rounds}: quiet {quiet:.0} ms {quiet_accepts:.0?}, \
         busy {busy:.0} ms {busy_accepts:.0?}: {:.2}× (budget ≤ 1.3×)",
        busy / quiet
    );
    for (phase, ms) in [("quiet", quiet_switches), ("busy", busy_switches)] {
        println!(
            "group switch at {SOURCES} sources, {phase}: median {:.1} ms, p99 {:.1} ms over {runs} \
             runs (budget p99 ≤ 50 ms)",
            median(ms.clone()),
            p99(ms)
        );
    }
}
