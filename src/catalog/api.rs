//! The catalog's typed surface: every question the daemon asks its catalog and every change it
//! makes, as methods on [`Catalog`]. This is the seam a second backend implements; nothing
//! outside `catalog` reaches the SQLite connection or the catalog thread's state (`Db`).
//!
//! Async code awaits the plain methods. Ingest, watcher and embedding threads, which must never
//! run on the reactor, use the `_blocking` ones. Each method takes what it needs by value, so a
//! call can cross to the catalog thread (or, later, to a connection pool) without borrowing
//! from its caller. Why this is one struct over an enum of backends rather than a trait is in
//! docs/architecture.md.

use super::jobs::{Begun, Claimed, Ending, Finished, NewRow, Origin, Written};
use super::memo::{Kept, Listing};
use super::read_options::{Applied, ReadAs, Reread};
use super::retain::Retention;
use super::{
    Accepted, AuditFilter, Catalog, CatalogError, Decision, PrefsChange, Rejected, Reservation,
};
use crate::audit::AuditRecord;
use crate::embed::Identity;
use crate::identity::Actor;
use crate::protocol::FsckReport;
use crate::protocol::{
    AuditEntry, GroupInfo, JobInfo, JobState, PrefsInfo, Queued, ReadOverride, RmOutcome,
    SearchResult, SourceDetail, SourceOverride, Status,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

/// What a job request asked of jobs that are running: which ones must stop.
pub type Stopping = Vec<i64>;

impl Catalog {
    // ---- settings and start-up ----------------------------------------------------------

    /// Apply the settings the queue and retention read from the configuration, and wake the
    /// queue (a higher attempt limit may make a job startable).
    pub async fn configure(
        &self,
        max_attempts: u32,
        retention: Retention,
    ) -> Result<(), CatalogError> {
        self.call(move |db| {
            db.queue.max_attempts = max_attempts;
            db.retention = retention;
            db.queue.wake.notify_one();
            Ok(())
        })
        .await
    }

    /// Start-up: apply the settings, finish the prunes a stop interrupted, and put the jobs a
    /// stop left processing back in the queue. Answers `(requeued, generations removed)`.
    pub async fn start_up(
        &self,
        max_attempts: u32,
        retention: Retention,
    ) -> Result<(u64, u64), CatalogError> {
        self.call(move |db| {
            db.queue.max_attempts = max_attempts;
            db.retention = retention;
            db.finish_prunes()?;
            db.recover_jobs()
        })
        .await
    }

    // ---- groups, sources, reads ---------------------------------------------------------

    /// Every group's name, sorted (no counts: cheap at any size).
    pub async fn group_names(&self) -> Result<Vec<String>, CatalogError> {
        self.call(|db| db.group_names()).await
    }

    /// Every group with its sources counted by status, read in one go, and the statuses the
    /// catalog gives the sources in `in_flight` (files the watcher holds), so the caller can
    /// lay those over the counts the way `ls` lays them over the list.
    pub async fn group_counts(
        &self,
        in_flight: Vec<(String, String)>,
    ) -> Result<(Vec<GroupInfo>, Vec<Option<Status>>), CatalogError> {
        self.call(move |db| {
            let groups = Vec::clone(&*db.group_counts()?);
            Ok((groups, db.statuses_of(&in_flight)?))
        })
        .await
    }

    /// The sources of `group`, or of every group; the same answer (and its JSON) until the
    /// catalog changes.
    pub async fn list_sources(&self, group: Option<String>) -> Result<Arc<Listing>, CatalogError> {
        self.call(move |db| db.listing(group)).await
    }

    /// One source in detail: versions, rejections, columns, generations, jobs.
    pub async fn show_source(
        &self,
        group: Option<String>,
        name: String,
    ) -> Result<SourceDetail, CatalogError> {
        self.call(move |db| db.show_source(group.as_deref(), &name))
            .await
    }

    /// The newest stored version of a source, as a job would read it (for previews).
    pub async fn newest_version(
        &self,
        group: String,
        source: String,
    ) -> Result<Claimed, CatalogError> {
        self.call(move |db| db.newest_version(&group, &source))
            .await
    }

    /// Record a group (a folder seen in the drop root); true when it is new.
    pub async fn ensure_group(&self, name: String) -> Result<bool, CatalogError> {
        self.call(move |db| db.ensure_group(&name)).await
    }

    /// [`Catalog::ensure_group`] from a blocking thread.
    pub fn ensure_group_blocking(&self, name: String) -> Result<bool, CatalogError> {
        self.call_blocking(move |db| db.ensure_group(&name))
    }

    /// The group `uid` chose with `use`.
    pub async fn current_group(&self, uid: u32) -> Result<Option<String>, CatalogError> {
        self.call(move |db| db.current_group(uid)).await
    }

    /// Set (or with `None` clear) the group `uid` works in.
    pub async fn set_current_group(
        &self,
        uid: u32,
        group: Option<String>,
    ) -> Result<(), CatalogError> {
        self.call(move |db| db.set_current_group(uid, group.as_deref()))
            .await
    }

    // ---- preferences and read options ----------------------------------------------------

    /// A group's column and context preferences.
    pub async fn prefs(&self, group: String) -> Result<PrefsInfo, CatalogError> {
        self.call(move |db| db.prefs(&group)).await
    }

    /// Change a group's preferences, audited with `detail`.
    pub async fn set_prefs(
        &self,
        group: String,
        change: PrefsChange,
        actor: Actor,
        detail: String,
    ) -> Result<PrefsInfo, CatalogError> {
        self.call(move |db| db.set_prefs(&group, change, &actor, detail))
            .await
    }

    /// The sheet a group's workbooks are read from, when one was chosen.
    pub async fn preferred_sheet(&self, group: String) -> Result<Option<String>, CatalogError> {
        self.call(move |db| db.preferred_sheet(&group)).await
    }

    /// [`Catalog::preferred_sheet`] from a blocking thread.
    pub fn preferred_sheet_blocking(&self, group: String) -> Result<Option<String>, CatalogError> {
        self.call_blocking(move |db| db.preferred_sheet(&group))
    }

    /// A source's own read options (`ingestctl set`), if any.
    pub fn source_override_blocking(
        &self,
        group: String,
        source: String,
    ) -> Result<Option<SourceOverride>, CatalogError> {
        self.call_blocking(move |db| db.source_override(&group, &source))
    }

    /// The version `set` reads again: the source's newest stored one.
    pub async fn version_to_reread(
        &self,
        group: String,
        source: String,
    ) -> Result<Reread, CatalogError> {
        self.call(move |db| db.version_to_reread(&group, &source))
            .await
    }

    /// Store a source's read options with the columns the new read found, and queue its
    /// embedding, in one transaction. The inner `Err` is a refusal said to the user.
    pub async fn apply_override(
        &self,
        reread: Reread,
        options: Option<ReadOverride>,
        read: ReadAs,
        actor: Actor,
        detail: String,
    ) -> Result<Result<Applied, String>, CatalogError> {
        self.call(move |db| db.apply_override(&reread, options.as_ref(), &read, &actor, detail))
            .await
    }

    // ---- ingest ------------------------------------------------------------------------------

    /// Decide what a settled, valid file becomes (a new version, unchanged, …) and reserve its
    /// version. `on_commit` runs on the catalog's side right after the decision is recorded,
    /// before any other request is answered.
    pub fn decide_blocking(
        &self,
        file: Accepted,
        storage_root: PathBuf,
        on_commit: impl FnOnce(&Decision) + Send + 'static,
    ) -> Result<Decision, CatalogError> {
        self.call_blocking(move |db| {
            let decision = db.decide(&file, &storage_root)?;
            on_commit(&decision);
            Ok(decision)
        })
    }

    /// Give back a version reserved by [`Catalog::decide_blocking`] whose file could not be
    /// stored.
    pub fn abandon_blocking(&self, reservation: i64) -> Result<(), CatalogError> {
        self.call_blocking(move |db| db.abandon(reservation))
    }

    /// Mark a stored version ready and queue its embedding. `on_commit` runs right after the
    /// commit, before any other request is answered, so no reader sees the file in flight
    /// once the catalog holds it.
    pub fn mark_ready_blocking(
        &self,
        reservation: Reservation,
        detail: String,
        on_commit: impl FnOnce() + Send + 'static,
    ) -> Result<(), CatalogError> {
        self.call_blocking(move |db| {
            db.mark_ready(&reservation, detail)?;
            on_commit();
            Ok(())
        })
    }

    /// [`Catalog::mark_ready_blocking`] for start-up recovery, which has no reader to keep
    /// in step.
    pub fn complete_reservation_blocking(
        &self,
        reservation: Reservation,
        detail: String,
    ) -> Result<(), CatalogError> {
        self.call_blocking(move |db| db.mark_ready(&reservation, detail))
    }

    /// Record a rejected file; `on_commit` as for [`Catalog::mark_ready_blocking`].
    pub fn record_rejection_blocking(
        &self,
        file: Rejected,
        on_commit: impl FnOnce() + Send + 'static,
    ) -> Result<(), CatalogError> {
        self.call_blocking(move |db| {
            db.record_rejection(&file)?;
            on_commit();
            Ok(())
        })
    }

    /// Versions reserved but not yet marked ready (a store a stop interrupted), for start-up
    /// recovery.
    pub fn reservations_blocking(&self) -> Result<Vec<Reservation>, CatalogError> {
        self.call_blocking(|db| db.reservations())
    }

    /// Does `group`'s source `source` hold a version with this content (SHA-256, hex)? For
    /// start-up recovery of files set aside in a drop folder.
    pub fn holds_content_blocking(
        &self,
        group: String,
        source: String,
        sha256: String,
    ) -> Result<bool, CatalogError> {
        self.call_blocking(move |db| db.holds_content(&group, &source, &sha256))
    }

    // ---- removal and repair ----------------------------------------------------------------

    /// Delete each target of `group` (a source or one version), each answered on its own.
    pub async fn delete(
        &self,
        group: String,
        targets: Vec<String>,
        actor: Actor,
    ) -> Result<Vec<RmOutcome>, CatalogError> {
        self.call(move |db| {
            Ok(targets
                .iter()
                .map(|target| db.delete(&group, target, &actor))
                .collect())
        })
        .await
    }

    /// Cancel the jobs embedding the targets of a forced delete; answers the running ones,
    /// which must stop before the delete.
    pub async fn cancel_for_delete(
        &self,
        group: String,
        targets: Vec<String>,
        actor: Actor,
    ) -> Result<Stopping, CatalogError> {
        self.call(move |db| db.cancel_for_delete(&group, &targets, &actor))
            .await
    }

    /// Finish the deletions a stop interrupted (files of deleted versions still on disk);
    /// answers how many.
    pub fn finish_deletions_blocking(&self) -> Result<usize, CatalogError> {
        self.call_blocking(|db| db.finish_deletions())
    }

    /// Check (and with `repair`, fix) the catalog against the stored files.
    pub async fn fsck(
        &self,
        storage_root: PathBuf,
        running: Vec<i64>,
        running_at: i64,
        repair: bool,
        actor: Actor,
    ) -> Result<FsckReport, CatalogError> {
        self.call(move |db| db.fsck(&storage_root, &running, running_at, repair, &actor))
            .await
    }

    // ---- audit -------------------------------------------------------------------------------

    /// Record audit rows on their own (refusals, requests that change nothing else).
    pub async fn audit(&self, records: Vec<AuditRecord>) -> Result<(), CatalogError> {
        self.call(move |db| db.audit(records)).await
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn audit_entries(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, CatalogError> {
        self.call(move |db| db.audit_entries(&filter)).await
    }

    // ---- the queue ---------------------------------------------------------------------------

    /// How many jobs are in each state.
    pub async fn queue_counts(&self) -> Result<HashMap<JobState, u64>, CatalogError> {
        self.call(|db| db.queue_counts()).await
    }

    /// One page of jobs, newest first, before the job id `before`; the same answer (and its
    /// JSON) until the catalog changes.
    pub async fn jobs_page(
        &self,
        group: Option<String>,
        state: Option<JobState>,
        ids: Vec<i64>,
        limit: u32,
        before: Option<i64>,
    ) -> Result<Arc<Kept<Vec<JobInfo>>>, CatalogError> {
        self.call(move |db| db.jobs_kept((group, state, ids, limit, before)))
            .await
    }

    /// Queue a re-embed of `sources` of `group` (or all of its sources).
    pub async fn reembed(
        &self,
        group: String,
        sources: Vec<String>,
        all: bool,
        actor: Actor,
    ) -> Result<Vec<Queued>, CatalogError> {
        self.call(move |db| db.reembed(&group, &sources, all, &actor))
            .await
    }

    /// Queue failed jobs again: `ids`, or every failed job of `failed_in`.
    pub async fn retry(
        &self,
        ids: Vec<i64>,
        failed_in: Option<String>,
        running: Vec<i64>,
        actor: Actor,
    ) -> Result<Vec<Queued>, CatalogError> {
        self.call(move |db| db.retry(&ids, failed_in.as_deref(), &running, &actor))
            .await
    }

    /// Cancel jobs; answers each job's outcome and the running ones, which must stop.
    pub async fn cancel(
        &self,
        ids: Vec<i64>,
        actor: Actor,
    ) -> Result<(Vec<Queued>, Stopping), CatalogError> {
        self.call(move |db| db.cancel(&ids, &actor)).await
    }

    /// Claim up to `slots` startable jobs: FIFO within a group, round robin across groups.
    pub async fn claim(&self, slots: usize) -> Result<Vec<Claimed>, CatalogError> {
        self.call(move |db| db.claim(slots)).await
    }

    /// When the next job waiting out a backoff becomes startable (milliseconds since the
    /// epoch).
    pub async fn next_due(&self) -> Result<Option<i64>, CatalogError> {
        self.call(|db| db.next_due()).await
    }

    /// End a job: swap in its generation, requeue, fail or cancel it.
    pub async fn finish_job(
        &self,
        job: i64,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Finished, CatalogError> {
        self.call(move |db| db.finish_job(job, generation, ending))
            .await
    }

    /// [`Catalog::finish_job`] from a job's thread.
    pub fn finish_job_blocking(
        &self,
        job: i64,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Finished, CatalogError> {
        self.call_blocking(move |db| db.finish_job(job, generation, ending))
    }

    /// Start a claimed job's generation under the model `identity`.
    pub fn begin_generation_blocking(
        &self,
        job: i64,
        identity: Identity,
    ) -> Result<Begun, CatalogError> {
        self.call_blocking(move |db| db.begin_generation(job, &identity))
    }

    /// Write a window of a generation's rows and the job's progress (`done` rows). A bulk
    /// write: it waits while other requests are served (see [`Catalog`]).
    pub fn write_vectors_blocking(
        &self,
        job: i64,
        generation: i64,
        rows: Vec<NewRow>,
        done: u64,
    ) -> Result<Written, CatalogError> {
        self.call_bulk_blocking(move |db| db.write_vectors(job, generation, &rows, done, true))
    }

    /// The texts a job's generation may take vectors from instead of embedding them again
    /// (the source's other generations under the same model, on a reader connection of its
    /// own so a long job does not hold the catalog thread).
    pub fn reusable_texts_blocking(
        &self,
        job: i64,
        generation: i64,
        identity: &Identity,
    ) -> Result<Vec<([u8; 16], Origin)>, CatalogError> {
        super::jobs::reusable_texts(&self.path, job, generation, identity)
    }

    // ---- search ------------------------------------------------------------------------------

    /// The `k` active rows of `group` nearest to `query` (a unit vector made by `identity`), on
    /// a reader connection of its own: searches never wait for the catalog thread.
    pub fn search_blocking(
        &self,
        group: &str,
        identity: &Identity,
        query: &[f32],
        k: usize,
    ) -> Result<SearchResult, CatalogError> {
        super::search::search(&self.path, group, identity, query, k)
    }
}
