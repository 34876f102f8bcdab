//! Which of a table's first rows is its header, found the way a person finds it.
//!
//! A person skips what sits above a table (a title, a note, a "Total: 45.92" line, blank rows)
//! and takes the row that names the columns: a row of words about as wide as the rows below,
//! right above the first row of data, where data is rows whose cells are consistently typed
//! (numbers under a number column, dates under a date column). A units row under the names,
//! or column names under merged group labels, makes a two-row header (`Group / Sub`).
//!
//! This module owns that decision and the description of what was skipped. It is pure (it sees
//! decoded cell texts, never a file) and conservative: the first row that is not clearly a title
//! stays the header unless the row below it is clearly not data and a later row is followed by
//! data, so a file without a header, or with a header of numbers (`Region, 2021, 2022`), keeps
//! its first row as today. It never changes a cell's text beyond what [`super::clean_name`]
//! does, apart from joining two header rows with ` / `.

use super::is_blank;
use std::collections::HashMap;

/// How many leading rows a reader hands to [`find_header`].
pub const HEADER_SEARCH_ROWS: usize = 30;

/// Data rows below a candidate that are compared with it: enough to see a column's type, few
/// enough that notes far below the table do not count.
const PROFILE_ROWS: usize = 10;

/// The widest rows searched for a two-row header: the search is linear in the width, but a
/// header that wide is a machine's, never merged labels over names.
const MAX_GROUP_WIDTH: usize = 16_384;

/// No row among the first ones looks like a header: they are all blank.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no header row (looked at the first {looked_at} rows)")]
pub struct NoHeaderRow {
    pub looked_at: usize,
}

/// What a row above the header was, as reported to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Above {
    Blank,
    /// One text cell (maybe with a date or number beside it): a title or a caption.
    Title,
    /// A row with a "Total" cell.
    Total,
    /// Anything else: notes, a key/value preamble, a sentence spread over cells.
    Note,
}

impl Above {
    pub fn as_str(self) -> &'static str {
        match self {
            Above::Blank => "blank",
            Above::Title => "title",
            Above::Total => "total",
            Above::Note => "note",
        }
    }

    fn noun(self, n: usize) -> String {
        match (self, n) {
            (Above::Blank, n) => format!("{n} blank"),
            (Above::Title, 1) => "a title".into(),
            (Above::Title, n) => format!("{n} titles"),
            (Above::Total, 1) => "a total line".into(),
            (Above::Total, n) => format!("{n} total lines"),
            (Above::Note, 1) => "a note".into(),
            (Above::Note, n) => format!("{n} notes"),
        }
    }
}

/// Where the header was found among the rows handed to [`find_header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Index of the header row (the lower one of a two-row header). Data starts below it.
    pub row: usize,
    /// Index of the group-label row of a two-row header (always `row - 1`).
    pub upper: Option<usize>,
    /// Every row above the header (the upper row of a two-row header excluded), in order.
    pub above: Vec<Above>,
}

impl Header {
    /// The header cells: the header row's, or for a two-row header `Group / Sub` where both
    /// rows name a column (a group label covers the blank cells right of it, as a merged cell
    /// does), the one that is there where only one is.
    pub fn cells(&self, rows: &[Vec<String>]) -> Vec<String> {
        let lower = &rows[self.row];
        let Some(upper) = self.upper.map(|u| &rows[u]) else {
            return lower.clone();
        };
        let groups = filled_forward(upper, lower.len());
        let width = lower.len().max(upper.len());
        (0..width)
            .map(|i| {
                let sub = lower.get(i).map_or("", |c| super::clean_name(c));
                let own = upper.get(i).map_or("", |c| super::clean_name(c));
                let group = groups.get(i).copied().unwrap_or("");
                match (group.is_empty(), sub.is_empty()) {
                    (false, false) => format!("{group} / {sub}"),
                    (true, _) => sub.to_string(),
                    // A label over a blank sub cell names the column only if it stands there
                    // itself, not when it is carried over from the left.
                    (false, true) => own.to_string(),
                }
            })
            .collect()
    }

