//! Finding dropped files: a `notify` watcher on the drop root, a full scan at start-up and after
//! any lost event, and the settle rule that decides when a writer is done.
//!
//! The watcher runs on its own thread (it stats files, which may block on slow disks) and hands
//! settled files to the ingest workers. It must never lose a file: when the event channel is
//! full or the kernel reports an overflow, the root is marked for a rescan instead of dropping
//! anything. It never follows symlinks and never touches hidden or temporary names.

pub mod inflight;
pub mod names;
pub mod settle;
pub mod writers;

use crate::catalog::Catalog;
use crate::dirs::Identity;
use crate::dirs::{self, Dir, DirError};
use crate::events::Events;
use crate::notices::Notices;
use crate::protocol::EventKind as FileEvent;
use crate::watch::inflight::{InFlight, Phase};
use crossbeam_channel::{Receiver, Sender, TrySendError, bounded, select, unbounded};
use names::PathKind;
use notify::{EventKind, RecursiveMode, Watcher as _};
use settle::{Meta, Settler, Verdict};
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use writers::Writers;

/// Batches of event paths waiting for the watcher thread. Full → rescan, never drop.
const EVENT_QUEUE: usize = 4096;

/// A settled file for the ingest workers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettledFile {
    pub group: String,
    pub name: String,
    /// For messages and the watcher's bookkeeping; never opened by path.
    pub path: PathBuf,
    /// The identity (dev, ino, size, mtime) that settled, read through the group folder's
    /// handle. The ingest worker takes only this file: if the name now holds another, it is
    /// settled anew. `None` only for callers that hand files in directly (benchmarks).
    pub settled: Option<Identity>,
    /// The name's real bytes when they are not UTF-8 (`name` is then [`names::safe_name`]):
    /// such a file is only ever rejected.
    pub raw: Option<std::ffi::OsString>,
    /// Writes seen at the path when it settled (see [`writers::Writers::writes`]): the original
    /// is removed only if none was seen since.
    pub writes: u64,
}

impl SettledFile {
    /// The name as it is on disk.
    pub fn file_name(&self) -> &std::ffi::OsStr {
        self.raw
            .as_deref()
            .unwrap_or(std::ffi::OsStr::new(&self.name))
    }
}

/// An ingest worker finished a file.
#[derive(Debug, Clone)]
pub struct Done {
    pub path: PathBuf,
    pub next: Next,
}

/// What the watcher does next with a finished file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Nothing until the next event or scan finds it.
    Forget,
    /// It is still in the drop folder and was written meanwhile: settle it again.
    LookAgain,
    /// A transient failure (catalog, disk, storage): try again after a backoff, pending in
    /// `ls` with this reason.
    RetryLater(String),
}

/// First wait before a file that failed for a transient reason is tried again; it doubles
/// with each failure up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between tries of a file that keeps failing for a transient reason.
pub const RETRY_MAX: Duration = Duration::from_secs(60);

/// The wait before try number `attempt + 1` (capped doubling: 1 s, 2 s, 4 s, … 60 s).
pub fn retry_delay(attempt: u32) -> Duration {
    RETRY_FIRST
        .saturating_mul(1u32 << attempt.min(16))
        .min(RETRY_MAX)
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
    pub live: Option<crate::service::live::LiveConfig>,
    pub catalog: Catalog,
    pub in_flight: InFlight,
    pub notices: Notices,
    pub events: Events,
}

/// How often the watcher checks that the drop root it watches is still the folder at its path
/// (a removed, moved or replaced root sends no event the watch can still deliver).
const ROOT_CHECK: Duration = Duration::from_secs(1);

/// The running watcher. Dropping it (or calling `stop`) ends the thread.
pub struct WatchHandle {
    stop: Sender<()>,
    thread: Option<std::thread::JoinHandle<()>>,
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
    let handler_writers = ctx.in_flight.writers().clone();
    let mut watcher = notify::RecommendedWatcher::new(
        move |result: notify::Result<notify::Event>| match result {
            Ok(event) => forward(event, &events_tx, &handler_rescan, &handler_writers),
            Err(error) => {
                handler_notices.report(format!("file watcher error: {error}; rescanning"));
                let _ = handler_rescan.try_send(());
            }
        },
        notify::Config::default().with_follow_symlinks(false),
    )
    .map_err(|e| watch_error(&ctx.root, e))?;
    // The root's own entries only: each group folder gets a watch of its own (`watch_group`).
    watcher
        .watch(&ctx.root, RecursiveMode::NonRecursive)
        .map_err(|e| watch_error(&ctx.root, e))?;

