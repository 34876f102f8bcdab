//! The table in a sheet, found from its cells as they stream past.
//!
//! Spreadsheet readers push every cell (row, column, value) in reading order; [`Scan`] keeps
//! the first rows that may hold the header, decides the header with the shared rules of
//! [`crate::ingest::columns`], and from then on keeps only counts: which rows below the header
//! hold something, and which columns stick out past it. Memory stays at one window of cells,
//! one bit per row and one flag per extra column, whatever the size of the sheet.
//!
//! It also enforces the cell cap (the used range, as rows × columns) and Excel's own bounds,
//! so a sheet that declares a cell at XFD1048576 is refused instead of being allocated by
//! whoever reads it next. It knows nothing about files or calamine.

use crate::ingest::columns::forced::{self, HeaderChoice};
use crate::ingest::columns::{self, Above, ExtraCells, HEADER_SEARCH_ROWS};
use crate::protocol::SkippedColumn;

/// Rows and columns Excel allows; anything beyond is not a real cell.
pub const MAX_ROWS: u32 = 1 << 20;
pub const MAX_COLUMNS: u32 = 1 << 14;

/// A cell value as the header rules need it.
pub trait Value: Clone {
    /// Holds nothing a person would see.
    fn is_blank(&self) -> bool;
    /// The text of a header cell.
    fn text(&self) -> String;
    /// The text of a data cell, as a row value; the header text unless a type says otherwise.
    fn row_text(&self) -> String {
        self.text()
    }
}

/// Why a sheet is refused while it is scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// The used range has more cells than allowed.
    TooManyCells { cells: u64, range: String },
    /// A cell lies beyond Excel's last row or column.
    OutOfBounds { cell: String },
}

/// What was found: the header and what lies below it. Columns are 0-based sheet columns.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The header's row; with no header row (set for the source), the row above the data.
    pub header_row: u32,
    /// The first row of data: the one below the header, or the first filled row when the
    /// table has no header row.
    pub data_row: u32,
    /// The table has a header row (it has none only when that is set for the source).
    pub has_header: bool,
    /// First and last column of the table (inclusive).
    pub left: u32,
    pub right: u32,
    pub columns: Vec<String>,
    /// The 0-based sheet column of each of `columns`.
    pub kept: Vec<u32>,
    /// Positions are sheet columns, 1-based (column A is 1).
    pub skipped: Vec<SkippedColumn>,
    pub rows: u64,
    /// Rows with content above the header (titles, notes).
    pub rows_above: usize,
    /// How the header was found, rows counted from the sheet's first filled row.
    pub header: columns::Header,
    /// Some cell below the header lies left of the table.
    pub cells_left: bool,
}

/// A table being found. See the module documentation.
pub struct Scan<V> {
    max_cells: u64,
    /// Top, bottom, left, right of the non-blank cells seen so far.
    bounds: Option<(u32, u32, u32, u32)>,
    /// The first row with content, and the non-blank cells of the rows that may be the header.
    window_start: Option<u32>,
    window: Vec<(u32, u32, V)>,
    found: Option<Found>,
    /// How the header is chosen (the source's read options may set it).
    choice: HeaderChoice,
    /// Why the header set for the source cannot be the header.
    problem: Option<String>,
}

/// The header once decided, and the counts kept below it.
struct Found {
    table: Table,
    /// Bit `i`: row `data_row + i` has content.
    content: Vec<u64>,
    extra: ExtraCells,
}

impl<V: Value> Scan<V> {
    pub fn new(max_cells: u64) -> Self {
        Self {
            max_cells,
            bounds: None,
            window_start: None,
            window: Vec::new(),
            found: None,
            choice: HeaderChoice::Detect,
            problem: None,
        }
    }

    /// Choose the header as the source's read options say.
    pub fn with_header(mut self, choice: HeaderChoice) -> Self {
        self.choice = choice;
        self
    }

