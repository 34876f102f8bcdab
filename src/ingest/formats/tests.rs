//! Row streams against `extract`: the same columns, the same number of rows, values in place.

use super::*;
use crate::ingest::formats::corpus;
use std::path::PathBuf;

/// Every event of a stream, as owned text: the columns, then the rows.
#[derive(Debug, Default)]
struct Collected {
    columns: Option<Vec<String>>,
    rows: Vec<Vec<String>>,
}

fn collect(format: Format, path: &Path, options: &ReadOptions) -> Result<Collected, Rejection> {
    let mut got = Collected::default();
    let visited = stream_rows(format, path, options, &mut |event| {
        match event {
            RowEvent::Columns(columns) => {
                assert!(got.columns.is_none(), "columns twice");
                got.columns = Some(columns.to_vec());
            }
            RowEvent::Row(row) => {
                assert!(got.columns.is_some(), "a row before the columns");
                got.rows.push(row.to_vec());
            }
        }
        ControlFlow::Continue(())
    })?;
    assert_eq!(visited, got.rows.len() as u64, "{}", path.display());
    Ok(got)
}

/// The data rows of CSV `bytes`, as embedding reads them.
pub(super) fn rows_of_bytes(bytes: &[u8]) -> Vec<Vec<String>> {
    let (_dir, path) = temp_file("rows.csv", bytes);
    collect(Format::Csv, &path, &ReadOptions::default())
        .expect("read")
        .rows
}

fn format_of(path: &Path) -> Option<Format> {
    Format::from_extension(path.extension()?.to_str()?)
}

fn fixture(relative: &str) -> Option<PathBuf> {
    corpus::dir().map(|dir| dir.join(relative))
}

fn rows_of(relative: &str, sheet: Option<&str>) -> Option<Collected> {
    let path = fixture(relative)?;
    let options = ReadOptions {
        sheet: sheet.map(str::to_string),
        ..ReadOptions::default()
    };
    let format = format_of(&path).expect("a known extension");
    Some(collect(format, &path, &options).unwrap_or_else(|r| panic!("{relative}: {}", r.reason)))
}

#[test]
fn every_corpus_file_streams_the_rows_extract_counts() {
    let Some(dir) = corpus::dir() else { return };
    let files = corpus::with_extension(&dir, &["csv", "tsv", "xls", "xlsx", "xlsm", "parquet"]);
    assert!(files.len() > 200, "only {} files", files.len());
    let mut problems = Vec::new();
    let mut compared = 0;
    for entry in &files {
        let path = dir.join(&entry.path);
        let Some(format) = format_of(&path) else {
            continue;
        };
        let options = ReadOptions::default();
        let Ok(extracted) = extract(format, &path, &options) else {
            continue;
        };
        compared += 1;
        match collect(format, &path, &options) {
            Err(r) => problems.push(format!("{}: rejected: {}", entry.path, r.reason)),
            Ok(got) => {
                if got.columns.as_ref() != Some(&extracted.columns) {
                    problems.push(format!("{}: columns {:?}", entry.path, got.columns));
                }
                if got.rows.len() as u64 != extracted.rows {
                    problems.push(format!(
                        "{}: {} rows streamed, {} counted",
                        entry.path,
                        got.rows.len(),
                        extracted.rows
                    ));
                }
                let width = extracted.columns.len();
                if let Some(row) = got.rows.iter().find(|r| r.len() != width) {
                    problems.push(format!("{}: a row of {} values", entry.path, row.len()));
                }
                if let Some(value) = got
                    .rows
                    .iter()
                    .flatten()
                    .find(|v| v.len() > MAX_VALUE_BYTES)
                {
                    problems.push(format!("{}: a value of {} bytes", entry.path, value.len()));
                }
            }
        }
    }
    assert!(compared > 150, "only {compared} files compared");
    assert!(problems.is_empty(), "{problems:#?}");
}

