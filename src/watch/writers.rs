//! Writers the daemon can see: a file with a modify event and no close-write since is still
//! open for writing, and is neither taken nor removed from under its writer.
//!
//! Fed from notify's thread, event by event, before anything is queued, so an ingest worker
//! asking "was it written since I copied it?" sees every write the kernel reported up to then.
//! A writer that opened a file but has not written yet is invisible (inotify reports no
//! open-for-write without a write); one whose close was lost in a queue overflow is forgotten
//! at the next full rescan ([`Writers::forget_all`]), so an overflow never strands a file. This
//! module only records; it never touches a file.

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct State {
    open: bool,
    writes: u64,
}

/// Shared between notify's thread, the watcher and the ingest workers.
#[derive(Debug, Clone, Default)]
pub struct Writers {
    // Short sections, no await: a std Mutex.
    inner: Arc<Mutex<HashMap<PathBuf, State>>>,
}

impl Writers {
    /// Take what one event says about writers.
    pub fn on_event(&self, event: &notify::Event) {
        let Ok(mut map) = self.inner.lock() else {
            return;
        };
        for path in &event.paths {
            match event.kind {
                EventKind::Modify(ModifyKind::Data(_)) => {
                    let state = map.entry(path.clone()).or_default();
                    state.open = true;
                    state.writes += 1;
                }
                EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                    if let Some(state) = map.get_mut(path) {
                        state.open = false;
                    }
                }
                EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(_)) => {
                    map.remove(path);
                }
                _ => {}
            }
        }
    }

    /// Has `path` been written and not closed since?
    pub fn is_open(&self, path: &Path) -> bool {
        self.inner
            .lock()
            .map(|map| map.get(path).is_some_and(|s| s.open))
            .unwrap_or(false)
    }

    /// How many writes were seen at `path` so far (a mark to compare with later).
    pub fn writes(&self, path: &Path) -> u64 {
        self.inner
            .lock()
            .map(|map| map.get(path).map_or(0, |s| s.writes))
            .unwrap_or(0)
    }

    /// Was `path` written since `mark` (from [`Writers::writes`]), or is it open now?
    pub fn active_since(&self, path: &Path, mark: u64) -> bool {
        self.inner
            .lock()
            .map(|map| map.get(path).is_some_and(|s| s.open || s.writes != mark))
            .unwrap_or(false)
    }

    /// Events may have been lost: trust only what the next events say.
    pub fn forget_all(&self) {
        if let Ok(mut map) = self.inner.lock() {
            map.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{DataChange, RemoveKind};

    fn event(kind: EventKind) -> notify::Event {
        notify::Event::new(kind).add_path(PathBuf::from("/d/g/a.csv"))
    }

    #[test]
    fn a_write_without_a_close_is_an_open_writer() {
        let writers = Writers::default();
        let path = Path::new("/d/g/a.csv");
        assert!(!writers.is_open(path));
        let mark = writers.writes(path);
        writers.on_event(&event(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(writers.is_open(path));
        assert!(writers.active_since(path, mark));
        writers.on_event(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Write,
        ))));
        assert!(!writers.is_open(path));
        let mark = writers.writes(path);
        assert!(!writers.active_since(path, mark));
        writers.on_event(&event(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        assert!(writers.active_since(path, mark), "written since the mark");
        writers.on_event(&event(EventKind::Access(AccessKind::Close(
            AccessMode::Read,
        ))));
        assert!(
            writers.is_open(path),
            "a reader's close is not the writer's"
        );
        writers.on_event(&event(EventKind::Remove(RemoveKind::File)));
        assert!(!writers.is_open(path));
        writers.on_event(&event(EventKind::Modify(ModifyKind::Data(DataChange::Any))));
        writers.forget_all();
        assert!(!writers.is_open(path));
    }
}
