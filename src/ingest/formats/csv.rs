//! CSV and TSV: a streaming, header-tolerant reader.
//!
//! Owns everything between the bytes of a delimited text file and [`Extracted`]: telling text
//! from binary (naming what a disguised file really is), the encoding, Excel's `sep=` line, the
//! delimiter, and the row count. Which row is the header and what its cells become is decided by
//! [`crate::ingest::columns`], shared with the other readers.
//!
//! It reads the file once, front to back, through one reused record, so memory stays flat
//! whatever the size of the file (the csv crate must still hold one whole record, however long
//! a quoted field runs). It never writes, and never decides anything from the file's name.

use super::{Extracted, Rejection};
use crate::ingest::columns::{self, ExtraCells, HEADER_SEARCH_ROWS};
use csv::{ByteRecord, Reader, ReaderBuilder};
use encoding_rs::{UTF_16BE, UTF_16LE, WINDOWS_1252};
use encoding_rs_io::DecodeReaderBytesBuilder;
use std::fs::File;
use std::io::{self, BufRead, Cursor, Read};
use std::path::Path;

/// How much of the start of a file decides binary or text, the encoding and the delimiter.
const SNIFF_BYTES: usize = 64 * 1024;

/// Lines of the sample that vote on the delimiter.
const DELIMITER_SAMPLE_LINES: usize = 50;

/// Delimiters we detect, in the order that wins a tie.
const DELIMITERS: [u8; 4] = [b',', b';', b'\t', b'|'];

/// Read the columns and row count of a CSV file, or of a TSV file when `delimiter` is given.
/// A `sep=` first line overrides both.
pub fn extract(path: &Path, delimiter: Option<u8>) -> Result<Extracted, Rejection> {
    let kind = match delimiter {
        Some(b'\t') => "TSV",
        _ => "CSV",
    };
    let (file, head) = open_with_head(path)?;
    let encoding = sniff(&head, kind)?;
    // Only a pure-ASCII start leaves the encoding open: if invalid UTF-8 turns up further down,
    // the file is most likely Windows-1252 and is read again as such.
    let may_retry = encoding == Encoding::Utf8 && head.is_ascii();
    match read_table(file, head, encoding, delimiter) {
        Ok(extracted) => Ok(extracted),
        Err(Failure::Rejected(rejection)) => Err(rejection),
        Err(Failure::NotUtf8 { offset }) => {
            let line = line_at(path, offset)?;
            if !may_retry {
                return Err(Rejection::new(format!(
                    "line {line} cannot be read: it is not valid UTF-8, though the file starts \
                     as UTF-8; save the whole file as UTF-8"
                )));
            }
            let (file, head) = open_with_head(path)?;
            let fallback = Encoding::Windows1252 { from_line: line };
            read_table(file, head, fallback, delimiter).map_err(|failure| match failure {
                Failure::Rejected(rejection) => rejection,
                // Windows-1252 decodes every byte; kept total all the same.
                Failure::NotUtf8 { offset } => {
                    Rejection::new(format!("byte {offset} cannot be read as text"))
                }
            })
        }
    }
}

/// Why reading stopped: a rejection, or invalid UTF-8 that a second reading may cure.
#[derive(Debug)]
enum Failure {
    Rejected(Rejection),
    /// At this byte of the file.
    NotUtf8 {
        offset: u64,
    },
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Self {
        Failure::Rejected(rejection)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        match error
            .get_ref()
            .and_then(|e| e.downcast_ref::<InvalidUtf8>())
        {
            Some(InvalidUtf8(offset)) => Failure::NotUtf8 { offset: *offset },
            None => Failure::Rejected(Rejection::new(format!("it could not be read: {error}"))),
        }
    }
}

fn open_with_head(path: &Path) -> Result<(File, Vec<u8>), Rejection> {
    let mut file =
        File::open(path).map_err(|e| Rejection::new(format!("it could not be opened: {e}")))?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| Rejection::new(format!("it could not be read: {e}")))?;
    Ok((file, head))
}

/// The text encoding of a file, as decided from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Utf8,
    Utf8Bom,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
    /// Not UTF-8: in the first bytes (`from_line` 0) or further down.
    Windows1252 {
        from_line: u64,
    },
}

/// Byte-order marks. UTF-32 LE's starts like UTF-16 LE's, so it comes first.
const BOMS: &[(&[u8], Encoding)] = &[
    (b"\xEF\xBB\xBF", Encoding::Utf8Bom),
    (b"\xFF\xFE\x00\x00", Encoding::Utf32Le),
    (b"\x00\x00\xFE\xFF", Encoding::Utf32Be),
    (b"\xFF\xFE", Encoding::Utf16Le),
    (b"\xFE\xFF", Encoding::Utf16Be),
];