    /// [`Self::finish`], or why the header set for the source is none.
    pub fn finish_checked(self) -> Result<Option<Table>, String> {
        let mut scan = self;
        if scan.found.is_none() && !scan.window.is_empty() {
            scan.decide();
        }
        match scan.problem.take() {
            Some(problem) => Err(problem),
            None => Ok(scan.finish()),
        }
    }

    /// One cell, at 0-based `row` and `column`. Blank cells are ignored.
    pub fn push(&mut self, row: u32, column: u32, value: &V) -> Result<(), Refused> {
        if value.is_blank() || self.problem.is_some() {
            return Ok(());
        }
        if row >= MAX_ROWS || column >= MAX_COLUMNS {
            return Err(Refused::OutOfBounds {
                cell: cell_name(row, column),
            });
        }
        self.widen(row, column)?;
        if self.found.is_none() {
            // Rows normally come in order; one that comes early still starts the window.
            let start = self.window_start.map_or(row, |s| s.min(row));
            self.window_start = Some(start);
            let window_end = match self.choice {
                // Down to the row set as the header, however far below the search it is.
                HeaderChoice::Row(n) => (n as u32).max(start + 1),
                _ => start + HEADER_SEARCH_ROWS as u32,
            };
            if row < window_end {
                self.window.push((row, column, value.clone()));
                return Ok(());
            }
            self.decide();
        }
        if let Some(found) = &mut self.found {
            found.below(row, column);
        }
        Ok(())
    }

    /// The table, or `None` when the sheet has no content at all.
    pub fn finish(mut self) -> Option<Table> {
        if self.found.is_none() && !self.window.is_empty() {
            self.decide();
        }
        let found = self.found?;
        let mut table = found.table;
        table.skipped.extend(found.extra.skipped());
        table.rows = found
            .content
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum();
        Some(table)
    }

    fn widen(&mut self, row: u32, column: u32) -> Result<(), Refused> {
        let (top, bottom, left, right) = match self.bounds {
            None => (row, row, column, column),
            Some((t, b, l, r)) => (t.min(row), b.max(row), l.min(column), r.max(column)),
        };
        self.bounds = Some((top, bottom, left, right));
        let cells = u64::from(bottom - top + 1) * u64::from(right - left + 1);
        if cells > self.max_cells {
            let range = format!("{}:{}", cell_name(top, left), cell_name(bottom, right));
            return Err(Refused::TooManyCells { cells, range });
        }
        Ok(())
    }

