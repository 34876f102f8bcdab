//! In-process MiniLM benchmark (DESIGN §10), run with `cargo bench --bench embed`: rows/s of
//! our all-MiniLM-L6-v2 provider on ~20-word rows, beside sentence-transformers on PyTorch
//! with the same rows, threads and batch size.
//!
//! For threads in {1, 2} a fresh process loads the model once and, for batch in {1, 32},
//! embeds every row (a warm-up first, then the median of 3 runs), reporting rows/s, CPU time
//! per wall second (how many cores the run really used) and the process's peak RSS (VmHWM,
//! which only grows, so the batch-32 figure covers the whole process so far). When
//! `YARDSTICK_PYTHON` names a python with sentence-transformers, `yardstick/
//! minilm_sentence_transformers.py` runs right after each of our cases on the same rows file,
//! so both share the machine's noise, and the ratio ours/theirs is printed (budget: ≥ 1.3); it
//! also reports the cosine between its vectors and ours for the first rows.
//!
//! Two sets of rows, each measured as above: synthetic sales rows, and rows of four real CSV
//! files of the shared fixture corpus (world cities, multilingual text, conflict reports with
//! long fields, a government spend file), rendered as the daemon renders them with default
//! preferences. The corpus is `EMBED_BENCH_CORPUS`, else `../shared/fixtures/corpus`; without
//! it only the synthetic rows run.
//!
//! Rows per set: `EMBED_BENCH_ROWS` (default 512). Model folder: `MINILM_TEST_MODEL_DIR`, else
//! `data/models/all-MiniLM-L6-v2` under the crate root; without it the bench says how to fetch
//! it and exits 0. Not a test: nothing here asserts a time.

mod common;

use ingestd::embed::Provider;
use ingestd::embed::minilm::MiniLm;
use ingestd::embed::render::Renderer;
use ingestd::protocol::PrefsInfo;
use nix::sys::resource::{UsageWho, getrusage};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const RUNS: usize = 3;
const THREADS: [usize; 2] = [1, 2];
const BATCHES: [usize; 2] = [1, 32];
/// Rows embedded before timing, at the case's batch size, by both sides.
const WARM_UP_ROWS: usize = 32;
/// Rows whose vectors are handed to the yardstick for the cosine check.
const COMPARED_ROWS: usize = 8;
/// Set in a child process: the thread count it measures.
const CHILD: &str = "EMBED_BENCH_CHILD";
/// Set in a child process: the rows file and the model folder, one per line.
const CHILD_FILES: &str = "EMBED_BENCH_FILES";
const YARDSTICK: &str = "benches/yardstick/minilm_sentence_transformers.py";
/// Ours over theirs, rows/s at the same threads and batch (DESIGN §10).
const BUDGET: f64 = 1.3;
/// Real CSV files of the corpus whose rows make the second set, an equal share from each.
const CORPUS_FILES: [&str; 4] = [
    "rust-csv/examples/data/bench/worldcitiespop.csv",
    "node-csvtojson/test/data/large-utf8.csv",
    "frictionless-py/data/issue-305.csv",
    "qsv/resources/test/spendover25kdownloadSep.csv",
];

const REGIONS: &[&str] = &["north", "south", "east", "west", "central"];
const PRODUCTS: &[&str] = &["widget", "gadget", "sprocket", "gizmo", "bracket", "valve"];
const WORDS: &[&str] = &[
    "customer",
    "asked",
    "for",
    "a",
    "refund",
    "after",
    "late",
    "delivery",
    "invoice",
    "paid",
    "in",
    "full",
    "pending",
    "review",
    "shipped",
    "twice",
    "returned",
    "damaged",
    "order",
    "box",
    "arrived",
    "early",
    "missing",
    "parts",
    "replacement",
    "sent",
    "on",
    "monday",
];

/// `n` deterministic rows rendered like a table row (`file | group | context | col: value`),
/// about 20 words each, from a small xorshift generator.
fn rows(n: usize) -> Vec<String> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = |len: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % len as u64) as usize
    };
    (0..n)
        .map(|_| {
            let quarter = 1 + pick(4);
            let region = REGIONS[pick(REGIONS.len())];
            let product = PRODUCTS[pick(PRODUCTS.len())];
            let amount = format!("{}.{:02}", pick(10_000), pick(100));
            let date = format!("2024-{:02}-{:02}", 1 + pick(12), 1 + pick(28));
            let comment: Vec<&str> = (0..7 + pick(3)).map(|_| WORDS[pick(WORDS.len())]).collect();
            format!(
                "q{quarter}.csv | sales | region: {region} | product: {product}; amount: {amount}; \
                 date: {date}; comment: {}",
                comment.join(" ")
            )
        })
        .collect()
}

