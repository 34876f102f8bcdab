//! The receiving end of a row stream, shared by every reader: it hands the column names to the
//! visitor once, then each data row as one value per column, counts the rows, and remembers
//! whether the visitor asked to stop.
//!
//! Readers decide which rows are data and which cell lands in which column; this module owns
//! only what every stream must guarantee whatever the format: the columns come first and once,
//! a row always has exactly one value per column, and no value is longer than
//! [`MAX_VALUE_BYTES`]. It never reads a file.

use super::RowEvent;
use std::ops::ControlFlow;

/// Longest value handed on, in bytes. Rendering cuts values far shorter; this only bounds the
/// memory one hostile cell can take on its way there.
pub const MAX_VALUE_BYTES: usize = 4096;

/// The visitor, and what has been handed to it so far.
pub(super) struct Sink<'v> {
    visit: &'v mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>,
    /// The row being filled, reused from row to row.
    row: Vec<String>,
    rows: u64,
    /// Rows to drop before any is handed on (a CSV file read a second time, in another
    /// encoding, starts again where the first reading stopped).
    skip: u64,
    /// The column names were handed on.
    announced: bool,
    stopped: bool,
}

impl<'v> Sink<'v> {
    pub fn new(visit: &'v mut dyn FnMut(RowEvent<'_>) -> ControlFlow<()>) -> Self {
        Self {
            visit,
            row: Vec::new(),
            rows: 0,
            skip: 0,
            announced: false,
            stopped: false,
        }
    }

    /// Hand on the column names; every row from now on has one value per name. A second call
    /// (a second reading of the same file, which finds the same names) hands on nothing.
    pub fn columns(&mut self, columns: &[String]) -> ControlFlow<()> {
        self.row = vec![String::new(); columns.len()];
        if self.announced {
            return self.flow();
        }
        self.announced = true;
        if (self.visit)(RowEvent::Columns(columns)).is_break() {
            self.stopped = true;
        }
        self.flow()
    }

    /// Start the next row again: every value empty.
    pub fn clear(&mut self) {
        for value in &mut self.row {
            value.clear();
        }
    }

    /// Set value `column` of the current row to `text`, cut to [`MAX_VALUE_BYTES`]. Columns
    /// out of range are ignored.
    pub fn set(&mut self, column: usize, text: &str) {
        if let Some(value) = self.row.get_mut(column) {
            value.clear();
            value.push_str(truncated(text));
        }
    }

    /// The value `column` of the current row, to be written in place (then call [`Self::cut`]).
    pub fn value_mut(&mut self, column: usize) -> Option<&mut String> {
        self.row.get_mut(column)
    }

    /// Cut every value of the current row to [`MAX_VALUE_BYTES`].
    pub fn cut(&mut self) {
        for value in &mut self.row {
            truncate(value);
        }
    }

    /// Hand on the current row.
    pub fn emit(&mut self) -> ControlFlow<()> {
        if self.stopped {
            return ControlFlow::Break(());
        }
        if self.skip > 0 {
            self.skip -= 1;
            return ControlFlow::Continue(());
        }
        if (self.visit)(RowEvent::Row(&self.row)).is_break() {
            self.stopped = true;
        }
        // A row the visitor stopped at was still visited.
        self.rows += 1;
        self.flow()
    }

    /// Drop the next `rows` rows: they were handed on by an earlier reading.
    pub fn skip_next(&mut self, rows: u64) {
        self.skip = rows;
    }

    /// Rows handed on so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Whether the visitor asked to stop.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    fn flow(&self) -> ControlFlow<()> {
        if self.stopped {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// `text` cut to at most [`MAX_VALUE_BYTES`] bytes, on a character boundary.
pub fn truncated(text: &str) -> &str {
    if text.len() <= MAX_VALUE_BYTES {
        return text;
    }
    let mut end = MAX_VALUE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// [`truncated`], in place.
pub fn truncate(text: &mut String) {
    let keep = truncated(text).len();
    text.truncate(keep);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_on_a_character_boundary() {
        assert_eq!(truncated("abc"), "abc");
        let long = "é".repeat(MAX_VALUE_BYTES);
        let cut = truncated(&long);
        assert_eq!(cut.len(), MAX_VALUE_BYTES);
        let odd = format!("a{long}");
        assert_eq!(truncated(&odd).len(), MAX_VALUE_BYTES - 1);
        let mut owned = odd.clone();
        truncate(&mut owned);
        assert_eq!(owned, truncated(&odd));
    }

    #[test]
    fn columns_come_once_and_rows_are_counted_until_a_break() {
        let mut seen = Vec::new();
        let mut visit = |event: RowEvent<'_>| {
            match event {
                RowEvent::Columns(c) => seen.push(format!("columns {}", c.join("|"))),
                RowEvent::Row(r) => seen.push(r.join("|")),
            }
            if seen.len() == 3 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let mut sink = Sink::new(&mut visit);
        let columns = ["a".to_string(), "b".to_string()];
        assert!(sink.columns(&columns).is_continue());
        sink.set(0, "1");
        sink.set(5, "ignored");
        assert!(sink.emit().is_continue());
        sink.clear();
        sink.set(1, "2");
        assert!(sink.emit().is_break());
        assert!(sink.emit().is_break());
        assert_eq!(sink.rows(), 2);
        assert!(sink.stopped());
        assert_eq!(seen, ["columns a|b", "1|", "|2"]);
    }
}
