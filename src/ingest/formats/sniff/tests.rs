use super::*;
use crate::ingest::formats::corpus;
use std::io::Write;

fn identify_bytes(bytes: &[u8]) -> Kind {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(bytes).expect("write temp file");
    identify(file.path()).expect("identify")
}

/// A ZIP archive of `(name, content)` entries, deflated.
pub(crate) fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default();
    for (name, content) in entries {
        writer.start_file(*name, options).expect("start zip entry");
        writer.write_all(content).expect("write zip entry");
    }
    writer.finish().expect("finish zip").into_inner()
}

/// An OLE2 compound file with the given root streams.
pub(crate) fn ole_of(streams: &[(&str, &[u8])]) -> Vec<u8> {
    let mut compound =
        cfb::CompoundFile::create(std::io::Cursor::new(Vec::new())).expect("create compound");
    for (name, content) in streams {
        let mut stream = compound
            .create_stream(format!("/{name}"))
            .expect("create stream");
        stream.write_all(content).expect("write stream");
    }
    compound.flush().expect("flush compound");
    compound.into_inner().into_inner()
}

/// A BIFF record: type, length, body.
fn record(kind: u16, body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&(body.len() as u16).to_le_bytes());
    out.extend_from_slice(body);
    out
}

/// Named parts of a container: ZIP entries or OLE2 streams.
type Entries<'a> = Vec<(&'a str, &'a [u8])>;

const CONTENT_TYPES: &str = r#"<?xml version="1.0"?><Types><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>"#;

#[test]
#[rustfmt::skip]
fn signatures_and_text() {
    let cases: &[(&str, &[u8], Kind)] = &[
        ("PDF", b"%PDF-1.7\n", Kind::Pdf),
        ("PNG", b"\x89PNG\r\n\x1A\n\0\0", Kind::Png),
        ("gzip", b"\x1F\x8B\x08\0", Kind::Gzip),
        ("zstd", b"\x28\xB5\x2F\xFD\0", Kind::Zstd),
        ("Arrow IPC", b"ARROW1\0\0\xFF\xFF\xFF\xFF", Kind::ArrowIpc),
        ("Parquet", b"PAR1\x15\x04\x15\0\0\0\x04\0\0\0PAR1", Kind::Parquet),
        ("encrypted Parquet", b"PARE\x15\x04\x15\0\0\0\x04\0\0\0PARE", Kind::ParquetEncrypted),
        ("no footer", b"PAR1\x15\x04\x15\0\0\0\x04\0\0\0\0\0", Kind::ParquetTruncated),
        ("no head", b"\xF3\x0E\xFF\xFF\x15\x04\0\0\x04\0\0\0PAR1", Kind::ParquetNoHead),
        ("text ending PAR1", b"a,b\n1,PAR1", Kind::Text { delimiter: Some(b',') }),
        ("text starting PAR1", b"PAR1;PAR2\n1;2\n", Kind::Text { delimiter: Some(b';') }),
        ("tabs", b"id\tname\n1\tx\n", Kind::Text { delimiter: Some(b'\t') }),
        ("plain", b"Attachment not found!", Kind::Text { delimiter: None }),
        ("HTML", b"\xEF\xBB\xBF\n <!DOCTYPE html><html>", Kind::Html),
        ("Excel HTML", b"<html xmlns:x=\"urn:schemas-microsoft-com:office:excel\">", Kind::Html),
        ("SpreadsheetML", b"<?xml version=\"1.0\"?>\n<Workbook xmlns=\"urn:schemas-microsoft-com:office:spreadsheet\">",
            Kind::SpreadsheetXml),
        ("XML", b"<?xml version=\"1.0\"?><root/>", Kind::Xml),
        ("BIFF4", b"\x09\x04\x06\x00\x00\x00\x10\x00", Kind::BareBiff("4.0 (BIFF4)")),
        ("binary", b"\x00\x01\x02\x03 not text", Kind::Binary),
        ("UTF-16 text", b"\xFF\xFEa\0,\0b\0", Kind::Text { delimiter: Some(b',') }),
        ("empty", b"", Kind::Empty),
    ];
    for (case, bytes, want) in cases {
        assert_eq!(&identify_bytes(bytes), want, "{case}");
    }
}