impl Encoding {
    fn note(self) -> String {
        let name = match self {
            Encoding::Utf8 => "UTF-8",
            Encoding::Utf8Bom => "UTF-8 with BOM",
            Encoding::Utf16Le => "UTF-16LE with BOM",
            Encoding::Utf16Be => "UTF-16BE with BOM",
            Encoding::Utf32Le => "UTF-32LE with BOM",
            Encoding::Utf32Be => "UTF-32BE with BOM",
            Encoding::Windows1252 { from_line: 0 } => "Windows-1252 (the file is not valid UTF-8)",
            Encoding::Windows1252 { from_line } => {
                return format!("encoding Windows-1252 (line {from_line} is not valid UTF-8)");
            }
        };
        format!("encoding {name}")
    }
}

/// Known signatures of files that are not text, with what to call them after "it is". `{ext}`
/// becomes `csv` or `tsv` and `{kind}` `CSV` or `TSV`, as the file was taken for.
#[rustfmt::skip]
const SIGNATURES: &[(&[u8], &str)] = &[
    (b"PK\x03\x04", "a ZIP archive (perhaps an .xlsx renamed to .{ext}), not {kind} text"),
    (b"PK\x05\x06", "a ZIP archive (perhaps an .xlsx renamed to .{ext}), not {kind} text"),
    (b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1",
        "an Office OLE2 file (perhaps an .xls renamed to .{ext}), not {kind} text"),
    (b"%PDF", "a PDF document, not {kind} text"),
    (b"\x89PNG\r\n\x1A\n", "a PNG image, not {kind} text"),
    (b"\xFF\xD8\xFF", "a JPEG image, not {kind} text"),
    (b"GIF8", "a GIF image, not {kind} text"),
    (b"\x1F\x8B", "gzip-compressed, not plain {kind} text; decompress it first"),
    (b"\x28\xB5\x2F\xFD", "zstd-compressed, not plain {kind} text; decompress it first"),
    (b"\xFD7zXZ\x00", "xz-compressed, not plain {kind} text; decompress it first"),
    (b"7z\xBC\xAF\x27\x1C", "a 7-Zip archive, not {kind} text"),
    (b"ARROW1\x00", "an Arrow IPC file, not {kind} text"),
    (b"SQLite format 3\x00", "an SQLite database, not {kind} text"),
    (b"{\\rtf", "an RTF document, not {kind} text"),
];

/// Text formats a .csv file is sometimes in by mistake, recognised by how they start
/// (ASCII case-insensitive, after a BOM and leading whitespace).
#[rustfmt::skip]
const TEXT_SIGNATURES: &[(&str, &str)] = &[
    ("<?xml", "an XML document (perhaps an Excel 2003 XML spreadsheet), not {kind} text"),
    ("<!doctype html", "an HTML page (perhaps a web page saved as .{ext}), not {kind} text"),
    ("<html", "an HTML page (perhaps a web page saved as .{ext}), not {kind} text"),
];

/// The Parquet signature "PAR1" could also begin a header cell; in Parquet a binary page header
/// follows it.
const PARQUET: &str = "a Parquet file, not {kind} text";

/// Decide from the first bytes whether the file is text, and in which encoding.
fn sniff(head: &[u8], kind: &str) -> Result<Encoding, Rejection> {
    if let Some(what) = disguise(head) {
        let what = what
            .replace("{ext}", &kind.to_ascii_lowercase())
            .replace("{kind}", kind);
        return Err(Rejection::new(format!("it is {what}")));
    }
    let bom = BOMS.iter().find(|(bom, _)| head.starts_with(bom));
    // In UTF-16 and UTF-32 text NUL bytes are normal; in any 8-bit text they are not.
    match bom {
        Some((_, Encoding::Utf8Bom)) | None if head.contains(&0) => {
            return Err(Rejection::new(not_text(head, kind)));
        }
        Some((_, encoding)) => return Ok(*encoding),
        None => {}
    }
    match std::str::from_utf8(head) {
        Ok(_) => Ok(Encoding::Utf8),
        // A character cut in two by the end of the sample is not an error.
        Err(e) if e.error_len().is_none() && head.len() == SNIFF_BYTES => Ok(Encoding::Utf8),
        Err(_) => Ok(Encoding::Windows1252 { from_line: 0 }),
    }
}

