//! `--since` of `audit`: "how long ago" (`30m`, `1h`, `2d`, `1w`, `2h ago`) or a point in time
//! (RFC 3339, or a local date or date-time), turned into the RFC 3339 time the protocol takes.
//!
//! Pure: parsing is done by clap (so a bad value is a usage error, exit 2) and resolving takes
//! the clock as an argument, so tests need no real time.

use jiff::civil::DateTime;
use jiff::{Span, Timestamp, ZonedDateTime};

/// What the user wrote, parsed but not yet tied to a clock.
#[derive(Debug, Clone)]
pub enum Since {
    /// A span back from now (always positive: `2h ago` and `2h` mean the same).
    Ago(Span),
    /// An exact instant (RFC 3339 with an offset).
    At(Timestamp),
    /// A wall-clock date or date-time in the local time zone.
    Local(DateTime),
}

const EXAMPLES: &str = "use a duration such as 30m, 1h, 2d or 1w, or a time such as \
                        2026-11-27T09:00:00Z, 2026-11-27T10:00:00+01:00 or 2026-11-27";

impl Since {
    /// Parse the text of `--since`. The error says what is accepted.
    pub fn parse(text: &str) -> Result<Since, String> {
        let text = text.trim();
        if let Ok(at) = text.parse::<Timestamp>() {
            return Ok(Since::At(at));
        }
        if let Ok(local) = text.parse::<DateTime>() {
            return Ok(Since::Local(local));
        }
        match text.parse::<Span>() {
            Ok(span) => Ok(Since::Ago(span.abs())),
            Err(_) => Err(format!(
                "{text:?} is neither a duration nor a time; {EXAMPLES}"
            )),
        }
    }

    /// The instant meant, seen from `now` (whose time zone is the local one).
    pub fn resolve(&self, now: &ZonedDateTime) -> Result<Timestamp, String> {
        match self {
            Since::At(at) => Ok(*at),
            Since::Ago(span) => now
                .checked_sub(*span)
                .map(|then| then.timestamp())
                .map_err(|e| format!("--since {span:#} ago is out of range: {e}")),
            Since::Local(local) => local
                .to_zoned_datetime(now.time_zone().clone())
                .map(|then| then.timestamp())
                .map_err(|e| format!("--since {local} is not a time here: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::tz::TimeZone;

    fn now() -> ZonedDateTime {
        "2026-11-27T12:00:00Z"
            .parse::<Timestamp>()
            .unwrap()
            .to_zoned_datetime(TimeZone::fixed(jiff::tz::offset(1)))
    }

    #[test]
    fn durations_and_times_resolve_against_the_clock() {
        let cases = [
            ("30m", "2026-11-27T11:30:00Z"),
            ("1h", "2026-11-27T11:00:00Z"),
            ("2h ago", "2026-11-27T10:00:00Z"),
            ("1h30m", "2026-11-27T10:30:00Z"),
            ("90s", "2026-11-27T11:58:30Z"),
            ("2d", "2026-11-25T12:00:00Z"),
            ("1w", "2026-11-20T12:00:00Z"),
            ("PT15M", "2026-11-27T11:45:00Z"),
            ("2026-11-27T09:00:00Z", "2026-11-27T09:00:00Z"),
            ("2026-11-27T10:00:00+01:00", "2026-11-27T09:00:00Z"),
            (" 2026-11-26T08:00:00.5Z ", "2026-11-26T08:00:00.5Z"),
            // Local wall-clock times are in the clock's zone (+01:00 here).
            ("2026-11-27", "2026-11-26T23:00:00Z"),
            ("2026-11-27T10:00", "2026-11-27T09:00:00Z"),
        ];
        for (text, want) in cases {
            let since = Since::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got = since.resolve(&now()).unwrap();
            assert_eq!(got, want.parse::<Timestamp>().unwrap(), "{text}");
        }
    }

    #[test]
    fn anything_else_is_a_clear_error() {
        for text in ["", "yesterday", "5", "1 fortnight", "2026-13-01", "12:00"] {
            let err = Since::parse(text).unwrap_err();
            assert!(
                err.contains("neither a duration nor a time"),
                "{text}: {err}"
            );
            assert!(err.contains("30m, 1h, 2d"), "{err}");
        }
    }

    #[test]
    fn a_span_too_far_back_is_an_error_not_a_panic() {
        let since = Since::parse("19000y").unwrap();
        let err = since.resolve(&now()).unwrap_err();
        assert!(err.contains("out of range"), "{err}");
    }

    #[test]
    fn the_resolved_time_is_sent_as_rfc_3339() {
        let at = Since::parse("1h").unwrap().resolve(&now()).unwrap();
        assert_eq!(at.to_string(), "2026-11-27T11:00:00Z");
    }
}
