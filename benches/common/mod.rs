//! What the benchmarks share: the table they read, a daemon to measure, medians and peak
//! memory. Each bench uses part of it.

#![allow(dead_code)]

pub mod stub;

use ingestd::client::Client;
use ingestd::protocol::{JobInfo, JobState};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Which parts to run: `cargo bench` passes `--bench`; any other argument names a part, and
/// none means every part.
pub fn wanted() -> impl Fn(&str) -> bool {
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |name| only.is_empty() || only.iter().any(|o| o == name)
}

pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// A deterministic CSV with ~20-word rows, written until `done(bytes, rows)` says so.
fn table_csv(seed: u64, done: impl Fn(usize, usize) -> bool) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "north", "south", "east", "west", "widget", "gadget", "invoice", "paid", "pending",
        "shipped", "returned", "alpha", "beta", "gamma", "delta", "order", "customer", "review",
    ];
    let mut out = Vec::new();
    out.extend_from_slice(b"id,region,product,amount,date,status,comment\n");
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut id = 0usize;
    while !done(out.len(), id) {
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

/// About `bytes` bytes of the table.
pub fn csv_of_bytes(bytes: usize, seed: u64) -> Vec<u8> {
    table_csv(seed, |len, _| len >= bytes)
}

/// Exactly `rows` rows of the table.
pub fn csv_of_rows(rows: usize, seed: u64) -> Vec<u8> {
    table_csv(seed, |_, n| n >= rows)
}

/// Peak resident memory of a process (VmHWM), MB.
pub fn peak_rss_mb(pid: u32) -> f64 {
    proc_mb(&format!("/proc/{pid}/status"), "VmHWM:")
}

/// A `key: N kB` line of a /proc file (`/proc/meminfo`, `/proc/PID/status`), in MB; 0 when
/// the file or the line is missing.
pub fn proc_mb(file: &str, key: &str) -> f64 {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// Microseconds to touch a fresh page of memory for the first time: 16 MB of new anonymous
/// memory, one write per 4 KiB page, averaged. Meant for a new process: one that freed memory
/// before gets it back from its allocator without a fault. On a virtual machine whose free
/// memory was handed back to its host (virtio-balloon free page reporting), a page the guest
/// takes again costs several times what it costs otherwise; a copy into new page cache pays
/// the same.
pub fn fresh_page_us() -> f64 {
    const BYTES: usize = 16 << 20;
    const PAGE: usize = 4096;
    let started = Instant::now();
    let mut memory = vec![0u8; BYTES];
    for page in memory.chunks_mut(PAGE) {
        page[0] = 1;
    }
    std::hint::black_box(&memory);
    started.elapsed().as_secs_f64() * 1e6 / (BYTES / PAGE) as f64
}

/// The real daemon on a temporary folder with the `hashing` provider, killed when dropped.
pub struct BenchDaemon {
    pub child: Child,
    pub dir: tempfile::TempDir,
    pub socket: PathBuf,
}

impl BenchDaemon {
    /// Start it with `extra` TOML after the paths (an `[embedding]` table is added last,
    /// with `embedding` as its keys) and wait until it answers.
    pub fn start(extra: &str, embedding: &str) -> Self {
        Self::start_provider(extra, "hashing", embedding)
    }

    /// As [`Self::start`], with `provider` as `embedding.provider`.
    pub fn start_provider(extra: &str, provider: &str, embedding: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ingestd.toml");
        std::fs::write(
            &config,
            format!(
                "[paths]\ndrop_root = \"drop\"\nstorage_root = \"store\"\n\
                 database = \"db.sqlite\"\nsocket = \"s.sock\"\naudit_log = \"audit.jsonl\"\n\
                 {extra}\n[embedding]\nprovider = \"{provider}\"\n{embedding}"
            ),
        )
        .unwrap();
        // BENCH_DAEMON_LOG=FILE appends the daemon's debug log to FILE (how long each step
        // of a file's ingest took, among other things); without it the daemon is quiet.
        let (filter, stderr) = match std::env::var_os("BENCH_DAEMON_LOG") {
            Some(file) => {
                let log = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(file)
                    .expect("BENCH_DAEMON_LOG: a file to append to");
                ("ingestd=debug", Stdio::from(log))
            }
            None => ("warn", Stdio::null()),
        };
        let child = Command::new(env!("CARGO_BIN_EXE_ingestd"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", filter)
            .stderr(stderr)
            .spawn()
            .unwrap();
        let socket = dir.path().join("s.sock");
        let deadline = Instant::now() + Duration::from_secs(300);
        while Client::connect(&socket).is_err() {
            assert!(Instant::now() < deadline, "the daemon did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        Self { child, dir, socket }
    }

    pub fn client(&self) -> Client {
        Client::connect(&self.socket).unwrap()
    }

    pub fn drop_root(&self) -> PathBuf {
        self.dir.path().join("drop")
    }

    /// Put `content` into group `group` as `name`, all at once (written aside, renamed in).
    pub fn drop_file(&self, group: &str, name: &str, content: &[u8]) {
        let dir = self.drop_root().join(group);
        std::fs::create_dir_all(&dir).unwrap();
        let aside = dir.join(format!(".{name}.part"));
        std::fs::write(&aside, content).unwrap();
        std::fs::rename(&aside, dir.join(name)).unwrap();
    }

    pub fn path(&self, relative: &str) -> PathBuf {
        Path::new(self.dir.path()).join(relative)
    }
}

impl Drop for BenchDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every job the daemon knows (every page, oldest first).
pub fn jobs(client: &mut Client) -> Vec<JobInfo> {
    let mut all = Vec::new();
    let mut before = None;
    loop {
        let page: Vec<JobInfo> = client
            .call(&ingestd::protocol::cmd::Jobs {
                group: None,
                all: true,
                state: None,
                ids: Vec::new(),
                limit: None,
                before,
            })
            .unwrap();
        let Some(first) = page.first() else {
            break;
        };
        before = Some(first.id);
        all.splice(0..0, page);
    }
    all
}

/// Wait for the job of `source` `version` to end; its start-to-swap time in seconds.
pub fn job_secs(client: &mut Client, source: &str, version: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(3600);
    let job = loop {
        if let Some(job) = jobs(client)
            .into_iter()
            .find(|j| j.source == source && j.version == version && j.state.is_final())
        {
            break job;
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
    (ms(&job.finished_at) - ms(&job.started_at)) as f64 / 1000.0
}

/// The release `ingestctl`, built if needed: benches time it as a user runs it.
pub fn ingestctl() -> PathBuf {
    escargot::CargoBuild::new()
        .package("ingestctl")
        .bin("ingestctl")
        .release()
        .run()
        .expect("build ingestctl")
        .path()
        .to_path_buf()
}

/// Run `ingestctl --socket SOCKET ARGS…` as a whole process; it must succeed.
pub fn ctl(ctl: &Path, socket: &Path, args: &[&str]) {
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

/// Milliseconds of `runs` group switches to `group` (`use`, `ls`, `prefs`: three processes),
/// each after an untimed `use away`, so that each one really changes the group.
pub fn switches(ctl_path: &Path, socket: &Path, group: &str, away: &str, runs: usize) -> Vec<f64> {
    (0..runs)
        .map(|_| {
            ctl(ctl_path, socket, &["use", away]);
            let t = Instant::now();
            ctl(ctl_path, socket, &["use", group]);
            ctl(ctl_path, socket, &["ls"]);
            ctl(ctl_path, socket, &["prefs"]);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect()
}

/// The value at fraction `p` (0 … 1) of `ms`, sorted first.
pub fn percentile(mut ms: Vec<f64>, p: f64) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[((ms.len() as f64 - 1.0) * p).round() as usize]
}

/// The machine's load averages over 1, 5 and 15 minutes.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// When the `accepted` audit record of `source` was committed, among the records of the audit
/// log `audit` after its first `seen`.
pub fn wait_accepted(audit: &Path, seen: usize, source: &str) -> jiff::Timestamp {
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

/// The fetched all-MiniLM-L6-v2 folder: `MINILM_TEST_MODEL_DIR`, else `data/models/…` under
/// the crate root. `None`, after saying how to fetch it, when it holds no model.
pub fn minilm_model_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("MINILM_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/all-MiniLM-L6-v2")
        });
    if dir.join("model.safetensors").is_file() {
        return Some(dir);
    }
    println!(
        "no all-MiniLM-L6-v2 in {}; fetch it with\n  cargo run --bin ingestd -- model fetch \
         --config config/ingestd.toml\nor point MINILM_TEST_MODEL_DIR at a model folder",
        dir.display()
    );
    None
}