fn disguise(head: &[u8]) -> Option<&'static str> {
    if let Some((_, what)) = SIGNATURES.iter().find(|(magic, _)| head.starts_with(magic)) {
        return Some(what);
    }
    if head.starts_with(b"PAR1") && head.get(4).is_some_and(|b| b.is_ascii_control()) {
        return Some(PARQUET);
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    TEXT_SIGNATURES
        .iter()
        .find(|(prefix, _)| {
            text.len() >= prefix.len()
                && text[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
        })
        .map(|(_, what)| *what)
}

/// Why a start with NUL bytes and no BOM is not text, as precisely as is cheap to say.
fn not_text(head: &[u8], kind: &str) -> String {
    let nuls = head.iter().filter(|&&b| b == 0).count();
    let even = head.iter().step_by(2).filter(|&&b| b == 0).count();
    let lopsided = even.max(nuls - even) * 10 >= nuls * 9;
    if nuls * 4 >= head.len() && lopsided {
        return "it looks like UTF-16 text without a byte-order mark (BOM); save it as UTF-8"
            .into();
    }
    let controls = head
        .iter()
        .filter(|&&b| b != 0 && b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | 0x0C))
        .count();
    if nuls <= 16 && controls == 0 {
        // Text with a few stray NULs (a bad export): say where, so it can be cleaned.
        let first = head.iter().position(|&b| b == 0).unwrap_or(0);
        let line = 1 + head[..first].iter().filter(|&&b| b == b'\n').count();
        return format!(
            "line {line} contains a NUL byte (0x00), which {kind} text never holds; \
             remove it and drop the file again"
        );
    }
    format!("its content is binary, not text (a {kind} file must be text)")
}

/// The file as UTF-8 bytes, starting with the (already read) head.
fn decoded(encoding: Encoding, head: Vec<u8>, file: File) -> Box<dyn Read> {
    let bom = if encoding == Encoding::Utf8Bom { 3 } else { 0 };
    let mut start = Cursor::new(head);
    start.set_position(bom);
    let source = start.chain(file);
    let transcode_from = match encoding {
        Encoding::Utf8 | Encoding::Utf8Bom => return Box::new(CheckedUtf8::new(source, bom)),
        Encoding::Utf32Le => return Box::new(Utf32ToUtf8::new(source, true)),
        Encoding::Utf32Be => return Box::new(Utf32ToUtf8::new(source, false)),
        Encoding::Utf16Le => UTF_16LE,
        Encoding::Utf16Be => UTF_16BE,
        Encoding::Windows1252 { .. } => WINDOWS_1252,
    };
    let decoder = DecodeReaderBytesBuilder::new()
        .encoding(Some(transcode_from))
        .build(source);
    Box::new(decoder)
}

/// The delimiter and how the csv reader must start, decided from the decoded sample.
struct Dialect {
    delimiter: u8,
    /// Bytes of the sample to skip (Excel's `sep=` line).
    skip: usize,
    /// Lines above what the csv reader sees, to report true line numbers.
    line_offset: u64,
    note: String,
}

fn dialect(sample: &[u8], complete: bool, requested: Option<u8>) -> Dialect {
    if let Some((delimiter, skip)) = sep_line(sample) {
        return Dialect {
            delimiter,
            skip,
            line_offset: 1,
            note: format!("delimiter {} (from the sep= line)", describe(delimiter)),
        };
    }
    let delimiter = requested.unwrap_or_else(|| detect_delimiter(sample, complete));
    Dialect {
        delimiter,
        skip: 0,
        line_offset: 0,
        note: format!("delimiter {}", describe(delimiter)),
    }
}

fn describe(delimiter: u8) -> String {
    match delimiter {
        b'\t' => "tab".into(),
        b' ' => "space".into(),
        other => format!("'{}'", other.escape_ascii()),
    }
}

/// Excel's first line `sep=;`: the delimiter it names and the bytes up to the next line.
fn sep_line(sample: &[u8]) -> Option<(u8, usize)> {
    let end = sample
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(sample.len());
    let line = &sample[..end];
    let &[s, e, p, b'=', delimiter] = line else {
        return None;
    };
    let named_sep = [s, e, p].eq_ignore_ascii_case(b"sep");
    if !named_sep || matches!(delimiter, b'"' | b'\n' | b'\r') {
        return None;
    }
    let newline = match &sample[end..] {
        [b'\r', b'\n', ..] => 2,
        [] => 0,
        _ => 1,
    };
    Some((delimiter, end + newline))
}

