//! How often our column names agree with a person's reading of the fixture corpus.
//!
//! `tests/data/expected_columns.json` was written by reading each file by eye: which row is the
//! header, then its cells under the naming rules of `docs/formats.md`. It lists every corpus
//! file whose header is not its first row and a sample of plain ones. The readers must agree on
//! at least [`REQUIRED_AGREEMENT`] of them exactly, and every file whose header is not on its
//! first row (what the header search is for) exactly; every disagreement is printed with its
//! file, so a change that fixes one file and breaks another shows both. Without the corpus the
//! test says SKIPPED out loud and passes, since not every checkout has it.

use super::{Format, ReadOptions, corpus, extract};
use std::path::Path;

const REQUIRED_AGREEMENT: f64 = 0.95;

#[derive(serde::Deserialize)]
struct Expectations {
    files: Vec<Expected>,
}

#[derive(serde::Deserialize)]
struct Expected {
    path: String,
    #[serde(default)]
    sheet: Option<String>,
    header: String,
    columns: Vec<String>,
}

#[test]
fn column_names_agree_with_a_person_reading_the_corpus() {
    let Some(dir) = corpus::dir() else {
        println!("SKIPPED: the fixture corpus (../shared/fixtures/corpus) is missing");
        eprintln!("SKIPPED: the fixture corpus (../shared/fixtures/corpus) is missing");
        return;
    };
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/expected_columns.json");
    let text = std::fs::read_to_string(&file).expect("read expected_columns.json");
    let expectations: Expectations = serde_json::from_str(&text).expect("parse");
    let mut disagreements = Vec::new();
    // Disagreements on files whose header is not on the first row: none is allowed.
    let mut below_first = Vec::new();
    for expected in &expectations.files {
        let path = dir.join(&expected.path);
        let format = path
            .extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension)
            .unwrap_or_else(|| panic!("{}: not a format we read", expected.path));
        let options = ReadOptions {
            sheet: expected.sheet.clone(),
            ..ReadOptions::default()
        };
        let what = match &expected.sheet {
            Some(sheet) => format!("{} (sheet '{sheet}')", expected.path),
            None => expected.path.clone(),
        };
        let disagreement = match extract(format, &path, &options) {
            Err(rejection) => format!("{what}: rejected: {rejection}"),
            Ok(got) if got.columns != expected.columns => format!(
                "{what}: a person reads the header on {}: {:?}\n    we read {:?} ({})",
                expected.header,
                expected.columns,
                got.columns,
                got.reading.header.as_deref().unwrap_or("-")
            ),
            Ok(_) => continue,
        };
        if expected.header != "row 1" {
            below_first.push(disagreement.clone());
        }
        disagreements.push(disagreement);
    }
    let total = expectations.files.len();
    let agreed = total - disagreements.len();
    let share = agreed as f64 / total as f64;
    println!(
        "{agreed} of {total} files agree ({:.1} %); disagreements:\n{}",
        share * 100.0,
        disagreements.join("\n")
    );
    assert!(total >= 50, "only {total} files are curated");
    assert!(
        below_first.is_empty(),
        "{} files whose header is not on their first row disagree:\n{}",
        below_first.len(),
        below_first.join("\n")
    );
    assert!(
        share >= REQUIRED_AGREEMENT,
        "{agreed} of {total} files agree ({:.1} %, at least {:.0} % needed):\n{}",
        share * 100.0,
        REQUIRED_AGREEMENT * 100.0,
        disagreements.join("\n")
    );
}