    /// "header on row 4 (3 rows above it skipped: a title, 2 blank)", with `number` giving the
    /// 1-based number of a row handed to [`find_header`] as the reader counts it (a line or a
    /// sheet row): each row of a two-row header is named by its own number, since a CSV's
    /// blank lines and quoted line breaks put more than one line between them.
    pub fn describe(&self, unit: &str, number: impl Fn(usize) -> u64) -> String {
        let row = number(self.row);
        let mut text = match self.upper {
            Some(upper) => format!("two-row header on {unit}s {} and {row}", number(upper)),
            None => format!("header on {unit} {row}"),
        };
        if !self.above.is_empty() {
            let n = self.above.len();
            let rows = if n == 1 {
                "1 row".into()
            } else {
                format!("{n} rows")
            };
            text.push_str(&format!(
                " ({rows} above it skipped: {})",
                self.above_summary()
            ));
        }
        text
    }

    /// "a title, 2 blank": the kinds of rows above, by first appearance.
    pub fn above_summary(&self) -> String {
        let mut kinds: Vec<(Above, usize)> = Vec::new();
        for kind in &self.above {
            match kinds.iter_mut().find(|(k, _)| k == kind) {
                Some((_, n)) => *n += 1,
                None => kinds.push((*kind, 1)),
            }
        }
        kinds
            .iter()
            .map(|(k, n)| k.noun(*n))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Find the header among the first rows of a table (at most [`HEADER_SEARCH_ROWS`]).
///
/// 1. Blank rows are skipped, and so are rows that are narrow next to the rows below: a single
///    filled cell or one reaching at most half as far right, or one or two cells over rows of
///    three times as many ("the rows below" is what at least two of them reach, so one long
///    data row cannot make a title); "Key: value" lines of one or two cells above a row at least
///    three cells wider; total lines (`Total:` before a number); and a lone cell right above a
///    row of several words.
/// 2. The first row left is the header, unless the row right below it is not data (it puts
///    words under a column of numbers or dates: it is a header itself, or a note). Then the
///    header is the first row further down that is directly followed by data, if that row is
///    mostly words and about as wide as the data.
/// 3. The row right above such a header is its group-label row when the two read as one
///    header: it names every column the lower row names, or its labels tell apart names the
///    lower row repeats (`Q1, Q2, Q1, Q2` under `2023, , 2024`). A row of units in
///    parentheses right under the first row (`(in grams)`) makes such a header too.
pub fn find_header(rows: &[Vec<String>]) -> Result<Header, NoHeaderRow> {
    let rows = &rows[..rows.len().min(HEADER_SEARCH_ROWS)];
    let facts: Vec<Row> = rows.iter().map(|r| Row::of(r)).collect();
    let first = (0..facts.len())
        .find(|&i| facts[i].filled > 0 && !facts[i].is_title_above(&facts[i + 1..]))
        .ok_or(NoHeaderRow {
            looked_at: rows.len(),
        })?;
    let row = better_header(&facts, first).unwrap_or(first);
    // Only a row the search kept may be a group row: one skipped as a title stays above. Past
    // MAX_GROUP_WIDTH columns no one reads two header rows as one, and it is not looked for.
    let upper = row
        .checked_sub(1)
        .filter(|&u| u >= first)
        .filter(|&u| rows[u].len().max(rows[row].len()) <= MAX_GROUP_WIDTH)
        .filter(|&u| is_group_row(&facts[u], &rows[u], &rows[row]));
    let top = upper.unwrap_or(row);
    let above = facts[..top].iter().map(Row::kind_above).collect();
    Ok(Header { row, upper, above })
}

/// The first row from `first` on that is directly followed by data, when the row below `first`
/// is not data; `None` when `first` is followed by data or nothing better is found.
fn better_header(facts: &[Row], first: usize) -> Option<usize> {
    // Units right under the names, `(in grams)`, `[ppm]`: the header goes on one row.
    if let Some(next) = next_filled(facts, first)
        && next == first + 1
        && facts[next].units
    {
        return Some(next);
    }
    let mut candidate = first;
    loop {
        let Some(next) = next_filled(facts, candidate) else {
            // Nothing below: the last candidate names a table without rows.
            return (candidate > first && facts[candidate].is_header_like(&[]))
                .then_some(candidate);
        };
        let after = after(facts, next);
        if facts[next].is_data_like(&after) {
            if candidate == first {
                return None;
            }
            let below = after_including(facts, next);
            return facts[candidate].is_header_like(&below).then_some(candidate);
        }
        candidate = next;
    }
}

fn next_filled(facts: &[Row], index: usize) -> Option<usize> {
    (index + 1..facts.len()).find(|&i| facts[i].filled > 0)
}

/// Up to [`PROFILE_ROWS`] filled rows after `index`.
fn after(facts: &[Row], index: usize) -> Vec<&Row> {
    facts[index + 1..]
        .iter()
        .filter(|r| r.filled > 0)
        .take(PROFILE_ROWS)
        .collect()
}

fn after_including(facts: &[Row], index: usize) -> Vec<&Row> {
    let mut rows = vec![&facts[index]];
    rows.extend(after(facts, index).into_iter().take(PROFILE_ROWS - 1));
    rows
}

/// Whether `upper` right above the header `lower` is the group-label row of a two-row header.
fn is_group_row(upper: &Row, upper_cells: &[String], lower_cells: &[String]) -> bool {
    if upper.filled < 2 {
        return false;
    }
    // It names, in words, every column the lower row names: names and their units, say.
    let covers = upper.text * 2 >= upper.filled
        && lower_cells
            .iter()
            .enumerate()
            .filter(|(_, c)| !is_blank(c))
            .all(|(i, _)| upper_cells.get(i).is_some_and(|c| !is_blank(c)));
    if covers {
        return true;
    }
    // Or its labels, carried right as merged cells are, tell apart names the lower row repeats.
    // A repeated name is told apart when its label is no other's of the same name: counted
    // once per name and per (name, label), so a wide row costs its width, not its square.
    let groups = filled_forward(upper_cells, lower_cells.len());
    let names: Vec<&str> = lower_cells.iter().map(|c| super::clean_name(c)).collect();
    let mut per_name: HashMap<&str, usize> = HashMap::new();
    let mut per_label: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, name) in names.iter().enumerate().filter(|(_, n)| !n.is_empty()) {
        *per_name.entry(name).or_default() += 1;
        *per_label.entry((name, groups[i])).or_default() += 1;
    }
    names.iter().enumerate().any(|(i, name)| {
        !name.is_empty()
            && !groups[i].is_empty()
            && per_name[name] > 1
            && per_label[&(*name, groups[i])] == 1
    })
}

/// Each position's group label: the nearest filled cell at or left of it, within `width`.
fn filled_forward(cells: &[String], width: usize) -> Vec<&str> {
    let mut current = "";
    (0..width.max(cells.len()))
        .map(|i| {
            if let Some(cell) = cells.get(i).filter(|c| !is_blank(c)) {
                current = super::clean_name(cell);
            }
            current
        })
        .collect()
}

/// What a cell holds, as far as telling names from data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blank,
    /// A number, a date or time, a boolean: what data columns are made of.
    Typed,
    /// Words.
    Text,
}

