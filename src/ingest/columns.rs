//! Header rules shared by every reader: CSV and TSV, spreadsheets, Parquet.
//!
//! This module owns what counts as a column name: which of the first rows is the header
//! ([`find_header`], in `header`), how a header cell becomes a name ([`clean_name`]), which cells are
//! skipped and why, and how duplicate names are made unique ([`header_columns`]). Cells of data
//! rows that stick out past the header are reported once per position ([`ExtraCells`]).
//!
//! A source's read options (`ingestctl set`) replace the detected header with a given row or
//! none ([`forced`]).
//!
//! It is pure: readers hand it strings they already decoded. It never reads files, never
//! rejects a file itself (it returns what it found and readers phrase the rejection), and never
//! changes the text of a name beyond trimming (and joining the two rows of a two-row header with
//! ` / `), so a name is always recognisable in the source.

pub mod forced;
mod header;

pub use header::{Above, HEADER_SEARCH_ROWS, Header, NoHeaderRow, find_header};

use crate::protocol::SkippedColumn;
use std::collections::{HashMap, HashSet};

/// Reason recorded for a header cell that holds no name.
pub const BLANK_HEADER: &str = "blank header";

/// Reason recorded for data cells to the right of the last header cell.
pub const NO_HEADER_CELL: &str = "no header cell";

/// Reason recorded for a blank spreadsheet header cell covered by a merged range: its text,
/// if any, belongs to the range's first cell.
pub const MERGED_HEADER: &str = "merged header cell";

/// Characters that are invisible at the ends of a name: zero-width spaces and joiners, and a
/// byte-order mark that survived into the text (files glued together, or a BOM written twice).
const INVISIBLE: &[char] = &[
    '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{180E}', '\u{FEFF}',
];

/// A header cell as a name: surrounding whitespace (Unicode, so NBSP too), control characters
/// and invisible characters removed. Inner text is kept as written.
pub fn clean_name(cell: &str) -> &str {
    cell.trim_matches(|c: char| c.is_whitespace() || c.is_control() || INVISIBLE.contains(&c))
}

/// Whether a cell holds nothing a person would see.
pub fn is_blank(cell: &str) -> bool {
    clean_name(cell).is_empty()
}

/// Column names from a header row, and the header cells that were skipped.
///
/// Names are [`clean_name`]d; blank cells are skipped as [`BLANK_HEADER`]. A repeated name gets
/// the smallest suffix `_k` (k ≥ 2) that is neither a name written in this row nor one already
/// given, so `a, a, a_2` becomes `a, a_3, a_2` and no column is ever renamed into another.
///
/// Names compare exactly, after trimming: case-sensitive and without Unicode normalisation.
/// `Amount` and `amount` are kept as two columns because the author wrote them differently and
/// folding one into the other would rename a column the author chose; a consumer that needs
/// case-insensitive keys must decide that for itself.
pub fn header_columns(cells: &[String]) -> (Vec<String>, Vec<SkippedColumn>) {
    let written: HashSet<&str> = cells.iter().map(|c| clean_name(c)).collect();
    let mut given: HashSet<String> = HashSet::with_capacity(cells.len());
    // The smallest free suffix only grows as names are given, so remember where to resume:
    // a header of thousands of equal names stays linear instead of quadratic.
    let mut next_suffix: HashMap<&str, usize> = HashMap::new();
    let mut columns = Vec::with_capacity(cells.len());
    let mut skipped = Vec::new();
    for (index, cell) in cells.iter().enumerate() {
        let name = clean_name(cell);
        if name.is_empty() {
            skipped.push(SkippedColumn {
                position: index + 1,
                reason: BLANK_HEADER.to_string(),
            });
            continue;
        }
        let unique = if given.contains(name) {
            let k = next_suffix.entry(name).or_insert(2);
            loop {
                let candidate = format!("{name}_{k}");
                *k += 1;
                if !written.contains(candidate.as_str()) && !given.contains(&candidate) {
                    break candidate;
                }
            }
        } else {
            name.to_string()
        };
        given.insert(unique.clone());
        columns.push(unique);
    }
    (columns, skipped)
}

/// Positions of data cells to the right of the header, reported once each as
/// [`NO_HEADER_CELL`]. Readers call [`ExtraCells::mark`] for every filled cell past the header.
#[derive(Debug, Clone)]
pub struct ExtraCells {
    header_width: usize,
    /// `seen[i]` is position `header_width + 1 + i`.
    seen: Vec<bool>,
}

impl ExtraCells {
    /// `header_width` counts every header cell, blank ones included.
    pub fn new(header_width: usize) -> Self {
        Self {
            header_width,
            seen: Vec::new(),
        }
    }

    pub fn header_width(&self) -> usize {
        self.header_width
    }

