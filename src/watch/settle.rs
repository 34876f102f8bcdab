//! When is a file's writer done? A pure state machine of events, stat results and a clock.
//!
//! A file is settled when its size and mtime have not changed for the settle window after the
//! last event, as seen by a stat taken when the window ends. A close-write event shortens
//! nothing: network copies close and reopen. The owner of a `Settler` feeds it events (`touch`),
//! sleeps until `next_deadline`, stats the paths `due` returns and reports them with `confirm`.
//! No I/O and no real clock here, so every rule is a row in the tests below.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What a stat says about a file: enough to notice that a writer is still at work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub size: u64,
    pub mtime: SystemTime,
}

/// What `confirm` decided for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Unchanged for the whole window: take it. The path is no longer tracked.
    Settled,
    /// It changed since the last look; the window starts again.
    Changed,
    /// It is gone; forget it.
    Vanished,
    /// Its window has not ended yet (an event came in after `due`).
    NotDue,
    /// The path is not tracked (already settled or never seen).
    Unknown,
}

#[derive(Debug)]
struct Entry {
    /// What the last stat saw; `None` if it saw nothing (not created yet, or unreadable).
    meta: Option<Meta>,
    deadline: Instant,
}

/// Tracks files that are being written until each one settles.
#[derive(Debug)]
pub struct Settler {
    window: Duration,
    entries: HashMap<PathBuf, Entry>,
}

