//! The header search from tables of small synthetic sheets.

use super::*;

/// Rows written as lines of comma-separated cells (no quoting needed in these tables).
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| line.split(',').map(str::to_string).collect())
        .collect()
}

fn found(text: &str) -> Result<usize, NoHeaderRow> {
    find_header(&table(text)).map(|h| h.row)
}

#[test]
#[rustfmt::skip]
fn header_row_detection() {
    let none = |looked_at| Err(NoHeaderRow { looked_at });
    let cases: &[(&str, &str, Result<usize, NoHeaderRow>)] = &[
        // A first row that is the header is always taken.
        ("plain", "a,b,c\n1,2,3\n4,5,6", Ok(0)),
        ("header only", "a,b,c", Ok(0)),
        ("one column", "year\n2001\n2002", Ok(0)),
        ("one column, one stray wide row", "year\n2001\n2002,x\n2003", Ok(0)),
        ("index header with blank corner", ",value\n0,1\n1,2", Ok(0)),
        ("a note in the last column", "blah blah,\n,yada yada\nvar1,var2\nv2,v3\nv4,v5", Ok(2)),
        ("header narrower than one long row", "a,b,c\n1,2,3,4\n5,6,7", Ok(0)),
        ("header one short of every row", "a,b,c\n1,2,3,4\n5,6,7,8", Ok(0)),
        ("data rows with empty cells", "a,b,c,d\n1,,,\n,,,4\n,2,,", Ok(0)),
        ("first row is data", "1,2,3\n4,5,6", Ok(0)),
        // Data that looks like text: nothing tells the header from the rows but its place.
        ("all text", "name,city\nAlice,Paris\nBob,Rome", Ok(0)),
        ("all text below a title", "People\nname,city\nAlice,Paris\nBob,Rome", Ok(1)),
        // A header that looks like numbers stays the header.
        ("years as names", "Region,2021,2022,2023\nNorth,5,6,7\nSouth,8,9,10", Ok(0)),
        ("numbers only", "100022,100023\n5,6\n7,8", Ok(0)),
        ("dates as names", "2021-01-01,2021-02-01\n1,2\n3,4", Ok(0)),
        // Title and blank rows above the header are skipped.
        ("title row", "Sales report\na,b,c\n1,2,3", Ok(1)),
        ("title padded by export", "Sales report,,,\na,b,c,d\n1,2,3,4\n5,6,7,8", Ok(1)),
        ("centred title", ",,Sales report,,,\na,b,c,d,e,f\n1,2,3,4,5,6", Ok(1)),
        ("title above header only", "Report\nid,name", Ok(1)),
        ("blank lines above", "\n,,\n  ,\na,b\n1,2", Ok(3)),
        ("title, blank, header", "Report\n,,\na,b,c\n1,2,3\n4,5,6", Ok(2)),
        ("key-value preamble",
            "Title:,Phosphates\nYear:,1995\nURL:\n,,,,\nLocation,1995,,,x\nA,1,2,3,4\nB,5,6,7,8", Ok(4)),
        ("preamble lines", "a preamble\nanother\nh1,h2,h3,h4\na,1,b,2\nc,3,d,4\ne,5,f", Ok(2)),
        // Notes above a header, told apart by the typed rows below it (duckdb's
        // multiple_skip_row.csv: today's reading took the second note).
        ("two notes", "some notes...\nmore notes,...\nnumber,text,date\n345.0,TEST4,2000-12-13\n1,x,2001-01-01", Ok(2)),
        ("two-cell note over three columns", "notes\nmore notes,...\nn,t,d\n1,x,2\n3,y,4", Ok(2)),
        // A "Total:" line as wide as the table, then blank rows.
        ("total line",
            "University name,,,,,,Total:,45.92\n,,,,,,,\n,,,,,,,\nDate,Time,Number,Place,Minutes,Type,Rate,Cost\n\
             2017-01-03,10:00,555-1234,Boston,3,Call,0.10,0.30\n2017-01-04,11:00,555-9876,Denver,1,Call,0.10,0.10",
            Ok(3)),
        ("total line over text data",
            "Office,,Total:,45.92\n\nname,city,street,zip\nAlice,Paris,Rue A,X1\nBob,Rome,Via B,Y2", Ok(2)),
        // Sentences spread over cells above a typed table (readxl's deaths.xlsx).
        ("notes spread over cells",
            "Lots of people\nsimply cannot resist writing,,,,,some notes\nat,the,top,,of,their spreadsheets\n\
             or,merging,,,,cells\nName,Profession,Age,Has kids,Date of birth,Date of death\n\
             David Bowie,musician,69,TRUE,1947-01-08,2016-01-10\nCarrie Fisher,actor,60,TRUE,1956-10-21,2016-12-27\n\
             Chuck Berry,musician,90,TRUE,1926-10-18,2017-03-18\nPrince,musician,57,TRUE,1958-06-07,2016-04-21",
            Ok(4)),
        // One number under a word is no typed column: a quoted line break in a text cell.
        ("one text cell over one number", "a,b\nx y,2\n3,4", Ok(0)),
        // Key/value lines above a header, even one without data rows yet.
        ("key/value lines above a header without rows",
            "Report\n\nCounterparty:,ACME\nGCI:,335\nDate:,2024-01-01\n\nContract ID,Number,Product,Trade Date,Rate",
            Ok(6)),
        ("labels with colons as the header", "Name:,Value:\nx,1\ny,2", Ok(0)),
        ("a column named Total", "ID,TOTAL,MAIN,SUB\nA,DOG,Dog,x\nB,BIRD,Bird,y", Ok(0)),
        ("a total column with numbers", "Region,Total\nNorth,5\nSouth,6", Ok(0)),
        ("report title with a far-right date",
            "ENRON,,,,,,2001-03-01\nid,a,b,c,d,e,f\n1,2,3,4,5,6,7\n8,9,10,11,12,13,14", Ok(1)),
        ("header with blanks over full rows", "a,,b,,c,\n1,2,3,4,5,6\n7,8,9,10,11,12", Ok(0)),
        ("two named cells over rows of six", "a,,,,,b\n1,2,3,4,5,6\n7,8,9,10,11,12", Ok(1)),
        // A text cell in the data is no reason to move the header down.
        ("missing values in a number column", "id,amount\n1,5\n2,NA\n3,n/a\n4,7", Ok(0)),
        ("a remark row inside the data", "id,amount\n1,5\n2,see note\n3,7\n4,8", Ok(0)),
        ("all blank", ",,\n\n , ", none(3)),
        ("nothing", "", none(0)),
    ];
    for (name, text, want) in cases {
        assert_eq!(&found(text), want, "{name}");
    }
}

