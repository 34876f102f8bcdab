use super::*;
use crate::ingest::columns::{BLANK_HEADER, NO_HEADER_CELL};

impl Value for &str {
    fn is_blank(&self) -> bool {
        columns::is_blank(self)
    }
    fn text(&self) -> String {
        self.to_string()
    }
}

/// Scan a sheet drawn as text: one line per row starting at row 0, cells separated by `|`,
/// `.` for an empty cell.
fn scan(sheet: &str) -> Result<Option<Table>, Refused> {
    let mut scan = Scan::new(1_000_000);
    for (row, line) in sheet.lines().enumerate() {
        for (column, cell) in line.split('|').enumerate() {
            let cell = if cell == "." { "" } else { cell };
            scan.push(row as u32, column as u32, &cell)?;
        }
    }
    Ok(scan.finish())
}

fn skip(position: usize, reason: &str) -> SkippedColumn {
    SkippedColumn {
        position,
        reason: reason.to_string(),
    }
}

/// (case, sheet, header row, left, right, columns, rows, rows above)
type SheetCase = (
    &'static str,
    &'static str,
    u32,
    u32,
    u32,
    &'static [&'static str],
    u64,
    usize,
);

#[test]
#[rustfmt::skip]
fn tables_in_sheets() {
    let cases: &[SheetCase] = &[
        ("plain", "a|b|c\n1|2|3\n4|5|6", 0, 0, 2, &["a", "b", "c"], 2, 0),
        ("header only", "a|b", 0, 0, 1, &["a", "b"], 0, 0),
        ("title rows", "Report|.|.\n.|.|.\nid|name|qty\n1|x|2", 2, 0, 2, &["id", "name", "qty"], 1, 1),
        ("table at B4", ".|.|.\n.|.|.\n.|.|.\n.|label|value\n.|celsius|22\n.|f|72", 3, 1, 2,
            &["label", "value"], 2, 0),
        ("blank rows inside", "a|b\n1|2\n.|.\n3|4\n.|.", 0, 0, 1, &["a", "b"], 2, 0),
        ("duplicates", "x|x|x_2\n1|2|3", 0, 0, 2, &["x", "x_3", "x_2"], 1, 0),
        ("note in a title row", "Note|.|.|.\n.|.|.|.\nColumns|A|B|C\nput data here|1|2|3", 2, 0, 3,
            &["Columns", "A", "B", "C"], 1, 1),
    ];
    for (case, sheet, header_row, left, right, columns, rows, above) in cases {
        let table = scan(sheet).expect(case).expect(case);
        assert_eq!(
            (table.header_row, table.left, table.right, table.rows, table.rows_above),
            (*header_row, *left, *right, *rows, *above),
            "{case}"
        );
        assert_eq!(table.columns, *columns, "{case}");
    }
}

#[test]
fn skipped_positions_are_sheet_columns() {
    let table = scan(".|a|.|c\n.|1|2|3|.|5\n.|.|.|.|.|.").unwrap().unwrap();
    assert_eq!(table.columns, ["a", "c"]);
    assert_eq!(
        table.skipped,
        [skip(3, BLANK_HEADER), skip(6, NO_HEADER_CELL)],
        "column C is a blank header, column F has no header cell"
    );
    // Within the first rows a cell on the left widens the table; further down it cannot.
    let widened = scan(".|a|b\n.|1|2\nx|3|4").unwrap().unwrap();
    assert_eq!(
        (widened.left, widened.skipped.clone()),
        (0, vec![skip(1, BLANK_HEADER)])
    );
    let below = HEADER_SEARCH_ROWS + 5;
    let sheet = format!(".|a|b\n{}x|3|4", ".|1|2\n".repeat(below));
    let left = scan(&sheet).unwrap().unwrap();
    assert!(left.cells_left);
    assert_eq!((left.left, left.rows), (1, below as u64 + 1));
}

#[test]
fn an_empty_sheet_has_no_table() {
    assert_eq!(scan("").unwrap(), None);
    assert_eq!(scan(".|.\n |.").unwrap(), None);
}

#[test]
fn rows_below_the_window_are_counted() {
    let mut sheet = String::from("Title\n.\nid|v\n");
    for i in 0..100 {
        sheet.push_str(&format!("{i}|x\n"));
        if i % 10 == 0 {
            sheet.push_str(".|.\n");
        }
    }
    let table = scan(&sheet).unwrap().unwrap();
    assert_eq!((table.header_row, table.rows), (2, 100));
}

#[test]
fn cells_arriving_out_of_order_are_counted_once() {
    let mut scan = Scan::new(100);
    for (row, column, value) in [
        (1, 0, "1"),
        (0, 0, "id"),
        (0, 1, "v"),
        (2, 1, "x"),
        (1, 1, "y"),
    ] {
        scan.push(row, column, &value).unwrap();
    }
    let table = scan.finish().unwrap();
    assert_eq!((table.header_row, table.rows), (0, 2));
    assert_eq!(table.columns, ["id", "v"]);
}

#[test]
fn the_used_range_is_capped() {
    let mut scan = Scan::new(50);
    scan.push(0, 0, &"a").unwrap();
    scan.push(9, 4, &"b").unwrap();
    let refused = scan.push(10, 0, &"c").unwrap_err();
    assert_eq!(
        refused,
        Refused::TooManyCells {
            cells: 55,
            range: "A1:E11".into()
        }
    );
    let mut huge = Scan::new(50_000_000);
    huge.push(0, 0, &"a").unwrap();
    let refused = huge.push(MAX_ROWS - 1, MAX_COLUMNS - 1, &"b").unwrap_err();
    assert!(matches!(refused, Refused::TooManyCells { ref range, .. } if range == "A1:XFD1048576"));
    let beyond = Scan::new(100).push(MAX_ROWS, 0, &"x").unwrap_err();
    assert_eq!(
        beyond,
        Refused::OutOfBounds {
            cell: "A1048577".into()
        }
    );
}

#[test]
fn column_names() {
    let cases = [
        (0, "A"),
        (25, "Z"),
        (26, "AA"),
        (51, "AZ"),
        (701, "ZZ"),
        (702, "AAA"),
        (16383, "XFD"),
    ];
    for (column, name) in cases {
        assert_eq!(column_name(column), name);
    }
    assert_eq!(cell_name(3, 1), "B4");
}