    // The start-up scan: files dropped while the daemon was down.
    let _ = rescan_tx.try_send(());
    let root_id = folder_id(&ctx.root);
    let state = WatchState {
        watcher,
        root_id,
        root_checked: Instant::now(),
        lost_groups: HashSet::new(),
        settler: Settler::new(ctx.settle),
        reloads: ctx.live.as_ref().map(|live| live.subscribe()),
        ctx,
        busy: HashSet::new(),
        ready: VecDeque::new(),
        known_groups: HashSet::new(),
        unwatched: HashSet::new(),
        retries: HashMap::new(),
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
    })
}

/// Pass one event's paths to the watcher thread without ever blocking notify's thread.
///
/// Policy: a full queue must not lose a file, so it becomes a rescan of the whole root; so does
/// the kernel's overflow flag. A rescan already pending covers every later request for one.
fn forward(
    event: notify::Event,
    events: &Sender<Vec<PathBuf>>,
    rescan: &Sender<()>,
    writers: &Writers,
) {
    if event.need_rescan() {
        // Closes may be among the lost events: no writer is trusted to be open any more.
        writers.forget_all();
        let _ = rescan.try_send(());
        return;
    }
    writers.on_event(&event);
    // A writer's close matters (a file waiting for it can settle now); other accesses do not.
    let closed = matches!(
        event.kind,
        EventKind::Access(notify::event::AccessKind::Close(
            notify::event::AccessMode::Write
        ))
    );
    if (matches!(event.kind, EventKind::Access(_)) && !closed) || event.paths.is_empty() {
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
    WatchError::Watch {
        root: root.to_path_buf(),
        message: watch_problem(error),
    }
}

/// Why a watch could not be added, with the fix when there is one.
fn watch_problem(error: notify::Error) -> String {
    match &error.kind {
        notify::ErrorKind::MaxFilesWatch => "the system limit on inotify watches is reached; \
             raise it with `sysctl fs.inotify.max_user_watches=524288` (and in /etc/sysctl.d/)"
            .to_string(),
        _ => error.to_string(),
    }
}

struct WatchState {
    ctx: WatchContext,
    // Owned by the thread so it can watch the root again; dropping it removes the watches.
    watcher: notify::RecommendedWatcher,
    /// (dev, ino) of the drop root being watched; `None` while it is lost.
    root_id: Option<(u64, u64)>,
    root_checked: Instant,
    /// Group folders that were removed or moved away, to say so when they are back.
    lost_groups: HashSet<String>,
    settler: Settler,
    /// Wakes when the config is reloaded, to take a new settle window.
    reloads: Option<tokio::sync::watch::Receiver<std::sync::Arc<crate::config::Config>>>,
    /// Paths handed to an ingest worker and not yet done.
    busy: HashSet<PathBuf>,
    /// Settled files waiting for a free ingest worker.
    ready: VecDeque<SettledFile>,
    known_groups: HashSet<String>,
    /// Group folders whose watch could not be added (the system's limit): tried again every
    /// `ROOT_CHECK`, and scanned once they are watched.
    unwatched: HashSet<String>,
    /// Files that failed for a transient reason: (failures so far, when to try again; `None`
    /// while the try is under way).
    retries: HashMap<PathBuf, (u32, Option<Instant>)>,
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
            let next_retry = self.retries.values().filter_map(|(_, due)| *due).min();
            let timeout = [self.settler.next_deadline(), next_retry]
                .into_iter()
                .flatten()
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()))
                .unwrap_or(ROOT_CHECK)
                .min(ROOT_CHECK);
            select! {
                recv(stop) -> _ => break,
                recv(events) -> paths => match paths {
                    Ok(paths) => {
                        for path in paths {
                            if path == self.ctx.root {
                                // The root itself was removed or moved: look now.
                                self.check_root();
                            }
                            self.on_path(&path);
                        }
                    }
                    Err(_) => break,
                },
                recv(rescan) -> _ => self.scan(),
                recv(done) -> finished => {
                    if let Ok(finished) = finished {
                        self.finished(finished);
                    }
                }
                default(timeout) => {}
            }
            self.check_due();
            self.retry_due();
            if self.root_checked.elapsed() >= ROOT_CHECK {
                self.check_root();
                self.watch_again();
            }
        }
        tracing::debug!("watcher stopped");
    }

    /// Is the watched root still the folder at its path? If it was removed, moved or replaced,
    /// say so, and watch it again (and rescan) as soon as a folder is there.
    fn check_root(&mut self) {
        self.root_checked = Instant::now();
        let now = folder_id(&self.ctx.root);
        if now.is_some() && now == self.root_id {
            return;
        }
        let root = self.ctx.root.clone();
        if self.root_id.take().is_some() {
            let _ = self.watcher.unwatch(&root);
            // The root is watched alone: its groups' watches go one by one, or they would
            // follow the old folders wherever they were moved, under the same paths.
            for group in self.known_groups.iter().chain(&self.lost_groups) {
                let _ = self.watcher.unwatch(&root.join(group));
            }
            self.unwatched.clear();
            self.ctx.notices.report(format!(
                "the drop root {} was removed, moved or replaced; its watch is lost until a \
                 folder is there again",
                root.display()
            ));
        }
        if now.is_none() {
            return;
        }
        match self.watcher.watch(&root, RecursiveMode::NonRecursive) {
            Ok(()) => {
                self.root_id = now;
                self.ctx.notices.report(format!(
                    "the drop root {} is watched again; rescanning it",
                    root.display()
                ));
                self.known_groups.clear();
                self.scan();
            }
            Err(error) => self.ctx.notices.report_once(
                &format!("rewatch:{}", root.display()),
                format!("{}", watch_error(&root, error)),
            ),
        }
    }

    /// An ingest worker is done with a file.
    fn finished(&mut self, finished: Done) {
        let path = finished.path;
        self.busy.remove(&path);
        match finished.next {
            Next::Forget => {
                self.retries.remove(&path);
            }
            Next::LookAgain => {
                self.retries.remove(&path);
                self.on_path(&path);
            }
            Next::RetryLater(reason) => {
                let Some((group, name, _)) = group_and_name(&self.ctx.root, &path) else {
                    return;
                };
                let failures = self.retries.get(&path).map_or(0, |(n, _)| *n);
                let delay = retry_delay(failures);
                self.retries
                    .insert(path.clone(), (failures + 1, Some(Instant::now() + delay)));
                let shown = format!("{reason}; trying again in {} s", delay.as_secs().max(1));
                self.ctx.in_flight.set_waiting(&group, &name, &shown);
            }
        }
    }

    /// Files whose backoff ended: settle them again (they are taken at once if unchanged).
    fn retry_due(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .retries
            .iter()
            .filter(|(path, (_, at))| at.is_some_and(|at| at <= now) && !self.busy.contains(*path))
            .map(|(path, _)| path.clone())
            .collect();
        for path in due {
            if std::fs::symlink_metadata(&path).is_err() {
                // Gone meanwhile: nothing waits any more.
                self.retries.remove(&path);
                if let Some((group, name, _)) = group_and_name(&self.ctx.root, &path) {
                    self.ctx.in_flight.clear(&group, &name);
                }
                continue;
            }
            if let Some(entry) = self.retries.get_mut(&path) {
                // Not due again until it fails again (then `finished` sets the next time).
                entry.1 = None;
            }
            self.on_path(&path);
        }
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
                if self.lost_groups.remove(&name) {
                    self.ctx.notices.report(format!(
                        "group folder {} is back; rescanning it",
                        path.display()
                    ));
                }
                self.ensure_group(&name);
                if self.watch_group(path, &name) {
                    // Files created before the folder's watch was in place.
                    self.scan_group(path, &name);
                }
            }
            // Only through a real group folder: a watch that a folder swapped for a link made
            // notify follow reports the link's target under the group's path, and
            // `symlink_metadata` would look through the link.
            PathKind::GroupFile { group, .. } | PathKind::OddName { group, .. }
                if folder_id(&self.ctx.root.join(&group)).is_none() => {}
            PathKind::GroupFile { group, name } => {
                self.track(path, &group, &name, Found::of(meta.as_ref()))
            }
            PathKind::OddName { group, raw } => self.track(
                path,
                &group,
                &names::safe_name(&raw),
                Found::of(meta.as_ref()),
            ),
            // Gone: a group folder removed or moved away is reported (its files are not
            // watched until it is back); anything else that is gone needs no word.
            PathKind::RootFile(p) if meta.is_none() => {
                let name = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default()
                    .to_string();
                if self.known_groups.remove(&name) {
                    self.ctx.notices.report(format!(
                        "group folder {} was removed or moved away; watching for it to come \
                         back",
                        p.display()
                    ));
                    self.lost_groups.insert(name);
                }
            }
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
            // Only a group folder's own entries are watched and scanned: what reaches here is
            // a folder made inside a group folder.
            PathKind::Nested(p) if meta.is_some() => self.ctx.notices.report_once(
                &format!("nested:{}", p.display()),
                if is_dir {
                    format!(
                        "{} is a folder inside a group folder; nothing in it is ingested or \
                         watched: only files directly in a group folder are",
                        p.display()
                    )
                } else {
                    format!(
                        "{} is inside a sub-folder of a group and is left alone; only files \
                         directly in a group folder are ingested",
                        p.display()
                    )
                },
            ),
            PathKind::Nested(_) | PathKind::Ignored | PathKind::Root | PathKind::Outside => {}
        }
    }

    fn track(&mut self, path: &Path, group: &str, name: &str, found: Found) {
        if self.busy.contains(path) {
            // The worker reports back whether it left the file in place; look again then.
            return;
        }
        match found {
            Found::File(meta) => {
                if self.settler.touch(path, Some(meta), Instant::now()) {
                    self.ctx.events.file(FileEvent::Seen, group, name);
                }
                self.ctx.in_flight.set(group, name, Phase::Pending);
            }
            Found::Other => {}
            Found::Gone => {
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
            let Some((group, name, raw)) = group_and_name(&self.ctx.root, &path) else {
                self.settler.forget(&path);
                continue;
            };
            let on_disk = raw.clone().unwrap_or_else(|| name.clone().into());
            // Through handles, never by path: a group folder swapped for a link is not looked
            // into, and what settles is the file the ingest worker must find.
            let group_dir = Dir::open(&self.ctx.root).and_then(|root| root.child(&group));
            let stat = group_dir
                .as_ref()
                .ok()
                .and_then(|dir| dir.stat(&on_disk).ok())
                .filter(dirs::is_file);
            match self
                .settler
                .confirm(&path, stat.as_ref().map(stat_meta), now)
            {
                Verdict::Settled => {
                    let (Ok(dir), Some(stat)) = (&group_dir, stat) else {
                        continue;
                    };
                    if self.ctx.in_flight.writers().is_open(&path) {
                        // Written and not closed: a writer that paused is not done. Its
                        // close-write event settles it anew.
                        tracing::debug!(path = %path.display(), "settled but still open for writing");
                        self.settler.retry_later(&path, stat_meta(&stat), now);
                        continue;
                    }
                    // The writer is done when the file can also be opened and read.
                    if let Err(error) = dir.open_read(&on_disk) {
                        tracing::debug!(path = %path.display(), "settled but not readable yet: {error}");
                        self.settler.retry_later(&path, stat_meta(&stat), now);
                        continue;
                    }
                    self.ctx.in_flight.set(&group, &name, Phase::Validating);
                    self.ctx.events.file(FileEvent::Settled, &group, &name);
                    self.busy.insert(path.clone());
                    let writes = self.ctx.in_flight.writers().writes(&path);
                    self.ready.push_back(SettledFile {
                        group,
                        name,
                        path,
                        settled: Some(Identity::of_stat(&stat)),
                        raw,
                        writes,
                    });
                }
                Verdict::Vanished => {
                    self.retries.remove(&path);
                    self.ctx.in_flight.clear(&group, &name);
                }
                Verdict::Changed | Verdict::NotDue | Verdict::Unknown => {}
            }
        }
    }

    fn ensure_group(&mut self, name: &str) {
        if self.known_groups.contains(name) {
            return;
        }
        let owned = name.to_string();
        match self.ctx.catalog.ensure_group_blocking(owned) {
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

    /// Watch the entries of group folder `dir`, before it is scanned: every file is then found
    /// by the scan or by an event. Not left to notify's recursive mode, which adds a new
    /// folder's watch only after it has handed on the folder's creation: a file moved in
    /// between the scan and that watch was never seen. Not recursive either: nothing in a
    /// sub-folder is ingested, and a dropper's tree of folders must not use up the watches the
    /// system allows the daemon's user. Watching again a folder already watched changes
    /// nothing. Answers whether the folder may be scanned: it is a real folder, watched, or
    /// left for `watch_again` when the system refused the watch.
    ///
    /// inotify follows a link at the watched path, and notify does not ask it not to. The
    /// folder's identity is taken before and after the watch is added; if the path no longer
    /// leads to that real folder, the watch is taken off (and events that arrive meanwhile
    /// for files under a group path that is not a real folder are ignored, `on_path`).
    fn watch_group(&mut self, dir: &Path, group: &str) -> bool {
        let Some(before) = folder_id(dir) else {
            return false;
        };
        if let Err(error) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
            let gone = match &error.kind {
                notify::ErrorKind::PathNotFound => true,
                notify::ErrorKind::Io(e) => e.kind() == std::io::ErrorKind::NotFound,
                _ => false,
            };
            // A folder gone meanwhile needs no word: its removal is an event of its own.
            if !gone {
                self.ctx.notices.report_once(
                    &format!("watch:{}", dir.display()),
                    format!(
                        "cannot watch group folder {}: {}; it is tried again every second",
                        dir.display(),
                        watch_problem(error)
                    ),
                );
                self.unwatched.insert(group.to_string());
            }
            // A real folder still: scanned, so what is in it now is found.
            return !gone;
        }
        if folder_id(dir) != Some(before) {
            let _ = self.watcher.unwatch(dir);
            // Removed or replaced by a folder meanwhile: its events say so and it is watched
            // again. A link is worth a word.
            if std::fs::symlink_metadata(dir).is_ok_and(|m| m.file_type().is_symlink()) {
                self.ctx.notices.report_once(
                    &format!("swapped:{}", dir.display()),
                    format!(
                        "group folder {} was replaced by a symbolic link while it was being \
                         watched; links are never followed, and it is not watched until it is \
                         a folder again",
                        dir.display()
                    ),
                );
            }
            return false;
        }
        self.unwatched.remove(group);
        true
    }

    /// Try again the group folders whose watch could not be added; scan those now watched.
    fn watch_again(&mut self) {
        let waiting: Vec<String> = self.unwatched.iter().cloned().collect();
        for group in waiting {
            let dir = self.ctx.root.join(&group);
            if folder_id(&dir).is_none() {
                self.unwatched.remove(&group);
                continue;
            }
            if self.watch_group(&dir, &group) && !self.unwatched.contains(&group) {
                self.scan_group(&dir, &group);
            }
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

    /// The entries of group folder `group` (shown as `dir`), listed and described through the
    /// folder's handle, opened without following a link: a folder swapped for a link after it
    /// was checked is not listed, and no file is described through a link.
    fn scan_group(&mut self, dir: &Path, group: &str) {
        let listed = Dir::open(&self.ctx.root)
            .and_then(|root| root.child(group))
            .and_then(|handle| {
                let entries = handle.names().map_err(|source| DirError::Io {
                    path: dir.to_path_buf(),
                    about: "list",
                    source,
                })?;
                Ok((handle, entries))
            });
        let (handle, entries) = match listed {
            Ok(listed) => listed,
            // Gone, or no longer a folder: its own event says so (`on_path`).
            Err(DirError::Missing { .. } | DirError::Symlink { .. } | DirError::NotDir { .. }) => {
                return;
            }
            Err(error) => {
                self.ctx.notices.report(format!(
                    "cannot read group folder {}: {error}",
                    dir.display()
                ));
                return;
            }
        };
        for name in entries {
            let path = dir.join(&name);
            let Ok(st) = handle.stat(&name) else {
                continue;
            };
            let kind = rustix::fs::FileType::from_raw_mode(st.st_mode);
            if kind.is_dir() || kind.is_symlink() {
                // Hidden folders (.rejected) are ours; others are reported by `on_path`.
                self.on_path(&path);
                continue;
            }
            let found = if dirs::is_file(&st) {
                Found::File(stat_meta(&st))
            } else {
                Found::Other
            };
            match names::classify(&self.ctx.root, &path, false) {
                PathKind::GroupFile { name, .. } => self.track(&path, group, &name, found),
                PathKind::OddName { raw, .. } => {
                    self.track(&path, group, &names::safe_name(&raw), found)
                }
                _ => {}
            }
        }
    }
}

/// What is at a path the watcher tracks.
enum Found {
    /// A regular file, as it is now.
    File(Meta),
    /// Something else (a FIFO, a device): not taken, nothing to follow.
    Other,
    /// Nothing any more (renamed away, deleted).
    Gone,
}

impl Found {
    fn of(meta: Option<&std::fs::Metadata>) -> Self {
        match meta {
            Some(m) if m.is_file() => Found::File(to_meta(m)),
            Some(_) => Found::Other,
            None => Found::Gone,
        }
    }
}

fn to_meta(m: &std::fs::Metadata) -> Meta {
    Meta {
        size: m.size(),
        mtime: m.modified().unwrap_or(std::time::UNIX_EPOCH),
    }
}

/// (dev, ino) of the real folder at `path` (not a link), if there is one.
fn folder_id(path: &Path) -> Option<(u64, u64)> {
    std::fs::symlink_metadata(path)
        .ok()
        .filter(|m| m.is_dir())
        .map(|m| (m.dev(), m.ino()))
}

fn stat_meta(st: &rustix::fs::Stat) -> Meta {
    let nanos = u32::try_from(st.st_mtime_nsec).unwrap_or(0);
    let mtime = u64::try_from(st.st_mtime)
        .map(|secs| std::time::UNIX_EPOCH + Duration::new(secs, nanos))
        .unwrap_or(std::time::UNIX_EPOCH);
    Meta {
        size: u64::try_from(st.st_size).unwrap_or(0),
        mtime,
    }
}

/// Group, shown name and (if it is not UTF-8) the real name of a file in a group folder.
fn group_and_name(
    root: &Path,
    path: &Path,
) -> Option<(String, String, Option<std::ffi::OsString>)> {
    match names::classify(root, path, false) {
        PathKind::GroupFile { group, name } => Some((group, name, None)),
        PathKind::OddName { group, raw } => Some((group, names::safe_name(&raw), Some(raw))),
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
        let w = Writers::default();
        forward(created("/d/g/1.csv"), &events_tx, &rescan_tx, &w);
        forward(created("/d/g/2.csv"), &events_tx, &rescan_tx, &w);
        assert!(rescan.is_empty());
        forward(created("/d/g/3.csv"), &events_tx, &rescan_tx, &w);
        forward(created("/d/g/4.csv"), &events_tx, &rescan_tx, &w);
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
        let w = Writers::default();
        let overflow = notify::Event::new(EventKind::Other).set_flag(Flag::Rescan);
        forward(overflow, &events_tx, &rescan_tx, &w);
        assert_eq!(rescan.len(), 1);
        assert!(events.is_empty());
    }

    #[test]
    fn retries_back_off_by_doubling_up_to_a_minute() {
        let secs: Vec<u64> = (0..9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }

    #[test]
    fn a_writers_close_is_forwarded_and_remembered() {
        let (events_tx, events) = bounded(8);
        let (rescan_tx, _rescan) = bounded(1);
        let w = Writers::default();
        let path = PathBuf::from("/d/g/a.csv");
        let write = notify::Event::new(EventKind::Modify(notify::event::ModifyKind::Data(
            notify::event::DataChange::Any,
        )))
        .add_path(path.clone());
        forward(write, &events_tx, &rescan_tx, &w);
        assert!(w.is_open(&path));
        let close = notify::Event::new(EventKind::Access(notify::event::AccessKind::Close(
            notify::event::AccessMode::Write,
        )))
        .add_path(path.clone());
        forward(close, &events_tx, &rescan_tx, &w);
        assert!(!w.is_open(&path));
        assert_eq!(
            events.len(),
            2,
            "the write and the close both reach the watcher"
        );
    }

    #[test]
    fn access_events_are_not_changes() {
        let (events_tx, events) = bounded(8);
        let (rescan_tx, _rescan) = bounded(1);
        let w = Writers::default();
        let read = notify::Event::new(EventKind::Access(notify::event::AccessKind::Read))
            .add_path(PathBuf::from("/d/g/a.csv"));
        forward(read, &events_tx, &rescan_tx, &w);
        assert!(events.is_empty());
    }
}
