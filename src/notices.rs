//! Recent runtime problems an operator should see in `status` (a file in the drop root, a
//! folder with an invalid group name, a storage error), kept in a small ring.
//!
//! Runtime errors are recorded and the daemon goes on; critical errors never come here, they
//! stop the daemon.

use crate::clock;
use crate::protocol::Notice;
use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

/// How many notices `status` shows.
pub const KEEP: usize = 20;

#[derive(Debug, Default)]
struct Ring {
    items: VecDeque<Notice>,
    /// Keys already reported, so a rescan does not repeat the same complaint.
    once: HashSet<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Notices {
    // Short critical sections only, no await inside: a std Mutex is right here.
    inner: Arc<Mutex<Ring>>,
}

impl Notices {
    /// Record a problem and log it.
    pub fn report(&self, message: impl Into<String>) {
        let message = message.into();
        tracing::warn!("{message}");
        if let Ok(mut ring) = self.inner.lock() {
            if ring.items.len() == KEEP {
                ring.items.pop_front();
            }
            ring.items.push_back(Notice {
                time: clock::rfc3339(clock::now_ms()),
                message,
            });
        }
    }

    /// Record a problem the first time `key` is seen; later reports of it are dropped.
    pub fn report_once(&self, key: &str, message: impl Into<String>) {
        let first = self
            .inner
            .lock()
            .map(|mut ring| ring.once.insert(key.to_string()))
            .unwrap_or(false);
        if first {
            self.report(message);
        }
    }

    /// Oldest first.
    pub fn recent(&self) -> Vec<Notice> {
        self.inner
            .lock()
            .map(|ring| ring.items.iter().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_and_reports_once() {
        let notices = Notices::default();
        for i in 0..(KEEP + 5) {
            notices.report(format!("n{i}"));
        }
        notices.report_once("k", "first");
        notices.report_once("k", "second");
        let recent = notices.recent();
        assert_eq!(recent.len(), KEEP);
        assert_eq!(recent.last().unwrap().message, "first");
        assert!(recent.iter().all(|n| n.message != "second"));
        assert_eq!(recent.first().unwrap().message, "n6");
    }
}
