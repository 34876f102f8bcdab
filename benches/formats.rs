//! Format reader benchmarks (DESIGN §10), run with `cargo bench --bench formats`; prints
//! medians of 5 runs and ratios against the crates' own read times.
//!
//! 1. a deterministic ~10 MB XLSX: our `extract` against calamine's own read (`worksheet_range`
//!    of the first sheet); budget 1.2×;
//! 2. a "50 MB-equivalent" Parquet file (the rows of a 50 MB CSV, written by arrow-rs with
//!    snappy): our `extract` against arrow-rs reading every batch; budget 1.5×;
//! 3. peak RSS (VmHWM) of one `extract` of each, each in a fresh process;
//! 4. the same for `stream_rows` of each (every row read and its values rendered as text);
//! 5. `accept`: drop-to-accepted through the real daemon (hashing provider) of a 50 MB CSV,
//!    the XLSX and the Parquet file, from the rename into the group folder to the commit of
//!    the `accepted` audit record, minus `settle_ms`, against each library's own reader run as
//!    a whole process on the same file in the same round (the csv crate's `StringRecord`
//!    loop, calamine, arrow-rs). Each round drops new sources and waits for their embedding,
//!    so the catalog grows by some 1.3 million vectors a round: later rounds show whether
//!    ingest stays flat as the catalog grows (`FORMATS_BENCH_ROUNDS`, default 3). Each file's
//!    figures end with what a fresh page of memory cost right after it
//!    (`common::fresh_page_us`): the copy into the daemon's `.tmp` folder takes one per 4 KiB.
//!
//! `cargo bench --bench formats -- accept` runs part 5 alone, `-- reads` parts 1–4. With
//! `BENCH_DAEMON_LOG=FILE` the daemon's debug log goes to FILE: one line per accept gives the
//! time of each step, and one per WAL checkpoint its time (docs/architecture.md, "Validate,
//! store or reject", says what each field covers). Not a test: nothing here asserts a time.
//! The figures go into the issue notes.

use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use calamine::{Reader, Xlsx};
use ingestd::ingest::formats::{self, Format, ReadOptions};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

mod common;

use common::median;

const RUNS: usize = 5;
/// Rows of the XLSX; with the columns below the file is about 10 MB.
const XLSX_ROWS: u32 = 203_000;
/// The CSV the Parquet file stands in for.
const CSV_BYTES: usize = 50_000_000;
/// Set in a child process: which read to run once and report VmHWM for.
const CHILD: &str = "FORMATS_BENCH_CHILD";
/// The child's job that prints `common::fresh_page_us` in place of a read.
const FRESH_PAGES: &str = "fresh-pages";

const CITIES: &[&str] = &[
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Quito",
    "Tromsø",
    "Reykjavík",
    "Dakar",
    "Perth",
    "Zürich",
];
const WORDS: &[&str] = &[
    "north", "south", "widget", "gadget", "invoice", "paid", "pending", "shipped", "returned",
    "alpha", "beta", "gamma", "order", "customer", "review", "delta",
];

/// One deterministic row: id, name, city, amount, day, note.
struct Row {
    id: i64,
    name: String,
    city: &'static str,
    amount: f64,
    day: String,
    note: String,
}

/// A small xorshift generator: the same rows on every machine and every run.
struct Rows(u64);

impl Rows {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn row(&mut self, id: i64) -> Row {
        let mut pick = |n: usize| (self.next_u64() % n as u64) as usize;
        let name = format!("{} {}", WORDS[pick(WORDS.len())], pick(100_000));
        let city = CITIES[pick(CITIES.len())];
        let amount = pick(1_000_000) as f64 / 100.0;
        let day = format!("2024-{:02}-{:02}", 1 + pick(12), 1 + pick(28));
        let note = (0..8)
            .map(|_| WORDS[pick(WORDS.len())])
            .collect::<Vec<_>>()
            .join(" ");
        Row {
            id,
            name,
            city,
            amount,
            day,
            note,
        }
    }
}

fn csv_len(row: &Row) -> usize {
    format!(
        "{},{},{},{},{},{}\n",
        row.id, row.name, row.city, row.amount, row.day, row.note
    )
    .len()
}

fn xlsx_file(dir: &Path) -> PathBuf {
    let path = dir.join("bench-10mb.xlsx");
    if path.exists() {
        return path;
    }
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (column, name) in ["id", "name", "city", "amount", "day", "note"]
        .iter()
        .enumerate()
    {
        sheet.write_string(0, column as u16, *name).expect("header");
    }
    let mut rows = Rows(0x9E37_79B9_7F4A_7C15);
    for r in 1..=XLSX_ROWS {
        let row = rows.row(i64::from(r));
        sheet.write_number(r, 0, row.id as f64).expect("cell");
        sheet.write_string(r, 1, &row.name).expect("cell");
        sheet.write_string(r, 2, row.city).expect("cell");
        sheet.write_number(r, 3, row.amount).expect("cell");
        sheet.write_string(r, 4, &row.day).expect("cell");
        sheet.write_string(r, 5, &row.note).expect("cell");
    }
    book.save(&path).expect("save xlsx");
    path
}

