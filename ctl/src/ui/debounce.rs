//! Waiting for typing to pause: the preferences editor asks the daemon for a new preview
//! only once its edits have stopped changing for [`PREVIEW_DELAY`], not at every key.
//!
//! Pure: it sees a counter of edits and a clock reading given to it, and says when to fire
//! and how long the loop may sleep; it never reads the clock or sends anything itself.

use std::time::{Duration, Instant};

/// How long the edits must rest before a preview is asked for: shorter than a person notices
/// as lag, longer than the gap between keys of someone typing a word.
pub const PREVIEW_DELAY: Duration = Duration::from_millis(150);

#[derive(Debug, Clone)]
pub struct Debounce {
    delay: Duration,
    /// The counter last seen; `None` while there is nothing to watch (the editor is closed).
    seen: Option<u64>,
    due: Option<Instant>,
}

impl Debounce {
    pub fn new(delay: Duration) -> Debounce {
        Debounce {
            delay,
            seen: None,
            due: None,
        }
    }

    /// Note the edit counter at `now`. A change of a watched counter (re)starts the wait; a
    /// counter that appears (the editor opened) or goes away (closed) does not fire.
    pub fn observe(&mut self, counter: Option<u64>, now: Instant) {
        if counter == self.seen {
            return;
        }
        let edited = self.seen.is_some() && counter.is_some();
        self.seen = counter;
        self.due = edited.then(|| now + self.delay);
    }

    /// Whether the wait is over at `now`; it fires once per pause.
    pub fn fire(&mut self, now: Instant) -> bool {
        if self.due.is_some_and(|due| due <= now) {
            self.due = None;
            return true;
        }
        false
    }

    /// How long the loop may wait for a message before it must look again.
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.due.map(|due| due.saturating_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fires_once_after_the_edits_rest() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut d = Debounce::new(Duration::from_millis(150));
        // (at ms, counter seen, fires?, wait left in ms)
        let steps: &[(u64, Option<u64>, bool, Option<u64>)] = &[
            (0, Some(0), false, None),        // the editor opens: nothing to do
            (10, Some(1), false, Some(150)),  // an edit: wait
            (100, Some(2), false, Some(150)), // another before the wait ended: wait again
            (200, Some(2), false, Some(50)),
            (250, Some(2), true, None),  // rested 150 ms: fire
            (400, Some(2), false, None), // once
            (500, Some(3), false, Some(150)),
            (600, None, false, None), // closed before it fired: nothing
            (900, None, false, None),
            (950, Some(0), false, None), // opened again
        ];
        for &(at, counter, fires, left) in steps {
            d.observe(counter, ms(at));
            assert_eq!(d.fire(ms(at)), fires, "at {at} ms");
            assert_eq!(
                d.wait(ms(at)),
                left.map(Duration::from_millis),
                "wait at {at} ms"
            );
        }
    }
}
