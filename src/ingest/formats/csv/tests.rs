use super::*;
use crate::ingest::formats::text::tests::wide;
use crate::protocol::SkippedColumn;
use std::io::Write;
use std::path::PathBuf;

fn extract_bytes(bytes: &[u8], delimiter: Option<u8>) -> Result<Extracted, Rejection> {
    let suffix = match delimiter {
        Some(b'\t') => ".tsv",
        _ => ".csv",
    };
    let mut file = tempfile::Builder::new()
        .suffix(suffix)
        .tempfile()
        .expect("create temp file");
    file.write_all(bytes).expect("write temp file");
    extract(file.path(), delimiter, &Forced::default())
}

/// Expected skipped columns: (position, reason).
type Skips<'a> = &'a [(usize, &'a str)];

/// (case, input, delimiter, columns, rows, text one of the notes must contain)
type ReadCase = (
    &'static str,
    Vec<u8>,
    Option<u8>,
    &'static [&'static str],
    u64,
    &'static str,
);

fn skipped(list: Skips) -> Vec<SkippedColumn> {
    let to_skipped = |&(position, reason): &(usize, &str)| SkippedColumn {
        position,
        reason: reason.into(),
    };
    list.iter().map(to_skipped).collect()
}

#[test]
#[rustfmt::skip]
fn reads_small_tables() {
    let tsv = Some(b'\t');
    let cases: Vec<ReadCase> = vec![
        ("comma", b"a,b,c\n1,2,3\n4,5,6\n".into(), None, &["a", "b", "c"], 2, "delimiter ','"),
        ("semicolon", b"a;b;c\n1;2,5;3\n4;5,25;6\n".into(), None, &["a", "b", "c"], 2, "delimiter ';'"),
        ("tab", b"a\tb\n1\tx, y\n".into(), None, &["a", "b"], 1, "delimiter tab"),
        ("pipe", b"a|b\n1|2\n".into(), None, &["a", "b"], 1, "delimiter '|'"),
        ("TSV keeps commas", b"a\tb,c\n1\t2,3\n".into(), tsv, &["a", "b,c"], 1, "delimiter tab"),
        ("quoted delimiters", b"\"x,y\";z\n\"1,2\";3\n".into(), None, &["x,y", "z"], 1, "';'"),
        ("no delimiter", b"year\n2001\n2002".into(), None, &["year"], 2, "delimiter ','"),
        ("UTF-8 BOM", "\u{FEFF}id,name\n1,x\n".into(), None, &["id", "name"], 1, "UTF-8 with BOM"),
        ("UTF-16LE", wide("id;nom\r\n1;é\r\n", 2, true), None, &["id", "nom"], 1, "UTF-16LE with BOM"),
        ("UTF-16BE", wide("a,😀\n1,2\n", 2, false), None, &["a", "😀"], 1, "UTF-16BE with BOM"),
        ("UTF-32LE", wide("première,ß\n1,2\n", 4, true), None, &["première", "ß"], 1, "UTF-32LE"),
        ("UTF-32BE", wide("a,b\n1,2\n", 4, false), None, &["a", "b"], 1, "UTF-32BE"),
        ("Windows-1252", b"caf\xE9,prix \x80\n1,2\n".into(), None, &["café", "prix €"], 1,
            "windows-1252 (detected"),
        ("sep= line", b"sep=;\na;b\n1;2,5\n".into(), None, &["a", "b"], 1, "';' (from the sep= line)"),
        ("sep= line, CRLF", b"sep=|\r\na|b\r\n1|2\r\n".into(), None, &["a", "b"], 1, "'|'"),
        ("sep= after BOM", "\u{FEFF}SEP=,\na,b\n".into(), None, &["a", "b"], 0, "','"),
        ("sep= beats TSV", b"sep=,\na\tb,c\n".into(), tsv, &["a\tb", "c"], 0, "','"),
        ("title row", b"Monthly report\n\nid,amount\n1,2\n".into(), None, &["id", "amount"], 1,
            "header on line 3 (1 row above it skipped: a title)"),
        ("padded title rows", b"Report,,\nMay,,\n,,\nid,a,b\n1,2,3\n".into(), None, &["id", "a", "b"], 1,
            "header on line 4 (3 rows above it skipped: 2 titles, 1 blank)"),
        ("CR-only title", b"Report\r\rid,x\r1,2\r".into(), None, &["id", "x"], 1, "header on line 3"),
        ("title under sep=", b"sep=;\r\nReport\r\n\r\nid;x\r\n1;2".into(), None, &["id", "x"], 1,
            "header on line 4"),
        ("two-row header across a blank line", b",2023,,2024,\n\nRegion,Q1,Q2,Q1,Q2\nNorth,1,2,3,4\n".into(),
            None, &["Region", "2023 / Q1", "2023 / Q2", "2024 / Q1", "2024 / Q2"], 1,
            "two-row header on lines 1 and 3"),
        ("duplicates", b"a,a,a_2\n1,2,3\n".into(), None, &["a", "a_3", "a_2"], 1, ""),
        ("blank headers", b"a,,c, \n1,2,3,4\n".into(), None, &["a", "c"], 1, ""),
        ("invisible", "\u{A0}id\u{200B},name \n1,2\n".into(), None, &["id", "name"], 1, ""),
        ("header only", b"a,b,c".into(), None, &["a", "b", "c"], 0, ""),
        ("header only, CRLF", b"a,b,c\r\n".into(), None, &["a", "b", "c"], 0, ""),
        ("blank rows", "a,b\n1,2\n,\n\n3,4\n  ,\u{A0}\n".into(), None, &["a", "b"], 2, ""),
        ("ragged rows", b"a,b\n1,2,3\n4\n5,6,,\n".into(), None, &["a", "b"], 3, ""),
        ("quoted newline", b"a,b\n\"x\ny\",2\n3,4\n".into(), None, &["a", "b"], 2, ""),
        ("CR-only", b"a,b\r1,2\r3,4\r".into(), None, &["a", "b"], 2, ""),
        ("mixed endings", b"a,b\r\n1,2\n3,4\r5,6".into(), None, &["a", "b"], 3, ""),
        ("unterminated quote", b"a,b\n\"x,2\n3,4\n".into(), None, &["a", "b"], 1, ""),
        ("text starting PAR1", b"PAR1,PAR2\n1,2\n".into(), None, &["PAR1", "PAR2"], 1, ""),
    ];
    for (case, input, delimiter, columns, rows, note) in cases {
        let got = extract_bytes(&input, delimiter)
            .unwrap_or_else(|r| panic!("{case}: rejected: {}", r.reason));
        assert_eq!(got.columns, columns, "{case}");
        assert_eq!(got.rows, rows, "{case}");
        assert!(got.notes.iter().any(|n| n.contains(note)), "{case}: {:?}", got.notes);
    }
}

#[test]
#[rustfmt::skip]
fn reports_skipped_columns() {
    let cases: &[(&str, &str, Skips)] = &[
        ("blank headers", "a,,c, \n1,2,3,4\n", &[(2, "blank header"), (4, "blank header")]),
        ("ragged", "a,b\n1,2,3\n4\n5,6,,8\n9,10,11\n", &[(3, "no header cell"), (4, "no header cell")]),
        ("empty extra cells", "a,b\n1,2,,\n", &[]),
        ("both", ",b,c\n1,2,3,4\n", &[(1, "blank header"), (4, "no header cell")]),
    ];
    for (case, input, want) in cases {
        let got = extract_bytes(input.as_bytes(), None).expect(case);
        assert_eq!(got.skipped, skipped(want), "{case}");
    }
}

#[test]
#[rustfmt::skip]
fn rejects_what_is_not_a_table() {
    let blank_then_data = format!("{}a,b\n", ",,\n".repeat(HEADER_SEARCH_ROWS + 5));
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let utf16_without_bom: Vec<u8> = wide("a,b\n1,2\n", 2, true)[2..].to_vec();
    let tsv = Some(b'\t');
    let cases: &[(&str, &[u8], Option<u8>, &str)] = &[
        ("empty", b"", None, "it is empty"),
        ("blank lines", b"\n\n\r\n\r", None, "it is empty"),
        ("whitespace", b"   \n \t \n", None, "it is empty"),
        ("BOM only", b"\xEF\xBB\xBF", None, "it is empty"),
        ("UTF-16 BOM and newline", b"\xFF\xFE\n\x00", None, "it is empty"),
        ("only empty cells", b",,\n,,\n", None, "it has no header row (every row is blank)"),
        ("content too far down", blank_then_data.as_bytes(), None,
            "it has no header row (looked at the first 30 rows)"),
        ("binary", &binary, None, "its content is binary, not text (a CSV file must be text)"),
        ("binary TSV", &binary, tsv, "(a TSV file must be text)"),
        ("stray NUL", b"a,b\n\x00,2\n", None, "line 2 contains a NUL byte"),
        ("UTF-8 BOM, then not UTF-8", b"\xEF\xBB\xBFa,b\r\n\xE9,1\r\n", None,
            "line 2 cannot be read: it is not valid UTF-8"),
        ("NUL after UTF-8 BOM", b"\xEF\xBB\xBFa,b\n\x00\x01\x02\x03", None, "its content is binary"),
        ("UTF-16 without BOM", &utf16_without_bom, None, "UTF-16 text without a byte-order mark"),
        ("PDF", b"%PDF-1.5\n%\xE2\xE3\n", None, "it is a PDF document, not a CSV file"),
        ("damaged ZIP", b"PK\x03\x04\x14\x00\x06\x00", None,
            "it is a damaged or truncated ZIP archive, not a CSV file"),
        ("damaged ZIP as TSV", b"PK\x03\x04\x14\x00", tsv, "ZIP archive, not a TSV file"),
        ("damaged OLE2", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\x00", None,
            "it is a damaged Office (OLE2) file, not a CSV file"),
        ("gzip", b"\x1F\x8B\x08\x00", None, "it is gzip-compressed data; decompress it first"),
        ("zstd", b"\x28\xB5\x2F\xFD\x24", None, "it is zstd-compressed data; decompress it first"),
        ("truncated Parquet", b"PAR1\x15\x04\x15", None, "it is a truncated Parquet file"),
        ("PNG", b"\x89PNG\r\n\x1A\n\x00", None, "it is a PNG image, not a CSV file"),
        ("HTML", b"\n<!DOCTYPE html>\n<html>", tsv, "it is an HTML page, not a TSV file"),
        ("XML", b"\xEF\xBB\xBF<?xml version=\"1.0\"?>", None, "it is an XML document, not a CSV file"),
        ("SpreadsheetML", b"<?xml version=\"1.0\"?><Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\">",
            None, "it is an Excel 2003 XML spreadsheet (SpreadsheetML), not a CSV file"),
        ("Arrow", b"ARROW1\x00\x00\xff\xff", None, "it is an Arrow IPC file, not a CSV file"),
    ];
    for (case, input, delimiter, want) in cases {
        let got = extract_bytes(input, *delimiter).expect_err(case);
        assert!(got.reason.contains(want), "{case}: {:?}", got.reason);
    }
}

/// ASCII up to past the sniffed start, then `tail`; and the line `tail` starts on.
fn late(start: &str, tail: &[u8]) -> (Vec<u8>, usize) {
    let mut input = start.as_bytes().to_vec();
    while input.len() <= SNIFF_BYTES {
        input.extend_from_slice(b"plain,ascii\n");
    }
    let line = 1 + input.iter().filter(|&&b| b == b'\n').count();
    input.extend_from_slice(tail);
    (input, line)
}

#[test]
fn invalid_utf8_below_an_ascii_start_is_detected_there() {
    let tail = "François,Genève\nAndré,Besançon\nHélène,Orléans\nJérôme,Nîmes\n".repeat(3);
    let (bytes, _, _) = encoding_rs::WINDOWS_1252.encode(&tail);
    let (input, line) = late("name,city\n", &bytes);
    let got = extract_bytes(&input, None).expect("read as windows-1252");
    assert_eq!(got.columns, ["name", "city"]);
    assert_eq!(got.rows as usize, line - 2 + 12);
    let want = format!(
        "encoding windows-1252 (detected, high confidence; line {line} is the first that is not \
         valid UTF-8)"
    );
    assert_eq!(got.notes[0], want);
    let rows = super::super::tests::rows_of_bytes(&input);
    assert_eq!(rows[line - 2], ["François", "Genève"]);
    assert_eq!(rows[line + 1], ["Jérôme", "Nîmes"]);
}

#[test]
fn late_invalid_utf8_is_found_on_lines_ended_by_cr() {
    let (input, line) = late("name,city\n", b"x,y\r\rJos\xE9,M\xE1laga\r");
    let got = extract_bytes(&input, None).expect("read as windows-1252");
    let want = format!("line {} is the first that is not valid UTF-8", line + 2);
    assert!(got.notes[0].contains(&want), "{:?}", got.notes);
}

/// Legacy encodings, from real bytes made by encoding_rs: (encoding written, encoding
/// detected, header, a data row). Text in GB18030's two-byte range is GBK, which is what the
/// detector names (encoding_rs decodes both alike).
const LEGACY: &[(&str, &str, &str, &str)] = &[
    (
        "Shift_JIS",
        "Shift_JIS",
        "名前,年齢,住所",
        "山田太郎,30,東京都千代田区丸の内",
    ),
    (
        "EUC-KR",
        "EUC-KR",
        "이름,나이,주소",
        "김철수,25,서울특별시 종로구 세종대로",
    ),
    (
        "gb18030",
        "GBK",
        "姓名,年龄,地址",
        "张伟,41,北京市朝阳区建国路",
    ),
    (
        "windows-1250",
        "windows-1250",
        "Název,Množství,Město",
        "Šťastný žluťoučký kůň,5,Plzeň",
    ),
    (
        "windows-1251",
        "windows-1251",
        "Имя,Возраст,Город",
        "Иван Петров,33,Москва",
    ),
    (
        "windows-1252",
        "windows-1252",
        "Nom,Année,Adresse",
        "François Müller,1984,Genève",
    ),
    // Greek without the few letters where the two differ reads alike in windows-1253.
    (
        "ISO-8859-7",
        "windows-1253",
        "Όνομα,Ηλικία,Πόλη",
        "Γιώργος Παπαδόπουλος,52,Αθήνα",
    ),
];

/// Rows of realistic length: a detector, like a person, needs a few lines to be sure.
fn legacy_text(header: &str, row: &str) -> String {
    let mut text = format!("{header}\n");
    for _ in 0..12 {
        text.push_str(row);
        text.push('\n');
    }
    text
}

#[test]
fn legacy_encodings_are_detected_and_recorded() {
    for (label, detected, header, row) in LEGACY {
        let encoding = encoding_rs::Encoding::for_label(label.as_bytes()).expect(label);
        let text = legacy_text(header, row);
        let (bytes, _, unmappable) = encoding.encode(&text);
        assert!(!unmappable, "{label}: the sample must be encodable");
        assert!(std::str::from_utf8(&bytes).is_err(), "{label}: not UTF-8");
        let got = extract_bytes(&bytes, None).unwrap_or_else(|r| panic!("{label}: {r}"));
        let want: Vec<&str> = header.split(',').collect();
        assert_eq!(got.columns, want, "{label}");
        assert_eq!(got.rows, 12, "{label}");
        let note = format!("encoding {detected} (detected, high confidence;");
        assert!(got.notes[0].starts_with(&note), "{label}: {:?}", got.notes);
        assert_eq!(got.reading.encoding.as_deref(), Some(*detected), "{label}");
        assert_eq!(got.reading.encoding_confidence.as_deref(), Some("high"));
        let rows = super::super::tests::rows_of_bytes(&bytes);
        let want: Vec<&str> = row.split(',').collect();
        assert_eq!(rows[0], want, "{label}: row values decoded");
    }
}

#[test]
fn utf16_with_a_bom_is_read_and_without_one_rejected_with_a_hint() {
    let text = legacy_text("名前,Année,Город", "山田,1984,Москва");
    for little_endian in [true, false] {
        let with_bom = wide(&text, 2, little_endian);
        let got = extract_bytes(&with_bom, None).expect("UTF-16 with BOM");
        assert_eq!(got.columns, ["名前", "Année", "Город"]);
        assert_eq!(got.rows, 12);
        let name = if little_endian {
            "UTF-16LE"
        } else {
            "UTF-16BE"
        };
        assert_eq!(got.reading.encoding.as_deref(), Some(name));
        assert_eq!(
            got.reading.encoding_found_by.as_deref(),
            Some("byte-order mark")
        );
        // Without a BOM, as today: mostly Latin text is recognised by its NUL bytes.
        let latin = legacy_text("name,year,city", "Anne,1984,Lyon");
        let with_bom = wide(&latin, 2, little_endian);
        let without = &with_bom[2..];
        let err = extract_bytes(without, None).expect_err("UTF-16 without BOM");
        assert!(
            err.reason.contains("UTF-16 text without a byte-order mark"),
            "{}",
            err.reason
        );
    }
}

#[test]
fn text_that_no_encoding_reads_is_rejected() {
    // Control bytes among bytes that are not UTF-8: whatever code page is guessed, they
    // decode to control characters, and no person wrote this as text.
    let mut bytes = b"name,city\n".to_vec();
    for _ in 0..20 {
        bytes.extend_from_slice(b"a\x01\x02\xe9\x03b,c\x81\x04\x9d\n");
    }
    let err = extract_bytes(&bytes, None).expect_err("not text in any encoding");
    assert!(
        err.reason
            .starts_with("its text cannot be read: it is not UTF-8"),
        "{}",
        err.reason
    );
    assert!(err.reason.ends_with("save it as UTF-8"), "{}", err.reason);
}

#[test]
fn invalid_utf8_below_a_utf8_start_names_its_line() {
    let (input, line) = late("nom,ville\nJosé,Málaga\n", b"Jos\xE9,x\n");
    let got = extract_bytes(&input, None).expect_err("mixed encodings");
    let want = format!("line {line} cannot be read: it is not valid UTF-8");
    assert!(got.reason.starts_with(&want), "{}", got.reason);
}

#[test]
fn the_csv_crate_ends_records_at_a_lone_cr_and_skips_empty_lines() {
    // Our CR-only and blank-line handling rests on these csv crate defaults.
    let mut reader = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(&b"a,b\r1,2\r\r\n\n3,4"[..]);
    let lengths: Vec<usize> = reader
        .byte_records()
        .map(|r| r.expect("record").len())
        .collect();
    assert_eq!(lengths, [2, 2, 2]);
}

#[test]
fn delimiter_detection() {
    let cases: &[(&str, u8)] = &[
        ("a,b,c\n1,2,3\n", b','),
        ("a;b;c\n1;2,5;3\n4;5,5;6\n", b';'),
        ("a\tb\n1\tSmith, John\n2\tDoe, Jane\n", b'\t'),
        ("a|b|c\n1|2|3\n", b'|'),
        ("year\n2001\n", b','),
        ("", b','),
        ("\"x;y\",z\n\"1;2\",3\n", b','),
        ("Title;of;report\n\nid,name,qty\n1,a,2\n2,b,3\n", b','),
        ("a,b;c;d\n1,2;3;4\n", b';'),
        ("12\" ruler;x\nA;1,5\n", b';'),
    ];
    for (sample, want) in cases {
        let got = detect_delimiter(sample.as_bytes(), true);
        assert_eq!(got as char, *want as char, "{sample:?}");
    }
    // A last line cut short by the end of the sample does not vote.
    assert_eq!(detect_delimiter(b"a;b\n1;2\nx,y,z,w,v,u", false), b';');
}

#[test]
fn sep_line_parsing() {
    let cases: &[(&str, Option<(u8, usize)>)] = &[
        ("sep=;\na;b", Some((b';', 6))),
        ("sep=,\r\na", Some((b',', 7))),
        ("SEP=\t\n", Some((b'\t', 6))),
        ("sep=|", Some((b'|', 5))),
        ("sep=;;\n", None),
        ("sep=\n", None),
        ("sep=\"\n", None),
        ("separator,x\n", None),
        ("a,b\nsep=;\n", None),
    ];
    for (sample, want) in cases {
        assert_eq!(sep_line(sample.as_bytes()), *want, "{sample:?}");
    }
}

fn corpus() -> Option<PathBuf> {
    crate::ingest::formats::corpus::dir()
}

fn delimited_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read corpus folder") {
        let path = entry.expect("corpus entry").path();
        if path.is_dir() && path.file_name().is_some_and(|n| n != "_renamed") {
            delimited_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "csv" || e == "tsv") {
            found.push(path);
        }
    }
}

