//! The embedding queue and generations in the catalog: queueing, claiming, progress, the
//! swap, failure, cancel, retry and start-up recovery of jobs.
//!
//! Every state change of a job is one transaction that also keeps its version's status in
//! step (`queued` → `embedding` → `embedded` / `failed`). The swap is the one transaction that
//! makes a new generation active and deletes the source's previous one, so a search sees the
//! old rows or the new rows, never neither. Vectors are written in chunks before the swap with
//! relaxed durability: a crash loses only a generation that was never active, and start-up
//! recovery keeps it only as a source of vectors to reuse.
//!
//! Reuse: every vector carries a hash of its text. A try that fails with tries left keeps its
//! generation as `retained`: never searchable, only read by the job's next try, which copies
//! the vectors of identical texts instead of embedding them again. A retained generation lives
//! exactly as long as its job is queued or processing; every transaction that ends a job
//! sweeps the retained generations of jobs that ended, so nothing is left behind.

use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::clock;
use crate::embed::Identity;
use crate::identity::Actor;
use crate::protocol::{
    ActiveEmbeddings, Event, EventKind, JobInfo, JobState, PrefsInfo, Progress, QueuePosition,
    Queued, Status,
};
use crate::queue::order::{self, Waiting};
use rusqlite::{OptionalExtension, Transaction, params};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// Why a job exists.
pub const NEW_VERSION: &str = "new_version";
pub const REEMBED: &str = "reembed";
pub const RETRY: &str = "retry";

/// Generation states: vectors being written, or the source's searchable set.
const WRITING: &str = "writing";
const ACTIVE: &str = "active";
/// Written by a try that failed (or was stopped): kept only for the job's next try to reuse.
const RETAINED: &str = "retained";

/// The hash a vector's text is stored with: the first 16 bytes of its SHA-256. 128 bits make
/// a collision between two texts of one source far less likely than a disk error, so a
/// matching hash is taken as the same text without comparing the texts.
pub fn text_hash(text: &str) -> [u8; 16] {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(text.as_bytes());
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

/// One row for [`Db::write_vectors`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewRow {
    pub row: u64,
    pub text: String,
    /// [`text_hash`] of `text`.
    pub text_hash: [u8; 16],
    pub vector: RowVector,
}

/// Where a row's vector comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum RowVector {
    /// Embedded by the provider for this row.
    Embedded(Vec<f32>),
    /// Copied, inside the catalog, from a row with the same text: of the source's active or
    /// retained generation of the same identity, or an earlier row of this generation.
    Copy { generation: i64, row: u64 },
}

/// Where a text was already embedded: (generation, row).
pub type Origin = (i64, u64);

/// Every text a job may reuse, read on a connection of its own so a large source does not
/// hold up the catalog thread: (hash, generation, row) of the vectors of the job's source in
/// its active and retained generations made by `identity`, except `generation` (the job's
/// own, which is empty when this runs).
pub fn reusable_texts(
    database: &std::path::Path,
    job: i64,
    generation: i64,
    identity: &Identity,
) -> Result<Vec<([u8; 16], Origin)>, CatalogError> {
    let conn = rusqlite::Connection::open_with_flags(
        database,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| CatalogError::Open {
        path: database.to_path_buf(),
        source,
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mut stmt = conn.prepare(
        "SELECT x.text_hash, x.generation_id, x.row_no FROM generations n
         JOIN vectors x ON x.generation_id = n.id
         WHERE n.source_id = (SELECT source_id FROM jobs WHERE id = ?1) AND n.id != ?2
           AND n.state IN ('active', 'retained')
           AND n.provider = ?3 AND n.model = ?4 AND n.dimension = ?5 AND n.weights_hash = ?6
           AND x.text_hash IS NOT NULL",
    )?;
    let rows = stmt
        .query_map(
            params![
                job,
                generation,
                identity.provider,
                identity.model,
                identity.dimension as i64,
                identity.weights_hash
            ],
            |r| {
                let hash: Vec<u8> = r.get(0)?;
                Ok((hash, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
            },
        )?
        .filter_map(|row| match row {
            Ok((hash, generation, row)) => <[u8; 16]>::try_from(hash.as_slice())
                .ok()
                .map(|h| Ok((h, (generation, row as u64)))),
            Err(e) => Some(Err(e)),
        })
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// What the queue side of the catalog needs from the daemon.
#[derive(Debug)]
pub struct QueueState {
    /// Woken whenever a job may be startable (queued, retried, a worker freed).
    pub wake: std::sync::Arc<tokio::sync::Notify>,
    /// `embedding.max_attempts` for jobs queued from now on.
    pub max_attempts: u32,
    /// The group that last got a job (round robin).
    pub cursor: Option<i64>,
}

impl Default for QueueState {
    fn default() -> Self {
        Self {
            wake: Default::default(),
            max_attempts: 3,
            cursor: None,
        }
    }
}

/// A job a worker took, with everything it needs to run.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: i64,
    pub group: String,
    pub source: String,
    pub version_no: i64,
    pub stored_path: PathBuf,
    pub format: String,
    pub columns: Vec<String>,
    pub rows_total: u64,
    pub prefs: PrefsInfo,
    /// The group may switch models with this job (`reembed --all`).
    pub switch_model: bool,
    pub attempt: u32,
    pub max_attempts: u32,
}

/// How a job ended, as its worker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum Ending {
    /// Every row written: swap.
    Done,
    /// A transient error with tries left: queue again, not before `at_ms`.
    Retry { error: String, at_ms: i64 },
    /// Failed for good.
    Failed(String),
    /// Stopped by `cancel` (or `rm --force`).
    Cancelled,
    /// Stopped by a daemon shutdown: back to the queue, the try not counted.
    Interrupted,
}

/// What the swap or the failure did, for logs and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    Swapped {
        rows: u64,
        replaced: u64,
    },
    /// The job was no longer processing (deleted meanwhile): its vectors were dropped.
    Dropped,
    Requeued,
    Failed,
    Cancelled,
}

const JOB_COLUMNS: &str = "j.id, g.name, s.name, v.version_no, j.state, j.reason, j.attempt, \
     j.max_attempts, j.rows_done, j.rows_total, j.error, j.requested_by, j.queued_at, \
     j.started_at, j.finished_at, j.not_before";
const JOB_FROM: &str = "FROM jobs j JOIN groups g ON g.id = j.group_id \
     JOIN sources s ON s.id = j.source_id JOIN versions v ON v.id = j.version_id";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    let state: String = r.get(4)?;
    Ok(JobInfo {
        id: r.get(0)?,
        group: r.get(1)?,
        source: r.get(2)?,
        version: format!("v{}", r.get::<_, Option<i64>>(3)?.unwrap_or(0)),
        state: JobState::parse(&state).unwrap_or(JobState::Failed),
        reason: r.get(5)?,
        attempt: r.get(6)?,
        max_attempts: r.get(7)?,
        progress: Progress {
            done: r.get::<_, i64>(8)? as u64,
            total: r.get::<_, i64>(9)? as u64,
        },
        position: None,
        error: r.get(10)?,
        requested_by: r.get(11)?,
        queued_at: clock::rfc3339(r.get(12)?),
        started_at: r.get::<_, Option<i64>>(13)?.map(clock::rfc3339),
        finished_at: r.get::<_, Option<i64>>(14)?.map(clock::rfc3339),
        not_before: r.get::<_, Option<i64>>(15)?.map(clock::rfc3339),
    })
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn set_version_status(
    tx: &Transaction<'_>,
    version_id: i64,
    status: Status,
) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE versions SET status = ?1, updated_at = ?2 WHERE id = ?3 AND status != 'deleting'",
        params![status.as_str(), clock::now_ms(), version_id],
    )?;
    Ok(())
}

