//! The catalog's typed surface: every question the daemon asks its catalog and every change it
//! makes, as methods on [`Catalog`]. This is the seam a second backend implements; nothing
//! outside `catalog` reaches the SQLite connection or the catalog thread's state (`Db`).
//!
//! Async code awaits the plain methods. Ingest, watcher and embedding threads, which must never
//! run on the reactor, use the `_blocking` ones. Each method takes what it needs by value, so a
//! call can cross to the catalog thread (or to a pooled PostgreSQL connection on a blocking
//! thread) without borrowing from its caller. Each method takes its PostgreSQL arm first
//! (`catalog::pg`) and its SQLite arm otherwise; why this is one struct over an enum of
//! backends rather than a trait is in docs/architecture.md.

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
        if let Some(node) = self.pg() {
            let mut settings = super::pg::node::lock(&node.settings);
            settings.max_attempts = max_attempts;
            settings.keep = retention.keep;
            drop(settings);
            self.wake.notify_one();
            return Ok(());
        }
        self.call(move |db| {
            db.queue.max_attempts = max_attempts;
            db.retention = retention;
            db.queue.wake.notify_one();
            Ok(())
        })
        .await
    }

    /// On PostgreSQL, the candidates each HNSW search keeps (`catalog.ef_search`); SQLite
    /// searches exactly and has nothing to set.
    pub fn set_ef_search(&self, ef_search: u32) {
        if let Some(node) = self.pg() {
            super::pg::node::lock(&node.settings).ef_search = ef_search;
        }
    }

    /// Start-up: apply the settings, finish the prunes a stop interrupted, and put the jobs a
    /// stop left processing back in the queue. Answers `(requeued, generations removed)`.
    pub async fn start_up(
        &self,
        max_attempts: u32,
        retention: Retention,
    ) -> Result<(u64, u64), CatalogError> {
        if let Some(node) = self.pg() {
            {
                let mut settings = super::pg::node::lock(&node.settings);
                settings.max_attempts = max_attempts;
                settings.keep = retention.keep;
            }
            let back = Self::on_pg(node, |c, n| {
                super::pg::start_up(c, &n.member.name, &n.storage_root)
            })
            .await?;
            let dropped = back
                .requeued
                .iter()
                .filter(|t| t.vectors_dropped > 0)
                .count();
            self.wake.notify_one();
            return Ok((back.requeued.len() as u64, dropped as u64));
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, |c, _| super::pg::manage::group_names(c)).await;
        }
        self.call(|db| db.group_names()).await
    }

    /// Every group with its sources counted by status, read in one go, and the statuses the
    /// catalog gives the sources in `in_flight` (files the watcher holds), so the caller can
    /// lay those over the counts the way `ls` lays them over the list.
    pub async fn group_counts(
        &self,
        in_flight: Vec<(String, String)>,
    ) -> Result<(Vec<GroupInfo>, Vec<Option<Status>>), CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                Ok((
                    super::pg::read::group_counts(c)?,
                    super::pg::read::statuses_of(c, &in_flight)?,
                ))
            })
            .await;
        }
        self.call(move |db| {
            let groups = Vec::clone(&*db.group_counts()?);
            Ok((groups, db.statuses_of(&in_flight)?))
        })
        .await
    }

    /// The sources of `group`, or of every group; the same answer (and its JSON) until the
    /// catalog changes.
    pub async fn list_sources(&self, group: Option<String>) -> Result<Arc<Listing>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                Ok(Arc::new(super::memo::Kept::new(
                    super::pg::read::summaries(c, group.as_deref(), None)?,
                )))
            })
            .await;
        }
        self.call(move |db| db.listing(group)).await
    }

    /// One source in detail: versions, rejections, columns, generations, jobs.
    pub async fn show_source(
        &self,
        group: Option<String>,
        name: String,
    ) -> Result<SourceDetail, CatalogError> {
        if let Some(node) = self.pg() {
            let found = Self::on_pg(node, move |c, _| {
                super::pg::read::show_source(c, group.as_deref(), &name)
            })
            .await?;
            return found.map_err(|not| match not {
                super::pg::read::NotOne::Missing(m) => CatalogError::NotFound(m),
                super::pg::read::NotOne::Ambiguous(m) => CatalogError::Ambiguous(m),
            });
        }
        self.call(move |db| db.show_source(group.as_deref(), &name))
            .await
    }

    /// The newest stored version of a source, as a job would read it (for previews).
    pub async fn newest_version(
        &self,
        group: String,
        source: String,
    ) -> Result<Claimed, CatalogError> {
        if let Some(node) = self.pg() {
            let found = Self::on_pg(node, move |c, _| {
                super::pg::jobs::newest_version(c, &group, &source)
            })
            .await?;
            let (claimed, holder) = found.map_err(CatalogError::NotFound)?;
            return readable_here(node, claimed, &holder);
        }
        self.call(move |db| db.newest_version(&group, &source))
            .await
    }

    /// Record a group (a folder seen in the drop root); true when it is new.
    pub async fn ensure_group(&self, name: String) -> Result<bool, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| super::pg::ingest::ensure_group(c, &name)).await;
        }
        self.call(move |db| db.ensure_group(&name)).await
    }

    /// [`Catalog::ensure_group`] from a blocking thread.
    pub fn ensure_group_blocking(&self, name: String) -> Result<bool, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, _| super::pg::ingest::ensure_group(c, &name));
        }
        self.call_blocking(move |db| db.ensure_group(&name))
    }

    /// The group `uid` chose with `use`.
    pub async fn current_group(&self, uid: u32) -> Result<Option<String>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| super::pg::manage::current_group(c, uid)).await;
        }
        self.call(move |db| db.current_group(uid)).await
    }

    /// Set (or with `None` clear) the group `uid` works in.
    pub async fn set_current_group(
        &self,
        uid: u32,
        group: Option<String>,
    ) -> Result<(), CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                super::pg::manage::set_current_group(c, uid, group.as_deref())
            })
            .await;
        }
        self.call(move |db| db.set_current_group(uid, group.as_deref()))
            .await
    }

    // ---- preferences and read options ----------------------------------------------------

    /// A group's column and context preferences.
    pub async fn prefs(&self, group: String) -> Result<PrefsInfo, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| super::pg::jobs::prefs(c, &group)).await;
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                super::pg::manage::set_prefs(c, &n.member.name, &group, change, &actor, detail)
            })
            .await;
        }
        self.call(move |db| db.set_prefs(&group, change, &actor, detail))
            .await
    }

    /// The sheet a group's workbooks are read from, when one was chosen.
    pub async fn preferred_sheet(&self, group: String) -> Result<Option<String>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                super::pg::manage::preferred_sheet(c, &group)
            })
            .await;
        }
        self.call(move |db| db.preferred_sheet(&group)).await
    }

    /// [`Catalog::preferred_sheet`] from a blocking thread.
    pub fn preferred_sheet_blocking(&self, group: String) -> Result<Option<String>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, _| {
                super::pg::manage::preferred_sheet(c, &group)
            });
        }
        self.call_blocking(move |db| db.preferred_sheet(&group))
    }

    /// A source's own read options (`ingestctl set`), if any.
    pub fn source_override_blocking(
        &self,
        group: String,
        source: String,
    ) -> Result<Option<SourceOverride>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, _| {
                super::pg::manage::source_override(c, &group, &source)
            });
        }
        self.call_blocking(move |db| db.source_override(&group, &source))
    }

    /// The version `set` reads again: the source's newest stored one.
    pub async fn version_to_reread(
        &self,
        group: String,
        source: String,
    ) -> Result<Reread, CatalogError> {
        if let Some(node) = self.pg() {
            let found = Self::on_pg(node, move |c, _| {
                super::pg::manage::version_to_reread(c, &group, &source)
            })
            .await?;
            let (reread, holder) = found.map_err(CatalogError::NotFound)?;
            if holder != node.member.name && !node.member.shared_storage {
                return Err(CatalogError::NotFound(format!(
                    "{} v{} is stored on node {holder}, whose files this node cannot read: run \
                     `set` there",
                    reread.source, reread.version_no
                )));
            }
            return Ok(reread);
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                let max_attempts = super::pg::node::lock(&n.settings).max_attempts;
                super::pg::manage::apply_override(
                    c,
                    &n.member.name,
                    &reread,
                    options.as_ref(),
                    &read,
                    &actor,
                    detail,
                    max_attempts,
                )
            })
            .await;
        }
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
        if let Some(node) = self.pg() {
            let decision = Self::on_pg_blocking(node, |c, n| {
                super::pg::ingest::decide(c, &n.member.name, &file, &storage_root)
            })?;
            on_commit(&decision);
            return Ok(decision);
        }
        self.call_blocking(move |db| {
            let decision = db.decide(&file, &storage_root)?;
            on_commit(&decision);
            Ok(decision)
        })
    }

    /// Give back a version reserved by [`Catalog::decide_blocking`] whose file could not be
    /// stored.
    pub fn abandon_blocking(&self, reservation: i64) -> Result<(), CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, _| super::pg::ingest::abandon(c, reservation));
        }
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
        if let Some(node) = self.pg() {
            pg_mark_ready(node, &reservation, detail)?;
            on_commit();
            pg_prune(node, &reservation.group, &reservation.name);
            return Ok(());
        }
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
        if let Some(node) = self.pg() {
            pg_mark_ready(node, &reservation, detail)?;
            pg_prune(node, &reservation.group, &reservation.name);
            return Ok(());
        }
        self.call_blocking(move |db| db.mark_ready(&reservation, detail))
    }

    /// Record a rejected file; `on_commit` as for [`Catalog::mark_ready_blocking`].
    pub fn record_rejection_blocking(
        &self,
        file: Rejected,
        on_commit: impl FnOnce() + Send + 'static,
    ) -> Result<(), CatalogError> {
        if let Some(node) = self.pg() {
            Self::on_pg_blocking(node, |c, n| {
                super::pg::ingest::record_rejection(c, &n.member.name, &file)
            })?;
            on_commit();
            return Ok(());
        }
        self.call_blocking(move |db| {
            db.record_rejection(&file)?;
            on_commit();
            Ok(())
        })
    }

    /// Versions reserved but not yet marked ready (a store a stop interrupted), for start-up
    /// recovery.
    pub fn reservations_blocking(&self) -> Result<Vec<Reservation>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, n| {
                super::pg::ingest::reservations(c, &n.member.name)
            });
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, _| {
                super::pg::ingest::holds_content(c, &group, &source, &sha256)
            });
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                let max_attempts = super::pg::node::lock(&n.settings).max_attempts;
                Ok(targets
                    .iter()
                    .map(|target| {
                        super::pg::manage::delete(
                            c,
                            &n.member.name,
                            &n.storage_root,
                            &group,
                            target,
                            &actor,
                            max_attempts,
                        )
                    })
                    .collect())
            })
            .await;
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                super::pg::manage::cancel_for_delete(c, &n.member.name, &group, &targets, &actor)
            })
            .await;
        }
        self.call(move |db| db.cancel_for_delete(&group, &targets, &actor))
            .await
    }

    /// Finish the deletions a stop interrupted (files of deleted versions still on disk);
    /// answers how many.
    pub fn finish_deletions_blocking(&self) -> Result<usize, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, n| {
                super::pg::manage::finish_deletions(c, &n.member.name, &n.storage_root)
            });
        }
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
        if let Some(node) = self.pg() {
            let _ = (storage_root, running_at);
            let (report, _) = Self::on_pg(node, move |c, n| {
                super::pg::fsck::fsck(
                    c,
                    &n.member.name,
                    &n.storage_root,
                    n.member.shared_storage,
                    &running,
                    repair,
                    &actor,
                )
            })
            .await?;
            return Ok(report);
        }
        self.call(move |db| db.fsck(&storage_root, &running, running_at, repair, &actor))
            .await
    }

    // ---- audit -------------------------------------------------------------------------------

    /// Record audit rows on their own (refusals, requests that change nothing else).
    pub async fn audit(&self, records: Vec<AuditRecord>) -> Result<(), CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                let mut tx = c.transaction()?;
                for record in &records {
                    super::pg::audit(&mut tx, &n.member.name, record)?;
                }
                tx.commit()?;
                Ok(())
            })
            .await;
        }
        self.call(move |db| db.audit(records)).await
    }

    /// Audit entries matching `filter`, newest first.
    pub async fn audit_entries(
        &self,
        filter: AuditFilter,
    ) -> Result<Vec<AuditEntry>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                super::pg::manage::audit_entries(c, &filter)
            })
            .await;
        }
        self.call(move |db| db.audit_entries(&filter)).await
    }

    // ---- the queue ---------------------------------------------------------------------------

    /// How many jobs are in each state.
    pub async fn queue_counts(&self) -> Result<HashMap<JobState, u64>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, |c, _| super::pg::jobs::queue_counts(c)).await;
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, _| {
                Ok(Arc::new(super::memo::Kept::new(
                    super::pg::jobs::list_jobs(c, group.as_deref(), state, &ids, limit, before)?,
                )))
            })
            .await;
        }
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
        if let Some(node) = self.pg() {
            let answered = Self::on_pg(node, move |c, n| {
                let max_attempts = super::pg::node::lock(&n.settings).max_attempts;
                super::pg::jobs::reembed(
                    c,
                    &n.member.name,
                    &group,
                    &sources,
                    all,
                    &actor,
                    max_attempts,
                )
            })
            .await?;
            return answered.map_err(CatalogError::NotFound);
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                let max_attempts = super::pg::node::lock(&n.settings).max_attempts;
                super::pg::jobs::retry(
                    c,
                    &n.member.name,
                    &ids,
                    failed_in.as_deref(),
                    &running,
                    &actor,
                    max_attempts,
                )
            })
            .await;
        }
        self.call(move |db| db.retry(&ids, failed_in.as_deref(), &running, &actor))
            .await
    }

    /// Cancel jobs; answers each job's outcome and the running ones, which must stop.
    pub async fn cancel(
        &self,
        ids: Vec<i64>,
        actor: Actor,
    ) -> Result<(Vec<Queued>, Stopping), CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                super::pg::jobs::cancel(c, &n.member.name, &ids, &actor)
            })
            .await;
        }
        self.call(move |db| db.cancel(&ids, &actor)).await
    }

    /// Claim up to `slots` startable jobs: FIFO within a group, round robin across groups,
    /// at most `cap` processing at once (on PostgreSQL across the cluster; here `slots`
    /// already keeps to it).
    pub async fn claim(&self, slots: usize, cap: usize) -> Result<Vec<Claimed>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, move |c, n| {
                let (started, taken) = super::pg::queue::claim(c, &n.member, cap, slots)?;
                super::pg::queue::log_taken_over(&taken);
                let mut claimed = Vec::with_capacity(started.len());
                for s in started {
                    // A job this node cannot read back is not run, nor renewed: its lease runs
                    // out and it is taken over, as if this node had died with it.
                    match super::pg::jobs::claimed(c, s.job) {
                        Ok(job) => {
                            n.started(s.job, s.try_id);
                            claimed.push(Claimed {
                                try_id: Some(s.try_id),
                                ..job
                            });
                            pg_job_event(c, n, crate::protocol::EventKind::JobStarted, s.job, None);
                        }
                        Err(error) => tracing::error!(
                            job = s.job,
                            %error,
                            "cannot read a job this node claimed; it is taken over after its lease"
                        ),
                    }
                }
                Ok(claimed)
            })
            .await;
        }
        self.call(move |db| db.claim(slots)).await
    }

    /// When the next job waiting out a backoff becomes startable (milliseconds since the
    /// epoch).
    pub async fn next_due(&self) -> Result<Option<i64>, CatalogError> {
        if let Some(node) = self.pg() {
            return Self::on_pg(node, |c, _| super::pg::jobs::next_due(c)).await;
        }
        self.call(|db| db.next_due()).await
    }

    /// End a job's try (`try_id`: [`Claimed::try_id`]): swap in its generation, requeue, fail
    /// or cancel it.
    pub async fn finish_job(
        &self,
        job: i64,
        try_id: Option<i64>,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Finished, CatalogError> {
        if let Some(node) = self.pg() {
            let node = Arc::clone(node);
            return tokio::task::spawn_blocking(move || {
                pg_finish(&node, job, try_id, generation, ending)
            })
            .await
            .map_err(|e| CatalogError::Panicked(e.to_string()))?;
        }
        self.call(move |db| db.finish_job(job, generation, ending))
            .await
    }

    /// [`Catalog::finish_job`] from a job's thread.
    pub fn finish_job_blocking(
        &self,
        job: i64,
        try_id: Option<i64>,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Finished, CatalogError> {
        if let Some(node) = self.pg() {
            return pg_finish(node, job, try_id, generation, ending);
        }
        self.call_blocking(move |db| db.finish_job(job, generation, ending))
    }

    /// Start a claimed job's generation under the model `identity`.
    pub fn begin_generation_blocking(
        &self,
        job: i64,
        try_id: Option<i64>,
        identity: Identity,
    ) -> Result<Begun, CatalogError> {
        if let Some(node) = self.pg() {
            let Some(at) = node.try_of(job, try_id) else {
                return Ok(Begun::Cancelled);
            };
            return Self::on_pg_blocking(node, |c, n| {
                let id = n.identity_id(c, &identity)?;
                super::pg::generations::begin(c, &at, &identity, id)
            });
        }
        self.call_blocking(move |db| db.begin_generation(job, &identity))
    }

    /// Write a window of a generation's rows and the job's progress (`done` rows). A bulk
    /// write: it waits while other requests are served (see [`Catalog`]).
    pub fn write_vectors_blocking(
        &self,
        job: i64,
        try_id: Option<i64>,
        generation: i64,
        rows: Vec<NewRow>,
        done: u64,
    ) -> Result<Written, CatalogError> {
        if let Some(node) = self.pg() {
            let Some(at) = node.try_of(job, try_id) else {
                return Ok(Written::Stopped);
            };
            return Self::on_pg_blocking(node, |c, n| {
                let written = super::pg::generations::write(c, &at, generation, &rows, done)?;
                if written == Written::Stored {
                    pg_job_event(c, n, crate::protocol::EventKind::JobProgress, job, None);
                }
                Ok(written)
            });
        }
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
        if let Some(node) = self.pg() {
            return Self::on_pg_blocking(node, |c, n| {
                let id = n.identity_id(c, identity)?;
                super::pg::jobs::reusable_texts(c, job, generation, id)
            });
        }
        super::jobs::reusable_texts(self.sqlite()?.2, job, generation, identity)
    }

    /// The nodes of the cluster (PostgreSQL), this one marked; none on SQLite.
    pub async fn nodes(&self) -> Result<Vec<crate::protocol::ClusterNode>, CatalogError> {
        let Some(node) = self.pg() else {
            return Ok(Vec::new());
        };
        Self::on_pg(node, |c, n| {
            let now = super::pg::queue::now_ms(c)?;
            Ok(super::pg::queue::nodes(c)?
                .into_iter()
                .map(|info| crate::protocol::ClusterNode {
                    this: info.name == n.member.name,
                    started_at: crate::clock::rfc3339(info.started_at),
                    heartbeat_at: crate::clock::rfc3339(info.heartbeat_at),
                    heartbeat_age_secs: ((now - info.heartbeat_at).max(0) / 1000) as u64,
                    version: info.ingestd_version,
                    name: info.name,
                })
                .collect())
        })
        .await
    }

    /// On a PostgreSQL catalog, the searchable rows not yet in the HNSW index
    /// (`pg::staging`); `None` on SQLite, which has no index.
    pub async fn index_backlog(&self) -> Result<Option<u64>, CatalogError> {
        let Some(node) = self.pg() else {
            return Ok(None);
        };
        if let Some(known) = node.recent_backlog() {
            return Ok(Some(known));
        }
        Self::on_pg(node, |c, n| {
            let backlog = super::pg::staging::backlog(c)?;
            n.saw_backlog(backlog);
            Ok(Some(backlog))
        })
        .await
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
        if let Some(node) = self.pg() {
            let ef_search = super::pg::node::lock(&node.settings).ef_search;
            return Self::on_pg_blocking(node, |c, _| {
                super::pg::search::search(c, group, identity, query, k, ef_search)
            });
        }
        super::search::search(self.sqlite()?.2, group, identity, query, k)
    }
}

// ---- the PostgreSQL arm's shared steps ---------------------------------------------------------

/// A version's file as this node may read it, or why it may not.
fn readable_here(
    node: &super::pg::node::Node,
    claimed: Claimed,
    holder: &str,
) -> Result<Claimed, CatalogError> {
    if holder == node.member.name || node.member.shared_storage {
        return Ok(claimed);
    }
    Err(CatalogError::NotFound(format!(
        "{} v{} is stored on node {holder}, whose files this node cannot read: ask there",
        claimed.source, claimed.version_no
    )))
}

/// Mark a reservation ready and queue its job.
fn pg_mark_ready(
    node: &super::pg::node::Node,
    reservation: &Reservation,
    detail: String,
) -> Result<(), CatalogError> {
    Catalog::on_pg_blocking(node, |c, n| {
        let max_attempts = super::pg::node::lock(&n.settings).max_attempts;
        super::pg::ingest::mark_ready(c, &n.member.name, reservation, detail, max_attempts)
    })?;
    node.wake.notify_one();
    Ok(())
}

/// Prune a source after an accept or a swap; a failure is logged, never passed on.
fn pg_prune(node: &super::pg::node::Node, group: &str, source: &str) {
    let keep = super::pg::node::lock(&node.settings).keep;
    let pruned = node.with(|c| {
        super::pg::retain::prune_source(
            c,
            &node.member.name,
            group,
            source,
            keep,
            &node.storage_root,
        )
    });
    super::retain::log_pruned(group, source, pruned);
}

/// Tell every node's followers about a job (started, progress, retrying). Not an audit
/// record: it is sent on its own, not in the transaction of a change.
fn pg_job_event(
    client: &mut postgres::Client,
    node: &super::pg::node::Node,
    kind: crate::protocol::EventKind,
    job: i64,
    detail: Option<String>,
) {
    if let Ok(Some(info)) = super::pg::jobs::job_info(client, job) {
        let event = crate::protocol::Event {
            time: crate::clock::rfc3339(crate::clock::now_ms()),
            kind,
            group: Some(info.group.clone()),
            source: Some(info.source.clone()),
            version: Some(info.version.clone()),
            detail: detail.or(info.error.clone()),
            actor: None,
            job: Some(info.id),
            progress: Some(info.progress),
        };
        // To every node's followers, this node's too through its listener (one stream in the
        // order the database delivers); only here when the database cannot take it.
        if let Err(error) = super::pg::notify::publish(client, &node.member.name, &event) {
            tracing::warn!(%error, "cannot tell the other nodes of a job's progress");
            node.events.publish(event);
        }
    }
}

/// End a try this node ran.
fn pg_finish(
    node: &super::pg::node::Node,
    job: i64,
    try_id: Option<i64>,
    generation: Option<i64>,
    ending: Ending,
) -> Result<Finished, CatalogError> {
    let Some(at) = node.try_of(job, try_id) else {
        return Ok(Finished::Dropped);
    };
    let finished = Catalog::on_pg_blocking(node, |c, n| {
        let finished = super::pg::generations::finish(c, &at, generation, ending)?;
        if finished == Finished::Requeued {
            pg_job_event(c, n, crate::protocol::EventKind::JobRetrying, job, None);
        }
        Ok(finished)
    });
    node.ended(at.job, at.try_id);
    let finished = finished?;
    if matches!(finished, Finished::Swapped { .. })
        && let Ok(Some(info)) = node.with(|c| super::pg::jobs::job_info(c, job))
    {
        pg_prune(node, &info.group, &info.source);
    }
    node.wake.notify_one();
    Ok(finished)
}
