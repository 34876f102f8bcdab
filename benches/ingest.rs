//! Ingest benchmarks (DESIGN §10), run with `cargo bench --bench ingest`; prints medians.
//!
//! 1. validate + store + extract of a 50 MB CSV through the real ingest path, in MB/s, beside
//!    the cost of its parts (sha256 alone, the CSV reader alone) on the same file;
//! 2. drop-to-ready latency of a small CSV through the real daemon, minus the settle window;
//! 3. the daemon's peak RSS while it ingests the 50 MB CSV.
//!
//! Not a test: nothing here asserts a time. The figures go into the issue notes.

use ingestd::catalog::Catalog;
use ingestd::config::Config;
use ingestd::inflight::InFlight;
use ingestd::ingest::{Ingestor, Outcome, formats};
use ingestd::notices::Notices;
use ingestd::watch::SettledFile;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const RUNS: usize = 5;
/// Just under the 50 MB limit, as the largest accepted file.
const BIG: usize = 49_900_000;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// A deterministic CSV of about `bytes` bytes with ~20-word rows.
fn big_csv(bytes: usize, seed: u64) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "north", "south", "east", "west", "widget", "gadget", "invoice", "paid", "pending",
        "shipped", "returned", "alpha", "beta", "gamma", "delta", "order", "customer", "review",
    ];
    let mut out = Vec::with_capacity(bytes + 256);
    out.extend_from_slice(b"id,region,product,amount,date,status,comment\n");
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut id = 0u64;
    while out.len() < bytes {
        let mut next = || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as usize
        };
        let comment: Vec<&str> = (0..14).map(|_| WORDS[next() % WORDS.len()]).collect();
        let _ = writeln!(
            out,
            "{id},{},{},{}.{:02},2026-{:02}-{:02},{},\"{}\"",
            WORDS[next() % 4],
            WORDS[4 + next() % 2],
            next() % 10_000,
            next() % 100,
            1 + next() % 12,
            1 + next() % 28,
            WORDS[6 + next() % 5],
            comment.join(" ")
        );
        id += 1;
    }
    out
}

fn config_in(dir: &Path, extra: &str) -> Config {
    let path = dir.join("ingestd.toml");
    std::fs::write(
        &path,
        format!(
            "[paths]\ndrop_root = \"drop\"\nstorage_root = \"store\"\ndatabase = \"db.sqlite\"\n\
             socket = \"s.sock\"\naudit_log = \"audit.jsonl\"\n[embedding]\nprovider = \"hashing\"\n{extra}"
        ),
    )
    .unwrap();
    Config::load_with_env(&path, []).unwrap()
}

fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let config = Arc::new(config_in(dir.path(), ""));
    std::fs::create_dir_all(config.paths.drop_root.join("g")).unwrap();
    std::fs::create_dir_all(&config.paths.storage_root).unwrap();
    let (catalog, _thread) =
        Catalog::open(&config.paths.database, &config.paths.audit_log).unwrap();
    let ingestor = Ingestor::new(
        Arc::clone(&config),
        catalog,
        InFlight::default(),
        Notices::default(),
    );
    let mut pipeline = Vec::new();
    let mut hash_only = Vec::new();
    let mut parse_only = Vec::new();
    for run in 0..RUNS {
        let content = big_csv(BIG, run as u64);
        let mb = content.len() as f64 / 1e6;
        let path = config.paths.drop_root.join(format!("g/big{run}.csv"));
        std::fs::write(&path, &content).unwrap();
        // Parts, on the same (page-cached) file.
        let t = Instant::now();
        ingestd::ingest::store::sha256_file(&path).unwrap();
        hash_only.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        formats::extract(formats::Format::Csv, &path, &Default::default()).unwrap();
        parse_only.push(mb / t.elapsed().as_secs_f64());
        // The whole path: copy + hash + fsync + extract + catalog + rename + remove.
        let file = SettledFile {
            group: "g".into(),
            name: format!("big{run}.csv"),
            path: path.clone(),
        };
        let t = Instant::now();
        let outcome = ingestor.ingest(&file);
        pipeline.push(mb / t.elapsed().as_secs_f64());
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    }
    println!(
        "validate+store+extract, 50 MB CSV: median {:.0} MB/s over {RUNS} runs \
         (sha256 alone {:.0} MB/s, CSV reader alone {:.0} MB/s)",
        median(pipeline),
        median(hash_only),
        median(parse_only)
    );
}

struct Daemon {
    child: std::process::Child,
    _dir: tempfile::TempDir,
    config: Config,
}

impl Daemon {
    fn start(settle_ms: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(dir.path(), &format!("[ingest]\nsettle_ms = {settle_ms}\n"));
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
            .arg("--config")
            .arg(dir.path().join("ingestd.toml"))
            .env("RUST_LOG", "warn")
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while ingestd::client::Client::connect(&config.paths.socket).is_err() {
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self {
            child,
            _dir: dir,
            config,
        }
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.config.paths.audit_log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn wait_audit(&self, count: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let lines = self.audit_lines();
            if lines.len() >= count {
                return lines[count - 1].clone();
            }
            assert!(Instant::now() < deadline, "no audit record");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn peak_rss_kb(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn latency() {
    let settle_ms = 200;
    let daemon = Daemon::start(settle_ms);
    let dir = daemon.config.paths.drop_root.join("g");
    std::fs::create_dir_all(&dir).unwrap();
    let mut overheads = Vec::new();
    for i in 0..15 {
        let tmp = dir.join(format!(".small{i}.csv.part"));
        std::fs::write(&tmp, format!("a,b,c\n{i},2,3\n")).unwrap();
        let dropped = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        std::fs::rename(&tmp, dir.join(format!("small{i}.csv"))).unwrap();
        let record = daemon.wait_audit(i + 1);
        assert_eq!(record["outcome"], "accepted");
        let ready: jiff::Timestamp = record["time"].as_str().unwrap().parse().unwrap();
        let ms = ready.as_millisecond() as f64 - dropped.as_millis() as f64;
        overheads.push(ms - settle_ms as f64);
    }
    let mut sorted = overheads.clone();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "drop-to-ready, small CSV: median settle + {:.0} ms, max settle + {:.0} ms over {} drops \
         (audit times have 1 ms resolution)",
        median(overheads),
        sorted.last().unwrap(),
        sorted.len()
    );
}

fn peak_rss() {
    let daemon = Daemon::start(100);
    let idle = daemon.peak_rss_kb();
    let dir = daemon.config.paths.drop_root.join("g");
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(".big.csv.part");
    std::fs::write(&tmp, big_csv(BIG, 42)).unwrap();
    std::fs::rename(&tmp, dir.join("big.csv")).unwrap();
    let record = daemon.wait_audit(1);
    assert_eq!(record["outcome"], "accepted");
    println!(
        "daemon peak RSS: {:.1} MB after ingesting a 50 MB CSV (idle peak {:.1} MB)",
        daemon.peak_rss_kb() as f64 / 1024.0,
        idle as f64 / 1024.0
    );
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects one part by name.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    if wanted("throughput") {
        throughput();
    }
    if wanted("latency") {
        latency();
    }
    if wanted("rss") {
        peak_rss();
    }
}