#[test]
#[rustfmt::skip]
fn zip_packages_by_content_type_and_parts() {
    let types = |main: &str| CONTENT_TYPES.replace("spreadsheetml.sheet.main+xml", main);
    let macro_types = types("../vnd.ms-excel.sheet.macroEnabled.main+xml");
    let binary_types = types("../vnd.ms-excel.sheet.binary.macroEnabled.main");
    let word_types = types("wordprocessingml.document.main+xml");
    let cases: Vec<(&str, Entries, Kind)> = vec![
        ("xlsx", vec![("[Content_Types].xml", CONTENT_TYPES.as_bytes()), ("xl/workbook.xml", b"<w/>")], Kind::Xlsx),
        ("xlsm", vec![("[Content_Types].xml", macro_types.as_bytes())], Kind::Xlsm),
        ("xlsb", vec![("[Content_Types].xml", binary_types.as_bytes())], Kind::Xlsb),
        ("docx", vec![("[Content_Types].xml", word_types.as_bytes())], Kind::Docx),
        ("ods", vec![("mimetype", b"application/vnd.oasis.opendocument.spreadsheet")], Kind::Ods),
        ("odt", vec![("mimetype", b"application/vnd.oasis.opendocument.text")], Kind::OpenDocument),
        ("backslashes", vec![("[Content_Types].xml", CONTENT_TYPES.as_bytes()), ("xl\\workbook.xml", b"<w/>")],
            Kind::Xlsx),
        ("no content types", vec![("xl/worksheets/sheet1.xml", b"<x/>")], Kind::OoxmlIncomplete),
        ("xlsb parts only", vec![("xl/workbook.bin", b"\0")], Kind::Xlsb),
        ("plain zip", vec![("table.csv", b"a,b\n")], Kind::Zip),
    ];
    for (case, entries, want) in cases {
        assert_eq!(identify_bytes(&zip_of(&entries)), want, "{case}");
    }
    let whole = zip_of(&[("[Content_Types].xml", CONTENT_TYPES.as_bytes())]);
    let cut = identify_bytes(&whole[..whole.len() / 2]);
    assert!(matches!(cut, Kind::ZipDamaged(_)), "{cut:?}");
}

#[test]
fn ole2_files_by_their_streams() {
    let bof = record(0x0809, &[0; 16]);
    let plain = [
        bof.clone(),
        record(0x0042, &[0xE4, 0x04]),
        record(0x0085, &[0; 8]),
    ]
    .concat();
    let rc4 = [
        bof.clone(),
        record(0x002F, &[1, 0, 1, 0]),
        record(0x0085, &[0; 8]),
    ]
    .concat();
    let xor = [bof, record(0x002F, &[0, 0, 0x12, 0x34, 0x56, 0x78])].concat();
    let cases: Vec<(&str, Entries, Kind)> = vec![
        ("xls", vec![("Workbook", &plain)], Kind::Xls),
        ("BOOK in capitals", vec![("BOOK", &plain)], Kind::Xls),
        ("RC4", vec![("Workbook", &rc4)], Kind::XlsEncrypted),
        ("XOR", vec![("Workbook", &xor)], Kind::XlsEncrypted),
        (
            "encrypted OOXML",
            vec![("EncryptionInfo", b"\x04\0"), ("EncryptedPackage", b"\0\0")],
            Kind::EncryptedPackage,
        ),
        ("Word", vec![("WordDocument", b"\xEC\xA5")], Kind::WordDoc),
        ("other", vec![("Contents", b"x")], Kind::OleOther),
    ];
    for (case, streams, want) in cases {
        assert_eq!(identify_bytes(&ole_of(&streams)), want, "{case}");
    }
    let whole = ole_of(&[("Workbook", &plain)]);
    let cut = identify_bytes(&whole[..700]);
    assert!(matches!(cut, Kind::OleUnreadable(_)), "{cut:?}");
}

