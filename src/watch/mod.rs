//! Finding dropped files: a `notify` watcher on the drop root, a full scan at start-up and after
//! any lost event, and the settle rule that decides when a writer is done.
//!
//! The watcher runs on its own thread (it stats files, which may block on slow disks) and hands
//! settled files to the ingest workers. It must never lose a file: when the event channel is
//! full or the kernel reports an overflow, the root is marked for a rescan instead of dropping
//! anything. It never follows symlinks and never touches hidden or temporary names.

pub mod names;
pub mod settle;

use crate::catalog::Catalog;
use crate::events::Events;
use crate::inflight::{InFlight, Phase};
use crate::notices::Notices;
use crate::protocol::EventKind as FileEvent;
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use names::PathKind;
use notify::{EventKind, RecursiveMode, Watcher as _};
use settle::{Meta, Settler, Verdict};
use std::collections::{HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Batches of event paths waiting for the watcher thread. Full → rescan, never drop.
const EVENT_QUEUE: usize = 4096;

/// A settled file for the ingest workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettledFile {
    pub group: String,
    pub name: String,
    pub path: PathBuf,
}

/// An ingest worker finished a file.
#[derive(Debug, Clone)]
pub struct Done {
    pub path: PathBuf,
    /// The file is still in the drop folder (it changed while being stored): look again.
    pub left_in_place: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot watch the drop root {root}: {message}")]
    Watch { root: PathBuf, message: String },
    #[error("cannot start the watcher thread: {0}")]
    Thread(std::io::Error),
}

/// What the watcher thread needs.
pub struct WatchContext {
    pub root: PathBuf,
    pub settle: Duration,
    /// When given, `ingest.settle_ms` follows config reloads (from the next event of a file).
    pub live: Option<crate::config::LiveConfig>,
    pub catalog: Catalog,
    pub in_flight: InFlight,
    pub notices: Notices,
    pub events: Events,
}

/// The running watcher. Dropping it (or calling `stop`) ends the thread.
pub struct WatchHandle {
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
    // Kept alive for as long as the watch runs; dropping it removes the inotify watches.
    _watcher: notify::RecommendedWatcher,
}

impl WatchHandle {
    /// Stop watching and wait for the thread. Files already handed to the ingest workers are
    /// theirs to finish.
    pub fn stop(mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Start watching `ctx.root`; settled files go to `ingest`, finished ones come back on `done`.
pub fn start(
    ctx: WatchContext,
    ingest: Sender<SettledFile>,
    done: Receiver<Done>,
    done_tx: Sender<Done>,
) -> Result<WatchHandle, WatchError> {
    let (events_tx, events) = bounded::<Vec<PathBuf>>(EVENT_QUEUE);
    // Capacity 1: a pending rescan already covers every later request for one.
    let (rescan_tx, rescan) = bounded::<()>(1);
    let (stop_tx, stop) = bounded::<()>(1);

    let handler_rescan = rescan_tx.clone();
    let handler_notices = ctx.notices.clone();
    let mut watcher = notify::RecommendedWatcher::new(
        move |result: notify::Result<notify::Event>| match result {
            Ok(event) => forward(event, &events_tx, &handler_rescan),
            Err(error) => {
                handler_notices.report(format!("file watcher error: {error}; rescanning"));
                let _ = handler_rescan.try_send(());
            }
        },
        notify::Config::default().with_follow_symlinks(false),
    )
    .map_err(|e| watch_error(&ctx.root, e))?;
    watcher
        .watch(&ctx.root, RecursiveMode::Recursive)
        .map_err(|e| watch_error(&ctx.root, e))?;

    // The start-up scan: files dropped while the daemon was down.
    let _ = rescan_tx.try_send(());
    let state = WatchState {
        settler: Settler::new(ctx.settle),
        reloads: ctx.live.as_ref().map(|live| live.subscribe()),
        ctx,
        busy: HashSet::new(),
        ready: VecDeque::new(),
        known_groups: HashSet::new(),
        ingest,
        done_tx,
    };
    let thread = std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || state.run(events, rescan, done, stop))
        .map_err(WatchError::Thread)?;
    Ok(WatchHandle {
        stop: stop_tx,
        thread: Some(thread),
        _watcher: watcher,
    })
}

/// Pass one event's paths to the watcher thread without ever blocking notify's thread.
///
/// Policy: a full queue must not lose a file, so it becomes a rescan of the whole root; so does
/// the kernel's overflow flag. A rescan already pending covers every later request for one.
fn forward(event: notify::Event, events: &Sender<Vec<PathBuf>>, rescan: &Sender<()>) {
    if event.need_rescan() {
        let _ = rescan.try_send(());
        return;
    }
    if matches!(event.kind, EventKind::Access(_)) || event.paths.is_empty() {
        return;
    }
    match events.try_send(event.paths) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            let _ = rescan.try_send(());
        }
        // The watcher thread is stopping; nothing is waiting for events any more.
        Err(TrySendError::Disconnected(_)) => {}
    }
}

