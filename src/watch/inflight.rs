//! Files seen in the drop folders and not yet stored or rejected, for `ls` and `status`, and
//! the writers the watcher has seen at work on them.
//!
//! The catalog records outcomes; this records what is under way, which a restart forgets on
//! purpose (the start-up scan finds those files again). A file waiting to be tried again after
//! a transient failure is `pending` with the reason it waits.

use super::writers::Writers;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How far a file in flight has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Seen; waiting for its writer to finish (or to be tried again, see [`InFlight::reason`]).
    Pending,
    /// Being validated and stored.
    Validating,
}

type Key = (String, String);

/// Shared map of (group, file name) → phase.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    // Short critical sections only, no await inside: a std Mutex is right here.
    inner: Arc<Mutex<BTreeMap<Key, Phase>>>,
    /// Why a pending file waits, when it waits for something other than its writer.
    reasons: Arc<Mutex<BTreeMap<Key, String>>>,
    writers: Writers,
}

fn key(group: &str, name: &str) -> Key {
    (group.to_string(), name.to_string())
}

impl InFlight {
    pub fn set(&self, group: &str, name: &str, phase: Phase) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert(key(group, name), phase);
        }
    }

    /// Pending, to be tried again: `reason` says why it was not taken.
    pub fn set_waiting(&self, group: &str, name: &str, reason: &str) {
        self.set(group, name, Phase::Pending);
        if let Ok(mut reasons) = self.reasons.lock() {
            reasons.insert(key(group, name), reason.to_string());
        }
    }

    /// Why `group/name` is pending, if it waits to be tried again.
    pub fn reason(&self, group: &str, name: &str) -> Option<String> {
        self.reasons
            .lock()
            .ok()
            .and_then(|r| r.get(&key(group, name)).cloned())
    }

    pub fn clear(&self, group: &str, name: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(&key(group, name));
        }
        self.clear_reason(group, name);
    }

    /// It is no longer waiting to be tried again (taken, or gone).
    pub fn clear_reason(&self, group: &str, name: &str) {
        if let Ok(mut reasons) = self.reasons.lock() {
            reasons.remove(&key(group, name));
        }
    }

    pub fn snapshot(&self) -> BTreeMap<(String, String), Phase> {
        self.inner.lock().map(|m| m.clone()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writers seen at work in the drop folders.
    pub fn writers(&self) -> &Writers {
        &self.writers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_file_is_pending_with_its_reason_until_cleared() {
        let in_flight = InFlight::default();
        in_flight.set_waiting("g", "a.csv", "catalog error");
        assert_eq!(in_flight.snapshot()[&key("g", "a.csv")], Phase::Pending);
        assert_eq!(
            in_flight.reason("g", "a.csv").as_deref(),
            Some("catalog error")
        );
        in_flight.clear("g", "a.csv");
        assert!(in_flight.is_empty());
        assert_eq!(in_flight.reason("g", "a.csv"), None);
    }
}