fn parquet_file(dir: &Path) -> (PathBuf, usize) {
    let path = dir.join("bench-50mb-csv.parquet");
    let mut generator = Rows(0x2545_F491_4F6C_DD1D);
    let mut rows = Vec::new();
    let mut bytes = 0;
    while bytes < CSV_BYTES {
        let row = generator.row(rows.len() as i64 + 1);
        bytes += csv_len(&row);
        rows.push(row);
    }
    let count = rows.len();
    if path.exists() {
        return (path, count);
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
        ),
        (
            "name",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.name.as_str()),
            )),
        ),
        (
            "city",
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.city))),
        ),
        (
            "amount",
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.amount),
            )),
        ),
        (
            "day",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.day.as_str()),
            )),
        ),
        (
            "note",
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.note.as_str()),
            )),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).expect("batch");
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let file = File::create(&path).expect("create parquet");
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    (path, count)
}

/// The reads being compared; each returns a row count so nothing is optimised away.
fn run(read: &str, path: &Path) -> u64 {
    match read {
        "extract-xlsx" => {
            formats::extract(Format::Xlsx, path, &ReadOptions::default())
                .expect("extract xlsx")
                .rows
        }
        "calamine" => {
            let file = BufReader::new(File::open(path).expect("open"));
            let mut book: Xlsx<_> = Xlsx::new(file).expect("calamine open");
            let first = book.sheet_names()[0].clone();
            book.worksheet_range(&first).expect("range").height() as u64
        }
        "extract-parquet" => {
            formats::extract(Format::Parquet, path, &ReadOptions::default())
                .expect("extract parquet")
                .rows
        }
        "csv" => {
            let mut reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_path(path)
                .expect("open csv");
            let mut record = csv::StringRecord::new();
            let mut rows = 0;
            while reader.read_record(&mut record).expect("csv record") {
                rows += 1;
            }
            rows
        }
        "rows-xlsx" => rows_of(Format::Xlsx, path),
        "rows-parquet" => rows_of(Format::Parquet, path),
        "arrow" => {
            let file = File::open(path).expect("open");
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .expect("builder")
                .build()
                .expect("reader");
            reader.map(|b| b.expect("batch").num_rows() as u64).sum()
        }
        other => panic!("unknown read {other}"),
    }
}

/// Every row of `path`, streamed; the values' total length keeps the rendering from being
/// optimised away.
fn rows_of(format: Format, path: &Path) -> u64 {
    let mut bytes = 0u64;
    formats::stream_rows(format, path, &ReadOptions::default(), &mut |event| {
        if let formats::RowEvent::Row(row) = event {
            bytes += row.iter().map(|v| v.len() as u64).sum::<u64>();
        }
        std::ops::ControlFlow::Continue(())
    })
    .expect("stream rows");
    std::hint::black_box(bytes)
}