fn extract_fixture(path: &Path) -> Result<Extracted, Rejection> {
    let tsv = path.extension().is_some_and(|e| e == "tsv");
    extract(path, tsv.then_some(b'\t'), &Forced::default())
}

#[test]
fn every_corpus_file_gives_columns_or_a_reason() {
    let Some(dir) = corpus() else { return };
    let mut files = Vec::new();
    delimited_files(&dir, &mut files);
    assert!(files.len() > 50, "only {} files found", files.len());
    let mut problems = Vec::new();
    for path in &files {
        let problem = match std::panic::catch_unwind(|| extract_fixture(path)) {
            Err(_) => "panicked",
            Ok(Ok(got)) if got.columns.is_empty() => "accepted with no columns",
            Ok(Err(r)) if r.reason.trim().is_empty() => "rejected with no reason",
            Ok(_) => continue,
        };
        problems.push(format!("{}: {problem}", path.display()));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
#[rustfmt::skip]
fn corpus_columns_follow_our_rules() {
    let Some(dir) = corpus() else { return };
    // pandas' names (expected_columns.pandas.json) under our rules: `a.1` becomes `a_2`, and
    // `Unnamed: N` is skipped as a blank header at position N + 1.
    let blank = |p: usize| (p, "blank header");
    let premiere: &[&str] = &["première", "second", "troisième"];
    let cases: &[(&str, &[&str], Skips)] = &[
        ("frictionless-py/data/duplicate-headers.csv", &["id", "name", "id_2", "age", "id_3"], &[]),
        ("duckdb/data/csv/auto/duplicate_header_collision.csv", &["a", "b", "a_2", "a_1"], &[]),
        ("duckdb/data/csv/headers/empty_4.csv", &["a", "b", "c", "e"], &[blank(4)]),
        ("duckdb/data/csv/locations_header_trailing_comma.csv", &["id", "name", "lat", "lon"],
            &[blank(5)]),
        ("duckdb/data/csv/double_quoted_header.csv", &["foo \"bar", "name"], &[]),
        ("duckdb/data/csv/auto/normalize_names_6.csv", &["#  Aₐₓ #", "ᴴᵉᴸᴸᵒ   ᵂᵒᴿᴸᵈ", "Qty (m²)"],
            &[]),
        ("frictionless-py/data/skip-rows-before-headers.csv", &["id", "name"], &[]),
        ("qsv/resources/test/snifftest-flexible.csv", &["h1", "h2", "h3", "h4"], &[]),
        ("qsv/resources/test/iwfg09_Phos_river_200911.csv",
            &["Location", "1995", "Percentage of river length > 0.1mgP/l"],
            &[blank(3), blank(4), blank(5), blank(6), blank(7), blank(8), blank(9), blank(10)]),
        ("frictionless-py/data/bom.csv", &["id", "name"], &[]),
        ("csvkit/examples/test_utf16_little.csv", &["a", "b", "c"], &[]),
        ("phpspreadsheet/tests/data/Reader/CSV/premiere.utf32lebom.csv", premiere, &[]),
        ("phpspreadsheet/tests/data/Reader/CSV/premiere.win1252.csv", premiere, &[]),
        ("csvkit/examples/test_empty_columns.csv", &["a", "b", "c"], &[blank(4), blank(5)]),
        ("csvkit/examples/bad.csv", &["column_a", "column_b", "column_c"], &[(4, "no header cell")]),
        ("readr/tests/testthat/fixtures/eol-cr.csv", &["x", "y"], &[]),
        ("duckdb/data/csv/auto/titlebasicsdebug.tsv",
            &["tconst", "titleType", "primaryTitle", "originalTitle", "isAdult", "startYear", "endYear",
              "runtimeMinutes", "genres"],
            &[]),
    ];
    for (file, columns, want_skipped) in cases {
        let got = extract_fixture(&dir.join(file))
            .unwrap_or_else(|r| panic!("{file}: rejected: {}", r.reason));
        assert_eq!(got.columns, *columns, "{file}");
        assert_eq!(got.skipped, skipped(want_skipped), "{file}");
    }
}

#[test]
fn corpus_row_counts() {
    let Some(dir) = corpus() else { return };
    let cases: &[(&str, u64)] = &[
        ("rust-csv/examples/data/bench/worldcitiespop.csv", 20_000),
        ("qsv/resources/test/311011.csv", 39_627),
        ("duckdb/data/csv/auto/titlebasicsdebug.tsv", 3_002),
        (
            "qsv/resources/test/Inpatients_MHA_Machine_readable_dataset_1011.csv",
            327,
        ),
        ("csv-spectrum/csvs/newlines_crlf.csv", 3),
        ("duckdb/data/csv/header_only.csv", 0),
    ];
    for (file, rows) in cases {
        let got = extract_fixture(&dir.join(file)).expect(file);
        assert_eq!(got.rows, *rows, "{file}");
    }
}

#[test]
fn disguised_corpus_files_are_named() {
    let Some(dir) = corpus() else { return };
    let cases: &[(&str, &str)] = &[
        (
            "_renamed/r04.csv",
            "it is a Parquet file, not a CSV file; rename it to .parquet",
        ),
        ("_renamed/r09.csv", "it is a PDF document, not a CSV file"),
        (
            "_renamed/r12.csv",
            "it is zstd-compressed data; decompress it first",
        ),
        (
            "frictionless-py/data/compression/implicit-zip.csv",
            "it is a ZIP archive, not a CSV file; unzip it first",
        ),
        (
            "csvkit/examples/dummy.csv.gz",
            "it is gzip-compressed data; decompress it first",
        ),
    ];
    for (file, want) in cases {
        let got = extract_fixture(&dir.join(file)).expect_err(file);
        assert!(got.reason.starts_with(want), "{file}: {}", got.reason);
    }
}

/// Inputs shaped like the files that reach the reader: raw bytes, CSV-ish text, and text behind
/// a known signature or byte-order mark.
fn arbitrary_file() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let text = "[a-c1-3 ,;|\t\"\r\n\u{A0}é]{0,300}".prop_map(String::into_bytes);
    let prefixes = prop_oneof![
        Just(&b""[..]),
        Just(&b"\xEF\xBB\xBF"[..]),
        Just(&b"\xFF\xFE"[..]),
        Just(&b"sep=;\n"[..]),
        Just(&b"PAR1"[..]),
        Just(&b"PK\x03\x04"[..]),
        Just(&b"<html>"[..]),
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..600),
        text.clone(),
        (prefixes, text).prop_map(|(prefix, text)| [prefix, &text].concat()),
    ]
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    #[test]
    fn any_input_gives_columns_or_a_reason(bytes in arbitrary_file(), tsv in proptest::bool::ANY) {
        match extract_bytes(&bytes, tsv.then_some(b'\t')) {
            Ok(got) => {
                proptest::prop_assert!(!got.columns.is_empty());
                proptest::prop_assert!(got.columns.iter().all(|c| !c.is_empty()));
            }
            Err(rejection) => proptest::prop_assert!(!rejection.reason.trim().is_empty()),
        }
    }
}