/// The candidate found the same non-zero number of times outside quotes on the most lines;
/// ties go to more columns, then to the order of [`DELIMITERS`]. `,` when none is found.
fn detect_delimiter(sample: &[u8], complete: bool) -> u8 {
    let lines = delimiter_counts(sample, complete);
    let mut best = (b',', 0, 0);
    for (i, &candidate) in DELIMITERS.iter().enumerate() {
        let (count, lines_agreeing) = modal_count(lines.iter().map(|counts| counts[i]));
        if (lines_agreeing, count) > (best.1, best.2) {
            best = (candidate, lines_agreeing, count);
        }
    }
    best.0
}

/// Per sample line, how often each of [`DELIMITERS`] occurs outside quoted fields. Blank lines
/// are left out, and so is a last line the sample cut short.
fn delimiter_counts(sample: &[u8], complete: bool) -> Vec<[u32; 4]> {
    let mut lines = Vec::new();
    let mut counts = [0u32; 4];
    let (mut in_quotes, mut line_started, mut field_start) = (false, false, true);
    for &byte in sample {
        let at_field_start = field_start;
        field_start = false;
        if in_quotes {
            in_quotes = byte != b'"';
        } else if byte == b'\n' || byte == b'\r' {
            if line_started {
                lines.push(counts);
                if lines.len() == DELIMITER_SAMPLE_LINES {
                    return lines;
                }
            }
            (counts, line_started, field_start) = ([0; 4], false, true);
            continue;
        } else if let Some(i) = DELIMITERS.iter().position(|&d| d == byte) {
            counts[i] += 1;
            field_start = true;
        } else if byte == b'"' {
            // As in the csv crate, a quote opens a quoted field only at the start of a field.
            in_quotes = at_field_start;
        }
        line_started = true;
    }
    if complete && line_started {
        lines.push(counts);
    }
    lines
}

/// The most frequent non-zero value and how many times it occurs (larger value on a tie).
fn modal_count(values: impl Iterator<Item = u32>) -> (u32, usize) {
    let mut seen: Vec<(u32, usize)> = Vec::new();
    for value in values.filter(|&v| v > 0) {
        match seen.iter_mut().find(|(v, _)| *v == value) {
            Some((_, n)) => *n += 1,
            None => seen.push((value, 1)),
        }
    }
    seen.into_iter()
        .max_by_key(|&(value, n)| (n, value))
        .unwrap_or((0, 0))
}

/// Read the whole table: dialect, header, then every row, one reused record at a time.
fn read_table(
    file: File,
    head: Vec<u8>,
    encoding: Encoding,
    requested: Option<u8>,
) -> Result<Extracted, Failure> {
    let mut text = decoded(encoding, head, file);
    let mut sample = Vec::with_capacity(SNIFF_BYTES);
    (&mut text)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut sample)?;
    let complete = sample.len() < SNIFF_BYTES;
    let dialect = dialect(&sample, complete, requested);
    let mut start = Cursor::new(sample);
    start.set_position(dialect.skip as u64);
    let csv = ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter)
        .buffer_capacity(SNIFF_BYTES)
        .from_reader(start.chain(text));
    let mut records = Records {
        csv,
        record: ByteRecord::new(),
        delimiter: dialect.delimiter,
        skip: dialect.skip,
        line_offset: dialect.line_offset,
    };

    let mut first = Vec::with_capacity(HEADER_SEARCH_ROWS);
    while first.len() < HEADER_SEARCH_ROWS && records.advance()? {
        first.push(records.record.clone());
    }
    let cells: Vec<Vec<String>> = first.iter().map(to_strings).collect();
    let header_index = match columns::find_header_row(&cells) {
        Ok(index) => index,
        Err(no_header) => return Err(no_header_reason(&mut records, &first, no_header)?.into()),
    };
    let header = &cells[header_index];
    let (names, mut skipped) = columns::header_columns(header);
    let mut notes = vec![encoding.note(), dialect.note];
    if header_index > 0 {
        let rows_above = match header_index {
            1 => "1 row".to_string(),
            n => format!("{n} rows"),
        };
        notes.push(format!(
            "header on line {} ({rows_above} above it skipped)",
            records.line_of(&first[header_index])
        ));
    }

    let mut extra = ExtraCells::new(header.len());
    let mut rows: u64 = 0;
    for record in &first[header_index + 1..] {
        rows += u64::from(tally_row(record, &mut extra));
    }
    while records.advance()? {
        rows += u64::from(tally_row(&records.record, &mut extra));
    }
    skipped.extend(extra.skipped());
    Ok(Extracted {
        columns: names,
        skipped,
        rows,
        notes,
    })
}