#[test]
#[rustfmt::skip]
fn rows_above_are_described() {
    let cases: &[(&str, &str)] = &[
        ("a,b\n1,2", "header on line 1"),
        ("Report\n,\n,\na,b,c\n1,2,3", "header on line 4 (3 rows above it skipped: a title, 2 blank)"),
        ("Office,,Total:,45.92\n\nname,city,street,zip\nA,B,C,D",
            "header on line 3 (2 rows above it skipped: a total line, 1 blank)"),
        ("some notes...\nmore notes,...\nnumber,text,date\n345.0,TEST4,2000-12-13",
            "header on line 3 (2 rows above it skipped: a title, a note)"),
        ("Sales\n,Q1,,Q2,\nRegion,units,value,units,value\nNorth,1,2,3,4",
            "two-row header on lines 2 and 3 (1 row above it skipped: a title)"),
    ];
    for (text, want) in cases {
        let header = find_header(&table(text)).expect(text);
        assert_eq!(header.describe("line", |i| i as u64 + 1), *want, "{text}");
    }
}

#[test]
#[rustfmt::skip]
fn two_row_headers() {
    // (sheet, header row, cells of the header)
    let cases: &[(&str, usize, &[&str])] = &[
        // Group labels over repeated names, as merged cells export: carried right.
        (",2023,,2024,\nRegion,Q1,Q2,Q1,Q2\nNorth,1,2,3,4\nSouth,5,6,7,8", 1,
            &["Region", "2023 / Q1", "2023 / Q2", "2024 / Q1", "2024 / Q2"]),
        ("Sales\n,Q1,,Q2,\nRegion,units,value,units,value\nNorth,1,2,3,4", 2,
            &["Region", "Q1 / units", "Q1 / value", "Q2 / units", "Q2 / value"]),
        // Names above their units (readxl's clippy.xls, sheet two-row-header).
        ("name,species,death,weight\n(at birth),(office supply type),(date is approximate),(in grams)\n\
          Clippy,paperclip,2007-01-01,0.9", 1,
            &["name / (at birth)", "species / (office supply type)", "death / (date is approximate)",
              "weight / (in grams)"]),
        // A label over a blank sub cell names its column when it stands there itself.
        ("a,b,c\nx,,y\n1,2,3", 1, &["a / x", "b", "c / y"]),
        // A note row right above a header is no group row.
        ("or,merging,,cells\nName,Job,Age,Born\nAl,cook,60,1950-01-01\nBo,cop,61,1951-01-01", 1,
            &["Name", "Job", "Age", "Born"]),
        // Repeated names with nothing above to tell them apart stay repeated (made unique later).
        ("Region,Q1,Q1\nNorth,1,2", 0, &["Region", "Q1", "Q1"]),
    ];
    for (text, row, want) in cases {
        let rows = table(text);
        let header = find_header(&rows).expect(text);
        assert_eq!(header.row, *row, "{text}");
        assert_eq!(header.cells(&rows), *want, "{text}");
    }
}

#[test]
fn cell_kinds() {
    let cases: &[(&str, Kind)] = &[
        ("12", Kind::Typed),
        ("-3.5", Kind::Typed),
        ("1,234.50", Kind::Typed),
        ("45%", Kind::Typed),
        ("$12", Kind::Typed),
        ("1e-3", Kind::Typed),
        ("2024-01-31", Kind::Typed),
        ("31/01/2024", Kind::Typed),
        ("2024-01-31T10:30:00", Kind::Typed),
        ("10:30", Kind::Typed),
        ("TRUE", Kind::Typed),
        ("NA", Kind::Blank),
        ("", Kind::Blank),
        ("Q1", Kind::Text),
        ("e", Kind::Text),
        ("2024 sales", Kind::Text),
        ("Date of birth", Kind::Text),
        ("#", Kind::Text),
    ];
    for (cell, want) in cases {
        assert_eq!(kind(cell), *want, "{cell:?}");
    }
}