fn median_seconds(read: &str, path: &Path) -> f64 {
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let started = Instant::now();
            std::hint::black_box(run(read, path));
            started.elapsed().as_secs_f64()
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

/// VmHWM of a fresh process that runs `read` once, in MB.
fn peak_rss_mb(read: &str, path: &Path) -> f64 {
    child(read, path).0
}

/// Run `read` once in a fresh process: its VmHWM in MB, and how long the whole process took
/// from spawn to exit, in seconds.
fn child(read: &str, path: &Path) -> (f64, f64) {
    let exe = std::env::current_exe().expect("current exe");
    let started = Instant::now();
    let output = std::process::Command::new(exe)
        .env(CHILD, format!("{read}:{}", path.display()))
        .output()
        .expect("run child");
    let took = started.elapsed().as_secs_f64();
    assert!(output.status.success(), "{read} failed");
    let text = String::from_utf8_lossy(&output.stdout);
    (text.trim().parse::<f64>().unwrap_or(f64::NAN), took)
}

/// Part 5: drop-to-accepted through the daemon against the readers as whole processes.
fn accept(dir: &Path, xlsx: &Path, parquet: &Path) {
    const SETTLE_MS: f64 = 100.0;
    let rounds: usize = std::env::var("FORMATS_BENCH_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("FORMATS_BENCH_ROUNDS: a number"))
        .unwrap_or(3);
    let daemon = common::BenchDaemon::start("[ingest]\nsettle_ms = 100\n", "");
    let audit = daemon.path("audit.jsonl");
    let database = daemon.path("db.sqlite");
    let csv = dir.join("bench-50mb.csv");
    // Just under the 50 MB limit: the largest CSV a drop may be.
    std::fs::write(&csv, common::csv_of_bytes(49_900_000, 7)).expect("write csv");
    let files = [
        ("CSV", "csv", &csv, "csv"),
        ("XLSX", "xlsx", &xlsx.to_path_buf(), "calamine"),
        ("Parquet", "parquet", &parquet.to_path_buf(), "arrow"),
    ];
    let mut figures: Vec<Vec<(f64, f64)>> = vec![Vec::new(); files.len()];
    for round in 0..rounds {
        let size_gb = std::fs::metadata(&database).map_or(0.0, |m| m.len() as f64 / 1e9);
        print!("round {}: catalog {size_gb:.1} GB;", round + 1);
        for (at, (name, extension, path, yardstick)) in files.iter().enumerate() {
            // A new source each round, so its vectors add to the catalog's.
            let source = format!("r{round}-{extension}.{extension}");
            let group = daemon.drop_root().join("g");
            std::fs::create_dir_all(&group).expect("group folder");
            let aside = group.join(format!(".{source}.part"));
            std::fs::copy(path, &aside).expect("copy aside");
            if std::env::var_os("FORMATS_BENCH_SYNC").is_some() {
                // Let the kernel finish writing what the embedding left dirty first.
                std::process::Command::new("sync").status().expect("sync");
            }
            // Memory the kernel has yet to write back to disk.
            print!(
                " [dirty {:.0} MB]",
                common::proc_mb("/proc/meminfo", "Dirty:")
            );
            let seen = std::fs::read_to_string(&audit).map_or(0, |a| a.lines().count());
            let dropped = jiff::Timestamp::now();
            std::fs::rename(&aside, group.join(&source)).expect("rename in");
            let accepted = common::wait_accepted(&audit, seen, &source);
            let ms = accepted.duration_since(dropped).as_secs_f64() * 1000.0 - SETTLE_MS;
            let (_, reader) = child(yardstick, path);
            let reader_ms = reader * 1000.0;
            // After both were timed, so the probe's pages (freed again) help neither.
            let (fresh, _) = child(FRESH_PAGES, path);
            print!(
                " {name} {ms:.0} ms ({yardstick} {reader_ms:.0} ms, {:.2}×) [fresh page {fresh:.1} µs]",
                ms / reader_ms
            );
            figures[at].push((ms, reader_ms));
            wait_idle(&daemon);
        }
        println!();
    }
    for ((name, _, path, yardstick), runs) in files.iter().zip(figures) {
        let ours = median(runs.iter().map(|r| r.0).collect());
        let theirs = median(runs.iter().map(|r| r.1).collect());
        let mb = std::fs::metadata(path).map_or(0.0, |m| m.len() as f64 / 1e6);
        println!(
            "{name} ({mb:.1} MB): drop-to-accepted median {ours:.0} ms ({:.0} MB/s), {yardstick} \
             as a whole process {theirs:.0} ms: {:.2}× over {} rounds",
            mb / ours * 1000.0,
            ours / theirs,
            runs.len()
        );
    }
}

/// Wait until no job is queued or processing.
fn wait_idle(daemon: &common::BenchDaemon) {
    let mut client = daemon.client();
    let deadline = Instant::now() + std::time::Duration::from_secs(3600);
    loop {
        let status: ingestd::protocol::StatusInfo = client
            .call(&ingestd::protocol::cmd::Status {})
            .expect("status");
        if status.queue.queued == 0 && status.queue.processing == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the jobs did not end");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn main() {
    if let Ok(job) = std::env::var(CHILD) {
        let (read, path) = job.split_once(':').expect("read:path");
        if read == FRESH_PAGES {
            println!("{}", common::fresh_page_us());
            return;
        }
        std::hint::black_box(run(read, Path::new(path)));
        println!("{}", common::proc_mb("/proc/self/status", "VmHWM:"));
        return;
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("formats-bench");
    std::fs::create_dir_all(&dir).expect("bench folder");
    let xlsx = xlsx_file(&dir);
    let (parquet, rows) = parquet_file(&dir);
    let wanted = common::wanted();
    if wanted("accept") {
        accept(&dir, &xlsx, &parquet);
    }
    if !wanted("reads") {
        return;
    }
    let size = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.len() as f64 / 1e6)
            .unwrap_or(0.0)
    };
    println!(
        "files: {:.1} MB XLSX ({XLSX_ROWS} rows), {:.1} MB Parquet ({rows} rows of a {:.0} MB CSV)",
        size(&xlsx),
        size(&parquet),
        CSV_BYTES as f64 / 1e6
    );
    let pairs = [
        ("XLSX", "extract-xlsx", "calamine", &xlsx, 1.2),
        ("Parquet", "extract-parquet", "arrow", &parquet, 1.5),
    ];
    for (name, ours, theirs, path, budget) in pairs {
        let (mine, base) = (median_seconds(ours, path), median_seconds(theirs, path));
        let ratio = mine / base;
        println!(
            "{name}: extract {:.3} s, {theirs} {:.3} s, ratio {ratio:.2} (budget {budget}: {})",
            mine,
            base,
            if ratio <= budget { "within" } else { "OVER" }
        );
        println!(
            "{name}: peak RSS extract {:.1} MB, {theirs} {:.1} MB",
            peak_rss_mb(ours, path),
            peak_rss_mb(theirs, path)
        );
    }
    for (name, read, path) in [
        ("XLSX", "rows-xlsx", &xlsx),
        ("Parquet", "rows-parquet", &parquet),
    ] {
        println!(
            "{name}: stream_rows {:.3} s, peak RSS {:.1} MB",
            median_seconds(read, path),
            peak_rss_mb(read, path)
        );
    }
}
