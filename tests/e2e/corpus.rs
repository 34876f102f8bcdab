//! The shared fixture corpus (`../shared/fixtures/corpus/`, listed in its `MANIFEST.tsv`):
//! real files from the test suites of other readers, every one dropped into one running
//! daemon. None may crash or wedge it, each must end accepted or rejected with a reason, every
//! disguised file (`_renamed/`) must be rejected, and the daemon's own memory must stay small
//! because it never parses a file itself.
//!
//! Column names are asserted for CSV and TSV files here; the spreadsheet and Parquet readers'
//! own tests assert theirs.

use crate::helper::{self, Daemon, wait_for};
use crate::hostile::{parse_workers_of, peak_rss_mb};
use ingestd::protocol::{SourceSummary, Status};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Groups the files are spread over, and batches they are dropped in.
const GROUPS: usize = 4;
const BATCHES: usize = 4;

/// The daemon's peak RSS budget while it takes the whole corpus.
const MAX_DAEMON_RSS_MB: f64 = 150.0;

/// Columns our header rules give for a sample of the corpus's delimited files, each chosen
/// for the case its manifest note describes.
const EXPECTED_COLUMNS: &[(&str, &[&str])] = &[
    // Duplicates get the smallest free `_k`, never a name written in the same row.
    (
        "frictionless-py/data/duplicate-headers.csv",
        &["id", "name", "id_2", "age", "id_3"],
    ),
    (
        "duckdb/data/csv/auto/duplicate_header_collision.csv",
        &["a", "b", "a_2", "a_1"],
    ),
    // Blank header cells are skipped (a trailing comma, a cell of spaces).
    (
        "duckdb/data/csv/locations_header_trailing_comma.csv",
        &["id", "name", "lat", "lon"],
    ),
    ("duckdb/data/csv/headers/empty_4.csv", &["a", "b", "c", "e"]),
    // Names are trimmed, inner text kept as written.
    (
        "duckdb/data/csv/auto/normalize_names_6.csv",
        &["#  Aₐₓ #", "ᴴᵉᴸᴸᵒ   ᵂᵒᴿᴸᵈ", "Qty (m²)"],
    ),
    (
        "duckdb/data/csv/double_quoted_header.csv",
        &["foo \"bar", "name"],
    ),
    // Title rows above the header are skipped.
    (
        "frictionless-py/data/skip-rows-before-headers.csv",
        &["id", "name"],
    ),
    (
        "qsv/resources/test/snifftest-flexible.csv",
        &["h1", "h2", "h3", "h4"],
    ),
    // Encodings: BOMs, UTF-16 both ways, UTF-32, and the single-byte fallback.
    ("frictionless-py/data/bom.csv", &["id", "name"]),
    ("csvkit/examples/test_utf16_little.csv", &["a", "b", "c"]),
    ("csvkit/examples/test_utf16_big.csv", &["a", "b", "c"]),
    (
        "phpspreadsheet/tests/data/Reader/CSV/premiere.utf32lebom.csv",
        &["première", "second", "troisième"],
    ),
    (
        "phpspreadsheet/tests/data/Reader/CSV/premiere.win1252.csv",
        &["première", "second", "troisième"],
    ),
    ("frictionless-py/data/latin1.csv", &["id", "name"]),
    // Delimiters and line endings.
    (
        "phpspreadsheet/tests/data/Reader/CSV/semicolon_separated.csv",
        &["This", "Are", "Headers"],
    ),
    ("readr/tests/testthat/fixtures/eol-cr.csv", &["x", "y"]),
    ("csv-spectrum/csvs/newlines_crlf.csv", &["a", "b", "c"]),
    ("csv-spectrum/csvs/quotes_and_newlines.csv", &["a", "b"]),
    (
        "duckdb/data/csv/auto/titlebasicsdebug.tsv",
        &[
            "tconst",
            "titleType",
            "primaryTitle",
            "originalTitle",
            "isAdult",
            "startYear",
            "endYear",
            "runtimeMinutes",
            "genres",
        ],
    ),
    // Realistic data: 20,000 rows of world cities.
    (
        "rust-csv/examples/data/bench/worldcitiespop.csv",
        &[
            "Country",
            "City",
            "AccentCity",
            "Region",
            "Population",
            "Latitude",
            "Longitude",
        ],
    ),
];

/// One file of the corpus, as dropped.
struct Dropped {
    /// Path in the corpus, as the manifest writes it.
    path: String,
    group: String,
    /// Its name in the drop folder: numbered, so names are unique across the corpus.
    name: String,
}

/// The manifest's paths, or `None` when the corpus is not there.
fn manifest() -> Option<Vec<String>> {
    let text = std::fs::read_to_string(helper::corpus().join("MANIFEST.tsv")).ok()?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next()?.split('\t').collect();
    let column = header.iter().position(|h| *h == "path")?;
    Some(
        lines
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| l.split('\t').nth(column).map(str::to_string))
            .collect(),
    )
}

