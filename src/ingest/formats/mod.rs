//! The format seam: which reader a file goes to, and what every reader returns.
//!
//! `extract` runs the reader for the format a file's extension claims and returns the columns
//! and row count, or a rejection whose text completes the sentence "`name` was not accepted:
//! …". Every reader first asks [`sniff`] what the file really is and `disguise` whether that
//! fits the extension, then applies the header rules of [`crate::ingest::columns`]. Readers
//! never touch the catalog or the drop folder, and never hold a whole file in memory (XLS,
//! whose reader loads a workbook whole, is bounded by the format itself).
//!
//! [`stream_rows`] reads the same file again for its data rows, under the same rules, so row
//! *i* of the stream is the *i*-th row `extract` counted and its values line up with
//! `Extracted.columns`; how a cell becomes text is each reader's, the stream's guarantees are
//! `rows`'.
//!
//! [`Extracted`] and [`Rejection`] are plain data with serde: the isolation layer runs
//! `extract` (and `stream_rows`) in a child process and sends the result back as JSON.

#[cfg(test)]
mod agreement;
mod cells;
#[cfg(test)]
pub(crate) mod corpus;
pub mod csv;
mod delimiter;
mod disguise;
pub mod input;
mod package;
pub mod parquet;
mod rows;
pub mod sniff;
pub mod spreadsheet;
mod table;
mod text;

use crate::ingest::columns::forced::Forced;
use crate::protocol::{Reading, SkippedColumn};
use std::ops::ControlFlow;
use std::path::Path;

pub use crate::format::Format;
pub use rows::MAX_VALUE_BYTES;

/// What a reader may use and how far it may go.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReadOptions {
    /// The sheet a spreadsheet is read from (the group's preference); `None`: the first
    /// non-empty visible sheet.
    pub sheet: Option<String>,
    /// Most cells a spreadsheet may hold (rows × columns of its used range).
    pub max_cells: u64,
    /// Most bytes the parts of a zipped spreadsheet may expand to.
    pub max_unzipped_bytes: u64,
    /// What the source's read options (`ingestctl set`) decide instead of detection.
    #[serde(default)]
    pub set: Forced,
}

impl ReadOptions {
    /// Read with a source's own options (stored, so checked when they were set): the sheet
    /// they name replaces the group's preference.
    pub fn apply(&mut self, options: &crate::protocol::ReadOverride) {
        if options.sheet.is_some() {
            self.sheet = options.sheet.clone();
        }
        self.set = Forced::of(options);
    }
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            sheet: None,
            max_cells: 50_000_000,
            max_unzipped_bytes: 1_000_000_000,
            set: Forced::default(),
        }
    }
}

/// What a reader found in an acceptable file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Extracted {
    /// Column names after the header rules (trimmed, blanks skipped, duplicates made unique).
    pub columns: Vec<String>,
    /// Header cells that were not taken, with why.
    pub skipped: Vec<SkippedColumn>,
    /// Data rows below the header (rows with at least one non-empty cell).
    pub rows: u64,
    /// Reader notes worth recording, e.g. "delimiter ';', encoding UTF-8 with BOM".
    pub notes: Vec<String>,
    /// Where the header was found and the text encoding, as `show` reports them.
    #[serde(default)]
    pub reading: Reading,
}

/// Why a file cannot be accepted: a plain clause, e.g. "it has no header row".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[error("{reason}")]
pub struct Rejection {
    pub reason: String,
}

impl Rejection {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
        }
    }
}

/// One step of a row stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowEvent<'a> {
    /// Once, before any row: the column names, identical to `extract`'s `Extracted.columns`.
    Columns(&'a [String]),
    /// One data row: one value per column, in column order ("" for an empty cell).
    Row(&'a [String]),
}

/// Read the columns and row count of `path` as `format`.
///
/// A reader that panics on a hostile file (third-party parsers have had such bugs) becomes a
/// rejection here instead of taking the caller down with it.
pub fn extract(format: Format, path: &Path, options: &ReadOptions) -> Result<Extracted, Rejection> {
    let read = || match format {
        Format::Csv => csv::extract(path, None, &options.set),
        Format::Tsv => csv::extract(path, Some(b'\t'), &options.set),
        Format::Xls | Format::Xlsx | Format::Xlsm => spreadsheet::extract(format, path, options),
        Format::Parquet => parquet::extract(path, options),
    };
    caught(format, read)
}

/// Stream the data rows of `path`. `visit` returning `ControlFlow::Break(())` stops early (not an
/// error). Returns the number of rows visited.
///
/// The rows are those [`extract`] counts (rows with at least one non-empty cell, below the
/// header), in file order, each with one value per column of `Extracted.columns`; cells under
/// no column (a blank header, past the header's end) are left out. Values are text as a
/// person reads the cell, at most [`MAX_VALUE_BYTES`] long (see `docs/formats.md`). CSV and
/// Parquet are read a record or a batch at a time; spreadsheets are read twice, cell by cell
/// (once to find the table, once for its rows). A file that fails part way is a rejection,
/// after the rows before the failure were visited.
pub fn stream_rows(
    format: Format,
    path: &Path,
    options: &ReadOptions,
    visit: &mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
) -> Result<u64, Rejection> {
    let mut sink = rows::Sink::new(visit);
    let read = || match format {
        Format::Csv => csv::stream(path, None, &options.set, &mut sink),
        Format::Tsv => csv::stream(path, Some(b'\t'), &options.set, &mut sink),
        Format::Xls | Format::Xlsx | Format::Xlsm => {
            spreadsheet::stream(format, path, options, &mut sink)
        }
        Format::Parquet => parquet::stream(path, options, &mut sink),
    };
    caught(format, read)?;
    Ok(sink.rows())
}

/// Run a reader, turning its panic into a rejection.
fn caught<T>(format: Format, read: impl FnOnce() -> Result<T, Rejection>) -> Result<T, Rejection> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(read)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_string());
        Err(Rejection::new(format!(
            "it could not be read: the .{} reader failed on it ({message})",
            format.as_str()
        )))
    })
}

#[cfg(test)]
mod tests;
