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

/// [`json`] of the daemon's `data` as it sent it (`Client::call_text`): a script gets that
/// text unchanged, never parsed again nor copied (a listing of thousands of sources costs
/// nothing more to pass on); a person gets the pretty form.
pub fn json_text(mut data: String, pretty: bool) -> String {
    if pretty && let Ok(value) = serde_json::from_str::<Value>(&data) {
        return json(&value, true);
    }
    data.push('\n');
    data
}

/// A borderless table, columns two spaces apart, no trailing spaces. `right` lists the
/// columns (by index) that hold numbers. `rows` is gone through twice, once to measure the
/// columns and once to write them, so a row's cells may be made as they are asked for
/// (borrowed from a decoded answer, say) rather than all kept at once.
///
/// Laid out here rather than by a table crate: a listing of thousands of sources is the
/// biggest thing `ingestctl` prints, and a general layout engine (wrapping, styles, borders)
/// cost more than everything else the client did for it. Widths are display columns
/// (`unicode-width`), as a terminal shows them.
pub fn table<R>(header: &[&str], rows: R, right: &[usize]) -> String
where
    R: IntoIterator + Clone,
    R::Item: IntoIterator<Item: AsRef<str>>,
{
    // Every cell may hold someone else's text: one line, nothing a terminal acts on. Cells are
    // escaped as they are measured and again as they are written, rather than kept escaped:
    // escaping plain text only checks it, and a second table of cells would cost more.
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    let mut count = 0;
    for row in rows.clone() {
        count += 1;
        for (widest, cell) in widths.iter_mut().zip(row) {
            *widest = (*widest).max(width(&escape(cell.as_ref())));
        }
    }
    let line_width: usize = widths.iter().map(|w| w + 2).sum();
    let mut text = String::with_capacity((count + 1) * (line_width + 1));
    let mut line = Line {
        text: &mut text,
        widths: &widths,
        right,
    };
    for (index, cell) in header.iter().enumerate() {
        line.cell(index, cell);
    }
    line.end();
    for row in rows {
        for (index, cell) in row.into_iter().take(columns).enumerate() {
            line.cell(index, &escape(cell.as_ref()));
        }
        line.end();
    }
    text
}

/// Writes the lines of a [`table`].
struct Line<'a> {
    text: &'a mut String,
    widths: &'a [usize],
    right: &'a [usize],
}

impl Line<'_> {
    /// Column `index` of the current line: `cell` (already escaped) padded to its width.
    fn cell(&mut self, index: usize, cell: &str) {
        let pad = self.widths[index].saturating_sub(width(cell));
        if self.right.contains(&index) {
            self.text.extend(std::iter::repeat_n(' ', pad));
            self.text.push_str(cell);
        } else {
            self.text.push_str(cell);
            self.text.extend(std::iter::repeat_n(' ', pad));
        }
        self.text.push_str("  ");
    }

    /// End the current line, without the spaces after its last cell.
    fn end(&mut self) {
        let kept = self.text.trim_end_matches(' ').len();
        self.text.truncate(kept);
        self.text.push('\n');
    }
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

/// [`time`] of many times, one after another: a time in the same second as the one before
/// it (the same text up to the seconds, both in UTC as the daemon writes them) is not parsed
/// and converted again. Files that came in together give a listing runs of such times.
pub struct Times<'a> {
    tz: &'a TimeZone,
    /// The second of the last time shown ("2026-11-27T01:56:24") and how it was shown.
    last: Option<(String, String)>,
}

impl<'a> Times<'a> {
    pub fn new(tz: &'a TimeZone) -> Self {
        Times { tz, last: None }
    }

    /// [`time`] of `rfc3339`.
    pub fn show(&mut self, rfc3339: &str) -> String {
        let second = utc_second(rfc3339);
        if let (Some(second), Some((last, shown))) = (second, &self.last)
            && second == last
        {
            return shown.clone();
        }
        let Ok(ts) = rfc3339.parse::<Timestamp>() else {
            // Shown as sent, as `time` shows it, and not kept: another unparsable time of
            // the same "second" must be shown as it was sent, too.
            return rfc3339.to_string();
        };
        let shown = LOCAL_TIME.datetime_to_string(&self.tz.to_datetime(ts));
        if let Some(second) = second {
            self.last = Some((second.to_string(), shown.clone()));
        }
        shown
    }
}

