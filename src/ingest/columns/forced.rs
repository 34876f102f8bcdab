//! A source's read options (`ingestctl set`) as readers use them: checked against the format,
//! turned into what a reader is told ([`Forced`]), and the header they put in place of the
//! detected one.
//!
//! This module owns what each option means and which formats it applies to, and the messages
//! for options that make no sense (an encoding label nobody knows, a delimiter that is not
//! one ASCII byte, `--sheet` on a CSV, anything on Parquet). It never reads a file: whether a
//! header row exists in a file, or its bytes decode in the encoding, is the reader's to say.

use super::header::{Header, Row};
use crate::format::Format;
use crate::protocol::ReadOverride;

/// The highest header row that may be set: a header lower than this is not a preamble any
/// more, and the rows above it are kept in memory while it is looked for.
pub const MAX_HEADER_ROW: u64 = 1000;

/// Names of the columns of a table read without a header row: `column_1`, `column_2`, ….
pub const NO_HEADER_PREFIX: &str = "column_";

/// How a table read without a header row describes its header.
pub const NO_HEADER: &str = "no header row (set for this source)";

/// What a header set for the source says of itself, in place of how it was found.
const SET: &str = "set for this source";

/// "header on line 4 (set for this source; 3 rows above it skipped: a title, 2 blank)":
/// a header description (`Header::describe`) saying the header was set, not found.
pub fn mark_set(described: &str) -> String {
    match described.split_once(" (") {
        Some((head, rest)) => format!("{head} ({SET}; {rest}"),
        None => format!("{described} ({SET})"),
    }
}

/// How the header is chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HeaderChoice {
    /// Found by the rules of `header`.
    #[default]
    Detect,
    /// On this 1-based line (CSV) or sheet row (workbooks).
    Row(u64),
    /// There is none: every row is data.
    None,
}

/// What a source's options tell a reader, sent to the parse worker with the other options.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Forced {
    #[serde(default)]
    pub header: HeaderChoice,
    /// The encoding to read text in instead of the detected one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delimiter: Option<u8>,
    /// The sheet was set for the source (the name itself is `ReadOptions::sheet`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sheet: bool,
}

impl Forced {
    /// What a reader is told for `options`, which [`check`] accepted.
    pub fn of(options: &ReadOverride) -> Self {
        Self {
            header: match (options.header_row, options.no_header) {
                (Some(row), _) => HeaderChoice::Row(row),
                (None, true) => HeaderChoice::None,
                (None, false) => HeaderChoice::Detect,
            },
            encoding: options.encoding.clone(),
            delimiter: options
                .delimiter
                .as_deref()
                .and_then(|d| delimiter_byte(d).ok()),
            sheet: options.sheet.is_some(),
        }
    }
}

/// Why a source's options cannot be stored, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadOption(pub String);

/// Check `options` for a source of `format`, and return them as they are stored: the
/// encoding by its canonical name, a tab delimiter as `\t`.
pub fn check(format: Format, options: &ReadOverride) -> Result<ReadOverride, BadOption> {
    let bad = |m: String| Err(BadOption(m));
    let text = matches!(format, Format::Csv | Format::Tsv);
    let book = matches!(format, Format::Xls | Format::Xlsx | Format::Xlsm);
    if format == Format::Parquet && !options.is_empty() {
        return bad(
            "Parquet files have no header row, text encoding, sheet or delimiter to \
                    set: their columns are the schema's fields"
                .into(),
        );
    }
    if options.header_row.is_some() && options.no_header {
        return bad("give a header row or no header, not both".into());
    }
    let mut stored = options.clone();
    if let Some(row) = options.header_row
        && !(1..=MAX_HEADER_ROW).contains(&row)
    {
        return bad(format!(
            "the header row must be between 1 and {MAX_HEADER_ROW}, not {row}"
        ));
    }
    if let Some(label) = &options.encoding {
        if !text {
            return bad(format!(
                "an encoding applies to CSV and TSV files only; a .{} file says its own",
                format.as_str()
            ));
        }
        stored.encoding = Some(encoding_for(label)?.name().to_string());
    }
    if let Some(delimiter) = &options.delimiter {
        if !text {
            return bad(format!(
                "a delimiter applies to CSV and TSV files only, not to a .{} file",
                format.as_str()
            ));
        }
        let byte = delimiter_byte(delimiter)?;
        stored.delimiter = Some(if byte == b'\t' {
            "\\t".to_string()
        } else {
            (byte as char).to_string()
        });
    }
    if let Some(sheet) = &options.sheet {
        if !book {
            return bad(format!(
                "a sheet applies to workbooks (.xls, .xlsx, .xlsm) only; a .{} file has none",
                format.as_str()
            ));
        }
        if sheet.trim().is_empty() {
            return bad("the sheet name is empty".into());
        }
    }
    Ok(stored)
}

