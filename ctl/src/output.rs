//! How `ingestctl` prints: borderless tables and short forms (times, sizes, lists) for people,
//! the daemon's `data` as pretty-printed JSON for scripts, and the write to stdout itself.
//!
//! Everything here is pure except [`emit`]; commands build their whole output as a `String`
//! so it can be tested without a terminal (only `events` streams, line by line, through
//! [`emit`]). No colour: none is needed yet, and any added later must be off unless stdout is a
//! TTY and `NO_COLOR` is unset.

use jiff::fmt::temporal::DateTimePrinter;
use jiff::{Timestamp, tz::TimeZone};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use unicode_width::UnicodeWidthStr;

/// `text` safe to print on a terminal as one field: every control character (C0 with
/// newline and tab, DEL, C1) and every character that reorders or hides text (bidi
/// overrides and isolates, line and paragraph separators, zero-width marks) is written as
/// an escape (`\n`, `\t`, `\r`, `\x1b`, `\u{202e}`), so a file, column or group name cannot
/// move the cursor, set the title, hide text or break a table's lines. Names, columns,
/// previews, reasons and audit details all come from other people; `--json` keeps the exact
/// strings.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_where(text, |_| true)
}

/// Like [`escape`] but keeps newlines and tabs: for a whole output (or an error message)
/// whose lines are ours, as a net under the field printers.
pub fn escape_text(text: &str) -> Cow<'_, str> {
    escape_where(text, |c| c != '\n' && c != '\t')
}

fn escape_where(text: &str, escape_this: impl Fn(char) -> bool) -> Cow<'_, str> {
    // Nearly everything printed is printable ASCII: that is checked a byte at a time, without
    // decoding characters (a listing of thousands of rows goes through here whole).
    // Whole blocks at a time, without stopping early inside one, so the check vectorizes.
    let (newline, tab) = (!escape_this('\n'), !escape_this('\t'));
    let plain = |block: &[u8]| {
        block.iter().fold(true, |ok, &b| {
            ok & ((0x20..0x7f).contains(&b) | (newline & (b == b'\n')) | (tab & (b == b'\t')))
        })
    };
    if text.as_bytes().chunks(64).all(plain)
        || !text.chars().any(|c| dangerous(c) && escape_this(c))
    {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if !(dangerous(c) && escape_this(c)) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

/// Characters a terminal acts on or that change how the text around them is shown.
fn dangerous(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'                       // Arabic letter mark
                | '\u{200b}' | '\u{200e}' | '\u{200f}' // zero-width space, LRM, RLM
                | '\u{2028}' | '\u{2029}'   // line and paragraph separators
                | '\u{202a}'..='\u{202e}'   // bidi embeddings and overrides
                | '\u{2060}'..='\u{2069}'   // word joiner, invisible operators, isolates
                | '\u{feff}'                 // zero-width no-break space
        )
}

/// The zone times are shown in: the one `TZ` names when it is set, else the system's
/// (`/etc/localtime`), else UTC.
///
/// `/etc/localtime` is read here rather than through [`TimeZone::system`], which first
/// indexes the whole zoneinfo database (some 40 directory reads on Debian): that was a fifth
/// of what a `status` cost, for a zone found by one read.
pub fn local_zone() -> TimeZone {
    if std::env::var_os("TZ").is_none()
        && let Ok(data) = std::fs::read("/etc/localtime")
        && let Ok(zone) = TimeZone::tzif("localtime", &data)
    {
        return zone;
    }
    TimeZone::system()
}

/// Widest the joined column list of `ls` may get before it is cut.
pub const COLUMNS_WIDTH: usize = 40;

/// What `--json` prints for `data`, with a final newline: pretty-printed, keys in alphabetical
/// order, for a person at a terminal (`pretty`); one line for a script.
pub fn json(data: &Value, pretty: bool) -> String {
    let mut text = if pretty {
        serde_json::to_string_pretty(data)
    } else {
        serde_json::to_string(data)
    }
    .expect("a JSON value always serializes");
    text.push('\n');
    text
}

