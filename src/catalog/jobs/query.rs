//! Reading jobs: one job, listings, queue positions and counts, a source's active
//! generation, the next backoff to wait for, what blocks a delete, and what a preview reads.
//!
//! Positions come from [`super::order`], the same function the scheduler starts jobs with,
//! so the position a user sees is the order the daemon follows. Nothing here writes.

use super::Claimed;
use super::order::{self, Waiting};
use super::state::{Generation, job_state};
use crate::catalog::{CatalogError, Db};
use crate::clock;
use crate::protocol::{
    ActiveEmbeddings, Event, EventKind, JobInfo, JobState, Progress, QueuePosition,
};
use rusqlite::{OptionalExtension, params};
use std::collections::HashMap;
use std::path::PathBuf;

const JOB_COLUMNS: &str = "j.id, g.name, s.name, v.version_no, j.state, j.reason, j.attempt, \
     j.max_attempts, j.rows_done, j.rows_total, j.error, j.requested_by, j.queued_at, \
     j.started_at, j.finished_at, j.not_before";
const JOB_FROM: &str = "FROM jobs j JOIN groups g ON g.id = j.group_id \
     JOIN sources s ON s.id = j.source_id JOIN versions v ON v.id = j.version_id";

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobInfo> {
    Ok(JobInfo {
        id: r.get(0)?,
        group: r.get(1)?,
        source: r.get(2)?,
        version: format!("v{}", r.get::<_, Option<i64>>(3)?.unwrap_or(0)),
        state: job_state(r, 4)?,
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

impl Db {
    pub(super) fn job_event(&self, kind: EventKind, job: &JobInfo, detail: Option<String>) {
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

    pub(super) fn job_info(&self, id: i64) -> Result<Option<JobInfo>, CatalogError> {
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
                "SELECT id, group_id, source_id FROM jobs WHERE state = ?1
                 ORDER BY queued_at, id",
            )?
            .query_map([JobState::Queued.as_str()], |r| {
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
                 WHERE n.source_id = ?1 AND n.state = ?2",
                params![source_id, Generation::Active],
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
            "SELECT MIN(not_before) FROM jobs WHERE state = ?1 AND not_before > ?2",
            params![JobState::Queued.as_str(), clock::now_ms()],
            |r| r.get(0),
        )?)
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
                 WHERE j.source_id = ?1 AND j.state = ?3
                   AND (?2 IS NULL OR v.version_no = ?2)",
            )?
            .query_map(
                params![source_id, version_no, JobState::Processing.as_str()],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        let mut jobs = Vec::new();
        for id in ids {
            jobs.extend(self.job_info(id)?);
        }
        Ok(jobs)
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
            set: self.version_set(group, source, version_no)?,
            try_id: None,
        })
    }
}
