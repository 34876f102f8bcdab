//! The path of one settled file: validate, then store a new version or reject it.
//!
//! Order matters for "nothing lost": the file is copied into the storage folder first and
//! validated there, so we validate exactly the bytes we keep (the copy is fsynced while it is
//! read, and before the catalog hears of it); its version is reserved
//! in the catalog, renamed into place, marked ready, and only then is the drop original
//! removed, and only if it is still the file we read. Rejected originals move to
//! `<group>/.rejected/` beside a one-sentence `.error.txt`.
//!
//! Runs on ingest worker threads (blocking I/O); talks to the catalog through its handle.

pub mod columns;
pub mod formats;
pub mod isolate;
pub mod pause;
pub mod recover;
pub mod rejected;
pub mod store;

use crate::catalog::{Accepted, Catalog, Decision, Rejected};
use crate::config::Config;
use crate::dirs::{Dir, DirError};
use crate::identity::{Actor, Resolve, Via};
use crate::notices::Notices;
use crate::service::live::LiveConfig;
use crate::watch::inflight::InFlight;
use crate::watch::names::{MAX_SOURCE_NAME, safe_name};
use crate::watch::{Done, Next, SettledFile};
use crossbeam_channel::{Receiver, Sender};
use formats::Format;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use store::Identity;

/// What happened to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored as a new version.
    Accepted { version: String },
    /// Same content as the newest version; the drop was removed.
    Unchanged { version: String },
    /// Moved to `.rejected/`.
    Rejected { reason: String },
    /// Not ours to take (vanished, a symbolic link on the way, already rejected): left as it
    /// is until the next event or scan finds it.
    Skipped { why: String },
    /// A transient failure (catalog, disk full, I/O error, storage trouble): left in place
    /// and tried again with a backoff, pending in `ls` with this reason.
    Waiting { why: String },
    /// It changed while being read: the writer was not done. Left in place and watched again.
    Again { why: String },
}

/// Validates and stores settled files. Shared by the worker threads.
pub struct Ingestor {
    /// Limits are read from the live config once per file, so a reload applies to the next one.
    config: LiveConfig,
    catalog: Catalog,
    in_flight: InFlight,
    notices: Notices,
    /// Reads every file in a child process: the daemon never parses untrusted content itself.
    parse_worker: isolate::ParseWorker,
    /// The parse-worker places shared with previews; a worker holds one per file. None in
    /// programs with no previews (benchmarks, tests of the ingest path alone).
    parse_slots: Option<isolate::slots::ParseSlots>,
    /// Rejected files that could not be moved out of the drop folder, by identity, so a rescan
    /// does not reject them again and again. Short sections, no await: a std Mutex.
    stuck: Mutex<HashSet<(PathBuf, Identity)>>,
}

impl Ingestor {
    pub fn new(
        config: impl Into<LiveConfig>,
        catalog: Catalog,
        in_flight: InFlight,
        notices: Notices,
    ) -> Self {
        // The daemon's notices also show audit.jsonl trouble in `status`.
        crate::audit::report_failures_to(&notices);
        Self {
            config: config.into(),
            catalog,
            in_flight,
            notices,
            parse_worker: isolate::ParseWorker::current(),
            parse_slots: None,
            stuck: Mutex::new(HashSet::new()),
        }
    }

    /// Read files with `worker` instead of this program: for benchmarks and tests that run
    /// the ingest path inside a program that is not `ingestd`.
    pub fn with_parse_worker(mut self, worker: isolate::ParseWorker) -> Self {
        self.parse_worker = worker;
        self
    }

    /// Hold one of `slots` for each file, so previews and ingest share one cap on parse
    /// workers (`ingest.workers`).
    pub fn with_parse_slots(mut self, slots: isolate::slots::ParseSlots) -> Self {
        self.parse_slots = Some(slots);
        self
    }

    /// Limits that can change on reload apply to the next file.
    pub fn set_config(&self, config: Arc<Config>) {
        self.config.set(config);
    }

    fn config(&self) -> Arc<Config> {
        self.config.get()
    }