/// The part of a UTC RFC 3339 time up to its seconds: "2026-11-27T01:56:24" of
/// "2026-11-27T01:56:24.107Z" or "2026-11-27T01:56:24Z"; `None` for any other form (a fraction
/// of more than the 9 digits a time can have among them). [`time`] shows whole seconds, so two
/// valid times with the same such part are shown the same; [`Times`] keeps only what parsed.
fn utc_second(rfc3339: &str) -> Option<&str> {
    let (second, rest) = rfc3339.split_at_checked(19)?;
    let fraction = rest.strip_suffix('Z')?;
    let whole = fraction.is_empty()
        || fraction.strip_prefix('.').is_some_and(|digits| {
            (1..=9).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
        });
    whole.then_some(second)
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

/// Items joined with ", " as they come, cut to about `max_chars` with a count of what was
/// left out: "id, date, amount, … +12". Built an item at a time, so the items need not be
/// kept in a list (the column names of `ls` are joined as they are decoded).
pub struct Joined {
    out: String,
    chars: usize,
    max_chars: usize,
    /// Items pushed so far.
    items: usize,
    /// Items that did not fit, counted once one did not.
    left_out: usize,
}

impl Joined {
    pub fn new(max_chars: usize) -> Self {
        Joined {
            out: String::with_capacity(max_chars + 8),
            chars: 0,
            max_chars,
            items: 0,
            left_out: 0,
        }
    }

    pub fn push(&mut self, item: &str) {
        self.items += 1;
        if self.left_out > 0 {
            self.left_out += 1;
            return;
        }
        let first = self.items == 1;
        let separator = if first { "" } else { ", " };
        let item_chars = item.chars().count();
        if self.chars + separator.len() + item_chars <= self.max_chars {
            self.out.push_str(separator);
            self.out.push_str(item);
            self.chars += separator.len() + item_chars;
        } else if first {
            // One name longer than the whole cell: show its start.
            self.out
                .extend(item.chars().take(self.max_chars.saturating_sub(1)));
            self.out.push('…');
            self.chars = self.max_chars;
        } else {
            self.left_out = 1;
        }
    }

    pub fn finish(mut self) -> String {
        if self.left_out > 0 {
            let _ = write!(self.out, ", … +{}", self.left_out);
        }
        self.out
    }
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
        let text = table(
            &["NAME", "ROWS"],
            &[["a.csv", "5"], ["longer.xlsx", "1204"]],
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
            assert_eq!(joined_truncated(items, *max), *want, "{items:?}");
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
    fn times_in_one_second_are_shown_as_time_shows_them() {
        let tz = TimeZone::get("Asia/Kolkata").unwrap_or(TimeZone::fixed(jiff::tz::offset(5)));
        let mut times = Times::new(&tz);
        for t in [
            "2026-11-27T01:56:24.107Z",
            "2026-11-27T01:56:24.999Z",
            "2026-11-27T01:56:24Z",
            "2026-11-27T01:56:25.000Z",
            "2026-11-27T01:56:25.5+02:00",
            "2026-11-27T01:56:25.5Z",
            "2026-11-27T01:56:25.Z",
            "not a time",
            "2026-11-27T01:56:25.9Z",
            // More digits than a time has, after and before a valid time of that second.
            "2026-11-27T01:56:25.1234567891Z",
            "2026-11-27T01:56:25Z",
            // Not a date, twice in one "second".
            "2026-02-30T00:00:00Z",
            "2026-02-30T00:00:00.5Z",
            "2026-12-31T23:59:60Z",
            "2026-12-31T23:59:60.5Z",
        ] {
            assert_eq!(times.show(t), time(t, &tz), "{t}");
        }
        assert_eq!(
            utc_second("2026-11-27T01:56:24.1Z"),
            Some("2026-11-27T01:56:24")
        );
        assert_eq!(utc_second("2026-11-27T01:56:24+00:00"), None);
        assert_eq!(utc_second("2026-11-27T01:56:24.Z"), None);
        assert_eq!(utc_second("2026-11-27T01:56Z"), None);
        assert_eq!(utc_second("2026-11-27T01:56:24.1é"), None);
    }

    /// The names joined as `ls` joins them.
    fn joined_truncated(items: &[&str], max_chars: usize) -> String {
        let mut joined = Joined::new(max_chars);
        for item in items {
            joined.push(item);
        }
        joined.finish()
    }

    #[test]
    fn joined_edge_cases() {
        let long = "x".repeat(50);
        assert_eq!(joined_truncated(&[], 40), "");
        assert_eq!(joined_truncated(&["", "b"], 40), ", b");
        assert_eq!(
            joined_truncated(
                &["a_long_column_name", "another_long_one", "third", "fourth"],
                40
            ),
            "a_long_column_name, another_long_one, … +2"
        );
        assert_eq!(joined_truncated(&[&long, "b"], 10), "xxxxxxxxx…, … +1");
    }

    #[test]
    fn table_cells_are_escaped_and_stay_on_one_line() {
        let text = table(&["NAME", "REASON"], &[["a\nb.csv", "\x1b[2Jgone"]], &[]);
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
        let sent = r#"[{"name":"a.csv","b":1}]"#;
        assert_eq!(
            json_text(sent.into(), false),
            "[{\"name\":\"a.csv\",\"b\":1}]\n"
        );
        assert_eq!(
            json_text(sent.into(), true),
            "[\n  {\n    \"b\": 1,\n    \"name\": \"a.csv\"\n  }\n]\n"
        );
    }
}
