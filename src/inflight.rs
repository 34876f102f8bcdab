//! Files seen in the drop folders and not yet stored or rejected, for `ls` and `status`.
//!
//! The catalog records outcomes; this records what is under way, which a restart forgets on
//! purpose (the start-up scan finds those files again).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// How far a file in flight has come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Seen; waiting for its writer to finish.
    Pending,
    /// Being validated and stored.
    Validating,
}

/// Shared map of (group, file name) → phase.
#[derive(Debug, Clone, Default)]
pub struct InFlight {
    // Short critical sections only, no await inside: a std Mutex is right here.
    inner: Arc<Mutex<BTreeMap<(String, String), Phase>>>,
}

impl InFlight {
    pub fn set(&self, group: &str, name: &str, phase: Phase) {
        if let Ok(mut map) = self.inner.lock() {
            map.insert((group.to_string(), name.to_string()), phase);
        }
    }

    pub fn clear(&self, group: &str, name: &str) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(&(group.to_string(), name.to_string()));
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
}