fn watch_error(root: &Path, error: notify::Error) -> WatchError {
    let message = match &error.kind {
        notify::ErrorKind::MaxFilesWatch => "the system limit on inotify watches is reached; \
             raise it with `sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d/)"
            .to_string(),
        _ => error.to_string(),
    };
    WatchError::Watch {
        root: root.to_path_buf(),
        message,
    }
}

struct WatchState {
    ctx: WatchContext,
    settler: Settler,
    /// Wakes when the config is reloaded, to take a new settle window.
    reloads: Option<tokio::sync::watch::Receiver<std::sync::Arc<crate::config::Config>>>,
    /// Paths handed to an ingest worker and not yet done.
    busy: HashSet<PathBuf>,
    /// Settled files waiting for a free ingest worker.
    ready: VecDeque<SettledFile>,
    known_groups: HashSet<String>,
    ingest: Sender<SettledFile>,
    /// Only used to keep the `done` channel open while the watcher lives.
    #[allow(dead_code)]
    done_tx: Sender<Done>,
}

impl WatchState {
    fn run(
        mut self,
        events: Receiver<Vec<PathBuf>>,
        rescan: Receiver<()>,
        done: Receiver<Done>,
        stop: Receiver<()>,
    ) {
        loop {
            self.follow_reload();
            self.dispatch();
            let timeout = self
                .settler
                .next_deadline()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_secs(3600));
            select! {
                recv(stop) -> _ => break,
                recv(events) -> paths => match paths {
                    Ok(paths) => {
                        for path in paths {
                            self.on_path(&path);
                        }
                    }
                    Err(_) => break,
                },
                recv(rescan) -> _ => self.scan(),
                recv(done) -> finished => {
                    if let Ok(finished) = finished {
                        self.busy.remove(&finished.path);
                        if finished.left_in_place {
                            self.on_path(&finished.path);
                        }
                    }
                }
                default(timeout) => {}
            }
            self.check_due();
        }
        tracing::debug!("watcher stopped");
    }

    /// Take a reloaded settle window; files already waiting keep the deadline they have.
    fn follow_reload(&mut self) {
        let Some(reloads) = self.reloads.as_mut() else {
            return;
        };
        if reloads.has_changed().unwrap_or(false) {
            let settle_ms = reloads.borrow_and_update().ingest.settle_ms;
            self.settler.set_window(Duration::from_millis(settle_ms));
        }
    }

    /// Hand settled files to free workers without ever blocking the watcher.
    fn dispatch(&mut self) {
        while let Some(file) = self.ready.pop_front() {
            match self.ingest.try_send(file) {
                Ok(()) => {}
                Err(TrySendError::Full(file)) => {
                    self.ready.push_front(file);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => break,
            }
        }
    }

    /// Something happened at `path` (an event, or the scan found it).
    fn on_path(&mut self, path: &Path) {
        // A reload while the thread waited in `select!` applies to this event already.
        self.follow_reload();
        let meta = std::fs::symlink_metadata(path).ok();
        if meta.as_ref().is_some_and(|m| m.file_type().is_symlink()) {
            if path.strip_prefix(&self.ctx.root).is_ok() {
                self.ctx.notices.report_once(
                    &format!("symlink:{}", path.display()),
                    format!(
                        "{} is a symbolic link; links are never followed",
                        path.display()
                    ),
                );
            }
            return;
        }
        let is_dir = meta.as_ref().is_some_and(|m| m.is_dir());
        match names::classify(&self.ctx.root, path, is_dir) {
            PathKind::Group(name) => {
                self.ensure_group(&name);
                // Files created before the new folder's watch was in place.
                self.scan_group(path, &name);
            }
            PathKind::GroupFile { group, name } => self.track(path, &group, &name, meta),
            PathKind::RootFile(p) => self.ctx.notices.report_once(
                &format!("root:{}", p.display()),
                format!(
                    "{} is directly in the drop root and is left alone; put files in a group \
                     folder such as {}",
                    p.display(),
                    self.ctx.root.join("<group>").display()
                ),
            ),
            PathKind::InvalidGroup(name) => self.ctx.notices.report_once(
                &format!("group:{name}"),
                format!(
                    "folder {} is ignored: {}",
                    self.ctx.root.join(&name).display(),
                    names::group_name_problem(&name)
                ),
            ),
            PathKind::Nested(p) if meta.is_some() => self.ctx.notices.report_once(
                &format!("nested:{}", p.display()),
                format!(
                    "{} is inside a sub-folder of a group and is left alone; only files \
                     directly in a group folder are ingested",
                    p.display()
                ),
            ),
            PathKind::Nested(_) | PathKind::Ignored | PathKind::Root | PathKind::Outside => {}
        }
    }

    fn track(&mut self, path: &Path, group: &str, name: &str, meta: Option<std::fs::Metadata>) {
        if self.busy.contains(path) {
            // The worker reports back whether it left the file in place; look again then.
            return;
        }
        match meta {
            Some(m) if m.is_file() => {
                if self.settler.touch(path, Some(to_meta(&m)), Instant::now()) {
                    self.ctx.events.file(FileEvent::Seen, group, name);
                }
                self.ctx.in_flight.set(group, name, Phase::Pending);
            }
            Some(_) => {}
            None => {
                // Gone (renamed away, deleted): let the settler notice at its deadline.
                if self.settler.contains(path) {
                    self.settler.touch(path, None, Instant::now());
                }
            }
        }
    }

    fn check_due(&mut self) {
        let now = Instant::now();
        for path in self.settler.due(now) {
            let Some((group, name)) = group_and_name(&self.ctx.root, &path) else {
                self.settler.forget(&path);
                continue;
            };
            let meta = std::fs::symlink_metadata(&path)
                .ok()
                .filter(|m| m.is_file());
            match self.settler.confirm(&path, meta.as_ref().map(to_meta), now) {
                Verdict::Settled => {
                    // The writer is done when the file can also be opened and read.
                    if let Err(error) = std::fs::File::open(&path) {
                        tracing::debug!(path = %path.display(), "settled but not readable yet: {error}");
                        if let Some(m) = &meta {
                            self.settler.retry_later(&path, to_meta(m), now);
                        }
                        continue;
                    }
                    self.ctx.in_flight.set(&group, &name, Phase::Validating);
                    self.ctx.events.file(FileEvent::Settled, &group, &name);
                    self.busy.insert(path.clone());
                    self.ready.push_back(SettledFile { group, name, path });
                }
                Verdict::Vanished => self.ctx.in_flight.clear(&group, &name),
                Verdict::Changed | Verdict::NotDue | Verdict::Unknown => {}
            }
        }
    }

    fn ensure_group(&mut self, name: &str) {
        if self.known_groups.contains(name) {
            return;
        }
        let owned = name.to_string();
        match self
            .ctx
            .catalog
            .call_blocking(move |db| db.ensure_group(&owned))
        {
            Ok(created) => {
                if created {
                    tracing::info!(group = name, "new group");
                }
                self.known_groups.insert(name.to_string());
            }
            Err(error) => self
                .ctx
                .notices
                .report(format!("cannot record group {name:?}: {error}")),
        }
    }

    /// The whole drop root: at start-up and whenever an event may have been lost.
    fn scan(&mut self) {
        let started = Instant::now();
        let entries = match std::fs::read_dir(&self.ctx.root) {
            Ok(entries) => entries,
            Err(error) => {
                self.ctx.notices.report(format!(
                    "cannot read the drop root {}: {error}",
                    self.ctx.root.display()
                ));
                return;
            }
        };
        for entry in entries.flatten() {
            self.on_path(&entry.path());
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            tracked = self.settler.len(),
            "scanned the drop root"
        );
    }

    fn scan_group(&mut self, dir: &Path, group: &str) {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(error) => {
                self.ctx.notices.report(format!(
                    "cannot read group folder {}: {error}",
                    dir.display()
                ));
                return;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if meta.is_dir() || meta.file_type().is_symlink() {
                // Hidden folders (.rejected) are ours; others are reported by `on_path`.
                self.on_path(&path);
                continue;
            }
            if let PathKind::GroupFile { name, .. } = names::classify(&self.ctx.root, &path, false)
            {
                self.track(&path, group, &name, Some(meta));
            }
        }
    }
}

