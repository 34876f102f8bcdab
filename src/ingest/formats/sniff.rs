//! What a file really is, from its content: magic bytes first, then structure.
//!
//! Every reader asks [`identify`] before it parses anything, so a PDF named `.csv` or an `.xlsx`
//! named `.xls` is named for what it is instead of failing deep inside a parser. Containers are
//! opened just far enough to tell their kinds apart: a ZIP's central directory and its
//! `[Content_Types].xml` or `mimetype` entry, an OLE2 file's root directory and the first records
//! of its workbook stream, a Parquet file's last bytes.
//!
//! It reads at most a few kilobytes of decompressed content and never decides whether a kind is
//! acceptable: that is `disguise`'s job, per claimed format.

use super::Rejection;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

/// How much of the start of a file the signatures and text checks look at.
const HEAD_BYTES: u64 = 4096;

/// How much of a package's `[Content_Types].xml` or `mimetype` is read to classify it.
const CONTENT_TYPES_BYTES: u64 = 64 * 1024;

/// BIFF records read while looking for a FILEPASS record before the first sheet.
const BIFF_RECORDS_SCANNED: usize = 10_000;

/// What a file is, as far as its content says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// OLE2 with a `Workbook` (or `Book`) stream: Excel 97–2003.
    Xls,
    /// An XLS workbook whose globals carry a FILEPASS record (RC4, CryptoAPI or XOR).
    XlsEncrypted,
    /// OLE2 holding `EncryptionInfo` and `EncryptedPackage`: a password-protected OOXML file.
    EncryptedPackage,
    WordDoc,
    PowerPoint,
    /// OLE2 with none of the streams above.
    OleOther,
    /// An OLE2 signature whose directory could not be listed. Calamine has its own reader and
    /// gets the last word on whether it is a workbook.
    OleUnreadable(String),
    /// A bare BIFF stream with no OLE2 container (Excel 2.0–4.0 worksheets); the version.
    BareBiff(&'static str),
    Xlsx,
    Xlsm,
    Xlsb,
    Ods,
    /// An OpenDocument file that is not a spreadsheet.
    OpenDocument,
    Docx,
    Pptx,
    /// A ZIP with workbook parts (`xl/…`) but no `[Content_Types].xml`.
    OoxmlIncomplete,
    /// Any other ZIP archive.
    Zip,
    /// A ZIP signature whose central directory cannot be read (truncated or damaged).
    ZipDamaged(String),
    Parquet,
    /// `PARE` magic: Parquet modular encryption with an encrypted footer.
    ParquetEncrypted,
    /// Ends like Parquet but does not start like it.
    ParquetNoHead,
    /// Starts like Parquet but has no footer.
    ParquetTruncated,
    ArrowIpc,
    Pdf,
    Png,
    Jpeg,
    Gif,
    Gzip,
    Zstd,
    Xz,
    Bzip2,
    SevenZip,
    Sqlite,
    Rtf,
    Html,
    /// Excel 2003 XML ("SpreadsheetML"), often saved as `.xls`.
    SpreadsheetXml,
    Xml,
    /// Text; `delimiter` is the one its first lines agree on, if any.
    Text {
        delimiter: Option<u8>,
    },
    Binary,
    Empty,
}