/// [`json`] of the daemon's `data` as it sent it: a script gets that text unchanged, never
/// parsed again (a listing of thousands of sources costs nothing more to pass on); a person
/// gets the pretty form.
pub fn json_text(data: &RawValue, pretty: bool) -> String {
    if pretty && let Ok(value) = serde_json::from_str::<Value>(data.get()) {
        return json(&value, true);
    }
    let mut text = String::with_capacity(data.get().len() + 1);
    text.push_str(data.get());
    text.push('\n');
    text
}

/// A borderless table, columns two spaces apart, no trailing spaces. `right` lists the
/// columns (by index) that hold numbers.
///
/// Laid out here rather than by a table crate: a listing of thousands of sources is the
/// biggest thing `ingestctl` prints, and a general layout engine (wrapping, styles, borders)
/// cost more than everything else the client did for it. Widths are display columns
/// (`unicode-width`), as a terminal shows them.
pub fn table<S: AsRef<str>>(header: &[&str], rows: Vec<Vec<S>>, right: &[usize]) -> String {
    // Every cell may hold someone else's text: one line, nothing a terminal acts on. Cells are
    // escaped as they are measured and again as they are written, rather than kept escaped:
    // escaping plain text only checks it, and a second table of cells would cost more.
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for row in &rows {
        for (widest, cell) in widths.iter_mut().zip(row) {
            *widest = (*widest).max(width(&escape(cell.as_ref())));
        }
    }
    let line_width: usize = widths.iter().map(|w| w + 2).sum();
    let mut text = String::with_capacity((rows.len() + 1) * (line_width + 1));
    let mut line = |cells: &mut dyn Iterator<Item = Cow<'_, str>>| {
        let start = text.len();
        for (index, cell) in cells.take(columns).enumerate() {
            let cell = &*cell;
            let pad = widths[index].saturating_sub(width(cell));
            if right.contains(&index) {
                text.extend(std::iter::repeat_n(' ', pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                text.extend(std::iter::repeat_n(' ', pad));
            }
            text.push_str("  ");
        }
        let end = text[start..].trim_end_matches(' ').len();
        text.truncate(start + end);
        text.push('\n');
    };
    line(&mut header.iter().map(|h| Cow::Borrowed(*h)));
    for row in &rows {
        line(&mut row.iter().map(|cell| escape(cell.as_ref())));
    }
    text
}

/// How many columns a terminal gives `text` (its length, when it is ASCII).
fn width(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.width()
    }
}

/// How [`time`] prints: "2026-11-27 01:56:24".
const LOCAL_TIME: DateTimePrinter = DateTimePrinter::new().separator(b' ').precision(Some(0));

/// An RFC 3339 time as "2026-11-27 01:56:24" in `tz`; anything unparsable is shown as sent.
pub fn time(rfc3339: &str, tz: &TimeZone) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(ts) => LOCAL_TIME.datetime_to_string(&tz.to_datetime(ts)),
        Err(_) => rfc3339.to_string(),
    }
}

/// An RFC 3339 time as the wall-clock time "02:07:45" in `tz`, for lines of a live stream;
/// anything unparsable is shown as sent.
pub fn clock(rfc3339: &str, tz: &TimeZone) -> String {
    match rfc3339.parse::<Timestamp>() {
        Ok(ts) => ts
            .to_zoned_datetime(tz.clone())
            .strftime("%H:%M:%S")
            .to_string(),
        Err(_) => rfc3339.to_string(),
    }
}

/// [`time`] of an optional time, "-" when absent.
pub fn maybe_time(rfc3339: Option<&str>, tz: &TimeZone) -> String {
    rfc3339.map_or_else(|| "-".to_string(), |t| time(t, tz))
}