fn to_meta(m: &std::fs::Metadata) -> Meta {
    Meta {
        size: m.size(),
        mtime: m.modified().unwrap_or(std::time::UNIX_EPOCH),
    }
}

fn group_and_name(root: &Path, path: &Path) -> Option<(String, String)> {
    match names::classify(root, path, false) {
        PathKind::GroupFile { group, name } => Some((group, name)),
        _ => None,
    }
}

/// A channel's two ends.
pub type Channel<T> = (Sender<T>, Receiver<T>);

/// The channels between the watcher and the ingest workers.
pub fn channels(workers: usize) -> (Channel<SettledFile>, Channel<Done>) {
    // One waiting file per worker: the rest wait in the watcher's own queue, where a stop
    // leaves them in the drop folder untouched.
    (bounded(workers.max(1)), unbounded())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, Flag};

    fn created(path: &str) -> notify::Event {
        notify::Event::new(EventKind::Create(CreateKind::File)).add_path(PathBuf::from(path))
    }

    #[test]
    fn a_full_event_queue_asks_for_a_rescan_instead_of_dropping() {
        let (events_tx, events) = bounded(2);
        let (rescan_tx, rescan) = bounded(1);
        forward(created("/d/g/1.csv"), &events_tx, &rescan_tx);
        forward(created("/d/g/2.csv"), &events_tx, &rescan_tx);
        assert!(rescan.is_empty());
        forward(created("/d/g/3.csv"), &events_tx, &rescan_tx);
        forward(created("/d/g/4.csv"), &events_tx, &rescan_tx);
        assert_eq!(events.len(), 2);
        assert_eq!(
            rescan.len(),
            1,
            "one pending rescan covers both lost events"
        );
    }

    #[test]
    fn the_kernel_overflow_flag_asks_for_a_rescan() {
        let (events_tx, events) = bounded(8);
        let (rescan_tx, rescan) = bounded(1);
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        forward(overflow, &events_tx, &rescan_tx);
        assert_eq!(rescan.len(), 1);
        assert!(events.is_empty());
    }

    #[test]
    fn access_events_are_not_changes() {
        let (events_tx, events) = bounded(8);
        let (rescan_tx, _rescan) = bounded(1);
        let read = notify::Event::new(EventKind::Access(notify::event::AccessKind::Read))
            .add_path(PathBuf::from("/d/g/a.csv"));
        forward(read, &events_tx, &rescan_tx);
        assert!(events.is_empty());
    }
}