    /// Choose the header among the window's rows and replay the rows below it.
    fn decide(&mut self) {
        let window = std::mem::take(&mut self.window);
        let Some(start) = self.window_start else {
            return;
        };
        // The header search reads the cells' texts: words over typed data mark a header.
        let left_most = window.iter().map(|c| c.1).min().unwrap_or(0);
        let mut texts: Vec<Vec<String>> = Vec::new();
        for (row, column, value) in &window {
            let (r, c) = ((row - start) as usize, (column - left_most) as usize);
            if texts.len() <= r {
                texts.resize(r + 1, Vec::new());
            }
            if texts[r].len() <= c {
                texts[r].resize(c + 1, String::new());
            }
            texts[r][c] = value.text();
        }
        if self.choice == HeaderChoice::None {
            self.found = Some(numbered(&window, start));
            return;
        }
        let detected = || {
            columns::find_header(&texts).unwrap_or(columns::Header {
                row: 0,
                upper: None,
                above: Vec::new(),
            })
        };
        let mut header = match self.choice {
            HeaderChoice::Row(n) => {
                let wanted = n.saturating_sub(1) as u32;
                let last = window.iter().map(|c| c.0).max().unwrap_or(start);
                if wanted > last {
                    self.problem = Some(format!(
                        "it has no row {n}, the header row set for this source: its last filled \
                         row is {}",
                        u64::from(last) + 1
                    ));
                    return;
                }
                if wanted < start || !window.iter().any(|c| c.0 == wanted) {
                    self.problem = Some(format!(
                        "row {n}, the header row set for this source, is blank"
                    ));
                    return;
                }
                forced::header_at(&texts, (wanted - start) as usize)
            }
            _ => detected(),
        };
        let header_row = start + header.row as u32;
        let top_row = start + header.upper.unwrap_or(header.row) as u32;
        // The table starts at its leftmost cell from the header down (so a blank header cell
        // over data is reported, as in CSV) and ends at the header's last filled cell: cells
        // further right are under no header cell.
        let left = window
            .iter()
            .filter(|c| c.0 >= top_row)
            .map(|c| c.1)
            .min()
            .unwrap_or(left_most);
        let combined = header.cells(&texts);
        let right = combined
            .iter()
            .rposition(|c| !columns::is_blank(c))
            .map_or(left, |i| left_most + i as u32)
            .max(left);
        let cells: Vec<String> = (left..=right)
            .map(|column| {
                combined
                    .get((column - left_most) as usize)
                    .cloned()
                    .unwrap_or_default()
            })
            .collect();
        let (columns, mut skipped) = columns::header_columns(&cells);
        let kept = (left..=right)
            .filter(|&column| !columns::is_blank(&cells[(column - left) as usize]))
            .collect();
        for skip in &mut skipped {
            skip.position += left as usize;
        }
        let rows_above = header.above.iter().filter(|k| **k != Above::Blank).count();
        // The blank rows above the first filled one were skipped too, as a person counts them
        // (a sheet that starts far down is not described row by row).
        if start <= HEADER_SEARCH_ROWS as u32 {
            let blank = std::iter::repeat_n(Above::Blank, start as usize);
            header.above.splice(0..0, blank);
        }
        let mut found = Found {
            table: Table {
                header_row,
                data_row: header_row + 1,
                has_header: true,
                left,
                right,
                columns,
                kept,
                skipped,
                rows: 0,
                rows_above,
                header,
                cells_left: false,
            },
            content: Vec::new(),
            extra: ExtraCells::new(right as usize + 1),
        };
        for (row, column, _) in window.iter().filter(|c| c.0 > header_row) {
            found.below(*row, *column);
        }
        self.found = Some(found);
    }
}

/// The table of a sheet without a header row: every filled row is data, the columns numbered
/// from the leftmost to the rightmost cell of the first rows.
fn numbered<V>(window: &[(u32, u32, V)], start: u32) -> Found {
    let left = window.iter().map(|c| c.1).min().unwrap_or(0);
    let right = window.iter().map(|c| c.1).max().unwrap_or(left);
    let width = (right - left + 1) as usize;
    let mut found = Found {
        table: Table {
            header_row: start.saturating_sub(1),
            data_row: start,
            has_header: false,
            left,
            right,
            columns: forced::numbered_columns(width),
            kept: (left..=right).collect(),
            skipped: Vec::new(),
            rows: 0,
            rows_above: 0,
            header: columns::Header {
                row: 0,
                upper: None,
                above: Vec::new(),
            },
            cells_left: false,
        },
        content: Vec::new(),
        extra: ExtraCells::new(right as usize + 1),
    };
    for (row, column, _) in window {
        found.below(*row, *column);
    }
    found
}

impl Found {
    /// A non-blank cell after the header was decided.
    fn below(&mut self, row: u32, column: u32) {
        let Some(offset) = row.checked_sub(self.table.data_row) else {
            return;
        };
        let (word, bit) = ((offset / 64) as usize, offset % 64);
        if self.content.len() <= word {
            self.content.resize(word + 1, 0);
        }
        self.content[word] |= 1 << bit;
        if column > self.table.right {
            self.extra.mark(column as usize);
        } else if column < self.table.left {
            self.table.cells_left = true;
        }
    }
}

/// A column's letters: 0 is A, 25 is Z, 26 is AA.
pub fn column_name(column: u32) -> String {
    let mut n = u64::from(column) + 1;
    let mut letters = Vec::new();
    while n > 0 {
        n -= 1;
        letters.push(b'A' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    String::from_utf8_lossy(&letters).into_owned()
}

/// "B4" for 0-based row 3, column 1.
pub fn cell_name(row: u32, column: u32) -> String {
    format!("{}{}", column_name(column), u64::from(row) + 1)
}

#[cfg(test)]
mod tests;