    /// Validate and store or reject one settled file. Never panics on bad input; every
    /// problem becomes an outcome.
    pub fn ingest(&self, file: &SettledFile) -> Outcome {
        let span = tracing::info_span!("ingest", group = %file.group, file = %file.name);
        let _entered = span.enter();
        let started = Instant::now();
        // The whole file counts as one parse worker: previews wait behind it, and it behind them.
        let slot = self.parse_slots.as_ref().map(|slots| slots.take_blocking());
        // In-process models wait between their steps while this is held.
        let _ingesting = crate::embed::priority::ingesting();
        let outcome = self.ingest_inner(file);
        drop(slot);
        self.in_flight.clear(&file.group, &file.name);
        let elapsed_ms = elapsed_ms(started);
        match &outcome {
            Outcome::Accepted { version } => tracing::info!(%version, elapsed_ms, "accepted"),
            Outcome::Unchanged { version } => tracing::info!(%version, "unchanged"),
            Outcome::Rejected { reason } => tracing::info!(%reason, "rejected"),
            Outcome::Skipped { why } => tracing::info!(%why, "skipped"),
            Outcome::Waiting { why } => tracing::info!(%why, "will be tried again"),
            Outcome::Again { why } => tracing::info!(%why, "not settled after all"),
        }
        outcome
    }