impl Kind {
    /// What to call it after "it is": "a PDF document".
    pub fn what(&self) -> &'static str {
        match self {
            Kind::Xls => "an XLS workbook (Excel 97-2003)",
            Kind::XlsEncrypted | Kind::EncryptedPackage => {
                "an encrypted (password-protected) workbook"
            }
            Kind::WordDoc => "a Word document (.doc)",
            Kind::PowerPoint => "a PowerPoint presentation (.ppt)",
            Kind::OleOther | Kind::OleUnreadable(_) => "an Office (OLE2) file",
            Kind::BareBiff(_) => "an old Excel worksheet",
            Kind::Xlsx => "an XLSX workbook (a ZIP package)",
            Kind::Xlsm => "a macro-enabled workbook (.xlsm)",
            Kind::Xlsb => "an Excel binary workbook (.xlsb)",
            Kind::Ods => "an OpenDocument spreadsheet (.ods)",
            Kind::OpenDocument => "an OpenDocument file",
            Kind::Docx => "a Word document (.docx)",
            Kind::Pptx => "a PowerPoint presentation (.pptx)",
            Kind::OoxmlIncomplete => "an incomplete XLSX package",
            Kind::Zip => "a ZIP archive",
            Kind::ZipDamaged(_) => "a damaged ZIP archive",
            Kind::Parquet => "a Parquet file",
            Kind::ParquetEncrypted => "an encrypted Parquet file",
            Kind::ParquetNoHead | Kind::ParquetTruncated => "a damaged Parquet file",
            Kind::ArrowIpc => "an Arrow IPC file",
            Kind::Pdf => "a PDF document",
            Kind::Png => "a PNG image",
            Kind::Jpeg => "a JPEG image",
            Kind::Gif => "a GIF image",
            Kind::Gzip => "gzip-compressed data",
            Kind::Zstd => "zstd-compressed data",
            Kind::Xz => "xz-compressed data",
            Kind::Bzip2 => "bzip2-compressed data",
            Kind::SevenZip => "a 7-Zip archive",
            Kind::Sqlite => "an SQLite database",
            Kind::Rtf => "an RTF document",
            Kind::Html => "an HTML page",
            Kind::SpreadsheetXml => "an Excel 2003 XML spreadsheet (SpreadsheetML)",
            Kind::Xml => "an XML document",
            Kind::Text {
                delimiter: Some(b'\t'),
            } => "tab-separated text",
            Kind::Text { delimiter: Some(_) } => "CSV text",
            Kind::Text { delimiter: None } => "plain text",
            Kind::Binary => "binary data",
            Kind::Empty => "empty",
        }
    }
}

/// Signatures at offset 0, checked in order.
#[rustfmt::skip]
const MAGIC: &[(&[u8], Kind)] = &[
    (b"%PDF", Kind::Pdf),
    (b"\x89PNG\r\n\x1A\n", Kind::Png),
    (b"\xFF\xD8\xFF", Kind::Jpeg),
    (b"GIF8", Kind::Gif),
    (b"\x1F\x8B", Kind::Gzip),
    (b"\x28\xB5\x2F\xFD", Kind::Zstd),
    (b"\xFD7zXZ\x00", Kind::Xz),
    (b"BZh", Kind::Bzip2),
    (b"7z\xBC\xAF\x27\x1C", Kind::SevenZip),
    (b"ARROW1", Kind::ArrowIpc),
    (b"SQLite format 3\x00", Kind::Sqlite),
    (b"{\\rtf", Kind::Rtf),
];

