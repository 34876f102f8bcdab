//! What users ask of the queue: queue a job (for a new version, a re-embed, or a source a
//! delete left bare), retry, cancel, and the cancel `rm --force` makes so the delete guard
//! lets it through.
//!
//! Each request is one transaction per job that also keeps the version's status in step and
//! writes its audit record. A cancel ends a queued job here; a processing one is marked
//! `cancelled` here and its worker stopped by the caller, and `finish` discards what it wrote.
//! Nothing here touches an active generation: prior embeddings stay until a swap.

use super::state::{Generation, set_version_status, settle_version_status, sweep_retained};
use super::{REEMBED, RETRY};
use crate::audit::AuditRecord;
use crate::catalog::{CatalogError, Db};
use crate::clock;
use crate::identity::{Actor, Resolve};
use crate::protocol::{JobState, Queued, Status};
use rusqlite::{OptionalExtension, Transaction, params};

/// Queue a job for `version_id` in `tx`, or return the source's queued job for it.
///
/// A queued job of an older version of the same source is cancelled: only the newest version
/// gets embeddings, so embedding the older one would be wasted work.
pub(in crate::catalog) fn enqueue(
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
            "SELECT id, version_id FROM jobs WHERE source_id = ?1 AND state = ?2 ORDER BY id",
        )?
        .query_map(params![source_id, JobState::Queued.as_str()], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?
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
            "UPDATE jobs SET state = ?1, finished_at = ?2, error = ?3 WHERE id = ?4",
            params![JobState::Cancelled.as_str(), clock::now_ms(), why, job],
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
         VALUES (?1, ?2, ?3, ?11, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
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
            JobState::Queued.as_str(),
        ],
    )?;
    let job = tx.last_insert_rowid();
    set_version_status(tx, version_id, Status::Queued)?;
    Ok((job, false))
}

impl Db {
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
                     WHERE g.name = ?1 AND j.state = ?2 ORDER BY j.id",
                )?
                .query_map(params![group, JobState::Failed.as_str()], |r| r.get(0))?
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
                    "SELECT id FROM jobs WHERE state = ?2 AND source_id =
                        (SELECT source_id FROM jobs WHERE id = ?1)",
                    params![id, JobState::Queued.as_str()],
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
                    "UPDATE jobs SET state = ?7, attempt = 0, max_attempts = ?1,
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
                        id,
                        JobState::Queued.as_str()
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
                    "UPDATE jobs SET state = ?4, finished_at = ?1,
                            error = ?2 WHERE id = ?3",
                    params![
                        clock::now_ms(),
                        format!(
                            "cancelled by {}",
                            actor.display_name().unwrap_or_else(|| "the daemon".into())
                        ),
                        id,
                        JobState::Cancelled.as_str()
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
            let Ok((name, version)) = crate::catalog::parse_target(target) else {
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
                                   WHERE n.source_id = ?1 AND n.state = ?2)
                   AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.source_id = ?1
                                   AND j.state IN (?3, ?4))
                 ORDER BY v.version_no DESC LIMIT 1",
                params![
                    source_id,
                    Generation::Active,
                    JobState::Queued.as_str(),
                    JobState::Processing.as_str()
                ],
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
