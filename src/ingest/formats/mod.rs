//! The format seam: which reader a file goes to, and what every reader returns.
//!
//! `extract` runs the reader for the format a file's extension claims (each reader checks that
//! the content really is that format) and returns the columns and row count, or a rejection
//! whose text completes the sentence "`name` was not accepted: …". Readers never touch the
//! catalog or the drop folder, and never hold a whole file in memory.

pub mod csv;

use crate::protocol::SkippedColumn;
use std::path::Path;

/// A format the daemon reads, named by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Tsv,
    Xls,
    Xlsx,
    Xlsm,
    Parquet,
}

impl Format {
    /// The format an extension claims (case-insensitive), if it is one we know.
    pub fn from_extension(ext: &str) -> Option<Self> {
        Some(match ext.to_ascii_lowercase().as_str() {
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "xls" => Format::Xls,
            "xlsx" => Format::Xlsx,
            "xlsm" => Format::Xlsm,
            "parquet" => Format::Parquet,
            _ => return None,
        })
    }

    /// Whether this build has a reader for the format. Extensions without one are refused
    /// with a reason that says so, and are not advertised as accepted.
    pub fn readable(self) -> bool {
        matches!(self, Format::Csv | Format::Tsv)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Tsv => "tsv",
            Format::Xls => "xls",
            Format::Xlsx => "xlsx",
            Format::Xlsm => "xlsm",
            Format::Parquet => "parquet",
        }
    }
}

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
}

impl Default for ReadOptions {
    fn default() -> Self {
        Self {
            sheet: None,
            max_cells: 50_000_000,
            max_unzipped_bytes: 1_000_000_000,
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

/// Read the columns and row count of `path` as `format`.
pub fn extract(
    format: Format,
    path: &Path,
    _options: &ReadOptions,
) -> Result<Extracted, Rejection> {
    match format {
        Format::Csv => csv::extract(path, None),
        Format::Tsv => csv::extract(path, Some(b'\t')),
        Format::Xls | Format::Xlsx | Format::Xlsm | Format::Parquet => {
            Err(Rejection::new(format!(
                "reading .{} files is not available in this build yet; convert it to CSV",
                format.as_str()
            )))
        }
    }
}
