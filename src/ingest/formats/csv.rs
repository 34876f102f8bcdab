//! CSV and TSV: a streaming, header-tolerant reader.
//!
//! Owns everything between decoded text and [`Extracted`]: Excel's `sep=` line, the delimiter,
//! the records and the row count. What the file really is comes from [`super::sniff`], its
//! encoding from `text`, and which row is the header and what its cells become from
//! [`crate::ingest::columns`], shared with the other readers.
//!
//! [`extract`] and [`stream`] share one reading path: the second also hands every data row on,
//! one value per column, with the cells under a blank header or past the header's end left out.
//!
//! It reads the file once, front to back, through one reused record, so memory stays flat
//! whatever the size of the file (the csv crate must still hold one whole record, however long
//! a quoted field runs). It never writes, and never decides anything from the file's name.

use super::delimiter::detect_delimiter;
use super::rows::{MAX_VALUE_BYTES, Sink};
use super::text::{self, Encoding, InvalidUtf8, NotInEncoding, SNIFF_BYTES};
use super::{Extracted, Format, Rejection, disguise, sniff};
use crate::ingest::columns::forced::{self, Forced, HeaderChoice};
use crate::ingest::columns::{self, ExtraCells, HEADER_SEARCH_ROWS};
use crate::protocol::Reading;
use csv::{ByteRecord, Reader, ReaderBuilder};
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::ops::ControlFlow;
use std::path::Path;

/// Read the columns and row count of a CSV file, or of a TSV file when `delimiter` is given.
/// A `sep=` first line overrides both; what `set` (the source's read options) says overrides
/// everything.
pub fn extract(path: &Path, delimiter: Option<u8>, set: &Forced) -> Result<Extracted, Rejection> {
    read(path, delimiter, set, None)
}

/// Hand the data rows of a CSV (or TSV) file to `sink`, read exactly as [`extract`] reads them.
pub(super) fn stream(
    path: &Path,
    delimiter: Option<u8>,
    set: &Forced,
    sink: &mut Sink<'_>,
) -> Result<(), Rejection> {
    read(path, delimiter, set, Some(sink)).map(|_| ())
}

