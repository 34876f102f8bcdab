//! Wall-clock time as the catalog stores it (Unix milliseconds) and as people read it (RFC 3339).

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `2026-11-27T01:56:24.123Z` for a stored time: always three decimals, so the text sorts
/// like the time.
pub fn rfc3339(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => format!("@{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_with_millis() {
        assert_eq!(
            super::rfc3339(1_795_744_584_123),
            "2026-11-27T01:56:24.123Z"
        );
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_744_584_940),
            "2026-11-27T01:56:24.940Z"
        );
    }
}
