//! How long to wait before retrying a transient embedding error: exponential backoff with
//! full jitter, capped, and never shorter than the server's `Retry-After`.
//!
//! Pure functions of the attempt number, the server's hint and a random number the caller
//! passes in, so the schedule is tested from tables without sleeping or seeding a global RNG.
//! This module never sleeps and never decides *whether* to retry; the job queue does both.

use std::time::{Duration, SystemTime};

/// The shape of the schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's wait.
    pub base: Duration,
    /// No computed wait is longer than this, however many attempts failed.
    pub cap: Duration,
    /// A `Retry-After` longer than this is cut down to it: a misconfigured server asking for
    /// a day must not park a worker for a day (the job's attempt limit still applies).
    pub max_retry_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The wait before retry number `attempt` (1 for the first retry; 0 is treated as 1).
    ///
    /// `random` must return a number in `[0, 1)`; values outside are clamped. Full jitter
    /// (a uniform wait between zero and the exponential ceiling) spreads out workers that
    /// failed together, so they do not hit a recovering server in lockstep.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: &mut dyn FnMut() -> f64,
    ) -> Duration {
        let exponent = attempt.saturating_sub(1).min(32);
        let ceiling = self
            .base
            .checked_mul(1u32 << exponent.min(31))
            .unwrap_or(self.cap)
            .min(self.cap);
        let r = random();
        let r = if r.is_finite() {
            r.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = ceiling.mul_f64(r);
        match retry_after {
            // The server knows when it will have room; waiting less only earns another 429.
            Some(hint) => jittered.max(hint.min(self.max_retry_after)),
            None => jittered,
        }
    }
}

/// [`Backoff::default`]'s wait before retry number `attempt`.
pub fn delay(
    attempt: u32,
    retry_after: Option<Duration>,
    random: &mut dyn FnMut() -> f64,
) -> Duration {
    Backoff::default().delay(attempt, retry_after, random)
}

/// Read a `Retry-After` header value: delay-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`), relative to `now`. A date in the past means "now"
/// (zero); anything unreadable is `None`, so the plain schedule applies.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixed(r: f64) -> impl FnMut() -> f64 {
        move || r
    }

    #[test]
    fn schedule_table() {
        let b = Backoff::default();
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        // (attempt, retry_after, random, expected)
        let cases = [
            (1, None, 0.999_999, ms(500)),
            (1, None, 0.5, ms(250)),
            (1, None, 0.0, ms(0)),
            (0, None, 0.5, ms(250)), // 0 behaves as the first retry
            (2, None, 0.5, ms(500)),
            (3, None, 0.5, ms(1000)),
            (7, None, 0.5, s(16)),
            (8, None, 0.5, s(30)), // 64 s ceiling capped at 60 s
            (10_000, None, 0.5, s(30)),
            (u32::MAX, None, 1.0, s(60)),
            (1, Some(s(7)), 0.5, s(7)), // Retry-After longer than the jitter wins
            (9, Some(s(1)), 0.5, s(30)), // a shorter hint does not shorten the wait
            (1, Some(s(86_400)), 0.5, s(300)), // an absurd hint is capped
            (1, Some(Duration::ZERO), 0.5, ms(250)),
            (1, None, 7.0, ms(500)), // out-of-range random clamped
            (1, None, -1.0, ms(0)),
            (1, None, f64::NAN, ms(0)),
        ];
        for (attempt, retry_after, r, expected) in cases {
            let got = b.delay(attempt, retry_after, &mut fixed(r));
            // Float scaling may be off by a nanosecond or so.
            let diff = got.abs_diff(expected);
            assert!(
                diff <= Duration::from_micros(1),
                "attempt {attempt}, retry_after {retry_after:?}, r {r}: got {got:?}, want {expected:?}"
            );
        }
    }

    #[test]
    fn jitter_stays_within_the_ceiling_and_grows() {
        let b = Backoff::default();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut rng = move || {
            // xorshift: any cheap deterministic source will do for bounds.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for attempt in 1..=20u32 {
            let ceiling = (b.base * 2u32.pow((attempt - 1).min(20))).min(b.cap);
            for _ in 0..100 {
                assert!(b.delay(attempt, None, &mut rng) <= ceiling);
            }
        }
    }

    #[test]
    fn the_free_function_uses_the_defaults() {
        assert_eq!(delay(3, None, &mut fixed(0.5)), Duration::from_secs(1));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        let s = Duration::from_secs;
        let cases = [
            ("120", Some(s(120))),
            (" 0 ", Some(s(0))),
            ("Wed, 21 Oct 2015 07:28:30 GMT", Some(s(30))), // IMF-fixdate
            ("Wednesday, 21-Oct-15 07:29:00 GMT", Some(s(60))), // obsolete RFC 850
            ("Wed Oct 21 07:28:05 2015", Some(s(5))),       // obsolete asctime
            ("Wed, 21 Oct 2015 07:00:00 GMT", Some(s(0))),  // in the past: go now
            ("-5", None),
            ("1.5", None),
            ("soon", None),
            ("", None),
        ];
        for (value, expected) in cases {
            assert_eq!(parse_retry_after(value, now), expected, "{value:?}");
        }
    }
}