/// The encoding a label names (the WHATWG labels: `shift_jis`, `sjis`, `cp1250`, `latin1`,
/// `utf-16le`, …). The replacement encoding, which labels of unsafe encodings map to, reads
/// nothing and is refused.
pub fn encoding_for(label: &str) -> Result<&'static encoding_rs::Encoding, BadOption> {
    match encoding_rs::Encoding::for_label_no_replacement(label.trim().as_bytes()) {
        Some(encoding) => Ok(encoding),
        None => Err(BadOption(format!(
            "{label:?} is not an encoding label this reader knows; use a name such as UTF-8, \
             Shift_JIS, EUC-KR, GB18030, windows-1250, windows-1251, windows-1252, ISO-8859-7 \
             or UTF-16LE (the labels of the WHATWG Encoding Standard)"
        ))),
    }
}

/// One ASCII byte that can separate fields: `,` `;` `|`, a tab written as itself, `\t` or
/// `tab`. Quotes and line breaks cannot.
pub fn delimiter_byte(text: &str) -> Result<u8, BadOption> {
    let byte = match text {
        "\\t" | "tab" | "TAB" | "\t" => b'\t',
        _ => match text.as_bytes() {
            [byte] if byte.is_ascii() => *byte,
            _ => {
                return Err(BadOption(format!(
                    "the delimiter must be one ASCII character (or \\t for tab), not {text:?}"
                )));
            }
        },
    };
    if matches!(byte, b'"' | b'\n' | b'\r') || (byte.is_ascii_alphanumeric()) {
        return Err(BadOption(format!(
            "{text:?} cannot be a delimiter: it is a quote, a line break, a letter or a digit"
        )));
    }
    Ok(byte)
}

/// The header on `row` (an index into `rows`), as if it had been found there: every row above
/// it is described as the header search would describe it.
pub fn header_at(rows: &[Vec<String>], row: usize) -> Header {
    let facts: Vec<Row> = rows[..row].iter().map(|r| Row::of(r)).collect();
    Header {
        row,
        upper: None,
        above: facts.iter().map(Row::kind_above).collect(),
    }
}

