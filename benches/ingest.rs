//! Ingest benchmarks (DESIGN §10), run with `cargo bench --bench ingest`; prints medians.
//!
//! 1. validate + store + extract of a 50 MB CSV through the real ingest path, in MB/s, beside
//!    the cost of its parts (sha256 alone, the CSV reader alone) on the same file; the read
//!    runs in a parse worker, as in the daemon;
//! 2. the parse worker: what isolation costs per file (a small CSV read in a worker against
//!    the same read in-process), the worker's peak RSS on the 50 MB CSV, and the smallest
//!    address-space limit that still reads it (the headroom under `parse_memory_limit`);
//! 3. drop-to-ready latency of a small CSV through the real daemon, minus the settle window;
//! 4. the daemon's peak RSS while it ingests the 50 MB CSV.
//!
//! Not a test: nothing here asserts a time. The figures go into the issue notes.

use ingestd::catalog::Catalog;
use ingestd::config::Config;
use ingestd::ingest::isolate::{Limits, ParseWorker};
use ingestd::ingest::{Ingestor, Outcome, formats};
use ingestd::notices::Notices;
use ingestd::watch::SettledFile;
use ingestd::watch::inflight::InFlight;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

mod common;

use common::median;

const RUNS: usize = 5;
/// Just under the 50 MB limit, as the largest accepted file.
const BIG: usize = 49_900_000;

/// A deterministic CSV of about `bytes` bytes with ~20-word rows.
fn big_csv(bytes: usize, seed: u64) -> Vec<u8> {
    common::csv_of_bytes(bytes, seed)
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
    let (catalog, _thread) = Catalog::open(
        &config.paths.database,
        &config.paths.audit_log,
        ingestd::events::Events::default(),
    )
    .unwrap();
    let ingestor = Ingestor::new(
        Arc::clone(&config),
        catalog,
        InFlight::default(),
        Notices::default(),
    )
    // This bench is not `ingestd`: workers run the real binary.
    .with_parse_worker(worker());
    let mut pipeline = Vec::new();
    let mut hash_only = Vec::new();
    let mut parse_only = Vec::new();
    // What reading in a worker adds to the same read in-process, per run.
    let mut isolated = Vec::new();
    let limits = Limits::of(&config.ingest);
    for run in 0..RUNS {
        let content = big_csv(BIG, run as u64);
        let mb = content.len() as f64 / 1e6;
        let path = config.paths.drop_root.join(format!("g/big{run}.csv"));
        std::fs::write(&path, &content).unwrap();
        // Parts, on the same (page-cached) file.
        let t = Instant::now();
        ingestd::sha256::of_file(&path).unwrap();
        hash_only.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        formats::extract(formats::Format::Csv, &path, &Default::default()).unwrap();
        let in_process = t.elapsed().as_secs_f64();
        parse_only.push(mb / in_process);
        let t = Instant::now();
        worker()
            .extract(formats::Format::Csv, &path, &Default::default(), &limits)
            .unwrap();
        isolated.push((t.elapsed().as_secs_f64() - in_process) * 1000.0);
        // The whole path: copy + hash + fsync + extract (in a worker) + catalog + rename +
        // remove.
        let file = SettledFile {
            group: "g".into(),
            name: format!("big{run}.csv"),
            path: path.clone(),
            ..Default::default()
        };
        let t = Instant::now();
        let outcome = ingestor.ingest(&file);
        pipeline.push(mb / t.elapsed().as_secs_f64());
        assert!(matches!(outcome, Outcome::Accepted { .. }), "{outcome:?}");
    }
    println!(
        "validate+store+extract, 50 MB CSV: median {:.0} MB/s over {RUNS} runs \
         (sha256 alone {:.0} MB/s, CSV reader alone {:.0} MB/s in-process; reading it in a \
         parse worker adds {:.0} ms)",
        median(pipeline),
        median(hash_only),
        median(parse_only),
        median(isolated)
    );
}

fn worker() -> ParseWorker {
    ParseWorker::at(env!("CARGO_BIN_EXE_ingestd"))
}

