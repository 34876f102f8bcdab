//! XLS, XLSX and XLSM workbooks, read with calamine.
//!
//! Which sheet: the one the group's preferences name, else the first visible worksheet that
//! holds anything. Which row is the header and what its cells become: `table` and the
//! shared rules of [`crate::ingest::columns`]; blank header cells that belong to a merged range
//! are reported as such.
//!
//! Rows ([`stream`]) come from a second pass over the same sheet, once the first has found the
//! table: a row is every cell of one sheet row below the header, each under its column.
//!
//! Limits come first. An XLSX package is checked from its ZIP directory (`package`)
//! before calamine parses a byte of it, and its sheet is streamed cell by cell (calamine's cell
//! reader), so memory stays at the shared strings plus one window of rows however big the sheet
//! is. XLS has no lazy reader: calamine loads a whole BIFF workbook when it opens it, which the
//! format itself bounds (65,536 rows × 256 columns per sheet); the cell cap is checked on the
//! loaded sheet. Nothing here writes, and nothing decides from the file's name.

use super::rows::{Sink, truncate};
use super::table::{self, Refused, Scan, Table, Value};
use super::{Extracted, Format, ReadOptions, Rejection, disguise, package, sniff};
use crate::ingest::columns::forced::{self, HeaderChoice};
use crate::ingest::columns::{BLANK_HEADER, MERGED_HEADER};
use crate::protocol::Reading;
use calamine::{Dimensions, Reader, Sheet, SheetType, SheetVisible, Xls, Xlsx};
use std::fs::File;
use std::io::BufReader;
use std::ops::ControlFlow;
use std::path::Path;

type Source = BufReader<File>;

/// Read the columns and row count of a workbook named as `format`.
pub fn extract(format: Format, path: &Path, options: &ReadOptions) -> Result<Extracted, Rejection> {
    with_book(format, path, options, |book| read(book, options))
}

/// Hand the data rows of a workbook to `sink`: the same sheet and table as [`extract`] finds,
/// read a second time for the values.
pub(super) fn stream(
    format: Format,
    path: &Path,
    options: &ReadOptions,
    sink: &mut Sink<'_>,
) -> Result<(), Rejection> {
    with_book(format, path, options, |book| {
        stream_table(book, options, sink)
    })
}

/// Check and open the workbook, and run `f` on it.
fn with_book<T>(
    format: Format,
    path: &Path,
    options: &ReadOptions,
    f: impl FnOnce(&mut dyn Book) -> Result<T, Rejection>,
) -> Result<T, Rejection> {
    let kind = sniff::identify(path)?;
    disguise::check(format, &kind)?;
    let file = super::input::open(path)
        .map_err(|e| Rejection::new(format!("it could not be read: {e}")))?;
    match kind {
        sniff::Kind::Xlsx | sniff::Kind::Xlsm => {
            package::check(path, options.max_unzipped_bytes)?;
            let book = Xlsx::new(BufReader::new(file)).map_err(|e| xlsx_error(&e))?;
            f(&mut XlsxBook(book))
        }
        _ => {
            let book = Xls::new(BufReader::new(file)).map_err(|e| xls_error(&e))?;
            f(&mut XlsBook(book))
        }
    }
}

/// What a cell reader hands on: the cell's 0-based row and column, and its row value text,
/// made only when asked for.
type EachCell<'a> = dyn FnMut(u32, u32, &dyn Fn() -> String) -> ControlFlow<()> + 'a;

/// What the two calamine readers have in common here.
trait Book {
    fn sheets(&self) -> Vec<Sheet>;
    /// Scan one sheet; `Ok(None)` when it has no content.
    fn scan(
        &mut self,
        name: &str,
        max_cells: u64,
        header: HeaderChoice,
    ) -> Result<Option<Table>, Rejection>;
    /// Merged ranges of a sheet; empty when they cannot be read.
    fn merged(&mut self, name: &str) -> Vec<Dimensions>;
    /// Every non-blank cell of a sheet, in reading order, until `each` breaks.
    fn cells(&mut self, name: &str, each: &mut EachCell<'_>) -> Result<(), Rejection>;
}

struct XlsxBook(Xlsx<Source>);
struct XlsBook(Xls<Source>);

impl Book for XlsxBook {
    fn sheets(&self) -> Vec<Sheet> {
        self.0.sheets_metadata().to_vec()
    }