/// `n` rows of [`CORPUS_FILES`] under `corpus`, rendered with default preferences, one line
/// each; `None` when a file cannot be read.
fn corpus_rows(corpus: &Path, n: usize) -> Option<Vec<String>> {
    let share = n.div_ceil(CORPUS_FILES.len());
    let prefs = PrefsInfo {
        group: "bench".into(),
        ..PrefsInfo::default()
    };
    let mut rows = Vec::with_capacity(n);
    for file in CORPUS_FILES {
        let path = corpus.join(file);
        let mut reader = csv::ReaderBuilder::new()
            .flexible(true)
            .from_path(&path)
            .ok()?;
        let header: Vec<String> = reader
            .headers()
            .ok()?
            .iter()
            .map(|h| h.trim_start_matches('\u{feff}').trim().to_string())
            .collect();
        let name = path.file_name()?.to_string_lossy();
        let renderer = Renderer::new(&name, &prefs, &header);
        for record in reader.records().take(share) {
            let cells: Vec<String> = record.ok()?.iter().map(str::to_string).collect();
            // One text a line in the rows file: a cell's line breaks become spaces.
            rows.push(renderer.render(&cells).replace(['\r', '\n'], " "));
        }
    }
    rows.truncate(n);
    Some(rows)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn vm_hwm_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// User + system CPU time of this process so far.
fn cpu_time() -> Duration {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let time =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    time(usage.user_time()) + time(usage.system_time())
}

fn embed_all(model: &MiniLm, rows: &[String], batch: usize) -> Vec<Vec<f32>> {
    let mut vectors = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch) {
        vectors.extend(model.embed(chunk).expect("embed"));
    }
    vectors
}

/// What the yardstick printed, or why there is nothing.
struct Theirs {
    rows_per_s: f64,
    cpu_per_wall: f64,
    peak_rss_mb: f64,
    cosine_min: Option<f64>,
}

fn yardstick(
    python: &str,
    files: (&Path, &Path, &Path),
    threads: usize,
    batch: usize,
) -> Result<Theirs, String> {
    let (rows, model_dir, ours) = files;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(YARDSTICK);
    let n = threads.to_string();
    let output = Command::new(python)
        .arg(&script)
        .arg("--model-dir")
        .arg(model_dir)
        .arg("--rows")
        .arg(rows)
        .args(["--threads", &n, "--batch", &batch.to_string()])
        .args([
            "--runs",
            &RUNS.to_string(),
            "--warm-up",
            &WARM_UP_ROWS.to_string(),
        ])
        .arg("--ours")
        .arg(ours)
        // Tokenizers and BLAS libraries start their own pools; hold them to the same count.
        .env("RAYON_NUM_THREADS", &n)
        .env("OMP_NUM_THREADS", &n)
        .env("MKL_NUM_THREADS", &n)
        .output()
        .map_err(|e| format!("cannot run {python}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        return Err(format!(
            "yardstick failed ({}): {}",
            output.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        ));
    };
    let value: serde_json::Value =
        serde_json::from_str(line).map_err(|e| format!("yardstick printed {line:?}: {e}"))?;
    let number = |key: &str| value.get(key).and_then(serde_json::Value::as_f64);
    Ok(Theirs {
        rows_per_s: number("rows_per_s").ok_or("yardstick gave no rows_per_s")?,
        cpu_per_wall: number("cpu_per_wall").unwrap_or(f64::NAN),
        peak_rss_mb: number("peak_rss_mb").unwrap_or(f64::NAN),
        cosine_min: number("cosine_min"),
    })
}