    fn ingest_inner(&self, file: &SettledFile) -> Outcome {
        let config = self.config();
        let path = &file.path;
        pause::before_open(&file.group, &file.name);
        // From here on the file is reached only through handles: the drop root, then its group
        // folder (never a link), then the file itself (never a link).
        let root = match Dir::open(&config.paths.drop_root) {
            Ok(root) => root,
            Err(e) => {
                self.notices.report(format!(
                    "cannot open the drop root: {e}; {} waits",
                    path.display()
                ));
                return waiting("the drop root cannot be opened");
            }
        };
        let group_dir = match root.child(&file.group) {
            Ok(dir) => dir,
            Err(e) if e.is_missing() => return skipped("its group folder disappeared"),
            Err(e @ (DirError::Symlink { .. } | DirError::NotDir { .. })) => {
                // Never traversed; reported once per file, since the attacker may retry.
                self.notices.report_once(
                    &format!("unsafe:{}", path.display()),
                    format!("{} is not read: {e}", path.display()),
                );
                return skipped("its group folder is not a real folder");
            }
            Err(e) => {
                self.notices
                    .report(format!("{} is not read: {e}", path.display()));
                return waiting("its group folder cannot be opened");
            }
        };
        let handle = match group_dir.open_read(file.file_name()) {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return skipped("it disappeared before it could be read");
            }
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                self.notices.report_once(
                    &format!("symlink:{}", path.display()),
                    format!(
                        "{} is a symbolic link; links are never followed",
                        path.display()
                    ),
                );
                return skipped("it is a symbolic link");
            }
            Err(e) => {
                self.notices.report(format!(
                    "{} cannot be opened and is left in place: {e}",
                    path.display()
                ));
                return waiting(&format!("cannot open: {e}"));
            }
        };
        let meta = match handle.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return skipped("not a regular file"),
            Err(e) => return waiting(&format!("cannot stat: {e}")),
        };
        let identity = Identity::of(&meta);
        if file.settled.is_some_and(|settled| settled != identity) {
            // Another file (or another content) than the one that settled: settle it anew.
            return Outcome::Again {
                why: "it was replaced after it settled; it will be taken when it settles".into(),
            };
        }
        if self
            .stuck
            .lock()
            .map(|s| s.contains(&(path.clone(), identity)))
            .unwrap_or(false)
        {
            return skipped("already rejected; it could not be moved to .rejected/");
        }
        let actor = Actor::from_uid(meta.uid(), Via::Drop);
        let size = meta.size();
        let base = Rejected {
            group: file.group.clone(),
            name: file.name.clone(),
            format: None,
            size: Some(size),
            reason: String::new(),
            actor: actor.clone(),
            kept_at: None,
        };
        let at = Place {
            file,
            dir: &group_dir,
            identity: &identity,
        };
        if meta.nlink() > 1 {
            // Another name of the same file may be one the dropper cannot read (a hard link to
            // someone else's file): never read it, never move it.
            let reason = format!(
                "it has {} hard links; a file with more than one name is not read, since the \
                 other names may belong to someone else (drop a copy instead)",
                meta.nlink()
            );
            return self.reject(&config, &at, base, reason, false);
        }
        if let Some(raw) = &file.raw {
            let reason = format!(
                "its name is not valid UTF-8 (its bytes: {}); rename it and drop it again",
                raw.as_encoded_bytes().escape_ascii()
            );
            return self.reject(&config, &at, base, reason, true);
        }
        if file.name.len() > MAX_SOURCE_NAME {
            let reason = format!(
                "its name is {} bytes long; at most {MAX_SOURCE_NAME} bytes are accepted, so the \
                 stored copy's name with its version number fits",
                file.name.len()
            );
            return self.reject(&config, &at, base, reason, true);
        }

        let extension = Path::new(&file.name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            None => {
                return self.reject(&config, &at, base, "it has no file extension".into(), true);
            }
            Some(ext) => match Format::from_extension(ext) {
                Some(format) if config.ingest.allowed_formats.iter().any(|f| f == ext) => format,
                _ => {
                    let reason = format!("files of type .{ext} are not accepted");
                    return self.reject(&config, &at, base, reason, true);
                }
            },
        };
        let base = Rejected {
            format: Some(format.as_str().to_string()),
            ..base
        };
        let max = config.ingest.max_file_size.as_u64();
        if size == 0 {
            return self.reject(&config, &at, base, "it is empty (0 bytes)".into(), true);
        }
        if size > max {
            let (mut shown, limit) = (human_size(size), human_size(max));
            if shown == limit {
                // Just over the limit: rounding would make the two look equal.
                shown = format!("{size} bytes");
            }
            let reason = format!("it is {shown}, larger than the {limit} limit");
            return self.reject(&config, &at, base, reason, true);
        }

        let (file_mode, folder_mode) = config.ingest.storage_modes();
        let storage = Dir::open(&config.paths.storage_root)
            .and_then(|root| root.child_or_create(&file.group, folder_mode))
            .and_then(|(group, _)| {
                let (tmp, _) = group.child_or_create(store::TMP_DIR, folder_mode)?;
                Ok((group, tmp))
            });
        let (store_group, tmp_dir) = match storage {
            Ok(dirs) => dirs,
            Err(e) => {
                self.notices.report(format!(
                    "cannot open the storage folder: {e}; {} stays in the drop folder",
                    path.display()
                ));
                return waiting("storage folder unavailable");
            }
        };
        let tmp_name = format!("{}.{}", uuid::Uuid::new_v4().simple(), format.as_str());
        let tmp_path = config
            .paths
            .storage_root
            .join(&file.group)
            .join(store::TMP_DIR)
            .join(&tmp_name);
        let copy_started = Instant::now();
        let copied = tmp_dir
            .create_new(&tmp_name, file_mode)
            .and_then(|mut out| {
                Ok(store::copy_limited(&handle, &mut out, max)?.map(|bytes| (bytes, out)))
            });
        let (bytes, copy) = match copied {
            Ok(Some(copied)) => copied,
            Ok(None) => {
                let _ = tmp_dir.unlink(&tmp_name);
                let reason = format!(
                    "it grew past the {} limit while being read",
                    human_size(max)
                );
                return self.reject(&config, &at, base, reason, true);
            }
            Err(e) => {
                let _ = tmp_dir.unlink(&tmp_name);
                self.notices.report(format!(
                    "cannot copy {} into storage: {e}; it stays in the drop folder",
                    path.display()
                ));
                return waiting("copy failed");
            }
        };
        let copy_ms = elapsed_ms(copy_started);
        drop(handle);
        if !identity.matches_in(&group_dir, file.file_name()) {
            // It changed while we read it: the writer was not done after all.
            let _ = tmp_dir.unlink(&tmp_name);
            return Outcome::Again {
                why: "it changed while being read; it will be taken when it settles".into(),
            };
        }

        let options_started = Instant::now();
        let mut options = isolate::read_options(&config.ingest);
        if matches!(format, Format::Xls | Format::Xlsx | Format::Xlsm) {
            let group = file.group.clone();
            options.sheet = self.catalog.preferred_sheet_blocking(group).unwrap_or(None);
        }
        // The source's own read options (`ingestctl set`) apply to every later version.
        let (group, name) = (file.group.clone(), file.name.clone());
        let set = match self.catalog.source_override_blocking(group, name) {
            Ok(set) => set,
            Err(e) => {
                let _ = tmp_dir.unlink(&tmp_name);
                self.notices.report(format!(
                    "catalog error while reading the options of {}: {e}; it stays in the drop \
                     folder",
                    path.display()
                ));
                return waiting("catalog error");
            }
        };
        if let Some(set) = &set {
            options.apply(&set.options);
        }
        let options_ms = elapsed_ms(options_started);
        let limits = isolate::Limits::of(&config.ingest);
        let read = || {
            self.parse_worker
                .extract(format, &tmp_path, &options, &limits)
        };
        let Alongside {
            read: extracted,
            read_ms: parse_ms,
            synced,
            sync_ms,
            hashed,
            hash_ms,
        } = alongside(&tmp_dir, &tmp_name, &copy, read);
        drop(copy);
        let extracted = match extracted {
            Ok(mut extracted) => {
                if let Some(set) = set {
                    extracted.reading.set = Some(set.options);
                    extracted.reading.set_by = set.set_by;
                }
                extracted
            }
            Err(isolate::Failure::Rejected(rejection)) => {
                let _ = tmp_dir.unlink(&tmp_name);
                return self.reject(&config, &at, base, rejection.reason, true);
            }
            Err(isolate::Failure::Worker(error)) => {
                // Our failure, not the file's: it stays in the drop folder for the next scan.
                let _ = tmp_dir.unlink(&tmp_name);
                self.notices.report(format!(
                    "cannot read {}: {error}; it stays in the drop folder",
                    path.display()
                ));
                return waiting("the parse worker failed");
            }
        };
        let sha256 = match synced.and(hashed) {
            Ok(sha256) => sha256,
            Err(e) => {
                let _ = tmp_dir.unlink(&tmp_name);
                self.notices.report(format!(
                    "cannot make the stored copy of {} durable or read it back: {e}; it stays \
                     in the drop folder",
                    path.display()
                ));
                return waiting("the stored copy could not be synced or hashed");
            }
        };
        let accepted = Accepted {
            group: file.group.clone(),
            name: file.name.clone(),
            format: format.as_str().to_string(),
            size: bytes,
            sha256,
            columns: extracted.columns,
            skipped: extracted.skipped,
            rows: extracted.rows,
            notes: extracted.notes,
            reading: extracted.reading,
            actor,
            drop_path: path.clone(),
            tmp_path: tmp_path.clone(),
        };
        let detail = format!(
            "{} {}, {} {}, {} bytes",
            accepted.rows,
            plural(accepted.rows, "row", "rows"),
            accepted.columns.len(),
            plural(accepted.columns.len() as u64, "column", "columns"),
            accepted.size
        );
        let storage_root = config.paths.storage_root.clone();
        let (group, name) = (accepted.group.clone(), accepted.name.clone());
        let in_flight = self.in_flight.clone();
        let store_started = Instant::now();
        let decided =
            self.catalog
                .decide_blocking(accepted.clone(), storage_root, move |decision| {
                    if matches!(decision, Decision::Unchanged { .. }) {
                        in_flight.clear(&group, &name);
                    }
                });
        let decision = match decided {
            Ok(decision) => decision,
            Err(e) => {
                let _ = tmp_dir.unlink(&tmp_name);
                self.notices.report(format!(
                    "catalog error while storing {}: {e}; it stays in the drop folder",
                    path.display()
                ));
                return waiting("catalog error");
            }
        };
        match decision {
            Decision::Unchanged { version } => {
                let _ = tmp_dir.unlink(&tmp_name);
                self.remove_original(&at);
                Outcome::Unchanged { version }
            }
            Decision::Reserved(reservation) => {
                // The name the catalog recorded; the folder is the handle opened above.
                let stored_name = reservation
                    .stored_path
                    .file_name()
                    .map(|n| n.to_os_string())
                    .unwrap_or_default();
                if let Err(e) = tmp_dir.rename_durable(&tmp_name, &store_group, &stored_name, true)
                {
                    let _ = tmp_dir.unlink(&tmp_name);
                    let id = reservation.id;
                    let _ = self.catalog.abandon_blocking(id);
                    self.notices.report(format!(
                        "cannot store {} as {}: {e}; it stays in the drop folder",
                        path.display(),
                        reservation.stored_path.display()
                    ));
                    return waiting("rename failed");
                }
                let version = reservation.label();
                let (group, name) = (reservation.group.clone(), reservation.name.clone());
                let in_flight = self.in_flight.clone();
                // Cleared with the commit, so no reader sees "validating" after the accepted
                // event went out.
                let cleared = move || in_flight.clear(&group, &name);
                let marked = self
                    .catalog
                    .mark_ready_blocking(reservation.clone(), detail, cleared);
                if let Err(e) = marked {
                    // The stored file and its reservation stay; start-up recovery completes it.
                    self.notices.report(format!(
                        "catalog error after storing {}: {e}; it will be completed at the next start",
                        reservation.stored_path.display()
                    ));
                    return skipped("catalog error after storing");
                }
                tracing::debug!(
                    copy_ms,
                    options_ms,
                    parse_ms,
                    sync_ms,
                    hash_ms,
                    store_ms = elapsed_ms(store_started),
                    "stored; how long each step took"
                );
                self.remove_original(&at);
                Outcome::Accepted { version }
            }
        }
    }

    fn remove_original(&self, at: &Place<'_>) {
        if self
            .in_flight
            .writers()
            .active_since(&at.file.path, at.file.writes)
        {
            // Written since it settled (or still open): its writer is not done, and removing
            // the name now would send the rest of its data to an unlinked file. It stays; its
            // close settles it again and the new content becomes the next version.
            tracing::info!(
                path = %at.file.path.display(),
                "a writer was seen since the copy; the original stays"
            );
            return;
        }
        match store::remove_if_same(at.dir, at.file.file_name(), at.identity) {
            Ok(store::Removal::Removed) => {}
            Ok(store::Removal::Changed | store::Removal::Restored) => tracing::info!(
                path = %at.file.path.display(),
                "the drop file changed after it was read; it will be taken again"
            ),
            Ok(store::Removal::KeptAs(kept)) => self.notices.report(format!(
                "a file moved onto {} while its stored original was being removed is kept as \
                 {kept} beside it (the name had been taken again)",
                at.file.path.display()
            )),
            Err(e) => self.notices.report(format!(
                "stored {} but cannot remove it from the drop folder: {e}",
                at.file.path.display()
            )),
        }
    }

    /// Write the `.error.txt`, record and audit the rejection, and (when `move_it`) move the
    /// original to `.rejected/`, all through the group folder's handle.
    fn reject(
        &self,
        config: &Config,
        at: &Place<'_>,
        mut rejected: Rejected,
        reason: String,
        move_it: bool,
    ) -> Outcome {
        let file = at.file;
        if !at.identity.matches_in(at.dir, file.file_name()) {
            return Outcome::Again {
                why: "it changed while being checked; it will be taken when it settles".into(),
            };
        }
        let safe = safe_name(file.file_name());
        let mut sentence = format!(
            "{} was not accepted: {}. Accepted are {} files of at most {} that parse and have a \
             header row.\n",
            safe,
            reason,
            config.accepted_list(),
            human_size(config.ingest.max_file_size.as_u64())
        );
        if safe.as_bytes() != file.file_name().as_encoded_bytes() {
            // The original bytes, escaped, since the file is kept under a printable name.
            sentence.push_str(&format!(
                "Its name as dropped (bytes, escaped): {}\n",
                file.file_name().as_encoded_bytes().escape_ascii()
            ));
        }
        // The reason file first, then the catalog and audit record, then the move: a crash
        // can leave a rejection recorded twice (the file is still there and is checked
        // again), never a moved file whose rejection was not recorded.
        let prepared = rejected::open(at.dir).and_then(|kept| {
            let target = store::free_name(&kept.dir, &safe);
            let error_name = store::error_file_name(&target);
            store::write_atomic(&kept.dir, &error_name, &sentence, kept.file_mode, kept.gid)
                .map_err(|e| rejected::RejectedDirError::Write {
                    path: kept.dir.shown_child(&error_name),
                    source: e,
                })?;
            Ok((kept, target))
        });
        rejected.reason = reason.clone();
        rejected.kept_at = match &prepared {
            Ok((kept, target)) if move_it => Some(kept.dir.shown_child(target)),
            _ => None,
        };
        let (group, name) = (rejected.group.clone(), rejected.name.clone());
        let in_flight = self.in_flight.clone();
        let cleared = move || in_flight.clear(&group, &name);
        if let Err(e) = self
            .catalog
            .record_rejection_blocking(rejected.clone(), cleared)
        {
            self.notices
                .report(format!("cannot record the rejection of {}: {e}", file.name));
        }
        let moved = match prepared {
            Ok((kept, target)) if move_it => at
                .dir
                .rename_durable(file.file_name(), &kept.dir, &target, false)
                .map_err(|e| format!("cannot be moved to {}: {e}", kept.dir.shown().display())),
            Ok(_) => Err("is left where it is".to_string()),
            Err(e) => Err(format!("cannot be moved: {e}")),
        };
        if let Err(e) = moved {
            self.notices.report(format!(
                "{} was rejected ({reason}) but {e}",
                file.path.display()
            ));
            if let Ok(mut stuck) = self.stuck.lock() {
                stuck.insert((file.path.clone(), *at.identity));
            }
        }
        Outcome::Rejected { reason }
    }
}