    fn scan(
        &mut self,
        name: &str,
        max_cells: u64,
        header: HeaderChoice,
    ) -> Result<Option<Table>, Rejection> {
        let unreadable = |e: calamine::XlsxError| sheet_error(name, &e.to_string());
        let mut cells = self.0.worksheet_cells_reader(name).map_err(unreadable)?;
        let mut scan = Scan::new(max_cells).with_header(header);
        while let Some(cell) = cells.next_cell().map_err(unreadable)? {
            let (row, column) = cell.get_position();
            scan.push(row, column, cell.get_value())
                .map_err(|refused| too_big(name, refused, max_cells))?;
        }
        scan.finish_checked()
            .map_err(|p| set_header_error(name, &p))
    }

    fn merged(&mut self, name: &str) -> Vec<Dimensions> {
        self.0.merge_cells_by_sheet_name(name).unwrap_or_default()
    }

    fn cells(&mut self, name: &str, each: &mut EachCell<'_>) -> Result<(), Rejection> {
        let unreadable = |e: calamine::XlsxError| sheet_error(name, &e.to_string());
        let mut cells = self.0.worksheet_cells_reader(name).map_err(unreadable)?;
        while let Some(cell) = cells.next_cell().map_err(unreadable)? {
            let value = cell.get_value();
            if value.is_blank() {
                continue;
            }
            let (row, column) = cell.get_position();
            if each(row, column, &|| value.row_text()).is_break() {
                break;
            }
        }
        Ok(())
    }
}

impl Book for XlsBook {
    fn sheets(&self) -> Vec<Sheet> {
        self.0.sheets_metadata().to_vec()
    }

    fn scan(
        &mut self,
        name: &str,
        max_cells: u64,
        header: HeaderChoice,
    ) -> Result<Option<Table>, Rejection> {
        let range = self
            .0
            .worksheet_range(name)
            .map_err(|e| sheet_error(name, &e.to_string()))?;
        let (height, width) = range.get_size();
        let cells = height as u64 * width as u64;
        if let (Some(start), Some(end)) = (range.start(), range.end())
            && cells > max_cells
        {
            let range = format!(
                "{}:{}",
                table::cell_name(start.0, start.1),
                table::cell_name(end.0, end.1)
            );
            return Err(too_big(
                name,
                Refused::TooManyCells { cells, range },
                max_cells,
            ));
        }
        let (top, left) = range.start().unwrap_or((0, 0));
        let mut scan = Scan::new(max_cells).with_header(header);
        for (row, column, value) in range.used_cells() {
            scan.push(top + row as u32, left + column as u32, &value)
                .map_err(|refused| too_big(name, refused, max_cells))?;
        }
        scan.finish_checked()
            .map_err(|p| set_header_error(name, &p))
    }

    fn merged(&mut self, name: &str) -> Vec<Dimensions> {
        self.0.merge_cells_by_sheet_name(name).unwrap_or_default()
    }