/// An optional value for a table cell, "-" when absent.
pub fn or_dash<T: ToString>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| v.to_string())
}

/// Bytes in SI units, as the config writes them ("50MB" is 50,000,000 bytes).
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A duration in its two largest units: "3d 4h", "2h 03m", "5m 12s", "42s".
pub fn duration(secs: u64) -> String {
    let (days, hours, minutes, seconds) =
        (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m"),
        _ => format!("{days}d {hours}h"),
    }
}

/// Who added something: the user name, else the uid, else "-".
pub fn who(name: Option<&str>, uid: Option<u32>) -> String {
    match (name, uid) {
        (Some(name), _) => name.to_string(),
        (None, Some(uid)) => format!("uid {uid}"),
        (None, None) => "-".to_string(),
    }
}

/// `items` joined with ", ", cut to about `max_chars` with a count of what was left out:
/// "id, date, amount, … +12".
pub fn joined_truncated(items: &[impl AsRef<str>], max_chars: usize) -> String {
    let mut out = String::new();
    let mut chars = 0;
    for (index, item) in items.iter().enumerate() {
        let item = item.as_ref();
        let separator = if index == 0 { "" } else { ", " };
        let item_chars = item.chars().count();
        let fits = chars + separator.len() + item_chars <= max_chars;
        if fits {
            out.push_str(separator);
            out.push_str(item);
            chars += separator.len() + item_chars;
        } else if index == 0 {
            // One name longer than the whole cell: show its start.
            out.extend(item.chars().take(max_chars.saturating_sub(1)));
            out.push('…');
            chars = max_chars;
        } else {
            out.push_str(&format!(", … +{}", items.len() - index));
            break;
        }
    }
    out
}