impl Ingestor {
    /// What the watcher does with `file` after `outcome`.
    fn next_step(&self, file: &SettledFile, outcome: &Outcome) -> Next {
        // Bookkeeping only (what is at the name now?); nothing is opened or changed by path.
        let now = std::fs::symlink_metadata(&file.path)
            .ok()
            .map(|meta| Identity::of(&meta));
        let still_there = now.is_some();
        // Written since it settled, or replaced by a new drop while this one was stored: its
        // events came while the file was busy, so look again now. The same file left in place
        // (its removal failed and was reported) is not taken again and again.
        let renewed = self
            .in_flight
            .writers()
            .active_since(&file.path, file.writes)
            || (still_there && now != file.settled);
        match outcome {
            Outcome::Again { .. } => Next::LookAgain,
            Outcome::Waiting { why } if still_there => Next::RetryLater(why.clone()),
            Outcome::Accepted { .. } | Outcome::Unchanged { .. } if still_there && renewed => {
                Next::LookAgain
            }
            _ => Next::Forget,
        }
    }
}

/// Where a file being ingested is: its group folder's handle, its name, and the identity that
/// was opened (and settled).
struct Place<'a> {
    file: &'a SettledFile,
    dir: &'a Dir,
    identity: &'a Identity,
}

/// What [`alongside`] gives back: the read's result and the copy's digest and sync, each with
/// the milliseconds from the start to its end.
struct Alongside<T> {
    read: T,
    read_ms: f64,
    synced: std::io::Result<()>,
    sync_ms: f64,
    hashed: std::io::Result<String>,
    hash_ms: f64,
}