/// The status a version returns to when its job stops without a swap: `embedded` if it holds
/// the source's active generation, else `ready`.
fn settle_version_status(tx: &Transaction<'_>, version_id: i64) -> rusqlite::Result<()> {
    let active: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM generations WHERE version_id = ?1 AND state = 'active')",
        [version_id],
        |r| r.get(0),
    )?;
    set_version_status(
        tx,
        version_id,
        if active {
            Status::Embedded
        } else {
            Status::Ready
        },
    )
}

/// Delete one generation and its vectors.
fn drop_generation(tx: &Transaction<'_>, generation: i64) -> rusqlite::Result<u64> {
    let rows = tx.execute("DELETE FROM vectors WHERE generation_id = ?1", [generation])?;
    tx.execute("DELETE FROM generations WHERE id = ?1", [generation])?;
    Ok(rows as u64)
}

/// Delete the retained generations of jobs that are no longer queued or processing (ended,
/// or deleted): what makes "retained only while its job may still run" hold. Called in every
/// transaction that ends a job.
fn sweep_retained(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    let stale: Vec<i64> = tx
        .prepare_cached(
            "SELECT n.id FROM generations n LEFT JOIN jobs j ON j.id = n.job_id
             WHERE n.state = 'retained'
               AND (j.id IS NULL OR j.state NOT IN ('queued', 'processing'))",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in stale {
        drop_generation(tx, id)?;
    }
    Ok(())
}