/// What the csv reader reads: the decoded sample, then the rest of the decoded file.
type Text = io::Chain<Cursor<Vec<u8>>, Box<dyn Read>>;

/// The csv reader with its one reused record.
struct Records {
    csv: Reader<Text>,
    record: ByteRecord,
    delimiter: u8,
    /// Bytes of the sample before what the csv reader sees (the `sep=` line).
    skip: usize,
    line_offset: u64,
}

impl Records {
    /// Read the next record into `self.record`; `false` at the end of the file.
    fn advance(&mut self) -> Result<bool, Failure> {
        self.csv.read_byte_record(&mut self.record).map_err(|e| {
            if let Some(offset) = invalid_utf8_offset(&e) {
                return Failure::NotUtf8 { offset };
            }
            let line = e.position().map_or(0, |p| p.line()) + self.line_offset;
            Rejection::new(format!("line {line} cannot be read: {e}")).into()
        })
    }

    /// The file line a record starts on.
    ///
    /// The csv crate places a record where the previous one ended (before any blank lines) and
    /// counts only `\n`; within the sample, which holds the rows that matter most (the header),
    /// we count from the bytes themselves, lone CRs included.
    fn line_of(&self, record: &ByteRecord) -> u64 {
        let Some(position) = record.position() else {
            return 0;
        };
        let sample = self.csv.get_ref().get_ref().0.get_ref();
        let start = usize::try_from(position.byte()).map_or(usize::MAX, |b| b + self.skip);
        if start >= sample.len() {
            return position.line() + self.line_offset;
        }
        let blank = sample[start..]
            .iter()
            .take_while(|&&b| b == b'\n' || b == b'\r')
            .count();
        1 + line_breaks(&sample[..start + blank], 0)
    }
}

fn invalid_utf8_offset(error: &csv::Error) -> Option<u64> {
    let csv::ErrorKind::Io(io) = error.kind() else {
        return None;
    };
    let InvalidUtf8(offset) = io.get_ref()?.downcast_ref::<InvalidUtf8>()?;
    Some(*offset)
}

/// Line breaks in `text` (`\n`, `\r\n` or a lone `\r`), given the byte before it.
fn line_breaks(text: &[u8], mut previous: u8) -> u64 {
    let mut breaks = 0;
    for &byte in text {
        if byte == b'\r' || (byte == b'\n' && previous != b'\r') {
            breaks += 1;
        }
        previous = byte;
    }
    breaks
}

/// The rejection for a file whose first rows are all blank: empty, blank throughout, or with
/// content only further down than we look for a header.
fn no_header_reason(
    records: &mut Records,
    first: &[ByteRecord],
    no_header: columns::NoHeaderRow,
) -> Result<Rejection, Failure> {
    let mut widest = first.iter().map(ByteRecord::len).max().unwrap_or(0);
    if first.len() == HEADER_SEARCH_ROWS {
        while records.advance()? {
            if records.record.iter().any(|field| !field_is_blank(field)) {
                return Ok(Rejection::new(format!("it has {no_header}")));
            }
            widest = widest.max(records.record.len());
        }
    }
    // Tabs and spaces between blank cells are still just whitespace.
    let whitespace_delimiter = records.delimiter == b'\t' || records.delimiter == b' ';
    Ok(if widest > 1 && !whitespace_delimiter {
        Rejection::new("it has no header row (every row is blank)")
    } else {
        Rejection::new("it is empty")
    })
}

/// Whether a data record holds anything, marking its filled cells past the header.
fn tally_row(record: &ByteRecord, extra: &mut ExtraCells) -> bool {
    for index in extra.header_width()..record.len() {
        if record
            .get(index)
            .is_some_and(|field| !field_is_blank(field))
        {
            extra.mark(index);
        }
    }
    record.iter().any(|field| !field_is_blank(field))
}

/// [`columns::is_blank`] on UTF-8 bytes, without decoding the usual case: a field whose first
/// visible byte is ASCII.
fn field_is_blank(field: &[u8]) -> bool {
    for &byte in field {
        if byte >= 0x80 {
            return std::str::from_utf8(field).is_ok_and(columns::is_blank);
        }
        if byte > b' ' && byte != 0x7F {
            return false;
        }
    }
    true
}