#[test]
fn only_the_first_rows_are_searched() {
    let mut rows = vec![vec![String::new(), String::new()]; HEADER_SEARCH_ROWS + 5];
    rows.push(vec!["a".into(), "b".into()]);
    let err = find_header(&rows).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("no header row (looked at the first {HEADER_SEARCH_ROWS} rows)")
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    #[test]
    fn a_header_row_is_one_of_the_rows(
        rows in proptest::collection::vec(
            proptest::collection::vec("[x1 ]{0,1}|Total:|[0-9]{1,3}|[a-z]{1,4}|2024-01-0[1-9]", 0..8),
            0..40,
        )
    ) {
        match find_header(&rows) {
            Ok(header) => {
                proptest::prop_assert!(header.row < rows.len().min(HEADER_SEARCH_ROWS));
                proptest::prop_assert!(rows[header.row].iter().any(|c| !is_blank(c)));
                let top = header.upper.unwrap_or(header.row);
                proptest::prop_assert_eq!(header.above.len(), top);
                if let Some(upper) = header.upper {
                    proptest::prop_assert_eq!(upper + 1, header.row);
                }
                let cells = header.cells(&rows);
                proptest::prop_assert!(cells.len() >= rows[header.row].len());
                let _ = header.describe("row", |i| i as u64 + 1);
            }
            Err(none) => proptest::prop_assert_eq!(none.looked_at, rows.len().min(HEADER_SEARCH_ROWS)),
        }
    }

    #[test]
    fn detection_never_panics_on_any_text(
        rows in proptest::collection::vec(proptest::collection::vec("\\PC{0,8}", 0..12), 0..35)
    ) {
        if let Ok(header) = find_header(&rows) {
            let _ = header.cells(&rows);
        }
    }
}

/// A `Total` column with years after it is a header, not a total line: a total line ends with
/// its number (`Total:,45.92`).
#[test]
fn a_total_column_before_years_is_a_header() {
    let rows = table("Country,Total,2019,2020\nFR,5,2,3\nDE,9,4,5");
    let header = find_header(&rows).unwrap();
    assert_eq!(header.row, 0);
    assert_eq!(header.cells(&rows), ["Country", "Total", "2019", "2020"]);
    // The number is the last filled cell: a total line, however wide.
    let rows = table("Summary,,Total:,45.92\nname,city,street,zip\nA,B,C,D\nE,F,G,H");
    let header = find_header(&rows).unwrap();
    assert_eq!(
        (header.row, header.above.as_slice()),
        (1, &[Above::Total][..])
    );
}

/// A title skipped above the header is never glued onto it as a group-label row.
#[test]
fn a_skipped_title_is_no_group_row() {
    let rows = table("Report,2024-05-01\nDate,Open,Date,Close\n2024-05-01,1,2024-05-02,2");
    let header = find_header(&rows).unwrap();
    assert_eq!((header.row, header.upper), (1, None));
    assert_eq!(header.cells(&rows), ["Date", "Open", "Date", "Close"]);
    assert_eq!(header.above, [Above::Title]);
}

/// Accounting negatives `(1200)` under the names are data, not a row of units.
#[test]
fn negatives_in_parentheses_are_no_units_row() {
    let rows = table("a,b,c\n(1200),(300),(5)\n4,5,6");
    let header = find_header(&rows).unwrap();
    assert_eq!((header.row, header.upper), (0, None));
    assert_eq!(header.cells(&rows), ["a", "b", "c"]);
}

/// A very wide header takes time in proportion to its width: 200,000 columns, half of them
/// repeated names under group labels, would take minutes were any step quadratic.
#[test]
fn a_very_wide_header_is_searched_in_linear_time() {
    let width = 200_000;
    let groups: Vec<String> = (0..width)
        .map(|i| {
            if i % 2 == 0 {
                format!("g{i}")
            } else {
                String::new()
            }
        })
        .collect();
    let names: Vec<String> = (0..width).map(|i| format!("n{}", i % 2)).collect();
    let data: Vec<String> = (0..width).map(|i| i.to_string()).collect();
    let rows = vec![groups, names, data.clone(), data];
    let header = find_header(&rows).unwrap();
    assert_eq!(header.cells(&rows).len(), width);
    // Too wide to be searched for a group row from the header search, but the test itself is
    // linear too.
    assert_eq!(header.upper, None);
    assert!(is_group_row(&Row::of(&rows[0]), &rows[0], &rows[1]));
    // The same shape, narrow: the group row is taken.
    let narrow = table(",g0,,g1,\nid,n,m,n,m\n1,2,3,4,5\n6,7,8,9,10");
    assert_eq!(find_header(&narrow).unwrap().upper, Some(0));
}