fn accepted(status: Status) -> bool {
    matches!(
        status,
        Status::Ready | Status::Queued | Status::Embedding | Status::Embedded
    )
}

/// Poll until every file of `batch` has left the in-flight states; fail naming the ones that
/// did not, after the helper's global timeout.
fn wait_batch(daemon: &Daemon, batch: &[Dropped]) -> Vec<SourceSummary> {
    let deadline = Instant::now() + helper::TIMEOUT;
    loop {
        let mut listed: HashMap<(String, String), SourceSummary> = HashMap::new();
        for group in (0..GROUPS).map(group_name) {
            for source in daemon.ls(Some(&group)) {
                listed.insert((source.group.clone(), source.name.clone()), source);
            }
        }
        let mut done = Vec::new();
        let mut waiting = Vec::new();
        for file in batch {
            match listed.remove(&(file.group.clone(), file.name.clone())) {
                Some(s) if !matches!(s.status, Status::Pending | Status::Validating) => {
                    done.push(s)
                }
                _ => waiting.push(format!("{}/{} ({})", file.group, file.name, file.path)),
            }
        }
        if waiting.is_empty() {
            return done;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {} files to be stored or rejected: {waiting:#?}",
            waiting.len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn group_name(index: usize) -> String {
    format!("corpus-{index}")
}

#[test]
fn every_corpus_file_is_read_or_rejected_and_the_daemon_stays_small() {
    let Some(paths) = manifest() else {
        helper::skip(&format!(
            "no fixture corpus at {}",
            helper::corpus().display()
        ));
        return;
    };
    let known: Vec<&str> = paths.iter().map(String::as_str).collect();
    for (path, _) in EXPECTED_COLUMNS {
        assert!(known.contains(path), "{path} is not in the manifest");
    }

    let daemon = Daemon::start();
    let pid = daemon.pid();
    let mut results: Vec<(Dropped, SourceSummary)> = Vec::new();
    let per_batch = paths.len().div_ceil(BATCHES);
    for (batch_index, batch_paths) in paths.chunks(per_batch).enumerate() {
        let mut batch = Vec::new();
        for (offset, path) in batch_paths.iter().enumerate() {
            let index = batch_index * per_batch + offset;
            let base = path.rsplit('/').next().unwrap_or(path);
            let file = Dropped {
                path: path.clone(),
                group: group_name(index % GROUPS),
                name: format!("{index:03}-{base}"),
            };
            let content = std::fs::read(helper::corpus().join(path))
                .unwrap_or_else(|e| panic!("{path} is in the manifest but unreadable: {e}"));
            daemon.drop_file(&file.group, &file.name, &content);
            batch.push(file);
        }
        let settled = wait_batch(&daemon, &batch);
        let peak = peak_rss_mb(pid);
        assert!(
            peak < MAX_DAEMON_RSS_MB,
            "daemon peak RSS {peak:.1} MB after batch {batch_index}"
        );
        for file in batch {
            let source = settled
                .iter()
                .find(|s| s.group == file.group && s.name == file.name)
                .cloned()
                .expect("settled above");
            results.push((file, source));
        }
    }

    let mut problems = Vec::new();
    for (file, source) in &results {
        let what = format!("{} ({}/{})", file.path, file.group, file.name);
        match source.status {
            Status::Invalid => {
                if source.reason.as_deref().is_none_or(|r| r.trim().is_empty()) {
                    problems.push(format!("{what}: rejected without a reason"));
                }
            }
            status if accepted(status) => {
                if file.path.starts_with("_renamed/") {
                    problems.push(format!("{what}: a disguised file was accepted"));
                }
            }
            status => problems.push(format!("{what}: ended {status}")),
        }
        if let Some((_, columns)) = EXPECTED_COLUMNS.iter().find(|(p, _)| *p == file.path) {
            if !accepted(source.status) {
                problems.push(format!("{what}: rejected: {:?}", source.reason));
            } else if source.columns != *columns {
                problems.push(format!(
                    "{what}: columns {:?}, expected {columns:?}",
                    source.columns
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} corpus files went wrong:\n{}",
        problems.len(),
        results.len(),
        problems.join("\n")
    );

    // Nothing left running once the embedding jobs (which read rows through parse workers)
    // are done, the same daemon still answering, and it stayed small.
    wait_for("every embedding job to end", || {
        daemon
            .jobs()
            .iter()
            .all(|j| j.state.is_final())
            .then_some(())
    });
    assert!(parse_workers_of(pid).is_empty(), "parse workers left over");
    assert_eq!(daemon.status().pid, pid);
    let rejected = results
        .iter()
        .filter(|(_, s)| s.status == Status::Invalid)
        .count();
    eprintln!(
        "corpus: {} files, {} accepted, {rejected} rejected; daemon peak RSS {:.1} MB",
        results.len(),
        results.len() - rejected,
        peak_rss_mb(pid)
    );
}