fn to_strings(record: &ByteRecord) -> Vec<String> {
    record
        .iter()
        .map(|field| String::from_utf8_lossy(field).into_owned())
        .collect()
}

/// Invalid UTF-8 at this byte of the file.
#[derive(Debug, thiserror::Error)]
#[error("invalid UTF-8 at byte {0}")]
struct InvalidUtf8(u64);

/// UTF-8 passed through unchanged and checked on the way, in the large chunks the csv reader
/// asks for: checking record by record with std took ~15% of the reading time, this takes
/// ~1%. Invalid bytes end the stream with an [`InvalidUtf8`] error.
struct CheckedUtf8<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Next byte to hand out.
    start: usize,
    /// End of the checked bytes; after it, the start of a character cut by the last read.
    checked: usize,
    filled: usize,
    /// File offset of `buf[0]`.
    offset: u64,
}

impl<R: Read> CheckedUtf8<R> {
    fn new(inner: R, offset: u64) -> Self {
        Self {
            inner,
            buf: vec![0; SNIFF_BYTES].into_boxed_slice(),
            start: 0,
            checked: 0,
            filled: 0,
            offset,
        }
    }

    /// Read and check the next chunk; `false` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        self.buf.copy_within(self.checked..self.filled, 0);
        self.offset += self.checked as u64;
        self.filled -= self.checked;
        (self.start, self.checked) = (0, 0);
        while self.checked == 0 {
            let read = read_retrying(&mut self.inner, &mut self.buf[self.filled..])?;
            self.filled += read;
            // encoding_rs checks several times faster than std on non-ASCII text; std then
            // tells an invalid byte from a character cut short by the end of this read.
            let valid = encoding_rs::Encoding::utf8_valid_up_to(&self.buf[..self.filled]);
            match std::str::from_utf8(&self.buf[valid..self.filled]) {
                Ok(_) => self.checked = self.filled,
                Err(e) if e.error_len().is_none() && read > 0 => self.checked = valid,
                Err(_) => {
                    let at = self.offset + valid as u64;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, InvalidUtf8(at)));
                }
            }
            if read == 0 {
                break;
            }
        }
        Ok(self.checked > 0)
    }
}

impl<R: Read> Read for CheckedUtf8<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.start == self.checked && !self.refill()? {
            return Ok(0);
        }
        let n = out.len().min(self.checked - self.start);
        out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
        self.start += n;
        Ok(n)
    }
}