/// What the manifest's `type` column (and for encrypted workbooks, its note) says a file is.
fn expected(entry: &corpus::Entry) -> Option<fn(&Kind) -> bool> {
    let note = entry.note.to_ascii_lowercase();
    let encrypted = note.contains("encrypted") || note.contains("password");
    Some(match entry.kind.as_str() {
        "OLE2/CFB (BIFF xls)" if encrypted => |k| *k == Kind::XlsEncrypted,
        "OLE2/CFB (BIFF xls)" if note.contains("corrupt cfb header") => {
            |k| matches!(k, Kind::OleUnreadable(_))
        }
        "OLE2/CFB (BIFF xls)" => |k| *k == Kind::Xls,
        "OLE2/CFB: encrypted OOXML package" => |k| *k == Kind::EncryptedPackage,
        "OLE2/CFB (Word document, no Workbook stream)" => |k| *k == Kind::WordDoc,
        "ZIP: OOXML spreadsheet" => |k| *k == Kind::Xlsx,
        "ZIP: OOXML spreadsheet with vbaProject.bin" => |k| *k == Kind::Xlsm,
        "ZIP: OOXML .xlsb package (binary parts)" => |k| *k == Kind::Xlsb,
        "ZIP: OpenDocument" => |k| *k == Kind::Ods,
        "ZIP: corrupt/truncated (BadZipFile)" => |k| matches!(k, Kind::ZipDamaged(_)),
        "Parquet (PAR1..PAR1)" => |k| *k == Kind::Parquet,
        "Parquet, encrypted footer (PARE)" => |k| *k == Kind::ParquetEncrypted,
        "Parquet footer only (leading PAR1 missing/garbled)" => |k| *k == Kind::ParquetNoHead,
        "Arrow IPC file" => |k| *k == Kind::ArrowIpc,
        "PDF" => |k| *k == Kind::Pdf,
        "PNG image" => |k| *k == Kind::Png,
        "gzip" => |k| *k == Kind::Gzip,
        "zstd" => |k| *k == Kind::Zstd,
        "XML text" => |k| *k == Kind::SpreadsheetXml,
        "empty (0 bytes)" => |k| *k == Kind::Empty,
        kind if kind.starts_with("bare BIFF stream") => |k| matches!(k, Kind::BareBiff(_)),
        kind if kind.starts_with("text (") && !kind.contains("NUL") => {
            |k| matches!(k, Kind::Text { .. })
        }
        _ => return None,
    })
}

#[test]
fn corpus_files_are_what_the_manifest_says() {
    let Some(dir) = corpus::dir() else { return };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for entry in corpus::manifest(&dir) {
        let Some(fits) = expected(&entry) else {
            continue;
        };
        let kind = identify(&dir.join(&entry.path)).expect("identify");
        checked += 1;
        if !fits(&kind) {
            wrong.push(format!("{} ({}): {kind:?}", entry.path, entry.kind));
        }
    }
    assert!(checked > 250, "only {checked} files checked");
    assert!(wrong.is_empty(), "{wrong:#?}");
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn any_bytes_are_identified(
        prefix in proptest::sample::select(vec![&b""[..], b"PK\x03\x04", OLE2_MAGIC, b"PAR1", b"\x09\x04\x06\x00"]),
        body in proptest::collection::vec(proptest::arbitrary::any::<u8>(), 0..2000),
    ) {
        let kind = identify_bytes(&[prefix, &body].concat());
        proptest::prop_assert!(!kind.what().is_empty());
    }
}