/// The one reading path of [`extract`] and [`stream`]: the rows go to `sink` when there is one.
fn read(
    path: &Path,
    delimiter: Option<u8>,
    set: &Forced,
    mut sink: Option<&mut Sink<'_>>,
) -> Result<Extracted, Rejection> {
    let (format, kind) = match delimiter {
        Some(b'\t') => (Format::Tsv, "TSV"),
        _ => (Format::Csv, "CSV"),
    };
    disguise::check(format, &sniff::identify(path)?)?;
    let (file, head) = open_with_head(path)?;
    let encoding = match &set.encoding {
        Some(label) => {
            let encoding = forced::encoding_for(label).map_err(|e| Rejection::new(e.0))?;
            text::set(encoding, &head)?
        }
        None => text::detect(&head, kind)?,
    };
    // Only a pure-ASCII start leaves the encoding open: if invalid UTF-8 turns up further down,
    // the encoding is detected from the bytes there and the file is read again in it.
    let may_retry = encoding == Encoding::Utf8 && head.is_ascii();
    let how = if set.encoding.is_some() {
        "the encoding set for this source; set another encoding or clear it (ingestctl set \
         --clear)"
    } else {
        "the encoding detected from the text before it; save the whole file as UTF-8"
    };
    match read_table(file, head, encoding, delimiter, set, sink.as_deref_mut()) {
        Ok(extracted) => Ok(extracted),
        Err(Failure::Rejected(rejection)) => Err(rejection),
        Err(Failure::NotInEncoding { offset, encoding }) => {
            Err(not_in_encoding(path, offset, encoding, how))
        }
        Err(Failure::NotUtf8 { offset }) if set.encoding.is_some() => {
            Err(not_in_encoding(path, offset, "UTF-8", how))
        }
        Err(Failure::NotUtf8 { offset }) => {
            let line = text::line_at(path, offset)?;
            if !may_retry {
                return Err(Rejection::new(format!(
                    "line {line} cannot be read: it is not valid UTF-8, though the file starts \
                     as UTF-8; save the whole file as UTF-8"
                )));
            }
            // The second reading finds the same records (the encodings differ only in bytes
            // that are never delimiters, quotes or line ends): rows already handed on are not
            // handed on again.
            if let Some(sink) = sink.as_deref_mut() {
                sink.skip_next(sink.rows());
            }
            let fallback = text::guess_from(path, offset, line)?;
            let (file, head) = open_with_head(path)?;
            read_table(file, head, fallback, delimiter, set, sink).map_err(
                |failure| match failure {
                    Failure::Rejected(rejection) => rejection,
                    Failure::NotInEncoding { offset, encoding } => {
                        not_in_encoding(path, offset, encoding, how)
                    }
                    // The detected encoding decodes as UTF-8 only; kept total all the same.
                    Failure::NotUtf8 { offset } => {
                        Rejection::new(format!("byte {offset} cannot be read as text"))
                    }
                },
            )
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
    /// At this byte of the file, text the detected encoding does not read.
    NotInEncoding {
        offset: u64,
        encoding: &'static str,
    },
}

/// The rejection of a file whose detected (or set) encoding stops reading it at byte
/// `offset`; `how` says which encoding that was and what to do.
fn not_in_encoding(path: &Path, offset: u64, encoding: &str, how: &str) -> Rejection {
    match text::line_at(path, offset) {
        Ok(line) => Rejection::new(format!(
            "line {line} cannot be read: it is not valid {encoding}, {how}"
        )),
        Err(rejection) => rejection,
    }
}

/// The failure an I/O error from the decoded text stands for, if it is about the text.
fn text_failure(error: &io::Error) -> Option<Failure> {
    let inner = error.get_ref()?;
    if let Some(InvalidUtf8(offset)) = inner.downcast_ref::<InvalidUtf8>() {
        return Some(Failure::NotUtf8 { offset: *offset });
    }
    let NotInEncoding { offset, encoding } = inner.downcast_ref::<NotInEncoding>()?;
    Some(Failure::NotInEncoding {
        offset: *offset,
        encoding,
    })
}

impl From<Rejection> for Failure {
    fn from(rejection: Rejection) -> Self {
        Failure::Rejected(rejection)
    }
}

impl From<io::Error> for Failure {
    fn from(error: io::Error) -> Self {
        text_failure(&error).unwrap_or_else(|| {
            Failure::Rejected(Rejection::new(format!("it could not be read: {error}")))
        })
    }
}

fn open_with_head(path: &Path) -> Result<(File, Vec<u8>), Rejection> {
    let mut file = super::input::open(path)
        .map_err(|e| Rejection::new(format!("it could not be opened: {e}")))?;
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| Rejection::new(format!("it could not be read: {e}")))?;
    Ok((file, head))
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

fn dialect(sample: &[u8], complete: bool, requested: Option<u8>, set: Option<u8>) -> Dialect {
    if let Some(delimiter) = set {
        // The source's own delimiter wins even over a `sep=` line, which is still no row.
        let (skip, line_offset) = sep_line(sample).map_or((0, 0), |(_, skip)| (skip, 1));
        return Dialect {
            delimiter,
            skip,
            line_offset,
            note: format!("delimiter {} (set for this source)", describe(delimiter)),
        };
    }
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

/// Read the whole table: dialect, header, then every row, one reused record at a time. Data
/// rows also go to `sink`, if there is one, until it asks to stop.
fn read_table(
    file: File,
    head: Vec<u8>,
    encoding: Encoding,
    requested: Option<u8>,
    set: &Forced,
    mut sink: Option<&mut Sink<'_>>,
) -> Result<Extracted, Failure> {
    let mut text = text::decoded(encoding, head, file);
    let mut sample = Vec::with_capacity(SNIFF_BYTES);
    (&mut text)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut sample)?;
    let complete = sample.len() < SNIFF_BYTES;
    let dialect = dialect(&sample, complete, requested, set.delimiter);
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
    if let HeaderChoice::Row(line) = set.header {
        // Rows down to the line set as the header, however far below the search it is.
        while first.last().is_some_and(|r| records.line_of(r) < line) && records.advance()? {
            first.push(records.record.clone());
        }
    }
    let cells: Vec<Vec<String>> = first.iter().map(to_strings).collect();
    let table = match set.header {
        HeaderChoice::Detect => match columns::find_header(&cells) {
            Ok(found) => header_table(&found, &cells, &records, &first, false),
            Err(no_header) => {
                return Err(no_header_reason(&mut records, &first, no_header)?.into());
            }
        },
        HeaderChoice::Row(line) => {
            let Some(index) = first.iter().position(|r| records.line_of(r) == line) else {
                return Err(no_line(line, &first, &records).into());
            };
            let found = forced::header_at(&cells, index);
            if cells[index].iter().all(|c| columns::is_blank(c)) {
                return Err(Rejection::new(format!(
                    "line {line}, the header row set for this source, holds no names"
                ))
                .into());
            }
            header_table(&found, &cells, &records, &first, true)
        }
        HeaderChoice::None => {
            if cells
                .iter()
                .all(|row| row.iter().all(|c| columns::is_blank(c)))
            {
                return Err(no_header_reason(
                    &mut records,
                    &first,
                    columns::NoHeaderRow {
                        looked_at: first.len(),
                    },
                )?
                .into());
            }
            numbered_table(&cells)
        }
    };
    let names = table.names;
    let mut skipped = table.skipped;
    let mut notes = vec![encoding.note(), dialect.note];
    notes.extend(table.note);
    let reading = Reading {
        header: Some(table.described),
        header_row: table.line,
        two_row_header: table.two_rows,
        rows_above: table.above,
        encoding: Some(encoding.name().to_string()),
        encoding_found_by: Some(encoding.how().to_string()),
        encoding_confidence: encoding.confidence().map(str::to_string),
        ..Reading::default()
    };
    let kept = table.kept;
    debug_assert_eq!(kept.len(), names.len());
    let mut extra = ExtraCells::new(table.width);
    let data_start = table.data_start;
    let mut rows: u64 = 0;
    let mut flow = match sink.as_deref_mut() {
        Some(sink) => sink.columns(&names),
        None => ControlFlow::Continue(()),
    };
    let mut row = |record: &ByteRecord| {
        if !tally_row(record, &mut extra) {
            return ControlFlow::Continue(());
        }
        rows += 1;
        match sink.as_deref_mut() {
            Some(sink) => hand_on(sink, &kept, record),
            None => ControlFlow::Continue(()),
        }
    };
    for record in &first[data_start..] {
        if flow.is_break() {
            break;
        }
        flow = row(record);
    }
    while flow.is_continue() && records.advance()? {
        flow = row(&records.record);
    }
    skipped.extend(extra.skipped());
    Ok(Extracted {
        columns: names,
        skipped,
        rows,
        notes,
        reading,
    })
}

/// Where a table's names come from and where its data starts, however the header was chosen.
struct TableHead {
    names: Vec<String>,
    skipped: Vec<crate::protocol::SkippedColumn>,
    /// The record fields the columns come from.
    kept: Vec<usize>,
    /// Fields a header covers; data further right is under no header cell.
    width: usize,
    /// Index into the first records of the first data row.
    data_start: usize,
    described: String,
    /// A note for the catalog, when the header is not simply the first line.
    note: Option<String>,
    line: Option<u64>,
    two_rows: bool,
    above: Vec<String>,
}

/// The table under a header found (or set, `set`) among the first records.
fn header_table(
    found: &columns::Header,
    cells: &[Vec<String>],
    records: &Records,
    first: &[ByteRecord],
    set: bool,
) -> TableHead {
    let header = found.cells(cells);
    let (names, skipped) = columns::header_columns(&header);
    let mut described = found.describe("line", |i| records.line_of(&first[i]));
    if set {
        described = forced::mark_set(&described);
    }
    // The record fields the columns come from: the header cells that were not skipped.
    let kept = (0..header.len())
        .filter(|&i| !columns::is_blank(&header[i]))
        .collect();
    TableHead {
        names,
        skipped,
        kept,
        width: header.len(),
        data_start: found.row + 1,
        note: (found.row > 0 || set).then(|| described.clone()),
        described,
        line: Some(records.line_of(&first[found.row])),
        two_rows: found.upper.is_some(),
        above: found.above.iter().map(|k| k.as_str().to_string()).collect(),
    }
}

/// A table without a header row: every record is data, columns numbered as wide as the
/// first records reach.
fn numbered_table(cells: &[Vec<String>]) -> TableHead {
    let width = cells
        .iter()
        .map(|row| {
            row.iter()
                .rposition(|c| !columns::is_blank(c))
                .map_or(0, |i| i + 1)
        })
        .max()
        .unwrap_or(0);
    let described = forced::NO_HEADER.to_string();
    TableHead {
        names: forced::numbered_columns(width),
        skipped: Vec::new(),
        kept: (0..width).collect(),
        width,
        data_start: 0,
        note: Some(described.clone()),
        described,
        line: None,
        two_rows: false,
        above: Vec::new(),
    }
}

/// Why the line set as the header is not one: past the end, blank or inside a quoted cell.
fn no_line(line: u64, first: &[ByteRecord], records: &Records) -> Rejection {
    let lines: Vec<u64> = first.iter().map(|r| records.line_of(r)).collect();
    match lines.iter().rposition(|&l| l < line) {
        Some(before) if before + 1 == lines.len() => Rejection::new(format!(
            "it has no line {line}, the header row set for this source: its last row starts on \
             line {}",
            lines[before]
        )),
        None if lines.is_empty() => Rejection::new("it is empty"),
        at => {
            let after = at.map_or(0, |i| i + 1);
            let around = match at {
                Some(i) => format!("lines {} and {}", lines[i], lines[after]),
                None => format!("line {}", lines[after]),
            };
            Rejection::new(format!(
                "line {line}, the header row set for this source, starts no row: it is blank or \
                 inside a quoted cell (rows start on {around})"
            ))
        }
    }
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
            if let Some(failure) = text_failure_of(&e) {
                return failure;
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
        1 + text::line_breaks(&sample[..start + blank], 0)
    }
}

fn text_failure_of(error: &csv::Error) -> Option<Failure> {
    let csv::ErrorKind::Io(io) = error.kind() else {
        return None;
    };
    text_failure(io)
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

/// Hand a data record on as one value per column: the fields at `kept`, blank ones as "".
fn hand_on(sink: &mut Sink<'_>, kept: &[usize], record: &ByteRecord) -> ControlFlow<()> {
    sink.clear();
    for (column, &index) in kept.iter().enumerate() {
        if let Some(field) = record.get(index)
            && !field_is_blank(field)
        {
            sink.set(column, &String::from_utf8_lossy(head_of(field)));
        }
    }
    sink.emit()
}

/// The start of a field, a little over what a value may hold, cut before a character that
/// would be split: a field of megabytes is not copied whole to be cut afterwards.
fn head_of(field: &[u8]) -> &[u8] {
    let mut end = field.len().min(MAX_VALUE_BYTES + 1);
    while end > 0 && end < field.len() && field[end] & 0xC0 == 0x80 {
        end -= 1;
    }
    &field[..end]
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

#[cfg(test)]
mod tests;