/// The first rows of a corpus file.
fn first_rows(relative: &str, sheet: Option<&str>, n: usize) -> Option<Vec<Vec<String>>> {
    let got = rows_of(relative, sheet)?;
    Some(got.rows.into_iter().take(n).collect())
}

#[test]
#[rustfmt::skip]
fn values_sit_under_their_columns() {
    type Case = (&'static str, Option<&'static str>, &'static [&'static [&'static str]]);
    let cases: &[Case] = &[
        // Title rows above the header are skipped.
        ("frictionless-py/data/skip-rows-before-headers.csv", None,
            &[&["1", "english"], &["2", "中国人"]]),
        // Duplicate names: values stay in their own column.
        ("frictionless-py/data/duplicate-headers.csv", None,
            &[&["1101", "John", "0", "30", "001101"], &["1102", "Julie", "0", "26", "001102"]]),
        // Blank headers: their cells are left out.
        ("csvkit/examples/test_empty_columns.csv", None, &[&["a", "", ""], &["", "", "c"]]),
        // Dates, numbers and booleans from a workbook, and a row with only its first cell.
        ("csvkit/examples/sheets.xlsx", None, &[
            &["Chicago Reader", "1971-01-01", "40", "true", "1", "1971-01-01T04:14:00", ""],
            &["Chicago Sun-Times", "1948-01-01", "63", "true", "1.27", "1948-01-01T14:57:13", ""],
            &["Chicago Tribune", "1920-01-01", "164", "false", "41800000.01", "1920-01-01", ""],
            &["This row has blanks", "", "", "", "", "", ""],
        ]),
        ("csvkit/examples/test_skip_lines.xls", None, &[
            &["Chicago Reader", "1971-01-01", "40", "true", "1", "1971-01-01T04:14:00", ""],
            &["Chicago Sun-Times", "1948-01-01", "63", "true", "1.27", "1948-01-01T14:57:13", ""],
        ]),
        // A two-row header (names over their units): data starts below both rows. (Until
        // two-row headers were read, the units row was taken for the first data row.)
        ("readxl/inst/extdata/clippy.xls", Some("two-row-header"), &[
            &["Clippy", "paperclip", "2007-01-01", "0.9"],
        ]),
        // Nested Parquet: structs, lists, maps, lists of lists, all by leaf.
        ("parquet-testing/data/nested_maps.snappy.parquet", None, &[
            &["[a]", "[[1, 2]]", "[[true, false]]", "1", "1"],
            &["[b]", "[[1]]", "[[true]]", "1", "1"],
            &["[c]", "[[]]", "[[]]", "1", "1"],
        ]),
        ("parquet-testing/data/list_columns.parquet", None,
            &[&["[1, 2, 3]", "[abc, efg, hij]"], &["[, 1]", ""], &["[4]", "[efg, , hij, xyz]"]]),
        ("duckdb/data/parquet-testing/struct.parquet", None, &[&["hello", ""], &["", "1.23"]]),
        ("parquet-testing/data/old_list_structure.parquet", None, &[&["[[1, 2], [3, 4]]"]]),
        ("parquet-testing/data/repeated_no_annotation.parquet", None,
            &[&["1", "", ""], &["2", "", ""], &["3", "", ""], &["4", "[5555555555]", "[]"]]),
        ("parquet-testing/data/nonnullable.impala.parquet", None, &[&[
            "8", "[-1]", "[[-1, -2], []]", "[k1]", "[-1]", "[[], [k1], [], []]", "[[], [1], [], []]",
            "-1", "[-1]", "[[-1]]", "[[nonnullable]]", "", "",
        ]]),
        // Booleans, floats, INT96 timestamps; decimals without trailing zeros.
        ("parquet-testing/data/alltypes_plain.parquet", None, &[
            &["4", "true", "0", "0", "0", "0", "0", "0", "03/01/09", "0", "2009-03-01T00:00:00"],
            &["5", "false", "1", "1", "1", "10", "1.1", "10.1", "03/01/09", "1", "2009-03-01T00:01:00"],
        ]),
        ("fastparquet/test-data/decimals.parquet", None,
            &[&["633483", "2013-08-20T00:00:00", "93"], &["714168", "2010-04-01T00:00:00", "155"]]),
    ];
    for (file, sheet, want) in cases {
        let Some(got) = first_rows(file, *sheet, want.len()) else { return };
        let want: Vec<Vec<String>> =
            want.iter().map(|r| r.iter().map(|v| v.to_string()).collect()).collect();
        assert_eq!(got, want, "{file}");
    }
}

/// A file in a fresh temporary folder, kept alive by the returned guard.
fn temp_file(name: &str, content: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    std::fs::write(&path, content).expect("write");
    (dir, path)
}

#[test]
fn csv_rows_are_cut_to_the_header_and_their_values_to_the_cap() {
    let long = "é".repeat(MAX_VALUE_BYTES);
    let text = format!("Report\n\nid,,name\n1,x,{long}\n,,\n2,y\n3,z,c,extra\n  ,\u{A0}, \n");
    let (_dir, path) = temp_file("a.csv", text.as_bytes());
    let got = collect(Format::Csv, &path, &ReadOptions::default()).expect("read");
    let extracted = extract(Format::Csv, &path, &ReadOptions::default()).expect("read");
    assert_eq!(got.columns, Some(extracted.columns));
    assert_eq!(got.rows.len() as u64, extracted.rows);
    assert_eq!(got.rows[0][0], "1");
    assert_eq!(got.rows[0][1], truncated_str(&long));
    assert_eq!(got.rows[1..], [vec!["2", ""], vec!["3", "c"]]);
}

fn truncated_str(text: &str) -> &str {
    super::rows::truncated(text)
}

#[test]
fn csv_read_again_as_windows_1252_hands_each_row_on_once() {
    let mut input = b"name,city\n".to_vec();
    let mut ascii_rows = 0;
    while input.len() <= super::text::SNIFF_BYTES {
        input.extend_from_slice(b"plain,ascii\n");
        ascii_rows += 1;
    }
    input.extend_from_slice(b"Jos\xE9,M\xE1laga\n");
    let (_dir, path) = temp_file("late.csv", &input);
    let extracted = extract(Format::Csv, &path, &ReadOptions::default()).expect("read");
    let got = collect(Format::Csv, &path, &ReadOptions::default()).expect("read");
    assert_eq!(got.rows.len() as u64, extracted.rows);
    assert_eq!(got.rows.len(), ascii_rows + 1);
    assert_eq!(got.rows[ascii_rows], ["José", "Málaga"]);
}

#[test]
fn a_break_stops_the_stream_without_an_error() {
    let files = [
        "rust-csv/examples/data/bench/worldcitiespop.csv",
        "csvkit/examples/sheets.xlsx",
        "csvkit/examples/test_skip_lines.xls",
        "duckdb/data/parquet-testing/lineitem-top10000.gzip.parquet",
    ];
    for file in files {
        let Some(path) = fixture(file) else { return };
        let format = format_of(&path).expect("format");
        let mut seen = 0;
        let visited = stream_rows(format, &path, &ReadOptions::default(), &mut |event| {
            if let RowEvent::Row(_) = event {
                seen += 1;
            }
            if seen == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        assert_eq!(visited, Ok(2), "{file}");
        assert_eq!(seen, 2, "{file}");
        let at_columns = stream_rows(format, &path, &ReadOptions::default(), &mut |_| {
            ControlFlow::Break(())
        });
        assert_eq!(at_columns, Ok(0), "{file}");
    }
}

#[test]
fn a_file_that_cannot_be_read_is_rejected_as_by_extract() {
    let (_dir, path) = temp_file("a.csv", b"\x00\x01\x02 not text");
    let mut visited = false;
    let got = stream_rows(Format::Csv, &path, &ReadOptions::default(), &mut |_| {
        visited = true;
        ControlFlow::Continue(())
    });
    assert_eq!(
        got,
        extract(Format::Csv, &path, &ReadOptions::default()).map(|e| e.rows)
    );
    assert!(!visited);
}
