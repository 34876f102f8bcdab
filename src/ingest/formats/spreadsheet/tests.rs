use super::*;
use crate::ingest::columns::{BLANK_HEADER, NO_HEADER_CELL};
use crate::ingest::formats::corpus;
use crate::ingest::formats::sniff::tests::{ole_of, zip_of};
use crate::protocol::SkippedColumn;
use rust_xlsxwriter::{Format as CellFormat, Workbook};
use std::io::Write;

fn read_bytes(format: Format, bytes: &[u8], options: &ReadOptions) -> Result<Extracted, Rejection> {
    let mut file = tempfile::Builder::new()
        .suffix(&format!(".{}", format.as_str()))
        .tempfile()
        .expect("temp file");
    file.write_all(bytes).expect("write");
    crate::ingest::formats::extract(format, file.path(), options)
}

fn xlsx(bytes: &[u8]) -> Result<Extracted, Rejection> {
    read_bytes(Format::Xlsx, bytes, &ReadOptions::default())
}

fn skip(position: usize, reason: &str) -> SkippedColumn {
    SkippedColumn {
        position,
        reason: reason.to_string(),
    }
}

/// A minimal XLSX package around one sheet's `<sheetData>` (and optional `<dimension>`),
/// written part by part so hostile shapes can be made that no writer library would make.
fn package(dimension: &str, sheet_data: &str) -> Vec<u8> {
    let types = r#"<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
    let rels = r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
    let workbook = r#"<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Data" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
    let workbook_rels = r#"<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
    let dimension = if dimension.is_empty() {
        String::new()
    } else {
        format!(r#"<dimension ref="{dimension}"/>"#)
    };
    let sheet = format!(
        r#"<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">{dimension}<sheetData>{sheet_data}</sheetData></worksheet>"#
    );
    zip_of(&[
        ("[Content_Types].xml", types.as_bytes()),
        ("_rels/.rels", rels.as_bytes()),
        ("xl/workbook.xml", workbook.as_bytes()),
        ("xl/_rels/workbook.xml.rels", workbook_rels.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet.as_bytes()),
    ])
}

/// An inline-string cell.
fn text_cell(reference: &str, text: &str) -> String {
    format!(r#"<c r="{reference}" t="inlineStr"><is><t>{text}</t></is></c>"#)
}

/// Set the uncompressed size every header of a ZIP declares for its last entry.
fn declare_size(mut zip: Vec<u8>, entry: &str, size: u32) -> Vec<u8> {
    for (signature, size_at, name_at) in [(b"PK\x03\x04", 22, 30), (b"PK\x01\x02", 24, 46)] {
        let mut at = 0;
        while let Some(found) = zip[at..].windows(4).position(|w| w == signature) {
            let start = at + found;
            if zip[start + name_at..].starts_with(entry.as_bytes()) {
                zip[start + size_at..start + size_at + 4].copy_from_slice(&size.to_le_bytes());
            }
            at = start + 4;
        }
    }
    zip
}

#[test]
fn generated_workbooks() {
    let mut book = Workbook::new();
    book.add_worksheet().set_name("Empty").unwrap();
    // The first sheet is the active one, which Excel (and the writer) never hide.
    let hidden = book.add_worksheet().set_name("Hidden").unwrap();
    hidden.write_string(0, 0, "secret").unwrap();
    hidden.set_hidden(true);
    let data = book.add_worksheet().set_name("Data").unwrap();
    data.write_string(0, 0, "Quarterly report").unwrap();
    data.write_number(0, 5, 2024.0).unwrap();
    data.merge_range(2, 0, 2, 1, "Region", &CellFormat::new())
        .unwrap();
    data.write_number(2, 2, 2023.0).unwrap();
    data.write_number(2, 3, 12.5).unwrap();
    data.write_string(2, 4, "Region").unwrap();
    for row in 3..8 {
        for column in 0..7 {
            data.write_number(row, column, f64::from(row * 10) + f64::from(column))
                .unwrap();
        }
    }
    data.write_string(9, 6, "stray").unwrap();
    let bytes = book.save_to_buffer().unwrap();

    let got = xlsx(&bytes).expect("read");
    assert_eq!(got.columns, ["Region", "2023", "12.5", "Region_2"]);
    assert_eq!(
        got.skipped,
        [
            skip(2, MERGED_HEADER),
            skip(6, NO_HEADER_CELL),
            skip(7, NO_HEADER_CELL)
        ]
    );
    assert_eq!(got.rows, 6);
    assert_eq!(
        got.notes,
        [
            "sheet 'Data' (the first visible sheet with data)",
            "header on row 3 (2 rows above it skipped: a title, 1 blank)"
        ]
    );

    let cases: &[(&str, Result<&[&str], &str>)] = &[
        ("Hidden", Ok(&["secret"])),
        ("hidden", Ok(&["secret"])),
        ("Empty", Err("its sheet 'Empty' is empty")),
        (
            "Q1",
            Err("it has no sheet named 'Q1' (its sheets are 'Empty', 'Hidden', 'Data')"),
        ),
    ];
    for (sheet, want) in cases {
        let options = ReadOptions {
            sheet: Some(sheet.to_string()),
            ..ReadOptions::default()
        };
        let got = read_bytes(Format::Xlsx, &bytes, &options);
        match (want, got) {
            (Ok(columns), Ok(got)) => assert_eq!(got.columns, *columns, "{sheet}"),
            (Err(reason), Err(got)) => assert_eq!(got.reason, *reason, "{sheet}"),
            (want, got) => panic!("{sheet}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn an_xlsx_package_named_xlsm_is_read() {
    let mut book = Workbook::new();
    book.add_worksheet().write_string(0, 0, "id").unwrap();
    let bytes = book.save_to_buffer().unwrap();
    let got = read_bytes(Format::Xlsm, &bytes, &ReadOptions::default()).expect("read");
    assert_eq!(got.columns, ["id"]);
    let refused = read_bytes(Format::Xls, &bytes, &ReadOptions::default()).unwrap_err();
    assert_eq!(
        refused.reason,
        "it is an XLSX workbook (a ZIP package) named .xls; rename it to .xlsx"
    );
}

#[test]
fn zip_bomb_is_refused_by_the_unzipped_size_cap_before_parsing() {
    // 52 MB of sheet XML that deflates to well under a megabyte.
    let rows = "<row><c><v>1</v></c></row>".repeat(2_000_000);
    let bomb = package("", &rows);
    assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
    let options = ReadOptions {
        max_unzipped_bytes: 10_000_000,
        ..ReadOptions::default()
    };
    let refused = read_bytes(Format::Xlsx, &bomb, &options).unwrap_err();
    assert!(
        refused
            .reason
            .starts_with("it expands past 10.0 MB when unzipped"),
        "{}",
        refused.reason
    );
    // A part that claims 4 GB from a few bytes never reaches a parser.
    let one = r#"<row r="1"><c r="A1"><v>1</v></c></row>"#;
    let claims = declare_size(package("", one), "xl/worksheets/sheet1.xml", 4_000_000_000);
    let refused = xlsx(&claims).unwrap_err();
    assert!(
        refused.reason.contains("looks like a ZIP bomb"),
        "{}",
        refused.reason
    );
}

#[test]
fn huge_dimensions_are_capped() {
    let far = format!(
        "<row r=\"1\">{}</row><row r=\"1048576\">{}</row>",
        text_cell("A1", "id"),
        text_cell("XFD1048576", "x")
    );
    let refused = xlsx(&package("A1:XFD1048576", &far)).unwrap_err();
    assert_eq!(
        refused.reason,
        "its sheet 'Data' has more than 50,000,000 cells (its used range A1:XFD1048576 is \
         17,179,869,184 cells)"
    );
    // A declared dimension alone allocates nothing here: the cells decide.
    let small = format!("<row r=\"1\">{}</row>", text_cell("A1", "id"));
    let got = xlsx(&package("A1:XFD1048576", &small)).expect("a small sheet");
    assert_eq!(got.columns, ["id"]);
    let beyond = format!("<row r=\"1\">{}</row>", text_cell("XFE1", "x"));
    let refused = xlsx(&package("", &beyond)).unwrap_err();
    assert!(
        refused.reason.contains("beyond the last row or column"),
        "{}",
        refused.reason
    );
    let options = ReadOptions {
        max_cells: 4,
        ..ReadOptions::default()
    };
    let wide = format!(
        "<row r=\"1\">{}{}</row>",
        text_cell("A1", "a"),
        text_cell("E1", "e")
    );
    let refused = read_bytes(Format::Xlsx, &package("", &wide), &options).unwrap_err();
    assert!(
        refused.reason.contains("more than 4 cells"),
        "{}",
        refused.reason
    );
}

#[test]
fn encrypted_workbooks_are_named() {
    let package = ole_of(&[
        ("EncryptionInfo", b"\x04\0\x04\0"),
        ("EncryptedPackage", &[0; 64]),
    ]);
    let bof = [&0x0809u16.to_le_bytes()[..], &16u16.to_le_bytes(), &[0; 16]].concat();
    let filepass = [
        &0x002Fu16.to_le_bytes()[..],
        &4u16.to_le_bytes(),
        &[1, 0, 1, 0],
    ]
    .concat();
    let xls = ole_of(&[("Workbook", &[bof, filepass].concat())]);
    let want = "it is an encrypted (password-protected) workbook; save it without a password";
    for (format, bytes) in [
        (Format::Xlsx, &package),
        (Format::Xlsm, &package),
        (Format::Xls, &xls),
    ] {
        let refused = read_bytes(format, bytes, &ReadOptions::default()).unwrap_err();
        assert_eq!(refused.reason, want, "{format:?}");
    }
}

#[test]
fn truncated_containers_are_refused() {
    let mut book = Workbook::new();
    book.add_worksheet().write_string(0, 0, "id").unwrap();
    let whole = book.save_to_buffer().unwrap();
    let refused = xlsx(&whole[..whole.len() / 2]).unwrap_err();
    assert!(
        refused
            .reason
            .starts_with("it is a damaged or truncated ZIP archive, not an XLSX workbook"),
        "{}",
        refused.reason
    );
    let ole = ole_of(&[("Workbook", &[0x09, 0x08, 0x10, 0x00])]);
    let refused = read_bytes(Format::Xls, &ole[..600], &ReadOptions::default()).unwrap_err();
    assert!(
        refused
            .reason
            .starts_with("it could not be read as an XLS workbook"),
        "{}",
        refused.reason
    );
    let Some(dir) = corpus::dir() else { return };
    let real = std::fs::read(dir.join("frictionless-py/data/table.xls")).expect("read");
    for keep in [real.len() / 2, 4096, 512] {
        let refused = read_bytes(Format::Xls, &real[..keep], &ReadOptions::default());
        let reason = refused.expect_err("truncated").reason;
        assert!(reason.contains("XLS workbook"), "{keep}: {reason}");
    }
}

/// (file, sheet to ask for, columns, skipped, rows)
type Case = (
    &'static str,
    Option<&'static str>,
    &'static [&'static str],
    &'static [(usize, &'static str)],
    u64,
);

#[test]
#[rustfmt::skip]
fn corpus_columns_follow_our_rules() {
    let Some(dir) = corpus::dir() else { return };
    // expected_columns*.json under our rules: `a.1` is `a_2`, `Unnamed: N` a skipped column
    // N + 1 (a blank header, or no header cell when the header row ends before it), and
    // names keep the sheet's own text (numbers without ".0", dates in ISO form).
    let cases: &[Case] = &[
        ("readxl/tests/testthat/sheets/names-need-repair-xlsx.xlsx", None, &["a b", "a b_2", "c%&$"], &[(3, BLANK_HEADER)], 2),
        ("readxl/tests/testthat/sheets/empty-named-column.xlsx", None, &["x", "y", "z", "w"], &[], 3),
        ("readxl/tests/testthat/sheets/unnamed-duplicated-columns.xlsx", None, &["var2", "var2_2"],
            &[(1, BLANK_HEADER), (3, BLANK_HEADER)], 2),
        ("readxl/tests/testthat/sheets/missing-first-column.xlsx", None, &["1"], &[], 2),
        ("readxl/inst/extdata/clippy.xls", None, &["name", "value"], &[], 4),
        // Names over their units, read as one two-row header (the units row was data before).
        ("readxl/inst/extdata/clippy.xls", Some("two-row-header"),
            &["name / (at birth)", "species / (office supply type)", "death / (date is approximate)",
              "weight / (in grams)"], &[], 1),
        ("xlrd/tests/samples/xf_class.xls", None, &["RED", "RED_2"], &[(3, NO_HEADER_CELL)], 5),
        ("xlrd/tests/samples/xf_class.xls", Some("table3"), &["RED", "RED_2"], &[], 2),
        ("phpspreadsheet/tests/data/Reader/XLS/maccentraleurope.xls", None,
            &["NumerPolisy", "NumerWyceny", "NrRejestracyjny", "VIN", "RodzajPojazdu", "Marka", "Model", "Przebieg",
              "Ładowność", "PojemnoscSilnika", "MocSilnika", "RodzajPaliwa", "LiczbaMiejsc", "RokProdukcji",
              "DataPierwszejRejestracji", "WycenaPojazdu"], &[], 2),
        ("calamine/tests/header-row.xlsx", None, &["Columns", "Column A", "Column B", "Column C"], &[], 1),
        ("poi/test-data/spreadsheet/TablesWithDifferentHeaders.xlsx", None, &["12", "34"], &[], 1),
        ("poi/test-data/spreadsheet/TablesWithDifferentHeaders.xlsx", Some("FloatHeaders"), &["12.34", "34.56"], &[], 1),
        ("poi/test-data/spreadsheet/TablesWithDifferentHeaders.xlsx", Some("NoExplicitHeaders"), &["Column1", "Column2"], &[], 2),
        ("csvkit/examples/sheets.xlsx", None, &["text", "date", "integer", "boolean", "float", "datetime", "empty_column"],
            &[(8, NO_HEADER_CELL)], 5),
        ("csvkit/examples/sheets.xlsx", Some("ʤ"), &["a", "b", "c"], &[], 1),
        ("csvkit/examples/test_skip_lines.xls", None, &["text", "date", "integer", "boolean", "float", "datetime", "empty_column"],
            &[(8, NO_HEADER_CELL)], 5),
        ("frictionless-py/data/sheet2.xls", None, &["id", "name"], &[], 2),
        ("frictionless-py/data/sheets.xlsx", Some("Sheet3"), &["id", "name"], &[], 1),
        ("qsv/resources/test/excel-numeric-header.xlsx", None, &["location", "2020", "2021", "2022"], &[], 2),
        ("calamine/tests/temperature-in-middle.xlsx", None, &["label", "value"], &[], 2),
        ("sheetjs-test_files/merge_cells.xls", None, &["A1:B2", "C1:C2", "Separate blocks"], &[(2, MERGED_HEADER)], 2),
        ("excelize/test/MergeCell.xlsx", None, &["A1", "C1", "D1"], &[(2, MERGED_HEADER)], 11),
        ("calamine/tests/date.xlsx", None, &["2021-01-01", "15"], &[], 2),
        ("readxl/tests/testthat/sheets/dates-1904.xls", None,
            &["2000-01-01", "2000-01-01_2", "2000-01-01_3", "2000-01-01_4", "2000-01-01_5"], &[], 0),
        ("calamine/tests/sheet_name_parsing.xls", None,
            &["Titel", "Orginaltitel", "År", "Regissör", "Ditt betyg", "Datum", "IMDB#"], &[], 0),
        ("readxl/tests/testthat/sheets/whitespace-xlsx.xlsx", None, &["<-space, space->"], &[], 5),
        ("readxl/tests/testthat/sheets/skipping.xlsx", Some("occupied_row_and_blank_row"), &["var1", "var2"], &[], 2),
        ("poi/test-data/spreadsheet/SampleSS.strict.xlsx", Some("Sheet Number 2"), &["cb=1", "cb=10", "cb=2", "cb=sum"], &[], 1),
        ("phpspreadsheet/tests/data/Reader/XLSX/Zip-Windows-Directory-Separator.xlsx", None,
            &["Key ID", "Key", "English", "Notes", "Description", "Portuguese (Brazil)", "German", "French", "Italian",
              "Japanese", "Korean", "Spanish (Mexico)", "Russian", "Turkish", "Traditional Chinese", "Simplified Chinese",
              "Spreadsheet", "Sheet Name", "Release", "Speaker", "Listener"], &[], 2),
        ("calamine/tests/vba.xlsm", Some("Sheet1"), &[], &[], 0),
    ];
    for (file, sheet, columns, skipped, rows) in cases {
        let format = Format::from_extension(file.rsplit('.').next().unwrap_or("")).expect(file);
        let options = ReadOptions { sheet: sheet.map(str::to_string), ..ReadOptions::default() };
        let got = crate::ingest::formats::extract(format, &dir.join(file), &options);
        if columns.is_empty() {
            assert!(got.is_err(), "{file}: an empty sheet is refused");
            continue;
        }
        let got = got.unwrap_or_else(|r| panic!("{file} {sheet:?}: rejected: {}", r.reason));
        assert_eq!(got.columns, *columns, "{file} {sheet:?}");
        let want: Vec<SkippedColumn> = skipped.iter().map(|&(p, r)| skip(p, r)).collect();
        assert_eq!(got.skipped, want, "{file} {sheet:?}");
        assert_eq!(got.rows, *rows, "{file} {sheet:?}");
    }
}

#[test]
fn every_corpus_workbook_gives_columns_or_a_reason() {
    let Some(dir) = corpus::dir() else { return };
    let files = corpus::with_extension(&dir, &["xls", "xlsx", "xlsm"]);
    assert!(files.len() > 100, "only {} workbooks", files.len());
    let mut problems = Vec::new();
    for entry in files {
        let ext = entry
            .path
            .rsplit('.')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let format = Format::from_extension(&ext).expect("a spreadsheet extension");
        let problem = match crate::ingest::formats::extract(
            format,
            &dir.join(&entry.path),
            &ReadOptions::default(),
        ) {
            Ok(got) if got.columns.is_empty() => "accepted with no columns".to_string(),
            Err(r) if r.reason.contains("reader failed") => {
                format!("reader panicked: {}", r.reason)
            }
            Err(r) if r.reason.trim().is_empty() => "rejected with no reason".to_string(),
            Ok(_) | Err(_) => continue,
        };
        problems.push(format!("{}: {problem}", entry.path));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
#[rustfmt::skip]
fn corpus_workbooks_that_are_refused_say_why() {
    let Some(dir) = corpus::dir() else { return };
    let encrypted = "it is an encrypted (password-protected) workbook; save it without a password";
    let cases: &[(&str, &str)] = &[
        ("phpspreadsheet/tests/data/Reader/XLS/pwtest.xls", encrypted),
        ("sheetjs-test_files/password_2002_128_strong.xls", encrypted),
        ("poi/test-data/spreadsheet/xor-encryption-abc.xls", encrypted),
        ("poi/test-data/spreadsheet/protected_passtika.xlsx", encrypted),
        ("excelize/test/encryptAES.xlsx", encrypted),
        ("poi/test-data/spreadsheet/testEXCEL_4.xls", "it is an Excel 4.0 (BIFF4) worksheet, a format too old to read"),
        ("poi/test-data/spreadsheet/testEXCEL_3.xls", "it is an Excel 3.0 (BIFF3) worksheet"),
        ("calamine/tests/too_small.xls", "it is plain text, not an XLS workbook"),
        ("phpspreadsheet/tests/data/Reader/NotASpreadsheetFile.doc", "it is a Word document (.doc), not an XLS workbook"),
        ("exceljs/spec/integration/data/missing-bits.xlsx", "it is an incomplete XLSX package"),
        ("poi/test-data/spreadsheet/clusterfuzz-testcase-minimized-XLSX2CSVFuzzer-5636439151607808.xlsx",
            "it is a damaged or truncated ZIP archive, not an XLSX workbook"),
        ("poi/test-data/spreadsheet/clusterfuzz-testcase-minimized-POIHSSFFuzzer-6137883240824832.xls",
            "it could not be read as an XLS workbook"),
        ("poi/test-data/spreadsheet/poc-xmlbomb.xlsx", "it could not be read as an XLSX workbook"),
        ("poi/test-data/spreadsheet/duplicate-filename.xlsx", "its ZIP archive holds two parts with the same name"),
        ("calamine/tests/any_sheets.ods", "it is an OpenDocument spreadsheet (.ods), which is not accepted"),
        ("calamine/tests/any_sheets.xlsb", "it is an Excel binary workbook (.xlsb), which is not accepted"),
    ];
    for (file, want) in cases {
        // Dropped as a workbook: what a person would have named it.
        let format = match file.rsplit('.').next().unwrap_or("") {
            "doc" => Format::Xls,
            "ods" | "xlsb" => Format::Xlsx,
            ext => Format::from_extension(ext).expect(file),
        };
        let refused = crate::ingest::formats::extract(format, &dir.join(file), &ReadOptions::default())
            .expect_err(file);
        assert!(refused.reason.starts_with(want), "{file}: {}", refused.reason);
    }
}

#[test]
#[rustfmt::skip]
fn renamed_files_are_named_for_what_they_are() {
    let Some(dir) = corpus::dir() else { return };
    let cases: &[(&str, &str)] = &[
        ("r03.parquet", "it is CSV text, not a Parquet file; rename it to .csv"),
        ("r04.csv", "it is a Parquet file, not a CSV file; rename it to .parquet"),
        ("r05.xlsx", "it is an OpenDocument spreadsheet (.ods), which is not accepted"),
        ("r06.xlsx", "it is an Excel binary workbook (.xlsb), which is not accepted"),
        ("r07.xls", "it is a Word document (.doc), not an XLS workbook"),
        ("r08.xlsx", "it is a PNG image, not an XLSX workbook"),
        ("r09.csv", "it is a PDF document, not a CSV file"),
        ("r10.parquet", "it is an Arrow IPC file, not a Parquet file"),
        ("r11.xlsx", "it is a macro-enabled workbook (.xlsm) named .xlsx; rename it to .xlsm"),
        ("r12.csv", "it is zstd-compressed data; decompress it first"),
        ("r14.xls", "it is an Excel 2003 XML spreadsheet (SpreadsheetML) saved with a .xls name"),
        ("r15.xls", "it is tab-separated text saved with a .xls name"),
    ];
    let renamed: Vec<_> = std::fs::read_dir(dir.join("_renamed")).expect("_renamed").collect();
    assert_eq!(renamed.len(), cases.len(), "every file in _renamed/ has a case");
    for (file, want) in cases {
        let format = Format::from_extension(file.rsplit('.').next().unwrap_or("")).expect(file);
        let path = dir.join("_renamed").join(file);
        let refused = crate::ingest::formats::extract(format, &path, &ReadOptions::default())
            .expect_err(file);
        assert!(refused.reason.starts_with(want), "{file}: {}", refused.reason);
    }
}