/// The facts about one row the header search uses.
#[derive(Debug, Clone)]
pub(super) struct Row {
    kinds: Vec<Kind>,
    /// Non-blank cells.
    filled: usize,
    /// Of those, text cells.
    text: usize,
    /// 1-based position of the last non-blank cell; 0 for a blank row.
    extent: usize,
    has_total: bool,
    /// A "Key: value" line: its first cell, and only that one, ends with a colon.
    keyed: bool,
    /// A units row: two or more cells, every one words in parentheses or brackets (`(1200)` is
    /// an accounting negative, not a unit).
    units: bool,
}

impl Row {
    pub(super) fn of(cells: &[String]) -> Self {
        let kinds: Vec<Kind> = cells.iter().map(|c| kind(c)).collect();
        let filled = kinds.iter().filter(|k| **k != Kind::Blank).count();
        let text = kinds.iter().filter(|k| **k == Kind::Text).count();
        let extent = kinds
            .iter()
            .rposition(|k| *k != Kind::Blank)
            .map_or(0, |i| i + 1);
        // A total line: a "Total:" cell with a number right after it that ends the row. A
        // column named "Total" in a header has another name next to it, or more after the
        // number (`Country,Total,2019,2020`: years as names). A row narrow next to the table
        // is skipped as a title whatever it holds.
        let has_total = cells.iter().enumerate().any(|(i, c)| {
            is_total(c)
                && cells[i + 1..]
                    .iter()
                    .position(|c| !is_blank(c))
                    .is_some_and(|at| kinds[i + 1 + at] == Kind::Typed && i + 2 + at == extent)
        });
        let mut labels = cells
            .iter()
            .map(|c| super::clean_name(c))
            .filter(|c| !c.is_empty());
        let keyed =
            labels.next().is_some_and(|c| c.ends_with(':')) && labels.all(|c| !c.ends_with(':'));
        let units = filled >= 2
            && cells.iter().map(|c| super::clean_name(c)).all(|c| {
                c.is_empty()
                    || (((c.starts_with('(') && c.ends_with(')'))
                        || (c.starts_with('[') && c.ends_with(']')))
                        && kind(c) == Kind::Text)
            });
        Row {
            kinds,
            filled,
            text,
            extent,
            has_total,
            keyed,
            units,
        }
    }