/// One thread count, in its own process so VmHWM is this model's alone.
fn child(threads: usize, rows_file: &Path, model_dir: &Path) {
    let text = std::fs::read_to_string(rows_file).expect("rows file");
    let rows: Vec<String> = text.lines().map(str::to_string).collect();
    let started = Instant::now();
    let model = MiniLm::load(model_dir, Some(threads)).expect("load MiniLM");
    println!(
        "threads {threads}: load {:.2} s, peak RSS after load {:.1} MB",
        started.elapsed().as_secs_f64(),
        vm_hwm_mb()
    );
    let ours_file = rows_file.with_file_name("ours.json");
    let python = std::env::var("YARDSTICK_PYTHON")
        .ok()
        .filter(|p| !p.is_empty());
    for batch in BATCHES {
        std::hint::black_box(embed_all(
            &model,
            &rows[..WARM_UP_ROWS.min(rows.len())],
            batch,
        ));
        let mut times = Vec::with_capacity(RUNS);
        let mut cpu = Duration::ZERO;
        let mut wall = Duration::ZERO;
        let mut vectors = Vec::new();
        for _ in 0..RUNS {
            let (cpu_before, started) = (cpu_time(), Instant::now());
            vectors = std::hint::black_box(embed_all(&model, &rows, batch));
            let elapsed = started.elapsed();
            cpu += cpu_time() - cpu_before;
            wall += elapsed;
            times.push(elapsed.as_secs_f64());
        }
        let ours = rows.len() as f64 / median(times);
        let cpu_per_wall = cpu.as_secs_f64() / wall.as_secs_f64();
        let rss = vm_hwm_mb();
        println!(
            "threads {threads} batch {batch:>2}: ours   {ours:>7.1} rows/s  (cpu/wall {cpu_per_wall:.2}, \
             peak RSS {rss:.1} MB)"
        );
        let Some(python) = &python else { continue };
        let first: Vec<&Vec<f32>> = vectors.iter().take(COMPARED_ROWS).collect();
        std::fs::write(&ours_file, serde_json::to_vec(&first).expect("json")).expect("ours.json");
        match yardstick(python, (rows_file, model_dir, &ours_file), threads, batch) {
            Ok(theirs) => println!(
                "threads {threads} batch {batch:>2}: theirs {:>7.1} rows/s  (cpu/wall {:.2}, \
                 peak RSS {:.1} MB, cosine to ours ≥ {})\n\
                 threads {threads} batch {batch:>2}: ratio ours/theirs {:.2} (budget ≥ {BUDGET}: {})",
                theirs.rows_per_s,
                theirs.cpu_per_wall,
                theirs.peak_rss_mb,
                theirs
                    .cosine_min
                    .map_or_else(|| "n/a".to_string(), |c| format!("{c:.6}")),
                ours / theirs.rows_per_s,
                if ours >= BUDGET * theirs.rows_per_s {
                    "within"
                } else {
                    "UNDER"
                }
            ),
            Err(why) => println!("threads {threads} batch {batch:>2}: theirs n/a ({why})"),
        }
        std::io::stdout().flush().ok();
    }
}

fn main() {
    if let Ok(threads) = std::env::var(CHILD) {
        let files = std::env::var(CHILD_FILES).expect("files");
        let (rows, model) = files.split_once('\n').expect("rows\\nmodel");
        child(
            threads.parse().expect("thread count"),
            Path::new(rows),
            Path::new(model),
        );
        return;
    }
    let Some(model_dir) = common::minilm_model_dir() else {
        return;
    };
    let n: usize = std::env::var("EMBED_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(512);
    let corpus = std::env::var_os("EMBED_BENCH_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/fixtures/corpus"));
    let mut sets = vec![("synthetic sales rows", rows(n))];
    match corpus_rows(&corpus, n) {
        Some(rows) => sets.push(("corpus rows", rows)),
        None => println!(
            "corpus rows: off ({} lacks the files; set EMBED_BENCH_CORPUS)",
            corpus.display()
        ),
    }
    match std::env::var("YARDSTICK_PYTHON") {
        Ok(python) if !python.is_empty() => println!("yardstick: {python} {YARDSTICK}"),
        _ => {
            println!("yardstick: off (set YARDSTICK_PYTHON to a python with sentence-transformers)")
        }
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, rows) in sets {
        let rows_file = dir.path().join("rows.txt");
        std::fs::write(&rows_file, rows.join("\n") + "\n").expect("rows file");
        let words = rows
            .iter()
            .map(|r| r.split_whitespace().count())
            .sum::<usize>() as f64;
        println!(
            "\n{name}: {} rows, {:.1} words each on average, e.g. {:?}",
            rows.len(),
            words / rows.len() as f64,
            rows[0]
        );
        for threads in THREADS {
            let status = Command::new(&exe)
                .env(CHILD, threads.to_string())
                .env(
                    CHILD_FILES,
                    format!("{}\n{}", rows_file.display(), model_dir.display()),
                )
                .status()
                .expect("run child");
            if !status.success() {
                println!("threads {threads}: the measuring process failed ({status})");
            }
        }
    }
}
