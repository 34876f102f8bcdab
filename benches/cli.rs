//! The control plane as a user feels it (DESIGN §10), run with `cargo bench --bench cli`: whole
//! `ingestctl` processes against a real release `ingestd`, with nothing running, at several
//! catalog sizes. For each size it prints the median and p99 of `status` (the floor: process
//! start and one round trip), `ls`, `--json ls`, `jobs` and the group switch (`use G && ls &&
//! prefs`), and each median as a ratio to `status`.
//!
//! Sizes: `CLI_BENCH_SOURCES` (comma-separated, default `100,1000`); runs per figure:
//! `CLI_BENCH_RUNS` (default 100). Not a test: nothing here asserts a time.

mod common;

use common::{ctl, ingestctl, percentile};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Milliseconds of each of `runs` runs of `f`.
fn time(runs: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A release daemon with `sources` one-row CSVs in group `big` (and an empty group `other`),
/// every one stored and embedded (hashing provider), nothing running.
fn daemon_with(sources: usize) -> Daemon {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ingestd.toml");
    std::fs::write(
        &config,
        "[paths]\ndrop_root = \"drop\"\nstorage_root = \"store\"\ndatabase = \"db.sqlite\"\n\
         socket = \"s.sock\"\naudit_log = \"audit.jsonl\"\n[ingest]\nsettle_ms = 100\n\
         [embedding]\nprovider = \"hashing\"\n",
    )
    .unwrap();
    let socket = dir.path().join("s.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let daemon = Daemon {
        child,
        socket,
        _dir: dir,
    };
    let root = daemon._dir.path();
    let deadline = Instant::now() + Duration::from_secs(60 + sources as u64 / 5);
    while ingestd::client::Client::connect(&daemon.socket).is_err() {
        assert!(Instant::now() < deadline, "the daemon did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    for group in ["big", "other"] {
        std::fs::create_dir_all(root.join("drop").join(group)).unwrap();
    }
    let setup = Instant::now();
    for i in 0..sources {
        // Written beside and renamed in, as a careful writer does: each settles at once.
        let name = format!("s{i:05}.csv");
        let staged = root.join("drop/big").join(format!(".{name}.part"));
        std::fs::write(
            &staged,
            format!("id,region,amount,date,comment\n{i},north,{i}.5,2026-01-01,row {i}\n"),
        )
        .unwrap();
        std::fs::rename(&staged, root.join("drop/big").join(&name)).unwrap();
    }
    loop {
        let mut client = ingestd::client::Client::connect(&daemon.socket).unwrap();
        let list: Vec<ingestd::protocol::SourceSummary> = client
            .call(&ingestd::protocol::cmd::Ls {
                group: Some("big".into()),
                all: false,
            })
            .unwrap();
        let embedded = list
            .iter()
            .filter(|s| s.status == ingestd::protocol::Status::Embedded)
            .count();
        if embedded == sources {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{embedded} of {sources} sources embedded"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "setup: {sources} sources stored and embedded in {:.1} s",
        setup.elapsed().as_secs_f64()
    );
    daemon
}

fn main() {
    let ctl_path = ingestctl();
    let sizes: Vec<usize> = std::env::var("CLI_BENCH_SOURCES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .map(|s| s.trim().parse().expect("CLI_BENCH_SOURCES: numbers"))
        .collect();
    let runs: usize = std::env::var("CLI_BENCH_RUNS")
        .ok()
        .map(|s| s.parse().expect("CLI_BENCH_RUNS: a number"))
        .unwrap_or(100);
    for sources in sizes {
        let daemon = daemon_with(sources);
        let socket = &daemon.socket;
        ctl(&ctl_path, socket, &["use", "big"]);
        let figures = [
            ("status", time(runs, || ctl(&ctl_path, socket, &["status"]))),
            ("ls", time(runs, || ctl(&ctl_path, socket, &["ls"]))),
            (
                "--json ls",
                time(runs, || ctl(&ctl_path, socket, &["--json", "ls"])),
            ),
            ("jobs", time(runs, || ctl(&ctl_path, socket, &["jobs"]))),
            (
                "switch (use + ls + prefs)",
                common::switches(&ctl_path, socket, "big", "other", runs),
            ),
        ];
        let summary = |ms: Vec<f64>| (percentile(ms.clone(), 0.5), percentile(ms, 0.99));
        let floor = summary(figures[0].1.clone()).0;
        println!("{sources} sources, {runs} runs each, whole ingestctl processes:");
        for (what, ms) in figures {
            let (median, p99) = summary(ms);
            println!(
                "  {what:<26} median {median:6.2} ms  p99 {p99:6.2} ms  ({:.1}× status)",
                median / floor
            );
        }
    }
}
