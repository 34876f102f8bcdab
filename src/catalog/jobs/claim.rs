//! Starting jobs: the scheduler's claim (FIFO within a group, round robin across groups, one
//! job per source, see [`super::order`]) and the start of a try's generation.
//!
//! A claim is one transaction that moves the picked jobs to `processing` and their versions
//! to `embedding`. A try's generation starts empty and `writing`; its rows arrive through
//! `vectors`. Nothing here ends a job (that is `finish`), and a job cancelled between its
//! claim and the start of its generation is an answer ([`Begun::Cancelled`]), not an error.

use super::order::{self, Waiting};
use super::plural;
use super::state::{Generation, job_state, set_version_status};
use crate::catalog::{CatalogError, Db};
use crate::clock;
use crate::embed::Identity;
use crate::protocol::{EventKind, JobState, PrefsInfo, Status};
use rusqlite::{OptionalExtension, params};
use std::collections::HashSet;
use std::path::PathBuf;

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
    /// The source's read options (`ingestctl set`) the version was read with: its rows are
    /// read with them again.
    pub set: Option<crate::protocol::ReadOverride>,
    /// On PostgreSQL, the number this claim gave the job's try: the worker names its try by
    /// it in every call, so a later try of the same job (cancelled, retried and claimed again
    /// while this worker still finishes) is never ended or written by this one. `None` on
    /// SQLite.
    pub try_id: Option<i64>,
}

/// What [`Db::begin_generation`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// A generation was started, empty and `writing`: its id.
    Started(i64),
    /// The job is no longer processing (cancelled, or deleted with its source) since its
    /// claim: the worker writes nothing and reports [`super::Ending::Cancelled`].
    Cancelled,
    /// The group's other sources hold embeddings of another model and this job may not
    /// switch it: the reason, for the job's error.
    Refused(String),
}

impl Db {
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
                 WHERE j.state = ?1 AND v.status != 'deleting'
                 ORDER BY j.queued_at, j.id",
            )?
            .query_map([JobState::Queued.as_str()], |r| {
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
            .prepare_cached("SELECT source_id FROM jobs WHERE state = ?1")?
            .query_map([JobState::Processing.as_str()], |r| r.get(0))?
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
                    "UPDATE jobs SET state = ?1, attempt = attempt + 1, started_at = ?2,
                            finished_at = NULL, rows_done = 0, not_before = NULL
                     WHERE id = ?3",
                    params![JobState::Processing.as_str(), now, id],
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
        let set = self.version_set(&group, &source, version_no)?;
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
            set,
            try_id: None,
        })
    }

    /// Start a generation for a processing job. Refused when the group's other sources hold
    /// embeddings of another model and the job may not switch the group's model.
    pub fn begin_generation(
        &mut self,
        job: i64,
        identity: &Identity,
    ) -> Result<Begun, CatalogError> {
        self.write(|tx| {
            let row: Option<(i64, i64, i64, bool, JobState)> = tx
                .query_row(
                    "SELECT source_id, group_id, version_id, switch_model, state FROM jobs
                     WHERE id = ?1",
                    [job],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, job_state(r, 4)?)),
                )
                .optional()?;
            // Cancelled (or deleted with its source) between its claim and now: write nothing.
            let Some((source_id, group_id, version_id, switch, JobState::Processing)) = row else {
                return Ok((Begun::Cancelled, Vec::new()));
            };
            // A `reembed --all` of the group still under way is switching it: jobs of its
            // other sources may use the new model too.
            let switching: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE group_id = ?1 AND switch_model = 1
                                AND state IN (?2, ?3))",
                params![
                    group_id,
                    JobState::Queued.as_str(),
                    JobState::Processing.as_str()
                ],
                |r| r.get(0),
            )?;
            if !switch && !switching {
                let other: Option<(String, String, i64)> = tx
                    .query_row(
                        "SELECT n.provider, n.model, COUNT(*) FROM generations n
                         JOIN sources s ON s.id = n.source_id
                         WHERE s.group_id = ?1 AND n.source_id != ?2 AND n.state = ?7
                           AND (n.provider, n.model, n.dimension, n.weights_hash)
                               != (?3, ?4, ?5, ?6)
                         GROUP BY n.provider, n.model ORDER BY 3 DESC LIMIT 1",
                        params![
                            group_id,
                            source_id,
                            identity.provider,
                            identity.model,
                            identity.dimension as i64,
                            identity.weights_hash,
                            Generation::Active
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
                        Begun::Refused(format!(
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
                    Generation::Writing,
                    identity.provider,
                    identity.model,
                    identity.dimension as i64,
                    identity.weights_hash,
                    clock::now_ms()
                ],
            )?;
            Ok((Begun::Started(tx.last_insert_rowid()), Vec::new()))
        })
    }
}