    fn cells(&mut self, name: &str, each: &mut EachCell<'_>) -> Result<(), Rejection> {
        let range = self
            .0
            .worksheet_range(name)
            .map_err(|e| sheet_error(name, &e.to_string()))?;
        let (top, left) = range.start().unwrap_or((0, 0));
        for (row, column, value) in range.used_cells() {
            if value.is_blank() {
                continue;
            }
            let (row, column) = (top + row as u32, left + column as u32);
            if each(row, column, &|| value.row_text()).is_break() {
                break;
            }
        }
        Ok(())
    }
}

/// Choose the sheet, find its table, and describe it.
fn read(book: &mut dyn Book, options: &ReadOptions) -> Result<Extracted, Rejection> {
    let sheets = book.sheets();
    let (name, table) = find(book, &sheets, options)?;
    let mut notes = vec![sheet_note(&name, &sheets, options)];
    let table_notes = table_notes(&table, options.set.header);
    let reading = Reading {
        header: table_notes.first().cloned(),
        header_row: table.has_header.then(|| u64::from(table.header_row) + 1),
        two_row_header: table.header.upper.is_some(),
        rows_above: table
            .header
            .above
            .iter()
            .map(|k| k.as_str().to_string())
            .collect(),
        ..Reading::default()
    };
    notes.extend(table_notes);
    Ok(Extracted {
        columns: table.columns,
        skipped: table.skipped,
        rows: table.rows,
        notes,
        reading,
    })
}

/// Hand on the rows of the table [`read`] finds: every row below its header with a non-blank
/// cell anywhere (the rows `read` counts), with the cells under its columns as values.
fn stream_table(
    book: &mut dyn Book,
    options: &ReadOptions,
    sink: &mut Sink<'_>,
) -> Result<(), Rejection> {
    let sheets = book.sheets();
    let (name, table) = find(book, &sheets, options)?;
    if sink.columns(&table.columns).is_break() {
        return Ok(());
    }
    let mut rows = RowsBelow::default();
    book.cells(&name, &mut |row, column, text| {
        if row < table.data_row {
            return ControlFlow::Continue(());
        }
        if rows.current != Some(row) {
            if rows.current.is_some() && !rows.repeated && sink.emit().is_break() {
                return ControlFlow::Break(());
            }
            sink.clear();
            rows.start(row - table.data_row);
            rows.current = Some(row);
        }
        if !rows.repeated
            && let Ok(index) = table.kept.binary_search(&column)
            && let Some(value) = sink.value_mut(index)
        {
            value.push_str(&text());
            truncate(value);
        }
        ControlFlow::Continue(())
    })?;
    if rows.current.is_some() && !rows.repeated && !sink.stopped() {
        let _ = sink.emit();
    }
    Ok(())
}

/// The row being gathered, and which rows below the header were handed on already.
#[derive(Default)]
struct RowsBelow {
    current: Option<u32>,
    /// Bit `i`: row `data_row + i` was started.
    started: Vec<u64>,
    /// The current row was started before: a writer put its cells in two places. Its first
    /// part was handed on; the second is dropped, so each row comes once, as counted.
    repeated: bool,
}

impl RowsBelow {
    fn start(&mut self, offset: u32) {
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if self.started.len() <= word {
            self.started.resize(word + 1, 0);
        }
        self.repeated = self.started[word] & (1 << bit) != 0;
        self.started[word] |= 1 << bit;
    }
}

/// The sheet to read and the table on it: the first candidate sheet with content.
fn find(
    book: &mut dyn Book,
    sheets: &[Sheet],
    options: &ReadOptions,
) -> Result<(String, Table), Rejection> {
    let wanted = options.sheet.as_deref();
    let candidates = candidates(sheets, wanted)?;
    for name in &candidates {
        let Some(mut table) = book.scan(name, options.max_cells, options.set.header)? else {
            continue;
        };
        if table.skipped.iter().any(|s| s.reason == BLANK_HEADER) {
            relabel_merged(&mut table, &book.merged(name));
        }
        return Ok((name.clone(), table));
    }
    Err(Rejection::new(match wanted {
        Some(_) => format!("its sheet '{}' is empty", candidates.join("")),
        None if sheets.iter().any(|s| s.visible != SheetVisible::Visible) => {
            "every visible sheet is empty (hidden sheets are read only when the group's \
             preferences name one)"
                .to_string()
        }
        None => "every sheet is empty".to_string(),
    }))
}

/// The sheets to try, in order: the one named in the preferences, or every visible worksheet.
fn candidates(sheets: &[Sheet], wanted: Option<&str>) -> Result<Vec<String>, Rejection> {
    let Some(wanted) = wanted else {
        let visible: Vec<String> = sheets
            .iter()
            .filter(|s| s.typ == SheetType::WorkSheet && s.visible == SheetVisible::Visible)
            .map(|s| s.name.clone())
            .collect();
        if visible.is_empty() {
            return Err(Rejection::new(if sheets.is_empty() {
                "it has no sheets"
            } else {
                "it has no visible worksheet; name the sheet to read in the group's preferences"
            }));
        }
        return Ok(visible);
    };
    // Excel treats sheet names without regard to case; an exact match still wins.
    let sheet = sheets.iter().find(|s| s.name == wanted).or_else(|| {
        sheets
            .iter()
            .find(|s| s.name.to_lowercase() == wanted.to_lowercase())
    });
    match sheet {
        Some(sheet) if sheet.typ == SheetType::WorkSheet => Ok(vec![sheet.name.clone()]),
        Some(sheet) => Err(Rejection::new(format!(
            "its sheet '{}' is a {}, not a worksheet",
            sheet.name,
            match sheet.typ {
                SheetType::ChartSheet => "chart",
                SheetType::DialogSheet => "dialog sheet",
                SheetType::MacroSheet => "macro sheet",
                _ => "VBA module",
            }
        ))),
        None => {
            let names: Vec<String> = sheets.iter().map(|s| format!("'{}'", s.name)).collect();
            Err(Rejection::new(format!(
                "it has no sheet named '{wanted}' (its sheets are {})",
                names.join(", ")
            )))
        }
    }
}

/// Blank header cells inside a merged range are "merged header cell", not "blank header".
fn relabel_merged(table: &mut Table, merged: &[Dimensions]) {
    for skip in &mut table.skipped {
        if skip.reason != BLANK_HEADER {
            continue;
        }
        let column = (skip.position - 1) as u32;
        if merged.iter().any(|m| m.contains(table.header_row, column)) {
            skip.reason = MERGED_HEADER.to_string();
        }
    }
}

fn sheet_note(name: &str, sheets: &[Sheet], options: &ReadOptions) -> String {
    if options.set.sheet {
        format!("sheet '{name}' (set for this source)")
    } else if options.sheet.is_some() {
        format!("sheet '{name}' (named in the group's preferences)")
    } else if sheets.first().is_some_and(|s| s.name != name) {
        format!("sheet '{name}' (the first visible sheet with data)")
    } else {
        format!("sheet '{name}'")
    }
}

/// Where the header is and what was left out, for the catalog's notes.
fn table_notes(table: &Table, choice: HeaderChoice) -> Vec<String> {
    let mut header = match choice {
        HeaderChoice::None => forced::NO_HEADER.to_string(),
        _ => table.header.describe("row", |i| {
            u64::from(table.header_row) + 1 + i as u64 - table.header.row as u64
        }),
    };
    if matches!(choice, HeaderChoice::Row(_)) {
        header = forced::mark_set(&header);
    }
    if table.left > 0 {
        let columns = format!(
            ", columns {} to {}",
            table::column_name(table.left),
            table::column_name(table.right)
        );
        let at = header.find(" (").unwrap_or(header.len());
        header.insert_str(at, &columns);
    }
    let mut notes = vec![header];
    if table.cells_left {
        notes.push(format!(
            "cells left of column {} are under no header and belong to no column",
            table::column_name(table.left)
        ));
    }
    notes
}

fn too_big(sheet: &str, refused: Refused, max_cells: u64) -> Rejection {
    Rejection::new(match refused {
        Refused::TooManyCells { cells, range } => format!(
            "its sheet '{sheet}' has more than {} cells (its used range {range} is {} cells)",
            thousands(max_cells),
            thousands(cells)
        ),
        Refused::OutOfBounds { cell } => format!(
            "its sheet '{sheet}' has a cell at {cell}, beyond the last row or column Excel allows"
        ),
    })
}

/// The header row set for the source is not one in this sheet.
fn set_header_error(sheet: &str, problem: &str) -> Rejection {
    Rejection::new(format!("in its sheet '{sheet}', {problem}"))
}

fn sheet_error(sheet: &str, error: &str) -> Rejection {
    Rejection::new(format!("its sheet '{sheet}' could not be read: {error}"))
}

fn xlsx_error(error: &calamine::XlsxError) -> Rejection {
    match error {
        calamine::XlsxError::Password => Rejection::new(
            "it is an encrypted (password-protected) workbook; save it without a password",
        ),
        other => Rejection::new(format!("it could not be read as an XLSX workbook: {other}")),
    }
}

fn xls_error(error: &calamine::XlsError) -> Rejection {
    match error {
        calamine::XlsError::Password => Rejection::new(
            "it is an encrypted (password-protected) workbook; save it without a password",
        ),
        other => Rejection::new(format!(
            "it could not be read as an XLS workbook ({other}); open it in Excel and save it as \
             .xlsx"
        )),
    }
}

/// 50000000 as "50,000,000".
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