/// Delete every generation of `job` that is still being written.
fn drop_unfinished(tx: &Transaction<'_>, job: i64) -> rusqlite::Result<()> {
    let ids: Vec<i64> = tx
        .prepare_cached("SELECT id FROM generations WHERE job_id = ?1 AND state = 'writing'")?
        .query_map([job], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for id in ids {
        drop_generation(tx, id)?;
    }
    Ok(())
}

/// Queue a job for `version_id` in `tx`, or return the source's queued job for it.
///
/// A queued job of an older version of the same source is cancelled: only the newest version
/// gets embeddings, so embedding the older one would be wasted work.
pub(super) fn enqueue(
    tx: &Transaction<'_>,
    version_id: i64,
    reason: &str,
    actor: &Actor,
    max_attempts: u32,
    switch_model: bool,
    audit: &mut Vec<AuditRecord>,
) -> Result<(i64, bool), CatalogError> {
    let (source_id, group_id, version_no, rows): (i64, i64, i64, Option<i64>) = tx.query_row(
        "SELECT v.source_id, s.group_id, v.version_no, v.rows FROM versions v
         JOIN sources s ON s.id = v.source_id WHERE v.id = ?1",
        [version_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let queued: Vec<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, version_id FROM jobs WHERE source_id = ?1 AND state = 'queued' ORDER BY id",
        )?
        .query_map([source_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    for (job, queued_version) in &queued {
        if *queued_version == version_id {
            if switch_model {
                tx.execute("UPDATE jobs SET switch_model = 1 WHERE id = ?1", [job])?;
            }
            return Ok((*job, true));
        }
        let why = format!("superseded by v{version_no}, which was queued after it");
        tx.execute(
            "UPDATE jobs SET state = 'cancelled', finished_at = ?1, error = ?2 WHERE id = ?3",
            params![clock::now_ms(), why, job],
        )?;
        settle_version_status(tx, *queued_version)?;
        let (group, source, old_no): (String, String, i64) = tx.query_row(
            "SELECT g.name, s.name, v.version_no FROM versions v
             JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
             WHERE v.id = ?1",
            [queued_version],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let mut record = AuditRecord::new(Actor::daemon(), "cancel", "superseded")
            .on(&group, &source)
            .version(Some(format!("v{old_no}")))
            .detail(format!("job {job} {why}"));
        record.job = Some(*job);
        audit.push(record);
    }
    if queued.iter().any(|(_, v)| *v != version_id) {
        sweep_retained(tx)?;
    }
    tx.execute(
        "INSERT INTO jobs (group_id, source_id, version_id, state, reason, switch_model,
                           max_attempts, requested_by, requested_uid, rows_total, queued_at)
         VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            group_id,
            source_id,
            version_id,
            reason,
            switch_model,
            max_attempts.max(1),
            actor.display_name(),
            actor.uid,
            rows.unwrap_or(0),
            clock::now_ms(),
        ],
    )?;
    let job = tx.last_insert_rowid();
    set_version_status(tx, version_id, Status::Queued)?;
    Ok((job, false))
}

impl Db {
    fn job_event(&self, kind: EventKind, job: &JobInfo, detail: Option<String>) {
        self.events.publish(Event {
            time: clock::rfc3339(clock::now_ms()),
            kind,
            group: Some(job.group.clone()),
            source: Some(job.source.clone()),
            version: Some(job.version.clone()),
            detail,
            actor: None,
            job: Some(job.id),
            progress: Some(job.progress),
        });
    }

    fn job_info(&self, id: i64) -> Result<Option<JobInfo>, CatalogError> {
        let sql = format!("SELECT {JOB_COLUMNS} {JOB_FROM} WHERE j.id = ?1");
        let mut job = self.conn().query_row(&sql, [id], job_from_row).optional()?;
        if let Some(job) = job.as_mut().filter(|j| j.state == JobState::Queued) {
            job.position = self.positions()?.get(&job.id).copied();
        }
        Ok(job)
    }

    /// Queue positions of every queued job, in the order the scheduler will follow.
    fn positions(&self) -> Result<HashMap<i64, QueuePosition>, CatalogError> {
        let waiting: Vec<Waiting> = self
            .conn()
            .prepare_cached(
                "SELECT id, group_id, source_id FROM jobs WHERE state = 'queued'
                 ORDER BY queued_at, id",
            )?
            .query_map([], |r| {
                Ok(Waiting {
                    id: r.get(0)?,
                    group: r.get(1)?,
                    source: r.get(2)?,
                    due: true,
                })
            })?
            .collect::<Result<_, _>>()?;
        let group_of: HashMap<i64, i64> = waiting.iter().map(|w| (w.id, w.group)).collect();
        let mut in_group: HashMap<i64, u64> = HashMap::new();
        let mut positions = HashMap::new();
        for (index, id) in order::start_order(&waiting, self.queue.cursor)
            .into_iter()
            .enumerate()
        {
            let n = in_group.entry(group_of[&id]).or_default();
            *n += 1;
            positions.insert(
                id,
                QueuePosition {
                    group: *n,
                    overall: index as u64 + 1,
                },
            );
        }
        Ok(positions)
    }

    /// Jobs, oldest first (the newest `limit`), with queue positions.
    pub fn list_jobs(
        &self,
        group: Option<&str>,
        state: Option<JobState>,
        ids: &[i64],
        limit: u32,
    ) -> Result<Vec<JobInfo>, CatalogError> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let sql = format!(
            "SELECT * FROM (SELECT {JOB_COLUMNS} {JOB_FROM}
             WHERE (?1 IS NULL OR g.name = ?1) AND (?2 IS NULL OR j.state = ?2)
               AND (?3 = '[]' OR j.id IN (SELECT value FROM json_each(?3)))
             ORDER BY j.id DESC LIMIT ?4) ORDER BY 1"
        );
        let mut jobs: Vec<JobInfo> = self
            .conn()
            .prepare_cached(&sql)?
            .query_map(
                params![group, state.map(JobState::as_str), ids_json, limit],
                job_from_row,
            )?
            .collect::<Result<_, _>>()?;
        if jobs.iter().any(|j| j.state == JobState::Queued) {
            let positions = self.positions()?;
            for job in &mut jobs {
                job.position = positions.get(&job.id).copied();
            }
        }
        Ok(jobs)
    }

    /// Jobs of one source, newest first.
    pub fn source_jobs(&self, source_id: i64, limit: u32) -> Result<Vec<JobInfo>, CatalogError> {
        let ids: Vec<i64> = self
            .conn()
            .prepare_cached("SELECT id FROM jobs WHERE source_id = ?1 ORDER BY id DESC LIMIT ?2")?
            .query_map(params![source_id, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut jobs = self.list_jobs(None, None, &ids, limit)?;
        jobs.reverse();
        Ok(jobs)
    }

    /// The active generation of a source.
    pub fn active_embeddings(
        &self,
        source_id: i64,
    ) -> Result<Option<ActiveEmbeddings>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT v.version_no, n.rows, n.provider, n.model, n.dimension, n.job_id,
                        n.activated_at
                 FROM generations n JOIN versions v ON v.id = n.version_id
                 WHERE n.source_id = ?1 AND n.state = 'active'",
                [source_id],
                |r| {
                    Ok(ActiveEmbeddings {
                        version: format!("v{}", r.get::<_, i64>(0)?),
                        rows: r.get::<_, i64>(1)? as u64,
                        provider: r.get(2)?,
                        model: r.get(3)?,
                        dimension: r.get(4)?,
                        job: r.get(5)?,
                        activated_at: clock::rfc3339(r.get::<_, Option<i64>>(6)?.unwrap_or(0)),
                    })
                },
            )
            .optional()?)
    }

    /// Jobs by state for `status`.
    pub fn queue_counts(&self) -> Result<HashMap<JobState, u64>, CatalogError> {
        let mut counts = HashMap::new();
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT state, COUNT(*) FROM jobs GROUP BY state")?;
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (state, n) = row?;
            if let Some(state) = JobState::parse(&state) {
                counts.insert(state, n as u64);
            }
        }
        Ok(counts)
    }

    /// When the earliest queued job waiting out a backoff becomes due (ms), if any.
    pub fn next_due(&self) -> Result<Option<i64>, CatalogError> {
        Ok(self.conn().query_row(
            // Only future times: a due job that cannot start (no free slot, its source busy)
            // waits for the wake-up a job's end sends, not for a timer that fires at once.
            "SELECT MIN(not_before) FROM jobs WHERE state = 'queued' AND not_before > ?1",
            [clock::now_ms()],
            |r| r.get(0),
        )?)
    }

    /// Start up to `slots` jobs: FIFO within a group, round-robin across groups, never two
    /// of one source at once.
    pub fn claim(&mut self, slots: usize) -> Result<Vec<Claimed>, CatalogError> {
        if slots == 0 {
            return Ok(Vec::new());
        }
        let now = clock::now_ms();
        let waiting: Vec<Waiting> = self
            .conn()
            .prepare_cached(
                "SELECT j.id, j.group_id, j.source_id, j.not_before FROM jobs j
                 JOIN versions v ON v.id = j.version_id
                 WHERE j.state = 'queued' AND v.status != 'deleting'
                 ORDER BY j.queued_at, j.id",
            )?
            .query_map([], |r| {
                Ok(Waiting {
                    id: r.get(0)?,
                    group: r.get(1)?,
                    source: r.get(2)?,
                    due: r.get::<_, Option<i64>>(3)?.is_none_or(|t| t <= now),
                })
            })?
            .collect::<Result<_, _>>()?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let busy: HashSet<i64> = self
            .conn()
            .prepare_cached("SELECT source_id FROM jobs WHERE state = 'processing'")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let (picked, cursor) = order::pick(&waiting, &busy, self.queue.cursor, slots);
        if picked.is_empty() {
            return Ok(Vec::new());
        }
        self.queue.cursor = cursor;
        let claimed = self.write(|tx| {
            let mut claimed = Vec::new();
            for id in &picked {
                tx.execute(
                    "UPDATE jobs SET state = 'processing', attempt = attempt + 1, started_at = ?1,
                            finished_at = NULL, rows_done = 0, not_before = NULL
                     WHERE id = ?2",
                    params![now, id],
                )?;
                let version_id: i64 =
                    tx.query_row("SELECT version_id FROM jobs WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                set_version_status(tx, version_id, Status::Embedding)?;
                claimed.push(*id);
            }
            Ok((claimed, Vec::new()))
        })?;
        let mut out = Vec::new();
        for id in claimed {
            out.push(self.claimed(id)?);
            if let Some(job) = self.job_info(id)? {
                self.job_event(EventKind::JobStarted, &job, None);
            }
        }
        Ok(out)
    }

    fn claimed(&self, id: i64) -> Result<Claimed, CatalogError> {
        let (group, source, version_no, path, format, columns, rows, switch, attempt, max) =
            self.conn().query_row(
                "SELECT g.name, s.name, v.version_no, v.stored_path, v.format, v.columns,
                        v.rows, j.switch_model, j.attempt, j.max_attempts
                 FROM jobs j JOIN versions v ON v.id = j.version_id
                 JOIN sources s ON s.id = j.source_id JOIN groups g ON g.id = j.group_id
                 WHERE j.id = ?1",
                [id],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Option<String>>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, bool>(7)?,
                        r.get::<_, u32>(8)?,
                        r.get::<_, u32>(9)?,
                    ))
                },
            )?;
        let prefs = self.prefs(&group)?;
        Ok(Claimed {
            job: id,
            group,
            source,
            version_no,
            stored_path: PathBuf::from(path.unwrap_or_default()),
            format: format.unwrap_or_default(),
            columns: serde_json::from_str(&columns).unwrap_or_default(),
            rows_total: rows.unwrap_or(0).max(0) as u64,
            prefs,
            switch_model: switch,
            attempt,
            max_attempts: max,
        })
    }

    /// Start a generation for a processing job. Refused when the group's other sources hold
    /// embeddings of another model and the job may not switch the group's model.
    pub fn begin_generation(
        &mut self,
        job: i64,
        identity: &Identity,
    ) -> Result<Result<i64, String>, CatalogError> {
        self.write(|tx| {
            let (source_id, group_id, version_id, switch, state): (i64, i64, i64, bool, String) =
                tx.query_row(
                    "SELECT source_id, group_id, version_id, switch_model, state FROM jobs
                     WHERE id = ?1",
                    [job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )?;
            // Cancelled (or deleted) between its claim and now: write nothing.
            if state != "processing" {
                return Err(CatalogError::NotFound(format!("job {job} is {state}")));
            }
            // A `reembed --all` of the group still under way is switching it: jobs of its
            // other sources may use the new model too.
            let switching: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE group_id = ?1 AND switch_model = 1
                                AND state IN ('queued', 'processing'))",
                [group_id],
                |r| r.get(0),
            )?;
            if !switch && !switching {
                let other: Option<(String, String, i64)> = tx
                    .query_row(
                        "SELECT n.provider, n.model, COUNT(*) FROM generations n
                         JOIN sources s ON s.id = n.source_id
                         WHERE s.group_id = ?1 AND n.source_id != ?2 AND n.state = 'active'
                           AND (n.provider, n.model, n.dimension, n.weights_hash)
                               != (?3, ?4, ?5, ?6)
                         GROUP BY n.provider, n.model ORDER BY 3 DESC LIMIT 1",
                        params![
                            group_id,
                            source_id,
                            identity.provider,
                            identity.model,
                            identity.dimension as i64,
                            identity.weights_hash
                        ],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                if let Some((provider, model, n)) = other {
                    let group: String =
                        tx.query_row("SELECT name FROM groups WHERE id = ?1", [group_id], |r| {
                            r.get(0)
                        })?;
                    return Ok((
                        Err(format!(
                            "the group's other sources ({}) hold embeddings of {provider} \
                             model {model}, and the daemon now embeds with {} model {}; \
                             vectors of two models are never mixed in one group: switch \
                             the whole group with `ingestctl reembed --all -g {group}`",
                            plural(n as u64, "source"),
                            identity.provider,
                            identity.model
                        )),
                        Vec::new(),
                    ));
                }
            }
            tx.execute(
                "INSERT INTO generations (source_id, version_id, job_id, state, provider, model,
                                          dimension, weights_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    source_id,
                    version_id,
                    job,
                    WRITING,
                    identity.provider,
                    identity.model,
                    identity.dimension as i64,
                    identity.weights_hash,
                    clock::now_ms()
                ],
            )?;
            Ok((Ok(tx.last_insert_rowid()), Vec::new()))
        })
    }

    /// Append rows to a generation being written and record the job's progress. Committed
    /// without waiting for the disk: until the swap these rows are not searchable, and a crash
    /// before it discards the whole generation anyway.
    pub fn write_vectors(
        &mut self,
        job: i64,
        generation: i64,
        rows: &[NewRow],
        done: u64,
        publish: bool,
    ) -> Result<(), CatalogError> {
        self.conn.pragma_update(None, "synchronous", "NORMAL")?;
        let result = self.write(|tx| {
            // Only into a generation still being written by its processing job: a runner that
            // was cancelled, or whose version was deleted, must not add rows anywhere.
            let live: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM generations n JOIN jobs j ON j.id = n.job_id
                                WHERE n.id = ?1 AND n.job_id = ?2 AND n.state = 'writing'
                                  AND j.state = 'processing')",
                params![generation, job],
                |r| r.get(0),
            )?;
            if !live {
                return Err(CatalogError::NotFound(format!(
                    "job {job} stopped: its generation {generation} is no longer being written"
                )));
            }
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO vectors (generation_id, row_no, text, embedding,
                                                 text_hash)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            // The vector is copied inside SQLite: it never travels through the runner.
            let mut copy = tx.prepare_cached(
                "INSERT OR REPLACE INTO vectors (generation_id, row_no, text, embedding,
                                                 text_hash)
                 SELECT ?1, ?2, ?3, embedding, ?4 FROM vectors
                 WHERE generation_id = ?5 AND row_no = ?6",
            )?;
            for new in rows {
                let (row, hash) = (new.row as i64, &new.text_hash[..]);
                match &new.vector {
                    RowVector::Embedded(vector) => {
                        let blob: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                        insert.execute(params![generation, row, new.text, blob, hash])?;
                    }
                    RowVector::Copy {
                        generation: from,
                        row: from_row,
                    } => {
                        let copied = copy.execute(params![
                            generation,
                            row,
                            new.text,
                            hash,
                            from,
                            *from_row as i64
                        ])?;
                        if copied != 1 {
                            // Its generation was deleted meanwhile (the version was removed):
                            // a try that cannot finish, not a row to leave out.
                            return Err(CatalogError::NotFound(format!(
                                "the vector of row {from_row} of generation {from}, to reuse \
                                 for row {row}, is gone"
                            )));
                        }
                    }
                }
            }
            drop((insert, copy));
            tx.execute(
                "UPDATE generations SET rows = rows + ?1 WHERE id = ?2",
                params![rows.len() as i64, generation],
            )?;
            tx.execute(
                "UPDATE jobs SET rows_done = ?1 WHERE id = ?2",
                params![done as i64, job],
            )?;
            Ok(((), Vec::new()))
        });
        self.conn.pragma_update(None, "synchronous", "FULL")?;
        result?;
        if publish && let Some(job) = self.job_info(job)? {
            self.job_event(EventKind::JobProgress, &job, None);
        }
        Ok(())
    }

    /// End a processing job: swap on success, otherwise keep the previous generation.
    pub fn finish_job(
        &mut self,
        job: i64,
        generation: Option<i64>,
        ending: Ending,
    ) -> Result<Settled, CatalogError> {
        let Some(info) = self.job_info(job)? else {
            // Deleted with its source: nothing of it may remain.
            if let Some(generation) = generation {
                self.write(|tx| Ok((drop_generation(tx, generation).map(|_| ())?, Vec::new())))?;
            }
            return Ok(Settled::Dropped);
        };
        let now = clock::now_ms();
        let settled = self.write(|tx| {
            let (version_id, source_id): (i64, i64) = tx.query_row(
                "SELECT version_id, source_id FROM jobs WHERE id = ?1",
                [job],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let daemon = Actor::daemon();
            let record = |action: &'static str, outcome: &'static str, detail: String| {
                let mut r = AuditRecord::new(daemon.clone(), action, outcome)
                    .on(&info.group, &info.source)
                    .version(Some(info.version.clone()))
                    .detail(detail);
                r.job = Some(job);
                r
            };
            if info.state != JobState::Processing {
                // Cancelled while it ran (or deleted): keep the previous generation.
                if let Some(generation) = generation {
                    drop_generation(tx, generation)?;
                }
                drop_unfinished(tx, job)?;
                sweep_retained(tx)?;
                let settled = if info.state == JobState::Cancelled {
                    Settled::Cancelled
                } else {
                    Settled::Dropped
                };
                return Ok((settled, Vec::new()));
            }
            // A success swaps what was written in; a try that will be tried again (or was
            // stopped by a daemon stop) keeps it for the next try to reuse; anything else
            // drops it.
            if let Some(generation) = generation {
                match ending {
                    Ending::Done => {}
                    Ending::Retry { .. } | Ending::Interrupted => {
                        tx.execute(
                            "UPDATE generations SET state = ?1 WHERE id = ?2",
                            params![RETAINED, generation],
                        )?;
                    }
                    Ending::Failed(_) | Ending::Cancelled => {
                        drop_generation(tx, generation)?;
                    }
                }
            }
            let settled = match ending {
                Ending::Done => {
                    let Some(generation) = generation else {
                        return Err(CatalogError::NotFound(format!(
                            "job {job} finished without a generation"
                        )));
                    };
                    let newer: Option<i64> = tx
                        .query_row(
                            "SELECT v.version_no FROM generations n
                             JOIN versions v ON v.id = n.version_id
                             WHERE n.source_id = ?1 AND n.state = 'active'
                               AND v.version_no > (SELECT version_no FROM versions WHERE id = ?2)",
                            params![source_id, version_id],
                            |r| r.get(0),
                        )
                        .optional()?;
                    if let Some(newer) = newer {
                        drop_generation(tx, generation)?;
                        tx.execute(
                            "UPDATE jobs SET state = 'cancelled', finished_at = ?1, error = ?2
                             WHERE id = ?3",
                            params![
                                now,
                                format!("v{newer} was embedded meanwhile; this older version's embeddings were not kept"),
                                job
                            ],
                        )?;
                        settle_version_status(tx, version_id)?;
                        sweep_retained(tx)?;
                        return Ok((Settled::Dropped, Vec::new()));
                    }
                    let previous: Vec<(i64, i64)> = tx
                        .prepare_cached(
                            "SELECT id, version_id FROM generations
                             WHERE source_id = ?1 AND state = 'active'",
                        )?
                        .query_map([source_id], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<Result<_, _>>()?;
                    let mut replaced = 0;
                    for (old, old_version) in &previous {
                        replaced += drop_generation(tx, *old)?;
                        if *old_version != version_id {
                            set_version_status(tx, *old_version, Status::Ready)?;
                        }
                    }
                    let rows: i64 = tx.query_row(
                        "SELECT rows FROM generations WHERE id = ?1",
                        [generation],
                        |r| r.get(0),
                    )?;
                    tx.execute(
                        "UPDATE generations SET state = ?1, activated_at = ?2 WHERE id = ?3",
                        params![ACTIVE, now, generation],
                    )?;
                    tx.execute(
                        "UPDATE jobs SET state = 'completed', finished_at = ?1, error = NULL,
                                rows_done = MAX(rows_total, ?2) WHERE id = ?3",
                        params![now, rows, job],
                    )?;
                    set_version_status(tx, version_id, Status::Embedded)?;
                    let detail = format!(
                        "{} now active{}",
                        plural(rows as u64, "row"),
                        if previous.is_empty() {
                            String::new()
                        } else {
                            format!(", replacing {}", plural(replaced, "row"))
                        }
                    );
                    Ok((
                        Settled::Swapped {
                            rows: rows as u64,
                            replaced,
                        },
                        vec![record("swap", "ok", detail)],
                    ))
                }
                Ending::Retry { error, at_ms } => {
                    tx.execute(
                        "UPDATE jobs SET state = 'queued', error = ?1, not_before = ?2
                         WHERE id = ?3",
                        params![error, at_ms, job],
                    )?;
                    set_version_status(tx, version_id, Status::Queued)?;
                    Ok((Settled::Requeued, Vec::new()))
                }
                Ending::Failed(error) => {
                    tx.execute(
                        "UPDATE jobs SET state = 'failed', error = ?1, finished_at = ?2
                         WHERE id = ?3",
                        params![error, now, job],
                    )?;
                    set_version_status(tx, version_id, Status::Failed)?;
                    Ok((
                        Settled::Failed,
                        vec![record("embed", "failed", error.clone())],
                    ))
                }
                Ending::Interrupted => {
                    tx.execute(
                        "UPDATE jobs SET state = 'queued', attempt = MAX(attempt - 1, 0),
                                rows_done = 0, error = 'interrupted by a daemon stop; queued again'
                         WHERE id = ?1",
                        [job],
                    )?;
                    set_version_status(tx, version_id, Status::Queued)?;
                    Ok((Settled::Requeued, Vec::new()))
                }
                Ending::Cancelled => {
                    tx.execute(
                        "UPDATE jobs SET state = 'cancelled', finished_at = ?1 WHERE id = ?2",
                        params![now, job],
                    )?;
                    settle_version_status(tx, version_id)?;
                    Ok((Settled::Cancelled, Vec::new()))
                }
            };
            sweep_retained(tx)?;
            settled
        })?;
        if settled == Settled::Requeued
            && let Some(job) = self.job_info(job)?
        {
            let detail = job.error.clone();
            self.job_event(EventKind::JobRetrying, &job, detail);
        }
        if matches!(settled, Settled::Swapped { .. }) {
            self.prune_after_change(&info.group, &info.source);
        }
        self.queue.wake.notify_one();
        Ok(settled)
    }

    /// Queue a re-embed of the newest version of each of `sources` of `group` (every source
    /// with `all`).
    pub fn reembed(
        &mut self,
        group: &str,
        sources: &[String],
        all: bool,
        actor: &Actor,
    ) -> Result<Vec<Queued>, CatalogError> {
        let group_id: Option<i64> = self
            .conn()
            .query_row("SELECT id FROM groups WHERE name = ?1", [group], |r| {
                r.get(0)
            })
            .optional()?;
        let Some(group_id) = group_id else {
            return Err(CatalogError::NotFound(format!("no group named {group:?}")));
        };
        let names: Vec<String> = if all {
            self.conn()
                .prepare_cached("SELECT name FROM sources WHERE group_id = ?1 ORDER BY name")?
                .query_map([group_id], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        } else {
            sources.to_vec()
        };
        let max_attempts = self.queue.max_attempts;
        let mut out = Vec::new();
        for name in names {
            let newest: Option<(i64, i64)> = self
                .conn()
                .query_row(
                    "SELECT v.id, v.version_no FROM versions v JOIN sources s ON s.id = v.source_id
                     WHERE s.group_id = ?1 AND s.name = ?2 AND v.version_no IS NOT NULL
                       AND v.status NOT IN ('invalid', 'deleting', 'validating')
                     ORDER BY v.version_no DESC LIMIT 1",
                    params![group_id, name],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let Some((version_id, version_no)) = newest else {
                let exists: bool = self.conn().query_row(
                    "SELECT EXISTS (SELECT 1 FROM sources WHERE group_id = ?1 AND name = ?2)",
                    params![group_id, name],
                    |r| r.get(0),
                )?;
                if all && exists {
                    continue;
                }
                out.push(Queued {
                    target: name.clone(),
                    ok: false,
                    message: if exists {
                        format!("{name} has no accepted version to embed")
                    } else {
                        format!("no source named {name:?} in group {group:?}")
                    },
                    job: None,
                    existing: false,
                });
                continue;
            };
            let (job, existing) = self.write(|tx| {
                let mut records = Vec::new();
                let (job, existing) = enqueue(
                    tx,
                    version_id,
                    REEMBED,
                    actor,
                    max_attempts,
                    all,
                    &mut records,
                )?;
                let mut record = AuditRecord::new(
                    actor.clone(),
                    "reembed",
                    if existing { "existing" } else { "queued" },
                )
                .on(group, &name)
                .version(Some(format!("v{version_no}")))
                .detail(if existing {
                    format!("job {job} was already queued")
                } else {
                    format!("queued job {job}")
                });
                record.job = Some(job);
                records.push(record);
                Ok(((job, existing), records))
            })?;
            out.push(Queued {
                target: name.clone(),
                ok: true,
                message: if existing {
                    format!("{name} v{version_no} is already queued as job {job}")
                } else {
                    format!("queued {name} v{version_no} as job {job}")
                },
                job: self.job_info(job)?,
                existing,
            });
        }
        self.queue.wake.notify_one();
        Ok(out)
    }

    /// Queue failed or cancelled jobs again (`ids`, or every failed job of `group`).
    pub fn retry(
        &mut self,
        ids: &[i64],
        failed_in: Option<&str>,
        running: &[i64],
        actor: &Actor,
    ) -> Result<Vec<Queued>, CatalogError> {
        let ids: Vec<i64> = match failed_in {
            Some(group) => self
                .conn()
                .prepare_cached(
                    "SELECT j.id FROM jobs j JOIN groups g ON g.id = j.group_id
                     WHERE g.name = ?1 AND j.state = 'failed' ORDER BY j.id",
                )?
                .query_map([group], |r| r.get(0))?
                .collect::<Result<_, _>>()?,
            None => ids.to_vec(),
        };
        let max_attempts = self.queue.max_attempts;
        let mut out = Vec::new();
        for id in ids {
            let Some(job) = self.job_info(id)? else {
                out.push(refused(id, format!("no job {id}")));
                continue;
            };
            if running.contains(&id) {
                out.push(Queued {
                    target: id.to_string(),
                    ok: false,
                    message: format!(
                        "job {id} was cancelled but its worker is still finishing a batch; \
                         try again in a moment"
                    ),
                    job: Some(job),
                    existing: false,
                });
                continue;
            }
            if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
                out.push(Queued {
                    target: id.to_string(),
                    ok: false,
                    message: format!(
                        "job {id} is {}; only failed or cancelled jobs can be retried",
                        job.state
                    ),
                    job: Some(job),
                    existing: false,
                });
                continue;
            }
            let newest: i64 = self.conn().query_row(
                "SELECT MAX(v.version_no) FROM versions v JOIN jobs j ON j.source_id = v.source_id
                 WHERE j.id = ?1 AND v.version_no IS NOT NULL
                   AND v.status NOT IN ('invalid', 'deleting')",
                [id],
                |r| r.get::<_, Option<i64>>(0).map(Option::unwrap_or_default),
            )?;
            if format!("v{newest}") != job.version {
                out.push(Queued {
                    target: id.to_string(),
                    ok: false,
                    message: format!(
                        "job {id} embedded {} {}, which is no longer the newest version \
                         (v{newest}); run `ingestctl reembed {} -g {}` instead",
                        job.source, job.version, job.source, job.group
                    ),
                    job: Some(job),
                    existing: false,
                });
                continue;
            }
            let queued_other: Option<i64> = self
                .conn()
                .query_row(
                    "SELECT id FROM jobs WHERE state = 'queued' AND source_id =
                        (SELECT source_id FROM jobs WHERE id = ?1)",
                    [id],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(other) = queued_other {
                out.push(Queued {
                    target: id.to_string(),
                    ok: true,
                    message: format!("{} is already queued as job {other}", job.source),
                    job: self.job_info(other)?,
                    existing: true,
                });
                continue;
            }
            self.write(|tx| {
                let version_id: i64 =
                    tx.query_row("SELECT version_id FROM jobs WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                tx.execute(
                    "UPDATE jobs SET state = 'queued', attempt = 0, max_attempts = ?1,
                            error = NULL, not_before = NULL, started_at = NULL,
                            finished_at = NULL, rows_done = 0, reason = ?2,
                            requested_by = ?3, requested_uid = ?4, queued_at = ?5
                     WHERE id = ?6",
                    params![
                        max_attempts.max(1),
                        RETRY,
                        actor.display_name(),
                        actor.uid,
                        clock::now_ms(),
                        id
                    ],
                )?;
                set_version_status(tx, version_id, Status::Queued)?;
                let mut record = AuditRecord::new(actor.clone(), "retry", "queued")
                    .on(&job.group, &job.source)
                    .version(Some(job.version.clone()))
                    .detail(format!("job {id} queued again (was {})", job.state));
                record.job = Some(id);
                Ok(((), vec![record]))
            })?;
            out.push(Queued {
                target: id.to_string(),
                ok: true,
                message: format!("job {id} ({} {}) queued again", job.source, job.version),
                job: self.job_info(id)?,
                existing: false,
            });
        }
        self.queue.wake.notify_one();
        Ok(out)
    }

    /// Cancel jobs. Queued jobs end here; processing ones are marked `cancelled` here too,
    /// and the caller raises their workers' stop flags: a worker notices within one batch, and
    /// [`Db::finish_job`] discards what it wrote. Returns the outcome per id and the ids that
    /// were processing.
    pub fn cancel(
        &mut self,
        ids: &[i64],
        actor: &Actor,
    ) -> Result<(Vec<Queued>, Vec<i64>), CatalogError> {
        let mut out = Vec::new();
        let mut processing = Vec::new();
        for &id in ids {
            let Some(job) = self.job_info(id)? else {
                out.push(refused(id, format!("no job {id}")));
                continue;
            };
            if job.state.is_final() {
                out.push(Queued {
                    target: id.to_string(),
                    ok: false,
                    message: format!("job {id} is already {}", job.state),
                    job: Some(job),
                    existing: false,
                });
                continue;
            }
            let was = job.state;
            self.write(|tx| {
                let version_id: i64 =
                    tx.query_row("SELECT version_id FROM jobs WHERE id = ?1", [id], |r| {
                        r.get(0)
                    })?;
                tx.execute(
                    "UPDATE jobs SET state = 'cancelled', finished_at = ?1,
                            error = ?2 WHERE id = ?3",
                    params![
                        clock::now_ms(),
                        format!(
                            "cancelled by {}",
                            actor.display_name().unwrap_or_else(|| "the daemon".into())
                        ),
                        id
                    ],
                )?;
                settle_version_status(tx, version_id)?;
                sweep_retained(tx)?;
                let mut record = AuditRecord::new(actor.clone(), "cancel", "ok")
                    .on(&job.group, &job.source)
                    .version(Some(job.version.clone()))
                    .detail(format!(
                        "job {id} cancelled while {was}; the previous embeddings stay active"
                    ));
                record.job = Some(id);
                Ok(((), vec![record]))
            })?;
            if was == JobState::Processing {
                processing.push(id);
            }
            out.push(Queued {
                target: id.to_string(),
                ok: true,
                message: format!(
                    "cancelled job {id} ({} {}); the previous embeddings stay active",
                    job.source, job.version
                ),
                job: self.job_info(id)?,
                existing: false,
            });
        }
        Ok((out, processing))
    }

    /// `rm --force`: cancel the jobs processing the targets (so the delete guard lets them
    /// go); returns their ids for the workers to be stopped.
    pub fn cancel_for_delete(
        &mut self,
        group: &str,
        targets: &[String],
        actor: &Actor,
    ) -> Result<Vec<i64>, CatalogError> {
        let mut ids = Vec::new();
        for target in targets {
            let Ok((name, version)) = super::parse_target(target) else {
                continue;
            };
            if let Some(source_id) = self.source_id(group, name)? {
                ids.extend(
                    self.processing_jobs(source_id, version)?
                        .iter()
                        .map(|j| j.id),
                );
            }
        }
        let (_, processing) = self.cancel(&ids, actor)?;
        Ok(processing)
    }

    /// What a preview reads: the newest accepted version of `source` in `group`, as a job
    /// would see it.
    pub fn newest_version(&self, group: &str, source: &str) -> Result<Claimed, CatalogError> {
        let (path, format, columns, rows, version_no): (
            Option<String>,
            Option<String>,
            String,
            Option<i64>,
            i64,
        ) = self
            .conn()
            .query_row(
                "SELECT v.stored_path, v.format, v.columns, v.rows, v.version_no
                 FROM versions v JOIN sources s ON s.id = v.source_id
                 JOIN groups g ON g.id = s.group_id
                 WHERE g.name = ?1 AND s.name = ?2 AND v.version_no IS NOT NULL
                   AND v.status NOT IN ('invalid', 'deleting', 'validating')
                 ORDER BY v.version_no DESC LIMIT 1",
                params![group, source],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .optional()?
            .ok_or_else(|| {
                CatalogError::NotFound(format!("{source} has no accepted version to preview"))
            })?;
        Ok(Claimed {
            job: 0,
            group: group.to_string(),
            source: source.to_string(),
            version_no,
            stored_path: PathBuf::from(path.unwrap_or_default()),
            format: format.unwrap_or_default(),
            columns: serde_json::from_str(&columns).unwrap_or_default(),
            rows_total: rows.unwrap_or(0).max(0) as u64,
            prefs: self.prefs(group)?,
            switch_model: false,
            attempt: 0,
            max_attempts: 0,
        })
    }

    /// After a delete: a source left without active embeddings whose newest version has no
    /// job gets one (deleting the embedded v2 makes v1 the version to serve).
    pub fn embed_newest_if_bare(
        &mut self,
        source_id: i64,
        actor: &Actor,
    ) -> Result<Option<i64>, CatalogError> {
        let newest: Option<(i64, i64, String, String)> = self
            .conn()
            .query_row(
                "SELECT v.id, v.version_no, g.name, s.name FROM versions v
                 JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
                 WHERE v.source_id = ?1 AND v.version_no IS NOT NULL
                   AND v.status NOT IN ('invalid', 'deleting', 'validating')
                   AND NOT EXISTS (SELECT 1 FROM generations n
                                   WHERE n.source_id = ?1 AND n.state = 'active')
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.source_id = ?1
                                   AND j.state IN ('queued', 'processing'))
                 ORDER BY v.version_no DESC LIMIT 1",
                [source_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?;
        let Some((version_id, version_no, group, source)) = newest else {
            return Ok(None);
        };
        let max_attempts = self.queue.max_attempts;
        let job = self.write(|tx| {
            let mut records = Vec::new();
            let (job, _) = enqueue(
                tx,
                version_id,
                REEMBED,
                actor,
                max_attempts,
                false,
                &mut records,
            )?;
            let mut record = AuditRecord::new(actor.clone(), "reembed", "queued")
                .on(&group, &source)
                .version(Some(format!("v{version_no}")))
                .detail(format!(
                    "queued job {job}: v{version_no} is the newest version left and has no \
                     embeddings"
                ));
            record.job = Some(job);
            records.push(record);
            Ok((job, records))
        })?;
        self.queue.wake.notify_one();
        Ok(Some(job))
    }

    /// Processing jobs of `source_id` (of `version_no` only, if given): what blocks a delete.
    pub fn processing_jobs(
        &self,
        source_id: i64,
        version_no: Option<i64>,
    ) -> Result<Vec<JobInfo>, CatalogError> {
        let ids: Vec<i64> = self
            .conn()
            .prepare_cached(
                "SELECT j.id FROM jobs j JOIN versions v ON v.id = j.version_id
                 WHERE j.source_id = ?1 AND j.state = 'processing'
                   AND (?2 IS NULL OR v.version_no = ?2)",
            )?
            .query_map(params![source_id, version_no], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut jobs = Vec::new();
        for id in ids {
            jobs.extend(self.job_info(id)?);
        }
        Ok(jobs)
    }

    /// Start-up: jobs left `processing` by a stop go back to the queue with their attempt
    /// count. What their generations hold (every chunk that was committed) is retained for
    /// their next try to reuse; any other generation still being written is deleted.
    /// Returns (requeued, dropped).
    pub fn recover_jobs(&mut self) -> Result<(u64, u64), CatalogError> {
        let result = self.write(|tx| {
            tx.execute(
                "UPDATE generations SET state = ?1 WHERE state = ?2
                 AND job_id IN (SELECT id FROM jobs WHERE state = 'processing')",
                params![RETAINED, WRITING],
            )?;
            let writing: Vec<i64> = tx
                .prepare("SELECT id FROM generations WHERE state = ?1")?
                .query_map([WRITING], |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &writing {
                drop_generation(tx, *id)?;
            }
            let stuck: Vec<(i64, i64)> = tx
                .prepare("SELECT id, version_id FROM jobs WHERE state = 'processing'")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            for (id, version_id) in &stuck {
                tx.execute(
                    "UPDATE jobs SET state = 'queued', rows_done = 0, not_before = NULL,
                            error = 'the daemon stopped while this job ran; queued again'
                     WHERE id = ?1",
                    [id],
                )?;
                set_version_status(tx, *version_id, Status::Queued)?;
            }
            sweep_retained(tx)?;
            Ok(((stuck.len() as u64, writing.len() as u64), Vec::new()))
        })?;
        self.queue.wake.notify_one();
        Ok(result)
    }
}

fn refused(id: i64, message: String) -> Queued {
    Queued {
        target: id.to_string(),
        ok: false,
        message,
        job: None,
        existing: false,
    }
}

#[cfg(test)]
mod tests;