/// Shown in place of the end of a cut cell.
pub fn truncated(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Write `text` to `out` (stdout) and flush. `Ok(false)`: the reader closed the pipe
/// (`ingestctl ls | head -1`), which is success — it has all it wanted; write no more.
pub fn emit(out: &mut dyn Write, text: &str) -> io::Result<bool> {
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_have_no_borders_and_no_trailing_spaces() {
        let text = table::<String>(
            &["NAME", "ROWS"],
            vec![
                vec!["a.csv".into(), "5".into()],
                vec!["longer.xlsx".into(), "1204".into()],
            ],
            &[1],
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "NAME         ROWS",
                "a.csv           5",
                "longer.xlsx  1204"
            ]
        );
    }

    #[test]
    fn times_are_shortened_in_the_given_zone() {
        let utc = TimeZone::UTC;
        assert_eq!(
            time("2026-11-27T01:56:24.123Z", &utc),
            "2026-11-27 01:56:24"
        );
        assert_eq!(
            time("2026-11-27T03:56:24+02:00", &utc),
            "2026-11-27 01:56:24"
        );
        let plus_one = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(
            time("2026-11-27T01:56:24Z", &plus_one),
            "2026-11-27 02:56:24"
        );
        assert_eq!(time("yesterday", &utc), "yesterday");
        assert_eq!(maybe_time(None, &utc), "-");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        let sizes = [
            (0, "0 B"),
            (999, "999 B"),
            (1000, "1.0 kB"),
            (12_345, "12.3 kB"),
            (999_999, "1.0 MB"),
            (50_000_000, "50.0 MB"),
        ];
        for (bytes, want) in sizes {
            assert_eq!(size(bytes), want, "{bytes}");
        }
        let durations = [
            (0, "0s"),
            (42, "42s"),
            (312, "5m 12s"),
            (7_380, "2h 03m"),
            (273_600, "3d 4h"),
        ];
        for (secs, want) in durations {
            assert_eq!(duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn long_column_lists_are_cut_with_a_count() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cases: &[(&[&str], usize, &str)] = &[
            (&[], 20, ""),
            (&["id", "date"], 20, "id, date"),
            (
                &["id", "date", "amount", "region"],
                16,
                "id, date, amount, … +1",
            ),
            (&["id", "date", "amount", "region"], 10, "id, date, … +2"),
            (&["a_very_long_column_name", "b"], 10, "a_very_lo…, … +1"),
        ];
        for (items, max, want) in cases {
            assert_eq!(joined_truncated(&names(items), *max), *want, "{items:?}");
        }
    }

    #[test]
    fn long_cells_are_cut_with_an_ellipsis() {
        assert_eq!(truncated("short", 10), "short");
        assert_eq!(truncated("exactly10!", 10), "exactly10!");
        assert_eq!(truncated("a bit too long", 10), "a bit too…");
        assert_eq!(truncated("ééééé", 3), "éé…");
    }

    #[test]
    fn clock_times_are_wall_clock_in_the_zone() {
        let plus_one = TimeZone::fixed(jiff::tz::offset(1));
        assert_eq!(clock("2026-11-27T01:07:45.5Z", &plus_one), "02:07:45");
        assert_eq!(clock("soon", &plus_one), "soon");
    }

    #[test]
    fn a_closed_pipe_is_not_an_error() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        assert!(!emit(&mut Closed, "x\n").unwrap());
        let mut buffer = Vec::new();
        assert!(emit(&mut buffer, "x\n").unwrap());
        assert_eq!(buffer, b"x\n");
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_escaped() {
        let cases: &[(&str, &str)] = &[
            ("plain.csv", "plain.csv"),
            ("ünïcode ok.csv", "ünïcode ok.csv"),
            ("two\nlines.csv", "two\\nlines.csv"),
            ("tab\there\r", "tab\\there\\r"),
            ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
            ("\x1b]0;owned\x07title", "\\x1b]0;owned\\x07title"),
            ("c1\u{9b}31m", "c1\\x9b31m"),
            ("del\x7f", "del\\x7f"),
            ("evil\u{202e}vsc.exe", "evil\\u{202e}vsc.exe"),
            ("iso\u{2066}late\u{2069}", "iso\\u{2066}late\\u{2069}"),
            ("sep\u{2028}x", "sep\\u{2028}x"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape(raw), *want, "{raw:?}");
        }
        assert!(matches!(escape("fine"), Cow::Borrowed(_)));
        // A whole output keeps its own lines and tabs but nothing else.
        assert_eq!(
            escape_text("a\tb\nc\x1b]8;;http://x\x1b\\d\n"),
            "a\tb\nc\\x1b]8;;http://x\\x1b\\d\n"
        );
    }

    #[test]
    fn table_cells_are_escaped_and_stay_on_one_line() {
        let text = table::<String>(
            &["NAME", "REASON"],
            vec![vec!["a\nb.csv".into(), "\x1b[2Jgone".into()]],
            &[],
        );
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\x1b'), "{text:?}");
        assert!(
            text.contains("a\\nb.csv") && text.contains("\\x1b[2Jgone"),
            "{text}"
        );
    }

    #[test]
    fn json_is_pretty_and_ends_with_a_newline() {
        let data = serde_json::json!([{"name": "a.csv", "b": 1}]);
        assert_eq!(
            json(&data, true),
            "[\n  {\n    \"b\": 1,\n    \"name\": \"a.csv\"\n  }\n]\n"
        );
        assert_eq!(json(&data, false), "[{\"b\":1,\"name\":\"a.csv\"}]\n");
    }

    #[test]
    fn the_daemons_json_goes_to_scripts_as_sent_and_to_people_pretty() {
        let sent = RawValue::from_string(r#"[{"name":"a.csv","b":1}]"#.into()).unwrap();
        assert_eq!(json_text(&sent, false), "[{\"name\":\"a.csv\",\"b\":1}]\n");
        assert_eq!(
            json_text(&sent, true),
            "[\n  {\n    \"b\": 1,\n    \"name\": \"a.csv\"\n  }\n]\n"
        );
    }
}