/// The names of a table without a header row, `width` columns wide.
pub fn numbered_columns(width: usize) -> Vec<String> {
    (1..=width)
        .map(|i| format!("{NO_HEADER_PREFIX}{i}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::formats::ReadOptions;

    fn options(f: impl FnOnce(&mut ReadOverride)) -> ReadOverride {
        let mut o = ReadOverride::default();
        f(&mut o);
        o
    }

    #[test]
    fn options_that_apply_are_stored_canonically() {
        let o = options(|o| {
            o.encoding = Some("sjis".into());
            o.delimiter = Some("tab".into());
            o.header_row = Some(4);
        });
        let stored = check(Format::Csv, &o).unwrap();
        assert_eq!(stored.encoding.as_deref(), Some("Shift_JIS"));
        assert_eq!(stored.delimiter.as_deref(), Some("\\t"));
        assert_eq!(stored.header_row, Some(4));
        let forced = Forced::of(&stored);
        assert_eq!(forced.delimiter, Some(b'\t'));
        assert_eq!(forced.header, HeaderChoice::Row(4));
        let sheet = options(|o| o.sheet = Some("Data".into()));
        assert!(check(Format::Xlsx, &sheet).is_ok());
        assert!(Forced::of(&sheet).sheet);
        let none = options(|o| o.no_header = true);
        assert_eq!(Forced::of(&none).header, HeaderChoice::None);
        assert!(check(Format::Parquet, &ReadOverride::default()).is_ok());
    }

    #[test]
    #[rustfmt::skip]
    fn options_that_do_not_apply_are_refused_with_the_reason() {
        let cases: Vec<(Format, ReadOverride, &str)> = vec![
            (Format::Csv, options(|o| o.encoding = Some("klingon".into())), "not an encoding label"),
            (Format::Csv, options(|o| o.encoding = Some("iso-2022-kr".into())), "not an encoding label"),
            (Format::Csv, options(|o| o.delimiter = Some(";;".into())), "one ASCII character"),
            (Format::Csv, options(|o| o.delimiter = Some("§".into())), "one ASCII character"),
            (Format::Csv, options(|o| o.delimiter = Some("\"".into())), "cannot be a delimiter"),
            (Format::Csv, options(|o| o.delimiter = Some("a".into())), "cannot be a delimiter"),
            (Format::Csv, options(|o| o.sheet = Some("Data".into())), "workbooks"),
            (Format::Xlsx, options(|o| o.encoding = Some("utf-8".into())), "CSV and TSV"),
            (Format::Xls, options(|o| o.delimiter = Some(";".into())), "CSV and TSV"),
            (Format::Xlsx, options(|o| o.sheet = Some("  ".into())), "empty"),
            (Format::Parquet, options(|o| o.header_row = Some(2)), "Parquet"),
            (Format::Parquet, options(|o| o.no_header = true), "Parquet"),
            (Format::Csv, options(|o| { o.header_row = Some(2); o.no_header = true }), "not both"),
            (Format::Csv, options(|o| o.header_row = Some(0)), "between 1 and"),
            (Format::Csv, options(|o| o.header_row = Some(MAX_HEADER_ROW + 1)), "between 1 and"),
        ];
        for (format, o, want) in cases {
            let error = check(format, &o).expect_err(&format!("{o:?}"));
            assert!(error.0.contains(want), "{o:?}: {error}");
        }
    }

    #[test]
    fn a_set_header_describes_the_rows_above_it() {
        let rows: Vec<Vec<String>> = [&["Report"][..], &[""], &["a", "b"], &["1", "2"]]
            .iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect();
        let header = header_at(&rows, 2);
        assert_eq!(header.row, 2);
        let described = header.describe("line", |i| i as u64 + 1);
        assert_eq!(
            described,
            "header on line 3 (2 rows above it skipped: a title, 1 blank)"
        );
        assert_eq!(
            mark_set(&described),
            "header on line 3 (set for this source; 2 rows above it skipped: a title, 1 blank)"
        );
        assert_eq!(
            mark_set("header on row 1"),
            "header on row 1 (set for this source)"
        );
        assert_eq!(numbered_columns(3), ["column_1", "column_2", "column_3"]);
    }

    /// Read `bytes` stored as `name` with the source options `set`.
    fn read(
        name: &str,
        bytes: &[u8],
        set: ReadOverride,
    ) -> Result<crate::ingest::formats::Extracted, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let format = Format::from_extension(name.rsplit('.').next().unwrap()).unwrap();
        let stored = check(format, &set).map_err(|e| e.0)?;
        let mut options = ReadOptions::default();
        options.apply(&stored);
        let extracted =
            crate::ingest::formats::extract(format, &path, &options).map_err(|r| r.reason)?;
        // The rows a job reads line up with the columns, under the same options.
        let mut columns = Vec::new();
        let mut rows = 0;
        crate::ingest::formats::stream_rows(format, &path, &options, &mut |event| {
            match event {
                crate::ingest::formats::RowEvent::Columns(c) => columns = c.to_vec(),
                crate::ingest::formats::RowEvent::Row(r) => {
                    assert_eq!(r.len(), columns.len());
                    rows += 1;
                }
            }
            std::ops::ControlFlow::Continue(())
        })
        .map_err(|r| r.reason)?;
        assert_eq!(columns, extracted.columns);
        assert_eq!(rows, extracted.rows);
        Ok(extracted)
    }

    const REPORT: &str = "Prepared by,Finance,Dept,Q3\nname,city,country,team\nalice,paris,france,red\n\
                          bob,rome,italy,blue\n";

    #[test]
    fn a_csv_header_row_set_replaces_the_detected_one() {
        let detected = read("r.csv", REPORT.as_bytes(), ReadOverride::default()).unwrap();
        assert_eq!(detected.columns, ["Prepared by", "Finance", "Dept", "Q3"]);
        let set = options(|o| o.header_row = Some(2));
        let got = read("r.csv", REPORT.as_bytes(), set).unwrap();
        assert_eq!(got.columns, ["name", "city", "country", "team"]);
        assert_eq!(got.rows, 2);
        assert_eq!(got.reading.header_row, Some(2));
        assert_eq!(
            got.reading.header.as_deref(),
            Some("header on line 2 (set for this source; 1 row above it skipped: a note)")
        );
        // Far below the rows the search looks at.
        let mut long = "x\n".repeat(40);
        long.push_str("a,b\n1,2\n");
        let got = read(
            "l.csv",
            long.as_bytes(),
            options(|o| o.header_row = Some(41)),
        )
        .unwrap();
        assert_eq!(
            (got.columns.clone(), got.rows),
            (vec!["a".into(), "b".into()], 1)
        );
    }

    #[test]
    #[rustfmt::skip]
    fn a_csv_header_row_that_is_not_one_is_refused() {
        let cases: &[(&str, u64, &str)] = &[
            ("a,b\n1,2\n", 5, "it has no line 5, the header row set for this source: its last row starts on line 2"),
            ("a,b\n\n1,2\n", 2, "line 2, the header row set for this source, starts no row: it is blank or inside a quoted cell (rows start on lines 1 and 3)"),
            ("a,\"b\nc\"\n1,2\n", 2, "starts no row"),
            ("a,b\n,,\n1,2\n", 2, "line 2, the header row set for this source, holds no names"),
        ];
        for (text, row, want) in cases {
            let error = read("x.csv", text.as_bytes(), options(|o| o.header_row = Some(*row))).unwrap_err();
            assert!(error.contains(want), "{text:?}: {error}");
        }
    }

    #[test]
    fn a_csv_without_header_has_numbered_columns_and_every_row() {
        let text = "0|ALGERIA|0|note\n1|ARGENTINA|1|other\n\n2|BRAZIL|1|x|extra\n";
        let detected = read("n.csv", text.as_bytes(), ReadOverride::default()).unwrap();
        assert_eq!(detected.rows, 2);
        let got = read("n.csv", text.as_bytes(), options(|o| o.no_header = true)).unwrap();
        // As wide as the first rows reach, the one longer row included.
        let names: Vec<String> = (1..=5).map(|i| format!("column_{i}")).collect();
        assert_eq!(got.columns, names);
        assert_eq!(got.rows, 3);
        assert_eq!(got.reading.header.as_deref(), Some(NO_HEADER));
        assert_eq!(got.reading.header_row, None);
        assert!(got.skipped.is_empty(), "{:?}", got.skipped);
    }

    #[test]
    fn a_csv_encoding_set_is_read_strictly() {
        let (sjis, _, _) = encoding_rs::SHIFT_JIS.encode("名前,年齢\n山田,30\n");
        let got = read(
            "j.csv",
            &sjis,
            options(|o| o.encoding = Some("shift_jis".into())),
        )
        .unwrap();
        assert_eq!(got.columns, ["名前", "年齢"]);
        assert_eq!(got.reading.encoding_found_by.as_deref(), Some("set"));
        assert!(
            got.notes
                .contains(&"encoding Shift_JIS (set for this source)".to_string())
        );
        // The same bytes as UTF-8: refused, never mojibake.
        let error = read(
            "j.csv",
            &sjis,
            options(|o| o.encoding = Some("utf-8".into())),
        )
        .unwrap_err();
        assert!(
            error.contains("cannot be read as UTF-8, the encoding set for this source"),
            "{error}"
        );
        // UTF-16 without a byte-order mark, which detection refuses, reads when it is set.
        let utf16: Vec<u8> = "a,b\n1,2\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        assert!(read("u.csv", &utf16, ReadOverride::default()).is_err());
        let got = read(
            "u.csv",
            &utf16,
            options(|o| o.encoding = Some("utf-16le".into())),
        )
        .unwrap();
        assert_eq!(
            (got.columns.clone(), got.rows),
            (vec!["a".into(), "b".into()], 1)
        );
        // A byte windows-1252 maps to a control character is no text in it.
        let error = read(
            "w.csv",
            b"a,b\n\x81,2\n",
            options(|o| o.encoding = Some("cp1252".into())),
        )
        .unwrap_err();
        assert!(error.contains("control characters"), "{error}");
    }

    #[test]
    fn a_csv_delimiter_set_wins_over_detection_and_sep_lines() {
        let text = "sep=,\na;b,c\n1;2,3\n";
        let got = read(
            "d.csv",
            text.as_bytes(),
            options(|o| o.delimiter = Some(";".into())),
        )
        .unwrap();
        assert_eq!(got.columns, ["a", "b,c"]);
        assert!(
            got.notes
                .contains(&"delimiter ';' (set for this source)".to_string())
        );
        let tsv = read(
            "t.tsv",
            b"a|b\n1|2\n",
            options(|o| o.delimiter = Some("|".into())),
        )
        .unwrap();
        assert_eq!(tsv.columns, ["a", "b"]);
    }

    fn workbook() -> Vec<u8> {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet().set_name("Data").unwrap();
        for (col, word) in ["Prepared by", "Finance", "Dept"].iter().enumerate() {
            sheet.write_string(1, col as u16, *word).unwrap();
        }
        for (col, word) in ["name", "city", "team"].iter().enumerate() {
            sheet.write_string(2, col as u16, *word).unwrap();
        }
        for row in 3..6u32 {
            for col in 0..3u16 {
                sheet
                    .write_string(row, col, format!("v{row}{col}"))
                    .unwrap();
            }
        }
        let other = book.add_worksheet().set_name("Other").unwrap();
        other.write_string(0, 0, "x").unwrap();
        other.write_number(1, 0, 1.0).unwrap();
        book.save_to_buffer().unwrap()
    }

    #[test]
    fn a_sheet_header_row_set_replaces_the_detected_one() {
        let bytes = workbook();
        let detected = read("b.xlsx", &bytes, ReadOverride::default()).unwrap();
        assert_eq!(detected.columns, ["Prepared by", "Finance", "Dept"]);
        // Blank rows above a sheet's used range are reported as rows skipped (issue 15, 1).
        assert_eq!(
            detected.reading.header.as_deref(),
            Some("header on row 2 (1 row above it skipped: 1 blank)")
        );
        assert_eq!(detected.reading.rows_above, ["blank"]);
        let got = read("b.xlsx", &bytes, options(|o| o.header_row = Some(3))).unwrap();
        assert_eq!(got.columns, ["name", "city", "team"]);
        assert_eq!((got.rows, got.reading.header_row), (3, Some(3)));
        assert_eq!(
            got.reading.header.as_deref(),
            Some("header on row 3 (set for this source; 2 rows above it skipped: 1 blank, a note)")
        );
        let none = read("b.xlsx", &bytes, options(|o| o.no_header = true)).unwrap();
        assert_eq!(none.columns, ["column_1", "column_2", "column_3"]);
        assert_eq!(none.rows, 5);
        for (row, want) in [
            (1, "row 1, the header row set for this source, is blank"),
            (
                9,
                "it has no row 9, the header row set for this source: its last filled row is 6",
            ),
        ] {
            let error = read("b.xlsx", &bytes, options(|o| o.header_row = Some(row))).unwrap_err();
            assert!(error.contains(want), "{row}: {error}");
        }
        let other = read(
            "b.xlsx",
            &bytes,
            options(|o| o.sheet = Some("other".into())),
        )
        .unwrap();
        assert_eq!(other.columns, ["x"]);
        assert!(
            other.notes[0].contains("(set for this source)"),
            "{:?}",
            other.notes
        );
        let error = read("b.xlsx", &bytes, options(|o| o.sheet = Some("Nope".into()))).unwrap_err();
        assert!(
            error.contains("(its sheets are 'Data', 'Other')"),
            "{error}"
        );
    }

    #[test]
    fn options_travel_to_the_worker_as_json() {
        let mut options = ReadOptions::default();
        options.apply(&options_with_all());
        let text = serde_json::to_string(&options).unwrap();
        assert_eq!(serde_json::from_str::<ReadOptions>(&text).unwrap(), options);
        // A request from before the options had none: detection.
        let old: ReadOptions =
            serde_json::from_str(r#"{"sheet":null,"max_cells":5,"max_unzipped_bytes":6}"#).unwrap();
        assert_eq!(old.set, Forced::default());
    }

    fn options_with_all() -> ReadOverride {
        ReadOverride {
            header_row: Some(3),
            no_header: false,
            encoding: Some("Shift_JIS".into()),
            sheet: None,
            delimiter: Some(";".into()),
        }
    }
}