impl Settler {
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            entries: HashMap::new(),
        }
    }

    /// A new window length applies to the next event of each file.
    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// Something happened to `path` at `now`, and a stat right then saw `seen`: (re)start its
    /// window. Returns true if the path was not tracked before.
    pub fn touch(&mut self, path: &Path, seen: Option<Meta>, now: Instant) -> bool {
        let entry = Entry {
            meta: seen,
            deadline: now + self.window,
        };
        self.entries.insert(path.to_path_buf(), entry).is_none()
    }

    /// Stop tracking `path` (it was moved away or is handled elsewhere).
    pub fn forget(&mut self, path: &Path) -> bool {
        self.entries.remove(path).is_some()
    }

    /// When the earliest window ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries.values().map(|e| e.deadline).min()
    }

    /// Paths whose window has ended by `now`: stat each and `confirm` it.
    pub fn due(&self, now: Instant) -> Vec<PathBuf> {
        let mut due: Vec<PathBuf> = self
            .entries
            .iter()
            .filter(|(_, e)| e.deadline <= now)
            .map(|(p, _)| p.clone())
            .collect();
        due.sort();
        due
    }

    /// Report what a stat of `path` saw at `now` (`None`: it does not exist).
    pub fn confirm(&mut self, path: &Path, seen: Option<Meta>, now: Instant) -> Verdict {
        let Some(entry) = self.entries.get_mut(path) else {
            return Verdict::Unknown;
        };
        if entry.deadline > now {
            return Verdict::NotDue;
        }
        let Some(seen) = seen else {
            self.entries.remove(path);
            return Verdict::Vanished;
        };
        if entry.meta == Some(seen) {
            self.entries.remove(path);
            return Verdict::Settled;
        }
        // It changed since the last look: remember what we saw and wait a whole window more.
        entry.meta = Some(seen);
        entry.deadline = now + self.window;
        Verdict::Changed
    }

    /// The file could not be opened yet (locked, permissions in flux): look again later.
    pub fn retry_later(&mut self, path: &Path, seen: Meta, now: Instant) {
        self.entries.insert(
            path.to_path_buf(),
            Entry {
                meta: Some(seen),
                deadline: now + self.window,
            },
        );
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn contains(&self, path: &Path) -> bool {
        self.entries.contains_key(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 500;

    /// One step of a scenario, at a time in milliseconds after the start.
    #[derive(Debug, Clone, Copy)]
    enum Step {
        /// An event for the file at this time; a stat then sees this size.
        Event(u64, Option<u64>),
        /// The owner wakes up at this time and stats the file, which has this size (None: gone).
        Check(u64, Option<u64>, Verdict),
        /// The earliest deadline is at this time (None: nothing tracked).
        Deadline(Option<u64>),
    }
    use Step::*;

    fn meta(size: u64) -> Meta {
        Meta {
            size,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_millis(size),
        }
    }

    fn run(name: &str, steps: &[Step]) {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let path = Path::new("/drop/g/a.csv");
        let mut settler = Settler::new(Duration::from_millis(WINDOW));
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Event(t, size) => {
                    settler.touch(path, size.map(meta), at(t));
                }
                Check(t, size, want) => {
                    let got = settler.confirm(path, size.map(meta), at(t));
                    assert_eq!(got, want, "{name}: step {i} {step:?}");
                }
                Deadline(want) => {
                    assert_eq!(
                        settler.next_deadline(),
                        want.map(at),
                        "{name}: step {i} {step:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn settle_table() {
        let cases: &[(&str, &[Step])] = &[
            (
                "one write, then quiet: settled one window after the event",
                &[
                    Event(0, Some(10)),
                    Deadline(Some(500)),
                    Check(499, Some(10), Verdict::NotDue),
                    Check(500, Some(10), Verdict::Settled),
                    Deadline(None),
                ],
            ),
            (
                "events keep pushing the deadline",
                &[
                    Event(0, Some(1)),
                    Event(300, Some(5)),
                    Event(600, Some(10)),
                    Deadline(Some(1100)),
                    Check(700, Some(10), Verdict::NotDue),
                    Check(1100, Some(10), Verdict::Settled),
                ],
            ),
            (
                "a slow writer with no events (network copy) is not taken early",
                &[
                    Event(0, Some(10)),
                    Check(500, Some(20), Verdict::Changed),
                    Check(1000, Some(30), Verdict::Changed),
                    Deadline(Some(1500)),
                    Check(1500, Some(30), Verdict::Settled),
                ],
            ),
            (
                "a file not there at the event is looked at again",
                &[
                    Event(0, None),
                    Check(500, Some(4), Verdict::Changed),
                    Check(1000, Some(4), Verdict::Settled),
                ],
            ),
            (
                "a file that disappears is forgotten",
                &[
                    Event(0, Some(3)),
                    Check(500, None, Verdict::Vanished),
                    Deadline(None),
                    Check(1000, Some(1), Verdict::Unknown),
                ],
            ),
            (
                "an event after settling tracks the file again",
                &[
                    Event(0, Some(5)),
                    Check(500, Some(5), Verdict::Settled),
                    Event(1200, Some(6)),
                    Deadline(Some(1700)),
                    Check(1700, Some(6), Verdict::Settled),
                ],
            ),
            (
                "a close-write event shortens nothing",
                &[
                    Event(0, Some(8)),
                    Event(100, Some(8)),
                    Check(500, Some(8), Verdict::NotDue),
                    Check(600, Some(8), Verdict::Settled),
                ],
            ),
        ];
        for (name, steps) in cases {
            run(name, steps);
        }
    }

    #[test]
    fn mtime_change_with_same_size_restarts_the_window() {
        let start = Instant::now();
        let path = Path::new("/drop/g/b.csv");
        let mut settler = Settler::new(Duration::from_millis(WINDOW));
        let t = |ms| start + Duration::from_millis(ms);
        let first = Meta {
            size: 7,
            mtime: SystemTime::UNIX_EPOCH,
        };
        let second = Meta {
            size: 7,
            mtime: SystemTime::UNIX_EPOCH + Duration::from_nanos(1),
        };
        settler.touch(path, Some(first), start);
        assert_eq!(
            settler.confirm(path, Some(second), t(500)),
            Verdict::Changed
        );
        assert_eq!(
            settler.confirm(path, Some(second), t(1000)),
            Verdict::Settled
        );
    }

    #[test]
    fn due_lists_only_expired_paths_in_order() {
        let start = Instant::now();
        let mut settler = Settler::new(Duration::from_millis(100));
        settler.touch(Path::new("/d/g/b"), None, start);
        settler.touch(Path::new("/d/g/a"), None, start);
        settler.touch(Path::new("/d/g/c"), None, start + Duration::from_millis(50));
        let due = settler.due(start + Duration::from_millis(100));
        assert_eq!(due, vec![PathBuf::from("/d/g/a"), PathBuf::from("/d/g/b")]);
        assert_eq!(settler.len(), 3);
    }

    #[test]
    fn retry_later_waits_a_window() {
        let start = Instant::now();
        let path = Path::new("/d/g/locked.csv");
        let mut settler = Settler::new(Duration::from_millis(100));
        settler.retry_later(path, meta(3), start);
        assert_eq!(
            settler.next_deadline(),
            Some(start + Duration::from_millis(100))
        );
        assert_eq!(
            settler.confirm(path, Some(meta(3)), start + Duration::from_millis(100)),
            Verdict::Settled
        );
    }
}