    /// A filled data cell at 0-based `index`; indexes under the header are ignored.
    pub fn mark(&mut self, index: usize) {
        let Some(offset) = index.checked_sub(self.header_width) else {
            return;
        };
        if offset >= self.seen.len() {
            self.seen.resize(offset + 1, false);
        }
        self.seen[offset] = true;
    }

    /// The marked positions, in order.
    pub fn skipped(&self) -> Vec<SkippedColumn> {
        self.seen
            .iter()
            .enumerate()
            .filter(|(_, seen)| **seen)
            .map(|(offset, _)| SkippedColumn {
                position: self.header_width + offset + 1,
                reason: NO_HEADER_CELL.to_string(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|c| c.to_string()).collect()
    }

    fn blank(position: usize) -> SkippedColumn {
        SkippedColumn {
            position,
            reason: BLANK_HEADER.into(),
        }
    }

    #[test]
    fn names_are_trimmed_of_space_and_invisible_characters() {
        let cases: &[(&str, &str)] = &[
            ("amount", "amount"),
            ("  amount\t", "amount"),
            ("\u{FEFF}id", "id"),
            ("\u{A0}price\u{A0}", "price"),
            ("\u{200B}name\u{200D}", "name"),
            ("\u{3000}全角\u{3000}", "全角"),
            ("first name", "first name"),
            (" Qty (m²) ", "Qty (m²)"),
            ("\r\nwrapped\nheader\r\n", "wrapped\nheader"),
            ("\u{0}x\u{0}", "x"),
            ("\u{A0}\u{200B} ", ""),
        ];
        for (cell, want) in cases {
            assert_eq!(clean_name(cell), *want, "{cell:?}");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn header_rules() {
        // (cells, columns, positions skipped as blank)
        let cases: &[(&[&str], &[&str], &[usize])] = &[
            (&["a", "b", "c"], &["a", "b", "c"], &[]),
            (&[" a ", "b\u{A0}"], &["a", "b"], &[]),
            (&["a", "a", "a_2"], &["a", "a_3", "a_2"], &[]),
            (&["a", "b", "a", "a_1"], &["a", "b", "a_2", "a_1"], &[]),
            (&["id", "name", "id", "age", "id"], &["id", "name", "id_2", "age", "id_3"], &[]),
            (&["a", "a_2", "a"], &["a", "a_2", "a_3"], &[]),
            (&["a", " a", "a "], &["a", "a_2", "a_3"], &[]),
            (&["x", "x", "x_2", "x_2"], &["x", "x_3", "x_2", "x_2_2"], &[]),
            (&["Amount", "amount"], &["Amount", "amount"], &[]),
            (&["a", "", "c"], &["a", "c"], &[2]),
            (&["a", "b", "c", "", ""], &["a", "b", "c"], &[4, 5]),
            (&["", "", ""], &[], &[1, 2, 3]),
            (&["a", "  ", "a"], &["a", "a_2"], &[2]),
            (&[], &[], &[]),
        ];
        for (cells, want_columns, want_skipped) in cases {
            let (columns, skipped) = header_columns(&strings(cells));
            assert_eq!(columns, strings(want_columns), "{cells:?}");
            let want: Vec<_> = want_skipped.iter().map(|&p| blank(p)).collect();
            assert_eq!(skipped, want, "{cells:?}");
        }
    }

    #[test]
    fn thousands_of_equal_names_stay_unique() {
        let cells = vec!["x".to_string(); 5000];
        let (columns, _) = header_columns(&cells);
        let distinct: HashSet<&String> = columns.iter().collect();
        assert_eq!(distinct.len(), 5000);
        assert_eq!(columns[4999], "x_5000");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn names_are_unique_and_never_empty(
            cells in proptest::collection::vec("[ab_2 \u{A0}\u{200B}]{0,4}|\\PC{0,6}", 0..40)
        ) {
            let (columns, skipped) = header_columns(&cells);
            let distinct: HashSet<&String> = columns.iter().collect();
            proptest::prop_assert_eq!(distinct.len(), columns.len());
            proptest::prop_assert!(columns.iter().all(|c| !c.is_empty()));
            proptest::prop_assert_eq!(columns.len() + skipped.len(), cells.len());
            let blanks = cells.iter().filter(|c| is_blank(c)).count();
            proptest::prop_assert_eq!(skipped.len(), blanks);
        }

    }

    #[test]
    fn extra_cells_are_reported_once_per_position() {
        let mut extra = ExtraCells::new(3);
        for index in [0, 2, 4, 4, 3, 6, 4] {
            extra.mark(index);
        }
        let skipped = extra.skipped();
        let positions: Vec<usize> = skipped.iter().map(|s| s.position).collect();
        assert_eq!(positions, [4, 5, 7]);
        assert!(skipped.iter().all(|s| s.reason == NO_HEADER_CELL));
        assert!(ExtraCells::new(2).skipped().is_empty());
    }
}