    pub(super) fn kind_above(&self) -> Above {
        match self.filled {
            0 => Above::Blank,
            _ if self.has_total => Above::Total,
            // One piece of text, maybe with a date or a number beside it.
            _ if self.text <= 1 => Above::Title,
            _ => Above::Note,
        }
    }

    /// Narrow next to the rows below it: a title, a note, a total line, a key/value line.
    fn is_title_above(&self, below: &[Row]) -> bool {
        let width = typical(below, |r| r.extent);
        let cells = typical(below, |r| r.filled);
        let short = self.extent < width && (self.filled == 1 || self.extent * 2 <= width);
        let sparse = self.filled <= 2 && self.filled * 3 <= cells;
        // A key/value preamble ("Counterparty:, ACME") above a table, even one that has no
        // rows yet and so no second wide row to measure by.
        let widest = below.iter().map(|r| r.extent).max().unwrap_or(0);
        let key_value = self.keyed && self.filled <= 2 && widest >= self.extent + 3;
        // A lone cell right above a row of several words is a note over the header.
        let next = below.iter().find(|r| r.filled > 0);
        let lone = self.filled == 1 && next.is_some_and(|n| n.text >= 2 && n.text * 2 >= n.filled);
        // A total line above the table is a summary of it, never its header.
        let total = self.has_total && below.iter().any(|r| r.filled > 1);
        short || sparse || key_value || total || lone
    }

    /// Mostly words, and at least half as many cells as the data rows `below` hold.
    fn is_header_like(&self, below: &[&Row]) -> bool {
        let cells = typical_of(below.iter().map(|r| r.filled));
        self.filled > 0 && self.text * 2 >= self.filled && self.filled * 2 >= cells
    }

    /// Could be one of the data rows `below`: it puts no words under columns they fill with
    /// numbers, dates or booleans. One word over one number is too little to tell (a text cell
    /// in a data row): it takes two such columns, or one backed by two typed cells. Anything
    /// goes above no rows at all.
    fn is_data_like(&self, below: &[&Row]) -> bool {
        let evidence: usize = self
            .kinds
            .iter()
            .enumerate()
            .filter(|(_, kind)| **kind == Kind::Text)
            .map(|(column, _)| typed_evidence(below, column))
            .sum();
        evidence < 2
    }
}