fn read_retrying(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match reader.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// The line of `path` that byte `offset` is on, read again from the start: only needed when
/// a file turns out not to be UTF-8.
fn line_at(path: &Path, offset: u64) -> Result<u64, Rejection> {
    let unreadable = |e: io::Error| Rejection::new(format!("it could not be read: {e}"));
    let file = File::open(path).map_err(unreadable)?;
    let mut reader = io::BufReader::with_capacity(SNIFF_BYTES, file.take(offset));
    let (mut breaks, mut previous) = (0, 0);
    loop {
        let chunk = reader.fill_buf().map_err(unreadable)?;
        let Some(&last) = chunk.last() else {
            return Ok(1 + breaks);
        };
        breaks += line_breaks(chunk, previous);
        previous = last;
        let read = chunk.len();
        reader.consume(read);
    }
}

/// UTF-32 to UTF-8, streaming. encoding_rs has no UTF-32 (the Encoding Standard dropped it),
/// and a few tools still write it with a BOM.
struct Utf32ToUtf8<R> {
    inner: R,
    little_endian: bool,
    /// Input not yet decoded: fewer than 4 bytes carried over between reads.
    raw: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    at_start: bool,
}

impl<R: Read> Utf32ToUtf8<R> {
    fn new(inner: R, little_endian: bool) -> Self {
        Self {
            inner,
            little_endian,
            raw: Vec::new(),
            out: Vec::new(),
            out_pos: 0,
            at_start: true,
        }
    }

    /// Decode the next chunk into `out`; `false` at the end of the input.
    fn refill(&mut self) -> io::Result<bool> {
        let carried = self.raw.len();
        self.raw.resize(carried + 16 * 1024, 0);
        let read = read_retrying(&mut self.inner, &mut self.raw[carried..]);
        self.raw.truncate(carried + read.as_ref().map_or(0, |n| *n));
        let read = read?;
        self.out.clear();
        self.out_pos = 0;
        if read == 0 {
            if self.raw.is_empty() {
                return Ok(false);
            }
            // A truncated last character.
            self.raw.clear();
            self.out.extend_from_slice("\u{FFFD}".as_bytes());
            return Ok(true);
        }
        let whole = self.raw.len() / 4 * 4;
        for unit in self.raw[..whole].chunks_exact(4) {
            let bytes = [unit[0], unit[1], unit[2], unit[3]];
            let value = if self.little_endian {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            };
            if std::mem::take(&mut self.at_start) && value == 0xFEFF {
                continue;
            }
            let c = char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER);
            self.out
                .extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        self.raw.drain(..whole);
        Ok(true)
    }
}

impl<R: Read> Read for Utf32ToUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.out_pos == self.out.len() {
            if !self.refill()? {
                return Ok(0);
            }
        }
        let n = buf.len().min(self.out.len() - self.out_pos);
        buf[..n].copy_from_slice(&self.out[self.out_pos..self.out_pos + n]);
        self.out_pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        extract(file.path(), delimiter)
    }

    /// `text` with a BOM, in UTF-16 (`width` 2) or UTF-32 (`width` 4).
    fn wide(text: &str, width: usize, little_endian: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in std::iter::once('\u{FEFF}').chain(text.chars()) {
            let units: Vec<u32> = match width {
                2 => c
                    .encode_utf16(&mut [0; 2])
                    .iter()
                    .map(|&u| u32::from(u))
                    .collect(),
                _ => vec![u32::from(c)],
            };
            for unit in units {
                let bytes = if little_endian {
                    unit.to_le_bytes()
                } else {
                    unit.to_be_bytes()
                };
                match (width, little_endian) {
                    (2, true) => out.extend_from_slice(&bytes[..2]),
                    (2, false) => out.extend_from_slice(&bytes[2..]),
                    _ => out.extend_from_slice(&bytes),
                }
            }
        }
        out
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
                "Windows-1252"),
            ("sep= line", b"sep=;\na;b\n1;2,5\n".into(), None, &["a", "b"], 1, "';' (from the sep= line)"),
            ("sep= line, CRLF", b"sep=|\r\na|b\r\n1|2\r\n".into(), None, &["a", "b"], 1, "'|'"),
            ("sep= after BOM", "\u{FEFF}SEP=,\na,b\n".into(), None, &["a", "b"], 0, "','"),
            ("sep= beats TSV", b"sep=,\na\tb,c\n".into(), tsv, &["a\tb", "c"], 0, "','"),
            ("title row", b"Monthly report\n\nid,amount\n1,2\n".into(), None, &["id", "amount"], 1,
                "header on line 3 (1 row above it skipped)"),
            ("padded title rows", b"Report,,\nMay,,\n,,\nid,a,b\n1,2,3\n".into(), None, &["id", "a", "b"], 1,
                "header on line 4 (3 rows above it skipped)"),
            ("CR-only title", b"Report\r\rid,x\r1,2\r".into(), None, &["id", "x"], 1, "header on line 3"),
            ("title under sep=", b"sep=;\r\nReport\r\n\r\nid;x\r\n1;2".into(), None, &["id", "x"], 1,
                "header on line 4"),
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
        let blank_then_data = format!("{}a,b\n", ",,\n".repeat(25));
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
                "it has no header row (looked at the first 20 rows)"),
            ("binary", &binary, None, "its content is binary, not text (a CSV file must be text)"),
            ("binary TSV", &binary, tsv, "(a TSV file must be text)"),
            ("stray NUL", b"a,b\n\x00,2\n", None, "line 2 contains a NUL byte"),
            ("UTF-8 BOM, then not UTF-8", b"\xEF\xBB\xBFa,b\r\n\xE9,1\r\n", None,
                "line 2 cannot be read: it is not valid UTF-8"),
            ("NUL after UTF-8 BOM", b"\xEF\xBB\xBFa,b\n\x00\x01\x02\x03", None, "its content is binary"),
            ("UTF-16 without BOM", &utf16_without_bom, None, "UTF-16 text without a byte-order mark"),
            ("PDF", b"%PDF-1.5\n%\xE2\xE3\n", None, "it is a PDF document, not CSV text"),
            ("ZIP", b"PK\x03\x04\x14\x00\x06\x00", None,
                "it is a ZIP archive (perhaps an .xlsx renamed to .csv), not CSV text"),
            ("ZIP as TSV", b"PK\x03\x04\x14\x00", tsv, "renamed to .tsv), not TSV text"),
            ("OLE2", b"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1\x00", None,
                "it is an Office OLE2 file (perhaps an .xls renamed to .csv)"),
            ("gzip", b"\x1F\x8B\x08\x00", None, "it is gzip-compressed, not plain CSV text"),
            ("zstd", b"\x28\xB5\x2F\xFD\x24", None,
                "it is zstd-compressed, not plain CSV text; decompress it first"),
            ("Parquet", b"PAR1\x15\x04\x15", None, "it is a Parquet file, not CSV text"),
            ("PNG", b"\x89PNG\r\n\x1A\n\x00", None, "it is a PNG image"),
            ("HTML", b"\n<!DOCTYPE html>\n<html>", tsv,
                "it is an HTML page (perhaps a web page saved as .tsv), not TSV text"),
            ("XML", b"\xEF\xBB\xBF<?xml version=\"1.0\"?>", None, "it is an XML document"),
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
    fn invalid_utf8_below_an_ascii_start_is_read_as_windows_1252() {
        let (input, line) = late("name,city\n", b"Jos\xE9,M\xE1laga\n");
        let got = extract_bytes(&input, None).expect("read as Windows-1252");
        assert_eq!(got.columns, ["name", "city"]);
        assert_eq!(got.rows as usize, line - 1);
        let want = format!("encoding Windows-1252 (line {line} is not valid UTF-8)");
        assert_eq!(got.notes[0], want);
    }

    #[test]
    fn late_invalid_utf8_is_found_on_lines_ended_by_cr() {
        let (input, line) = late("name,city\n", b"x,y\r\rJos\xE9,M\xE1laga\r");
        let got = extract_bytes(&input, None).expect("read as Windows-1252");
        let want = format!(
            "encoding Windows-1252 (line {} is not valid UTF-8)",
            line + 2
        );
        assert_eq!(got.notes[0], want);
    }

    #[test]
    fn checked_utf8_passes_text_through_and_stops_at_invalid_bytes() {
        let text = "añ€😀,".repeat(20_000);
        let mut out = String::new();
        CheckedUtf8::new(Trickle(text.as_bytes()), 0)
            .read_to_string(&mut out)
            .expect("valid UTF-8");
        assert_eq!(out, text);
        let cases: &[(&[u8], u64)] = &[(b"ab\xFFcd", 5), (b"ab\xE2\x82", 5), (b"\xE2\x82(", 3)];
        for (input, want) in cases {
            let error = CheckedUtf8::new(*input, 3)
                .read_to_end(&mut Vec::new())
                .expect_err("invalid");
            let inner = error
                .get_ref()
                .and_then(|e| e.downcast_ref::<InvalidUtf8>());
            assert_eq!(inner.map(|e| e.0), Some(*want), "{input:?}");
        }
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

    /// Hands out one byte per read, to exercise carry-over between reads.
    struct Trickle<'a>(&'a [u8]);

    impl io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn utf32_to_string(reader: impl io::Read, little_endian: bool) -> String {
        let mut out = String::new();
        Utf32ToUtf8::new(reader, little_endian)
            .read_to_string(&mut out)
            .expect("decode");
        out
    }

    #[test]
    fn utf32_decodes_across_reads() {
        let text = "a,ü,😀\n".repeat(5000);
        for little_endian in [true, false] {
            let bytes = wide(&text, 4, little_endian);
            assert_eq!(utf32_to_string(&bytes[..], little_endian), text);
            let first_15: String = text.chars().take(15).collect();
            assert_eq!(
                utf32_to_string(Trickle(&bytes[..64]), little_endian),
                first_15
            );
        }
        let bad = b"a\x00\x00\x00\x00\x00\x11\x00b\x00";
        assert_eq!(utf32_to_string(&bad[..], true), "a\u{FFFD}\u{FFFD}");
    }

    fn corpus() -> Option<PathBuf> {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/fixtures/corpus"
        ));
        if !dir.is_dir() {
            println!("skipped: no fixture corpus at {}", dir.display());
            return None;
        }
        Some(dir.to_path_buf())
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
        extract(path, tsv.then_some(b'\t'))
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
            ("_renamed/r04.csv", "it is a Parquet file"),
            ("_renamed/r09.csv", "it is a PDF document"),
            (
                "_renamed/r12.csv",
                "it is zstd-compressed, not plain CSV text; decompress it first",
            ),
            (
                "frictionless-py/data/compression/implicit-zip.csv",
                "it is a ZIP archive",
            ),
        ];
        for (file, want) in cases {
            let got = extract_fixture(&dir.join(file)).expect_err(file);
            assert!(got.reason.starts_with(want), "{file}: {}", got.reason);
        }
    }
}