const ZIP_MAGIC: &[&[u8]] = &[b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08"];
const OLE2_MAGIC: &[u8] = b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1";

/// What the file at `path` is. Fails only when the file cannot be read at all.
pub fn identify(path: &Path) -> Result<Kind, Rejection> {
    let unreadable = |e: std::io::Error| Rejection::new(format!("it could not be read: {e}"));
    let mut file = super::input::open(path).map_err(unreadable)?;
    let size = file.metadata().map_err(unreadable)?.len();
    let mut head = Vec::with_capacity(HEAD_BYTES as usize);
    (&mut file)
        .take(HEAD_BYTES)
        .read_to_end(&mut head)
        .map_err(unreadable)?;
    let mut tail = [0u8; 8];
    if size >= 8 {
        file.seek(SeekFrom::End(-8)).map_err(unreadable)?;
        file.read_exact(&mut tail).map_err(unreadable)?;
    }
    if let Some(kind) = columnar(&head, &tail, size) {
        return Ok(kind);
    }
    if ZIP_MAGIC.iter().any(|m| head.starts_with(m)) {
        return Ok(zip_kind(file));
    }
    if head.starts_with(OLE2_MAGIC) {
        return Ok(ole_kind(file));
    }
    Ok(from_head(&head, size))
}

/// Parquet and its damaged forms, from the first bytes and the last eight.
fn columnar(head: &[u8], tail: &[u8; 8], size: u64) -> Option<Kind> {
    let starts = head.starts_with(b"PAR1");
    if head.starts_with(b"PARE") || (size >= 8 && &tail[4..] == b"PARE") {
        return Some(Kind::ParquetEncrypted);
    }
    if size >= 8 && &tail[4..] == b"PAR1" {
        if starts && size >= 12 {
            return Some(Kind::Parquet);
        }
        // Text that happens to end in "PAR1" is still text; a damaged Parquet file is binary.
        if !is_plain_text(head) {
            return Some(Kind::ParquetNoHead);
        }
    }
    // "PAR1" may also begin a header cell; in Parquet a binary page header follows it.
    if starts && head.get(4).is_some_and(|b| b.is_ascii_control()) {
        return Some(Kind::ParquetTruncated);
    }
    None
}

/// Kinds told from the first bytes alone: signatures, then markup, then text or binary.
fn from_head(head: &[u8], size: u64) -> Kind {
    if size == 0 {
        return Kind::Empty;
    }
    if let Some((_, kind)) = MAGIC.iter().find(|(magic, _)| head.starts_with(magic)) {
        return kind.clone();
    }
    if let Some(version) = bare_biff(head) {
        return Kind::BareBiff(version);
    }
    if let Some(kind) = markup(head) {
        return kind;
    }
    if looks_like_text(head) {
        let complete = size <= HEAD_BYTES;
        return Kind::Text {
            delimiter: super::delimiter::delimiter_in(head, complete),
        };
    }
    Kind::Binary
}

/// A BIFF2–BIFF5 BOF record at offset 0: a worksheet saved without an OLE2 container.
fn bare_biff(head: &[u8]) -> Option<&'static str> {
    let &[0x09, version, len, 0x00, ..] = head else {
        return None;
    };
    if !(4..=16).contains(&len) {
        return None;
    }
    match version {
        0x00 => Some("2.1 (BIFF2)"),
        0x02 => Some("3.0 (BIFF3)"),
        0x04 => Some("4.0 (BIFF4)"),
        0x08 => Some("5.0 (BIFF5, without its OLE2 container)"),
        _ => None,
    }
}

/// HTML, SpreadsheetML and other XML, by how the text starts (after a BOM and whitespace).
fn markup(head: &[u8]) -> Option<Kind> {
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    let lower = text.to_ascii_lowercase();
    let starts = |prefix: &str| lower.starts_with(prefix.as_bytes());
    let contains = |needle: &str| lower.windows(needle.len()).any(|w| w == needle.as_bytes());
    if starts("<?xml") {
        if contains("urn:schemas-microsoft-com:office:spreadsheet") {
            return Some(Kind::SpreadsheetXml);
        }
        if contains("<html") {
            return Some(Kind::Html);
        }
        return Some(Kind::Xml);
    }
    if starts("<!doctype html") || starts("<html") || starts("<table") || starts("<head") {
        return Some(Kind::Html);
    }
    None
}

/// UTF-8 (possibly cut short at the end) without control characters other than line breaks,
/// tabs and form feeds: text beyond doubt.
fn is_plain_text(head: &[u8]) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(_) => true,
        Err(e) => e.error_len().is_none(),
    };
    valid
        && !head
            .iter()
            .any(|&b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C)) || b == 0x7F)
}

/// Text has no NUL bytes, unless a UTF-16 or UTF-32 byte-order mark says they are normal.
fn looks_like_text(head: &[u8]) -> bool {
    let wide_bom = [&b"\xFF\xFE"[..], b"\xFE\xFF", b"\x00\x00\xFE\xFF"]
        .iter()
        .any(|bom| head.starts_with(bom));
    wide_bom || !head.contains(&0)
}

/// Which OOXML, OpenDocument or plain ZIP archive this is.
fn zip_kind(file: File) -> Kind {
    let mut archive = match zip::ZipArchive::new(BufReader::new(file)) {
        Ok(archive) => archive,
        Err(e) => return Kind::ZipDamaged(e.to_string()),
    };
    // Windows-made packages sometimes separate folders with backslashes.
    let names: Vec<String> = archive
        .file_names_raw()
        .map(|n| {
            String::from_utf8_lossy(n)
                .replace('\\', "/")
                .to_ascii_lowercase()
        })
        .collect();
    let has = |name: &str| names.iter().any(|n| n == name);
    if has("mimetype") {
        let mimetype = read_entry(&mut archive, &names, "mimetype");
        if mimetype.starts_with("application/vnd.oasis.opendocument.spreadsheet") {
            return Kind::Ods;
        }
        if mimetype.starts_with("application/vnd.oasis.opendocument.") {
            return Kind::OpenDocument;
        }
    }
    if has("[content_types].xml") {
        let types = read_entry(&mut archive, &names, "[content_types].xml");
        if let Some(kind) = from_content_types(&types) {
            return kind;
        }
    }
    // No (readable) content types: judge by the parts, as a reader would look for them.
    if has("xl/workbook.bin") {
        return Kind::Xlsb;
    }
    if names.iter().any(|n| n.starts_with("xl/")) {
        return Kind::OoxmlIncomplete;
    }
    if has("word/document.xml") {
        return Kind::Docx;
    }
    Kind::Zip
}