/// Run `read` (the parse worker reading the stored copy `name` in `tmp_dir`) while two threads
/// fsync the copy (`copy`, its handle open for writing) and hash it: the catalog's decision
/// needs the digest and the durability, the read does not. The digest is of the stored copy,
/// which only the daemon can write (its own folder, a random name, opened without following a
/// link), so it describes exactly the bytes kept. A thread the system refuses to start (out of
/// threads or memory) costs time, not the file: its work is done here after the read.
fn alongside<T>(
    tmp_dir: &Dir,
    name: &str,
    copy: &std::fs::File,
    read: impl FnOnce() -> T,
) -> Alongside<T> {
    let started = Instant::now();
    // Both capture only references and an Instant, so they are Copy: a thread gets a copy, and
    // the original is still there to call if the thread cannot start.
    let sync = move || (copy.sync_all(), elapsed_ms(started));
    let hash = move || {
        let hashed = tmp_dir.open_read(name).and_then(crate::sha256::of_reader);
        (hashed, elapsed_ms(started))
    };
    std::thread::scope(|scope| {
        let syncing = std::thread::Builder::new().spawn_scoped(scope, sync);
        let hashing = std::thread::Builder::new().spawn_scoped(scope, hash);
        let read = read();
        let read_ms = elapsed_ms(started);
        let lost = |what: &str| std::io::Error::other(format!("the {what} thread panicked"));
        let (synced, sync_ms) = match syncing {
            Ok(thread) => thread.join().unwrap_or_else(|_| (Err(lost("sync")), 0.0)),
            Err(_) => sync(),
        };
        let (hashed, hash_ms) = match hashing {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|_| (Err(lost("hashing")), 0.0)),
            Err(_) => hash(),
        };
        Alongside {
            read,
            read_ms,
            synced,
            sync_ms,
            hashed,
            hash_ms,
        }
    })
}