/// A detected encoding is checked on the whole file, not only on the start it was guessed
/// from: bytes further down that it cannot read reject the file, naming their line, instead of
/// turning into U+FFFD.
#[test]
fn bytes_the_detected_encoding_cannot_read_further_down_are_rejected() {
    let (row, _, _) = encoding_rs::SHIFT_JIS.encode("山田太郎,30,東京都千代田区\n");
    let mut input = encoding_rs::SHIFT_JIS
        .encode("名前,年齢,住所\n")
        .0
        .into_owned();
    while input.len() <= 2 * SNIFF_BYTES {
        input.extend_from_slice(&row);
    }
    let line = 1 + input.iter().filter(|&&b| b == b'\n').count();
    // 0xFF starts no Shift_JIS character.
    input.extend_from_slice(b"\xff\xff,1,x\n");
    input.extend_from_slice(&row);
    let got = extract_bytes(&input, None).expect_err("a byte Shift_JIS does not read");
    let want = format!("line {line} cannot be read: it is not valid Shift_JIS");
    assert!(got.reason.starts_with(&want), "{}", got.reason);
    // The same file without that line is read whole.
    input.truncate(input.len() - row.len() - 8);
    input.extend_from_slice(&row);
    let got = extract_bytes(&input, None).expect("read as Shift_JIS");
    assert_eq!(got.columns, ["名前", "年齢", "住所"]);
}