/// The kind an OOXML package declares for its main part.
fn from_content_types(types: &str) -> Option<Kind> {
    let types = types.to_ascii_lowercase();
    let declares = |content_type: &str| types.contains(content_type);
    if declares("ms-excel.sheet.binary.macroenabled.main") {
        Some(Kind::Xlsb)
    } else if declares("ms-excel.sheet.macroenabled.main+xml")
        || declares("ms-excel.template.macroenabled.main+xml")
    {
        Some(Kind::Xlsm)
    } else if declares("spreadsheetml.sheet.main+xml")
        || declares("spreadsheetml.template.main+xml")
    {
        Some(Kind::Xlsx)
    } else if declares("wordprocessingml.document.main+xml") {
        Some(Kind::Docx)
    } else if declares("presentationml.presentation.main+xml") {
        Some(Kind::Pptx)
    } else {
        None
    }
}

/// The start of a small entry, decompressed, as text; empty if it cannot be read.
fn read_entry<R: Read + Seek>(
    archive: &mut zip::ZipArchive<R>,
    names: &[String],
    name: &str,
) -> String {
    let Some(index) = names.iter().position(|n| n == name) else {
        return String::new();
    };
    let mut bytes = Vec::new();
    if let Ok(entry) = archive.by_index(index) {
        // A damaged entry leaves what was read; classification works on what is there.
        let _ = entry.take(CONTENT_TYPES_BYTES).read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Which Office file an OLE2 compound file is, from its root streams.
fn ole_kind(file: File) -> Kind {
    let mut compound = match cfb::CompoundFile::open(BufReader::new(file)) {
        Ok(compound) => compound,
        Err(e) => return Kind::OleUnreadable(e.to_string()),
    };
    let names: Vec<String> = compound
        .read_root_storage()
        .map(|entry| entry.name().to_string())
        .collect();
    let find = |wanted: &str| names.iter().find(|n| n.eq_ignore_ascii_case(wanted));
    if find("EncryptionInfo").is_some() && find("EncryptedPackage").is_some() {
        return Kind::EncryptedPackage;
    }
    if let Some(stream) = find("Workbook").or_else(|| find("Book")) {
        let encrypted = compound
            .open_stream(format!("/{stream}"))
            .is_ok_and(has_filepass);
        return if encrypted {
            Kind::XlsEncrypted
        } else {
            Kind::Xls
        };
    }
    if find("WordDocument").is_some() {
        return Kind::WordDoc;
    }
    if find("PowerPoint Document").is_some() {
        return Kind::PowerPoint;
    }
    Kind::OleOther
}

/// Whether the workbook globals hold a FILEPASS record (0x002F) before the first sheet: the
/// workbook is encrypted or XOR-obfuscated, whatever the method.
fn has_filepass(stream: impl Read) -> bool {
    let mut stream = BufReader::new(stream);
    let mut header = [0u8; 4];
    let mut body = vec![0u8; 8224];
    for _ in 0..BIFF_RECORDS_SCANNED {
        if stream.read_exact(&mut header).is_err() {
            return false;
        }
        let kind = u16::from_le_bytes([header[0], header[1]]);
        let len = usize::from(u16::from_le_bytes([header[2], header[3]]));
        match kind {
            0x002F => return true,
            // BoundSheet8 or EOF: past the place a FILEPASS record must be.
            0x0085 | 0x000A => return false,
            _ => {}
        }
        let len = len.min(body.len());
        if stream.read_exact(&mut body[..len]).is_err() {
            return false;
        }
    }
    false
}

#[cfg(test)]
pub(super) mod tests;