/// How strongly `column` of `rows` is a column of values: 0 unless at least three quarters of
/// its filled cells are typed (not a key/value list whose values are a mix), else the number
/// of typed cells, counted up to 2.
fn typed_evidence(rows: &[&Row], column: usize) -> usize {
    let (mut typed, mut text) = (0, 0);
    for row in rows {
        match row.kinds.get(column) {
            Some(Kind::Typed) => typed += 1,
            Some(Kind::Text) => text += 1,
            _ => {}
        }
    }
    if typed * 4 >= (typed + text) * 3 {
        typed.min(2)
    } else {
        0
    }
}

/// What at least two of the non-blank rows reach (the second largest), or the only one.
fn typical(rows: &[Row], measure: impl Fn(&Row) -> usize) -> usize {
    typical_of(rows.iter().filter(|r| r.filled > 0).map(measure))
}

fn typical_of(values: impl Iterator<Item = usize>) -> usize {
    let (mut largest, mut second, mut count) = (0, 0, 0);
    for value in values {
        count += 1;
        if value > largest {
            second = largest;
            largest = value;
        } else if value > second {
            second = value;
        }
    }
    if count == 1 { largest } else { second }
}

/// Missing-value markers count as blank: a column of numbers with `NA` in it is still numbers.
const MISSING: &[&str] = &[
    "-", "--", "na", "n/a", "nan", "null", "none", "\\n", "#n/a", ".",
];

fn kind(cell: &str) -> Kind {
    let cell = super::clean_name(cell);
    if cell.is_empty() || MISSING.iter().any(|m| cell.eq_ignore_ascii_case(m)) {
        return Kind::Blank;
    }
    if is_number(cell) || is_date_or_time(cell) || is_boolean(cell) {
        Kind::Typed
    } else {
        Kind::Text
    }
}

/// `12`, `-3.5`, `1,234.50`, `1.234,5`, `45%`, `$12`, `12 €`, `1e-3`, `(42)`.
fn is_number(cell: &str) -> bool {
    let trimmed = cell
        .trim_start_matches(['$', '€', '£', '¥', '+', '-', '('])
        .trim_end_matches(['%', '€', '$', ')', ' '])
        .trim();
    let mut digits = 0;
    let mut rest = trimmed.chars().peekable();
    let mut exponent = false;
    while let Some(c) = rest.next() {
        match c {
            '0'..='9' => digits += 1,
            ',' | '.' | '\'' | ' ' | '\u{A0}' if digits > 0 && !exponent => {}
            'e' | 'E' if digits > 0 && !exponent => {
                exponent = true;
                if matches!(rest.peek(), Some('+' | '-')) {
                    rest.next();
                }
            }
            _ => return false,
        }
    }
    digits > 0
}

/// `2024-01-31`, `31/01/2024`, `1.2.24`, with an optional time; `10:30`, `10:30:00.5`.
fn is_date_or_time(cell: &str) -> bool {
    let (date, time) = match cell.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (cell, None),
    };
    let is_time = |t: &str| {
        let t = t.trim_end_matches('Z');
        let parts: Vec<&str> = t.split(':').collect();
        (2..=3).contains(&parts.len())
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.'))
    };
    let is_date = |d: &str| {
        let parts: Vec<&str> = d.split(['-', '/', '.']).collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| (1..=4).contains(&p.len()) && p.chars().all(|c| c.is_ascii_digit()))
    };
    match time {
        None => is_date(date) || is_time(date),
        Some(time) => is_date(date) && is_time(time),
    }
}

fn is_boolean(cell: &str) -> bool {
    cell.eq_ignore_ascii_case("true") || cell.eq_ignore_ascii_case("false")
}

/// `Total`, `Total:`, `Grand total`, `Totals`, `Subtotal` (any case).
fn is_total(cell: &str) -> bool {
    let cell = super::clean_name(cell).trim_end_matches(':').to_lowercase();
    matches!(
        cell.as_str(),
        "total" | "totals" | "grand total" | "subtotal" | "sum" | "gesamt" | "summe" | "totaal"
    )
}

#[cfg(test)]
mod tests;
