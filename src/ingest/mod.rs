//! The path of one settled file: validate, then store a new version or reject it.
//!
//! Order matters for "nothing lost": the file is copied (and fsynced) into the storage folder
//! first and validated there, so we validate exactly the bytes we keep; its version is reserved
//! in the catalog, renamed into place, marked ready, and only then is the drop original
//! removed, and only if it is still the file we read. Rejected originals move to
//! `<group>/.rejected/` beside a one-sentence `.error.txt`.
//!
//! Runs on ingest worker threads (blocking I/O); talks to the catalog through its handle.

pub mod columns;
pub mod formats;
pub mod isolate;
pub mod recover;
pub mod store;

use crate::catalog::{Accepted, Catalog, Decision, Rejected};
use crate::config::{Config, LiveConfig};
use crate::identity::{Actor, Via};
use crate::inflight::InFlight;
use crate::notices::Notices;
use crate::watch::{Done, SettledFile};
use crossbeam_channel::{Receiver, Sender};
use formats::Format;
use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
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
    /// Not ours to take now (vanished, unreadable, storage trouble): left as it is until the
    /// next event or scan finds it.
    Skipped { why: String },
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
        Self {
            config: config.into(),
            catalog,
            in_flight,
            notices,
            parse_worker: isolate::ParseWorker::current(),
            stuck: Mutex::new(HashSet::new()),
        }
    }

    /// Read files with `worker` instead of this program: for benchmarks and tests that run
    /// the ingest path inside a program that is not `ingestd`.
    pub fn with_parse_worker(mut self, worker: isolate::ParseWorker) -> Self {
        self.parse_worker = worker;
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
        let started = std::time::Instant::now();
        let outcome = self.ingest_inner(file);
        self.in_flight.clear(&file.group, &file.name);
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        match &outcome {
            Outcome::Accepted { version } => tracing::info!(%version, elapsed_ms, "accepted"),
            Outcome::Unchanged { version } => tracing::info!(%version, "unchanged"),
            Outcome::Rejected { reason } => tracing::info!(%reason, "rejected"),
            Outcome::Skipped { why } => tracing::info!(%why, "skipped"),
            Outcome::Again { why } => tracing::info!(%why, "not settled after all"),
        }
        outcome
    }

    fn ingest_inner(&self, file: &SettledFile) -> Outcome {
        let config = self.config();
        let path = &file.path;
        let mut handle = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(handle) => handle,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return skipped("it disappeared before it could be read");
            }
            Err(e) => {
                self.notices.report(format!(
                    "{} cannot be opened and is left in place: {e}",
                    path.display()
                ));
                return skipped(&format!("cannot open: {e}"));
            }
        };
        let meta = match handle.metadata() {
            Ok(meta) if meta.is_file() => meta,
            Ok(_) => return skipped("not a regular file"),
            Err(e) => return skipped(&format!("cannot stat: {e}")),
        };
        let identity = Identity::of(&meta);
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

        let extension = Path::new(&file.name)
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let format = match extension.as_deref() {
            None => {
                return self.reject(
                    &config,
                    file,
                    &identity,
                    base,
                    "it has no file extension".into(),
                );
            }
            Some(ext) => match Format::from_extension(ext) {
                Some(format) if config.ingest.allowed_formats.iter().any(|f| f == ext) => format,
                _ => {
                    let reason = format!("files of type .{ext} are not accepted");
                    return self.reject(&config, file, &identity, base, reason);
                }
            },
        };
        let base = Rejected {
            format: Some(format.as_str().to_string()),
            ..base
        };
        let max = config.ingest.max_file_size.as_u64();
        if size == 0 {
            return self.reject(
                &config,
                file,
                &identity,
                base,
                "it is empty (0 bytes)".into(),
            );
        }
        if size > max {
            let (mut shown, limit) = (human_size(size), human_size(max));
            if shown == limit {
                // Just over the limit: rounding would make the two look equal.
                shown = format!("{size} bytes");
            }
            let reason = format!("it is {shown}, larger than the {limit} limit");
            return self.reject(&config, file, &identity, base, reason);
        }

        let group_dir = config.paths.storage_root.join(&file.group);
        let tmp_dir = group_dir.join(store::TMP_DIR);
        if let Err(e) = std::fs::create_dir_all(&tmp_dir) {
            self.notices.report(format!(
                "cannot create the storage folder {}: {e}; {} stays in the drop folder",
                tmp_dir.display(),
                path.display()
            ));
            return skipped("storage folder unavailable");
        }
        let tmp_path = tmp_dir.join(format!(
            "{}.{}",
            uuid::Uuid::new_v4().simple(),
            format.as_str()
        ));
        let copied = match store::copy_hashed(&mut handle, &tmp_path, max) {
            Ok(Some(copied)) => copied,
            Ok(None) => {
                let reason = format!(
                    "it grew past the {} limit while being read",
                    human_size(max)
                );
                return self.reject(&config, file, &identity, base, reason);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_path);
                self.notices.report(format!(
                    "cannot copy {} into storage: {e}; it stays in the drop folder",
                    path.display()
                ));
                return skipped("copy failed");
            }
        };
        drop(handle);
        if !identity.matches(path) {
            // It changed while we read it: the writer was not done after all.
            let _ = std::fs::remove_file(&tmp_path);
            return Outcome::Again {
                why: "it changed while being read; it will be taken when it settles".into(),
            };
        }

        let mut options = isolate::read_options(&config.ingest);
        if matches!(format, Format::Xls | Format::Xlsx | Format::Xlsm) {
            let group = file.group.clone();
            options.sheet = self
                .catalog
                .call_blocking(move |db| db.preferred_sheet(&group))
                .unwrap_or(None);
        }
        let extracted = match self.parse_worker.extract(
            format,
            &tmp_path,
            &options,
            &isolate::Limits::of(&config.ingest),
        ) {
            Ok(extracted) => extracted,
            Err(isolate::Failure::Rejected(rejection)) => {
                let _ = std::fs::remove_file(&tmp_path);
                return self.reject(&config, file, &identity, base, rejection.reason);
            }
            Err(isolate::Failure::Worker(error)) => {
                // Our failure, not the file's: it stays in the drop folder for the next scan.
                let _ = std::fs::remove_file(&tmp_path);
                self.notices.report(format!(
                    "cannot read {}: {error}; it stays in the drop folder",
                    path.display()
                ));
                return skipped("the parse worker failed");
            }
        };
        let accepted = Accepted {
            group: file.group.clone(),
            name: file.name.clone(),
            format: format.as_str().to_string(),
            size: copied.bytes,
            sha256: copied.sha256,
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
        let to_decide = accepted.clone();
        let in_flight = self.in_flight.clone();
        let decision = match self.catalog.call_blocking(move |db| {
            let decision = db.decide(&to_decide, &storage_root)?;
            if matches!(decision, Decision::Unchanged { .. }) {
                in_flight.clear(&to_decide.group, &to_decide.name);
            }
            Ok(decision)
        }) {
            Ok(decision) => decision,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp_path);
                self.notices.report(format!(
                    "catalog error while storing {}: {e}; it stays in the drop folder",
                    path.display()
                ));
                return skipped("catalog error");
            }
        };
        match decision {
            Decision::Unchanged { version } => {
                let _ = std::fs::remove_file(&tmp_path);
                self.remove_original(path, &identity);
                Outcome::Unchanged { version }
            }
            Decision::Reserved(reservation) => {
                if let Err(e) = store::rename_durable(&tmp_path, &reservation.stored_path) {
                    let _ = std::fs::remove_file(&tmp_path);
                    let id = reservation.id;
                    let _ = self.catalog.call_blocking(move |db| db.abandon(id));
                    self.notices.report(format!(
                        "cannot store {} as {}: {e}; it stays in the drop folder",
                        path.display(),
                        reservation.stored_path.display()
                    ));
                    return skipped("rename failed");
                }
                let version = reservation.label();
                let ready = reservation.clone();
                let in_flight = self.in_flight.clone();
                if let Err(e) = self.catalog.call_blocking(move |db| {
                    db.mark_ready(&ready, detail)?;
                    // Cleared with the commit, so no reader sees "validating" after the
                    // accepted event went out.
                    in_flight.clear(&ready.group, &ready.name);
                    Ok(())
                }) {
                    // The stored file and its reservation stay; start-up recovery completes it.
                    self.notices.report(format!(
                        "catalog error after storing {}: {e}; it will be completed at the next start",
                        reservation.stored_path.display()
                    ));
                    return skipped("catalog error after storing");
                }
                self.remove_original(path, &identity);
                Outcome::Accepted { version }
            }
        }
    }

    fn remove_original(&self, path: &Path, identity: &Identity) {
        match store::remove_if_same(path, identity) {
            Ok(true) => {}
            Ok(false) => tracing::info!(
                path = %path.display(),
                "the drop file changed after it was read; it will be taken again"
            ),
            Err(e) => self.notices.report(format!(
                "stored {} but cannot remove it from the drop folder: {e}",
                path.display()
            )),
        }
    }

    /// Move the original to `.rejected/`, write its `.error.txt`, record and audit it.
    fn reject(
        &self,
        config: &Config,
        file: &SettledFile,
        identity: &Identity,
        mut rejected: Rejected,
        reason: String,
    ) -> Outcome {
        if !identity.matches(&file.path) {
            return Outcome::Again {
                why: "it changed while being checked; it will be taken when it settles".into(),
            };
        }
        let dir = config.paths.drop_root.join(&file.group).join(".rejected");
        let sentence = format!(
            "{} was not accepted: {}. Accepted are {} files of at most {} that parse and have a \
             header row.\n",
            file.name,
            reason,
            config.accepted_list(),
            human_size(config.ingest.max_file_size.as_u64())
        );
        // The reason file first, then the catalog and audit record, then the move: a crash
        // can leave a rejection recorded twice (the file is still there and is checked
        // again), never a moved file whose rejection was not recorded.
        let prepared = std::fs::create_dir_all(&dir).and_then(|()| {
            let target = store::free_name(&dir, &file.name);
            let error_name = format!(
                "{}.error.txt",
                target
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("file")
            );
            store::write_atomic(&dir.join(error_name), &sentence)?;
            Ok(target)
        });
        rejected.reason = reason.clone();
        rejected.kept_at = prepared.as_ref().ok().cloned();
        let record = rejected.clone();
        let in_flight = self.in_flight.clone();
        if let Err(e) = self.catalog.call_blocking(move |db| {
            db.record_rejection(&record)?;
            in_flight.clear(&record.group, &record.name);
            Ok(())
        }) {
            self.notices
                .report(format!("cannot record the rejection of {}: {e}", file.name));
        }
        let moved = prepared.and_then(|target| store::rename_durable(&file.path, &target));
        if let Err(e) = moved {
            self.notices.report(format!(
                "{} was rejected ({reason}) but cannot be moved to {}: {e}",
                file.path.display(),
                dir.display()
            ));
            if let Ok(mut stuck) = self.stuck.lock() {
                stuck.insert((file.path.clone(), *identity));
            }
        }
        Outcome::Rejected { reason }
    }
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
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
                            let left_in_place = matches!(outcome, Outcome::Again { .. });
                            let _ = done.send(Done {
                                path: file.path,
                                left_in_place,
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
