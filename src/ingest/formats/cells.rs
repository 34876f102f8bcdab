//! Spreadsheet cell values as text: what a person sees in the cell, as plain text, for header
//! cells and for the values of data rows.
//!
//! Numbers lose a trailing `.0` (a header cell `2024` is stored as the float 2024.0), dates
//! become ISO 8601 (`2024-01-31`, or `2024-01-31T10:30:00` with a time), booleans `TRUE` and
//! `FALSE` as Excel shows them in a header (`true` and `false` in a row value, as every other
//! format writes them), error cells their code (`#N/A`). NUL characters are dropped:
//! Excel cannot hold them, but some BIFF8 files come out of the XLS reader with a NUL after
//! every letter of a string, and a name with NULs in it could never be typed.

use super::table::Value;
use crate::ingest::columns;
use calamine::{Data, DataRef, ExcelDateTime};

/// The parts of a cell value that matter here, borrowed from either kind of calamine value.
enum View<'a> {
    Text(&'a str),
    Float(f64),
    Int(i64),
    Bool(bool),
    Date(&'a ExcelDateTime),
    Error(String),
    Empty,
}

impl View<'_> {
    fn is_blank(&self) -> bool {
        match self {
            View::Empty => true,
            View::Text(text) => columns::is_blank(text),
            _ => false,
        }
    }

    fn text(&self) -> String {
        match self {
            View::Text(text) => text.replace('\0', ""),
            View::Float(value) => number(*value),
            View::Int(value) => value.to_string(),
            View::Bool(true) => "TRUE".into(),
            View::Bool(false) => "FALSE".into(),
            View::Date(date) => date_text(date),
            View::Error(code) => code.clone(),
            View::Empty => String::new(),
        }
    }

    fn row_text(&self) -> String {
        match self {
            View::Bool(true) => "true".into(),
            View::Bool(false) => "false".into(),
            other => other.text(),
        }
    }
}

impl<'a> From<&'a DataRef<'_>> for View<'a> {
    fn from(value: &'a DataRef<'_>) -> Self {
        match value {
            DataRef::String(text) | DataRef::DateTimeIso(text) | DataRef::DurationIso(text) => {
                View::Text(text)
            }
            DataRef::SharedString(text) => View::Text(text),
            DataRef::Float(value) => View::Float(*value),
            DataRef::Int(value) => View::Int(*value),
            DataRef::Bool(value) => View::Bool(*value),
            DataRef::DateTime(date) => View::Date(date),
            DataRef::Error(error) => View::Error(error.to_string()),
            DataRef::Empty => View::Empty,
        }
    }
}

impl<'a> From<&'a Data> for View<'a> {
    fn from(value: &'a Data) -> Self {
        match value {
            Data::String(text) | Data::DateTimeIso(text) | Data::DurationIso(text) => {
                View::Text(text)
            }
            Data::Float(value) => View::Float(*value),
            Data::Int(value) => View::Int(*value),
            Data::Bool(value) => View::Bool(*value),
            Data::DateTime(date) => View::Date(date),
            Data::Error(error) => View::Error(error.to_string()),
            Data::Empty => View::Empty,
        }
    }
}

impl Value for DataRef<'_> {
    fn is_blank(&self) -> bool {
        View::from(self).is_blank()
    }
    fn text(&self) -> String {
        View::from(self).text()
    }
    fn row_text(&self) -> String {
        View::from(self).row_text()
    }
}

impl Value for &Data {
    fn is_blank(&self) -> bool {
        View::from(*self).is_blank()
    }
    fn text(&self) -> String {
        View::from(*self).text()
    }
    fn row_text(&self) -> String {
        View::from(*self).row_text()
    }
}

/// A number as Excel's General format shows it, without a trailing `.0`.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// A date, time or duration in ISO 8601 form.
fn date_text(date: &ExcelDateTime) -> String {
    let serial = date.as_f64();
    if date.is_duration() {
        let seconds = (serial * 86_400.0).round() as i64;
        let (hours, rest) = (seconds / 3600, seconds.rem_euclid(3600));
        return format!("{hours}:{:02}:{:02}", rest / 60, rest % 60);
    }
    if !(0.0..2_958_466.0).contains(&serial) {
        // Outside Excel's calendar (before 1900 or after 9999): show the number it holds.
        return number(serial);
    }
    let (year, month, day, hour, minute, second, milli) = date.to_ymd_hms_milli();
    let time = match (hour, minute, second, milli) {
        (0, 0, 0, 0) => String::new(),
        (_, _, _, 0) => format!("{hour:02}:{minute:02}:{second:02}"),
        _ => format!("{hour:02}:{minute:02}:{second:02}.{milli:03}"),
    };
    if serial < 1.0 {
        // A time of day without a date.
        return if time.is_empty() {
            "00:00:00".into()
        } else {
            time
        };
    }
    let day = format!("{year:04}-{month:02}-{day:02}");
    if time.is_empty() {
        day
    } else {
        format!("{day}T{time}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use calamine::{CellErrorType, ExcelDateTimeType};

    fn date(serial: f64, is_1904: bool) -> Data {
        Data::DateTime(ExcelDateTime::new(
            serial,
            ExcelDateTimeType::DateTime,
            is_1904,
        ))
    }

    #[test]
    #[rustfmt::skip]
    fn header_cells_as_text() {
        let cases: &[(Data, &str)] = &[
            (Data::Float(2024.0), "2024"),
            (Data::Float(12.34), "12.34"),
            (Data::Float(-0.5), "-0.5"),
            (Data::Float(1.5e15), "1500000000000000"),
            (Data::Int(7), "7"),
            (Data::Bool(true), "TRUE"),
            (date(44197.0, false), "2021-01-01"),
            (date(44197.5, false), "2021-01-01T12:00:00"),
            (date(42735.0, true), "2021-01-01"),
            (date(0.25, false), "06:00:00"),
            (date(-1.2, false), "-1.2"),
            (Data::DateTime(ExcelDateTime::new(1.5, ExcelDateTimeType::TimeDelta, false)), "36:00:00"),
            (Data::DateTimeIso("2021-01-01T10:10:10".into()), "2021-01-01T10:10:10"),
            (Data::Error(CellErrorType::NA), "#N/A"),
            (Data::String("T\0i\0t\0e\0l\0".into()), "Titel"),
            (Data::String(" id ".into()), " id "),
        ];
        for (value, want) in cases {
            assert_eq!((&value).text(), *want, "{value:?}");
        }
    }

    #[test]
    fn row_values_as_text() {
        let cases: &[(Data, &str)] = &[
            (Data::Float(3.0), "3"),
            (Data::Float(0.1), "0.1"),
            (Data::Float(1.0 / 3.0), "0.3333333333333333"),
            (Data::Int(-4), "-4"),
            (Data::Bool(true), "true"),
            (Data::Bool(false), "false"),
            (date(44197.5, false), "2021-01-01T12:00:00"),
            (Data::Error(CellErrorType::Div0), "#DIV/0!"),
        ];
        for (value, want) in cases {
            assert_eq!((&value).row_text(), *want, "{value:?}");
        }
    }

    #[test]
    fn blank_cells() {
        assert!((&Data::Empty).is_blank());
        assert!((&Data::String(" \u{A0}".into())).is_blank());
        assert!(!(&Data::Float(0.0)).is_blank());
        assert!(DataRef::SharedString("").is_blank());
        assert!(!DataRef::SharedString("x").is_blank());
    }
}