/// One worker's peak RSS in MB, reading `path` under the default limits. Measured by
/// `/usr/bin/time` around the worker: the rusage of a child of this process would count this
/// process's own pages, because a child started with posix_spawn begins in our address space
/// and the kernel records that space's high-water mark at exec.
fn worker_peak_rss_mb(path: &Path) -> Option<f64> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sh")
        .arg("-c")
        // `exec`: time takes the shell's pid, which the worker checks as its parent's.
        .arg("exec /usr/bin/time -f 'peak %M' \"$0\" parse-worker $$ 512000000 35 csv \"$1\"")
        .arg(env!("CARGO_BIN_EXE_ingestd"))
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let options = serde_json::to_vec(&formats::ReadOptions::default()).ok()?;
    child.stdin.take()?.write_all(&options).ok()?;
    let output = child.wait_with_output().ok()?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let kb: f64 = stderr
        .lines()
        .find_map(|l| l.strip_prefix("peak "))?
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn isolation() {
    let dir = tempfile::tempdir().unwrap();
    let options = formats::ReadOptions::default();
    let limits = Limits::of(&Config::default().ingest);
    let small = dir.path().join("small.csv");
    std::fs::write(&small, "id,region,amount\n1,north,2.50\n2,south,3.75\n").unwrap();
    let worker = worker();
    // Warm the page cache and the binary.
    for _ in 0..20 {
        worker
            .extract(formats::Format::Csv, &small, &options, &limits)
            .unwrap();
    }
    let (mut isolated, mut in_process) = (Vec::new(), Vec::new());
    for _ in 0..300 {
        let t = Instant::now();
        worker
            .extract(formats::Format::Csv, &small, &options, &limits)
            .unwrap();
        isolated.push(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        formats::extract(formats::Format::Csv, &small, &options).unwrap();
        in_process.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    // What any process start costs here, for scale: the smallest program, output captured.
    let mut baseline = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        std::process::Command::new("/bin/true")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        baseline.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "process start baseline: median {:.2} ms for /bin/true with captured output (300 runs)",
        median(baseline)
    );
    let (isolated, in_process) = (median(isolated), median(in_process));
    println!(
        "parse worker, small CSV: median {isolated:.2} ms per file in a worker, {in_process:.3} ms \
         in-process: isolation costs {:.2} ms per file (300 runs)",
        isolated - in_process
    );

    let big = dir.path().join("big.csv");
    std::fs::write(&big, big_csv(BIG, 7)).unwrap();
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        worker
            .extract(formats::Format::Csv, &big, &options, &limits)
            .unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let rss = match worker_peak_rss_mb(&big) {
        Some(mb) => format!("{mb:.1} MB"),
        None => "not measured (no /usr/bin/time)".into(),
    };
    println!(
        "parse worker, 50 MB CSV: median {:.0} ms per read over {RUNS} runs, worker peak RSS {rss}",
        median(times),
    );
    // Bisect the smallest address-space limit that still reads the big file.
    let (mut fits, mut fails) = (limits.memory, 1_000_000u64);
    while fits - fails > 1_000_000 {
        let middle = (fits + fails) / 2;
        let tight = Limits {
            memory: middle,
            ..limits
        };
        match worker.extract(formats::Format::Csv, &big, &options, &tight) {
            Ok(_) => fits = middle,
            Err(_) => fails = middle,
        }
    }
    println!(
        "parse worker, 50 MB CSV: reads within an address-space limit of {:.0} MB \
         (parse_memory_limit default {:.0} MB)",
        fits as f64 / 1e6,
        limits.memory as f64 / 1e6
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

    /// The `add` record of `source`, once it is written (job records come in between).
    fn wait_added(&self, source: &str) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let added = self
                .audit_lines()
                .into_iter()
                .find(|r| r["action"] == "add" && r["source"] == source);
            if let Some(record) = added {
                return record;
            }
            assert!(Instant::now() < deadline, "no audit record for {source}");
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
        let record = daemon.wait_added(&format!("small{i}.csv"));
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
    let record = daemon.wait_added("big.csv");
    assert_eq!(record["outcome"], "accepted");
    println!(
        "daemon peak RSS: {:.1} MB after ingesting a 50 MB CSV (idle peak {:.1} MB)",
        daemon.peak_rss_kb() as f64 / 1024.0,
        idle as f64 / 1024.0
    );
}

fn main() {
    let wanted = common::wanted();
    if wanted("throughput") {
        throughput();
    }
    if wanted("isolation") {
        isolation();
    }
    if wanted("latency") {
        latency();
    }
    if wanted("rss") {
        peak_rss();
    }
}