fn elapsed_ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

fn waiting(why: &str) -> Outcome {
    Outcome::Waiting {
        why: why.to_string(),
    }
}

fn skipped(why: &str) -> Outcome {
    Outcome::Skipped {
        why: why.to_string(),
    }
}

/// "51.0 MB": sizes in the units the limit is written in.
pub fn human_size(bytes: u64) -> String {
    bytesize::ByteSize::b(bytes).display().si().to_string()
}

/// Ingest worker threads: take settled files, ingest, report back to the watcher.
pub struct Workers {
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    pub fn start(
        count: usize,
        ingestor: Arc<Ingestor>,
        files: Receiver<SettledFile>,
        done: Sender<Done>,
    ) -> std::io::Result<Self> {
        let mut threads = Vec::with_capacity(count);
        for index in 0..count.max(1) {
            let ingestor = Arc::clone(&ingestor);
            let files = files.clone();
            let done = done.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("ingest-{index}"))
                    .spawn(move || {
                        // Ends when the watcher drops its sender: the current file is finished
                        // first, which is what a graceful stop promises.
                        for file in files.iter() {
                            let outcome = ingestor.ingest(&file);
                            let next = ingestor.next_step(&file, &outcome);
                            let _ = done.send(Done {
                                path: file.path,
                                next,
                            });
                        }
                    })?,
            );
        }
        Ok(Self { threads })
    }

    /// Wait for every worker to finish its current file.
    pub fn join(self) {
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alongside_gives_the_read_the_copy_digest_and_its_sync() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let mut copy = dir.create_new("c.csv", 0o600).unwrap();
        std::io::Write::write_all(&mut copy, b"a,b\n1,2\n").unwrap();
        let done = alongside(&dir, "c.csv", &copy, || 42);
        assert_eq!(done.read, 42);
        assert!(done.synced.is_ok());
        let want = crate::sha256::of_bytes(b"a,b\n1,2\n");
        assert_eq!(done.hashed.unwrap(), want);
    }

    #[test]
    fn a_copy_gone_before_it_is_hashed_is_an_error_not_a_panic() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Dir::open(tmp.path()).unwrap();
        let copy = dir.create_new("c.csv", 0o600).unwrap();
        dir.unlink("c.csv").unwrap();
        let done = alongside(&dir, "c.csv", &copy, || ());
        assert_eq!(
            done.hashed.unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    }
}
