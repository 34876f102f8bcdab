//! XLS, XLSX and XLSM workbooks, read with calamine.
//!
//! Which sheet: the one the group's preferences name, else the first visible worksheet that
//! holds anything. Which row is the header and what its cells become: `table` and the
//! shared rules of [`crate::ingest::columns`]; blank header cells that belong to a merged range
//! are reported as such.
//!
//! Limits come first. An XLSX package is checked from its ZIP directory (`package`)
//! before calamine parses a byte of it, and its sheet is streamed cell by cell (calamine's cell
//! reader), so memory stays at the shared strings plus one window of rows however big the sheet
//! is. XLS has no lazy reader: calamine loads a whole BIFF workbook when it opens it, which the
//! format itself bounds (65,536 rows × 256 columns per sheet); the cell cap is checked on the
//! loaded sheet. Nothing here writes, and nothing decides from the file's name.

use super::table::{self, Refused, Scan, Table};
use super::{Extracted, Format, ReadOptions, Rejection, disguise, package, sniff};
use crate::ingest::columns::{BLANK_HEADER, MERGED_HEADER};
use calamine::{Dimensions, Reader, Sheet, SheetType, SheetVisible, Xls, Xlsx};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

type Source = BufReader<File>;

/// Read the columns and row count of a workbook named as `format`.
pub fn extract(format: Format, path: &Path, options: &ReadOptions) -> Result<Extracted, Rejection> {
    let kind = sniff::identify(path)?;
    disguise::check(format, &kind)?;
    let file =
        File::open(path).map_err(|e| Rejection::new(format!("it could not be read: {e}")))?;
    match kind {
        sniff::Kind::Xlsx | sniff::Kind::Xlsm => {
            package::check(path, options.max_unzipped_bytes)?;
            let book = Xlsx::new(BufReader::new(file)).map_err(|e| xlsx_error(&e))?;
            read(XlsxBook(book), options)
        }
        _ => {
            let book = Xls::new(BufReader::new(file)).map_err(|e| xls_error(&e))?;
            read(XlsBook(book), options)
        }
    }
}

/// What the two calamine readers have in common here.
trait Book {
    fn sheets(&self) -> Vec<Sheet>;
    /// Scan one sheet; `Ok(None)` when it has no content.
    fn scan(&mut self, name: &str, max_cells: u64) -> Result<Option<Table>, Rejection>;
    /// Merged ranges of a sheet; empty when they cannot be read.
    fn merged(&mut self, name: &str) -> Vec<Dimensions>;
}

struct XlsxBook(Xlsx<Source>);
struct XlsBook(Xls<Source>);

impl Book for XlsxBook {
    fn sheets(&self) -> Vec<Sheet> {
        self.0.sheets_metadata().to_vec()
    }

    fn scan(&mut self, name: &str, max_cells: u64) -> Result<Option<Table>, Rejection> {
        let unreadable = |e: calamine::XlsxError| sheet_error(name, &e.to_string());
        let mut cells = self.0.worksheet_cells_reader(name).map_err(unreadable)?;
        let mut scan = Scan::new(max_cells);
        while let Some(cell) = cells.next_cell().map_err(unreadable)? {
            let (row, column) = cell.get_position();
            scan.push(row, column, cell.get_value())
                .map_err(|refused| too_big(name, refused, max_cells))?;
        }
        Ok(scan.finish())
    }

    fn merged(&mut self, name: &str) -> Vec<Dimensions> {
        self.0.merge_cells_by_sheet_name(name).unwrap_or_default()
    }
}

impl Book for XlsBook {
    fn sheets(&self) -> Vec<Sheet> {
        self.0.sheets_metadata().to_vec()
    }

    fn scan(&mut self, name: &str, max_cells: u64) -> Result<Option<Table>, Rejection> {
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
        let mut scan = Scan::new(max_cells);
        for (row, column, value) in range.used_cells() {
            scan.push(top + row as u32, left + column as u32, &value)
                .map_err(|refused| too_big(name, refused, max_cells))?;
        }
        Ok(scan.finish())
    }

    fn merged(&mut self, name: &str) -> Vec<Dimensions> {
        self.0.merge_cells_by_sheet_name(name).unwrap_or_default()
    }
}

/// Choose the sheet, find its table, and describe it.
fn read(mut book: impl Book, options: &ReadOptions) -> Result<Extracted, Rejection> {
    let sheets = book.sheets();
    let wanted = options.sheet.as_deref();
    let candidates = candidates(&sheets, wanted)?;
    for name in &candidates {
        let Some(mut table) = book.scan(name, options.max_cells)? else {
            continue;
        };
        if table.skipped.iter().any(|s| s.reason == BLANK_HEADER) {
            relabel_merged(&mut table, &book.merged(name));
        }
        let mut notes = vec![sheet_note(name, &sheets, wanted.is_some())];
        notes.extend(table_notes(&table));
        return Ok(Extracted {
            columns: table.columns,
            skipped: table.skipped,
            rows: table.rows,
            notes,
        });
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

fn sheet_note(name: &str, sheets: &[Sheet], named: bool) -> String {
    if named {
        format!("sheet '{name}' (named in the group's preferences)")
    } else if sheets.first().is_some_and(|s| s.name != name) {
        format!("sheet '{name}' (the first visible sheet with data)")
    } else {
        format!("sheet '{name}'")
    }
}

/// Where the header is and what was left out, for the catalog's notes.
fn table_notes(table: &Table) -> Vec<String> {
    let mut header = format!("header on row {}", u64::from(table.header_row) + 1);
    if table.left > 0 {
        header.push_str(&format!(
            ", columns {} to {}",
            table::column_name(table.left),
            table::column_name(table.right)
        ));
    }
    match table.rows_above {
        0 => {}
        1 => header.push_str(" (1 row above it skipped)"),
        n => header.push_str(&format!(" ({n} rows above it skipped)")),
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
