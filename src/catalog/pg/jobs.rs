//! Jobs on PostgreSQL as users see and steer them, as in SQLite (`catalog::jobs::query` and
//! `requests`): one job, listings with queue positions, counts, the next backoff; re-embed,
//! retry and cancel; and what a claimed job's worker needs ([`claimed`]).
//!
//! Positions come from the same order function the claims follow, fed with the cluster's turn
//! (`queue_turn`), so the position a user sees on any node is the order the cluster starts
//! jobs in (modulo which node can read which file). A cancel of a job processing on another
//! node is a state change in the database: that node's next renewal or chunk learns of it
//! (fencing, `generations`), so it stops within one batch as a local cancel does.

use super::generations::{set_version_status, settle_version_status, sweep_retained};
use super::queue::enqueue;
use super::{NOW_MS, PgError};
use crate::audit::AuditRecord;
use crate::catalog::jobs::order::{self, Waiting};
use crate::catalog::jobs::{Claimed, Generation, REEMBED, RETRY};
use crate::clock;
use crate::identity::Actor;
use crate::protocol::{JobInfo, JobState, PrefsInfo, Progress, QueuePosition, Queued, Status};
use postgres::{Client, GenericClient, Row};
use std::collections::HashMap;
use std::path::PathBuf;

const JOB_COLUMNS: &str = "j.id, g.name, s.name, v.version_no, j.state, j.reason, j.attempt, \
     j.max_attempts, j.rows_done, j.rows_total, j.error, j.requested_by, j.queued_at, \
     j.started_at, j.finished_at, j.not_before";
const JOB_FROM: &str = "FROM jobs j JOIN groups g ON g.id = j.group_id \
     JOIN sources s ON s.id = j.source_id JOIN versions v ON v.id = j.version_id";

fn job_from_row(r: &Row) -> JobInfo {
    let count = |i: usize| r.get::<_, i64>(i).max(0) as u64;
    JobInfo {
        id: r.get(0),
        group: r.get(1),
        source: r.get(2),
        version: format!("v{}", r.get::<_, Option<i64>>(3).unwrap_or(0)),
        // A word no ingestd writes reads as `failed`, the state that asks for attention.
        state: JobState::parse(r.get(4)).unwrap_or(JobState::Failed),
        reason: r.get(5),
        attempt: r.get::<_, i32>(6).max(0) as u32,
        max_attempts: r.get::<_, i32>(7).max(0) as u32,
        progress: Progress {
            done: count(8),
            total: count(9),
        },
        position: None,
        error: r.get(10),
        requested_by: r.get(11),
        queued_at: clock::rfc3339(r.get(12)),
        started_at: r.get::<_, Option<i64>>(13).map(clock::rfc3339),
        finished_at: r.get::<_, Option<i64>>(14).map(clock::rfc3339),
        not_before: r.get::<_, Option<i64>>(15).map(clock::rfc3339),
    }
}

/// Queue positions of every queued job, in the order the cluster will start them.
fn positions(client: &mut impl GenericClient) -> Result<HashMap<i64, QueuePosition>, PgError> {
    let turn: Option<i64> = client
        .query_one("SELECT group_id FROM queue_turn", &[])?
        .get(0);
    let waiting: Vec<Waiting> = client
        .query(
            "SELECT id, group_id, source_id FROM jobs WHERE state = $1 ORDER BY queued_at, id",
            &[&JobState::Queued.as_str()],
        )?
        .iter()
        .map(|r| Waiting {
            id: r.get(0),
            group: r.get(1),
            source: r.get(2),
            due: true,
        })
        .collect();
    let group_of: HashMap<i64, i64> = waiting.iter().map(|w| (w.id, w.group)).collect();
    let mut in_group: HashMap<i64, u64> = HashMap::new();
    let mut positions = HashMap::new();
    for (index, id) in order::start_order(&waiting, turn).into_iter().enumerate() {
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

/// One job, with its queue position when queued.
pub fn job_info(client: &mut impl GenericClient, id: i64) -> Result<Option<JobInfo>, PgError> {
    let sql = format!("SELECT {JOB_COLUMNS} {JOB_FROM} WHERE j.id = $1");
    let mut job = client.query_opt(&sql, &[&id])?.map(|r| job_from_row(&r));
    if let Some(job) = job.as_mut().filter(|j| j.state == JobState::Queued) {
        job.position = positions(client)?.get(&job.id).copied();
    }
    Ok(job)
}

/// Jobs, oldest first (the newest `limit`, before the job id `before`), with queue positions.
pub fn list_jobs(
    client: &mut Client,
    group: Option<&str>,
    state: Option<JobState>,
    ids: &[i64],
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<JobInfo>, PgError> {
    let mut tx = snapshot(client)?;
    let jobs = list_jobs_in(&mut tx, group, state, ids, limit, before)?;
    tx.commit()?;
    Ok(jobs)
}

/// A read-only transaction that sees one moment of the catalog: a read of several
/// statements (jobs and their positions, a source and its jobs) never mixes the states
/// before and after another node's commit, such as a job listed queued without a position
/// because it was claimed between two statements.
pub fn snapshot(client: &mut Client) -> Result<postgres::Transaction<'_>, PgError> {
    Ok(client
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()?)
}

/// [`list_jobs`] inside the caller's snapshot.
pub fn list_jobs_in(
    tx: &mut impl GenericClient,
    group: Option<&str>,
    state: Option<JobState>,
    ids: &[i64],
    limit: u32,
    before: Option<i64>,
) -> Result<Vec<JobInfo>, PgError> {
    let sql = format!(
        "SELECT * FROM (SELECT {JOB_COLUMNS} {JOB_FROM}
         WHERE ($1::text IS NULL OR g.name = $1) AND ($2::text IS NULL OR j.state = $2)
           AND (cardinality($3::bigint[]) = 0 OR j.id = ANY($3))
           AND ($5::bigint IS NULL OR j.id < $5)
         ORDER BY j.id DESC LIMIT $4) newest ORDER BY 1"
    );
    let mut jobs: Vec<JobInfo> = tx
        .query(
            &sql,
            &[
                &group,
                &state.map(JobState::as_str),
                &ids,
                &i64::from(limit),
                &before,
            ],
        )?
        .iter()
        .map(job_from_row)
        .collect();
    if jobs.iter().any(|j| j.state == JobState::Queued) {
        let positions = positions(tx)?;
        for job in &mut jobs {
            job.position = positions.get(&job.id).copied();
        }
    }
    Ok(jobs)
}

/// Jobs by state, cluster-wide, for `status`.
pub fn queue_counts(client: &mut Client) -> Result<HashMap<JobState, u64>, PgError> {
    let mut counts = HashMap::new();
    for row in client.query("SELECT state, COUNT(*) FROM jobs GROUP BY state", &[])? {
        if let Some(state) = JobState::parse(row.get(0)) {
            counts.insert(state, row.get::<_, i64>(1).max(0) as u64);
        }
    }
    Ok(counts)
}

/// When the earliest queued job waiting out a backoff becomes due (database time, ms).
pub fn next_due(client: &mut Client) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_one(
            &format!("SELECT MIN(not_before) FROM jobs WHERE state = $1 AND not_before > {NOW_MS}"),
            &[&JobState::Queued.as_str()],
        )?
        .get(0))
}

/// A group's column and context preferences, with the columns its sources have.
pub fn prefs(client: &mut impl GenericClient, group: &str) -> Result<PrefsInfo, PgError> {
    let mut info = PrefsInfo {
        group: group.to_string(),
        ..PrefsInfo::default()
    };
    if let Some(r) = client.query_opt(
        "SELECT p.columns, p.context, p.template, p.sheet, p.updated_at, p.updated_by
         FROM preferences p JOIN groups g ON g.id = p.group_id WHERE g.name = $1",
        &[&group],
    )? {
        info.columns = serde_json::from_str(r.get(0)).unwrap_or_default();
        info.context = serde_json::from_str(r.get(1)).unwrap_or_default();
        info.template = r.get(2);
        info.sheet = r.get(3);
        info.updated_at = Some(clock::rfc3339(r.get(4)));
        info.updated_by = r.get(5);
    }
    // The columns of each source's current version, in the order they were first seen.
    let rows = client.query(
        "WITH current AS (SELECT source_id, MAX(id) AS id FROM versions
                          WHERE version_no IS NOT NULL AND status NOT IN ('invalid', 'deleting')
                          GROUP BY source_id)
         SELECT v.columns, MIN(v.id) AS first FROM current
         JOIN versions v ON v.id = current.id
         JOIN sources s ON s.id = current.source_id
         JOIN groups g ON g.id = s.group_id
         WHERE g.name = $1 GROUP BY v.columns ORDER BY first",
        &[&group],
    )?;
    for row in rows {
        let columns: Vec<String> = serde_json::from_str(row.get(0)).unwrap_or_default();
        for column in columns {
            if !info.known_columns.contains(&column) {
                info.known_columns.push(column);
            }
        }
    }
    Ok(info)
}

/// Everything the worker of a claimed job needs.
pub fn claimed(client: &mut Client, job: i64) -> Result<Claimed, PgError> {
    let r = client.query_one(
        "SELECT g.name, s.name, v.version_no, v.stored_path, v.format, v.columns, v.rows,
                j.switch_model, j.attempt, j.max_attempts
         FROM jobs j JOIN versions v ON v.id = j.version_id
         JOIN sources s ON s.id = j.source_id JOIN groups g ON g.id = j.group_id
         WHERE j.id = $1",
        &[&job],
    )?;
    let group: String = r.get(0);
    let (source, version_no): (String, i64) =
        (r.get(1), r.get::<_, Option<i64>>(2).unwrap_or_default());
    Ok(Claimed {
        job,
        set: super::manage::version_override(client, &group, &source, version_no)?,
        try_id: None,
        source,
        version_no,
        stored_path: PathBuf::from(r.get::<_, Option<String>>(3).unwrap_or_default()),
        format: r.get::<_, Option<String>>(4).unwrap_or_default(),
        columns: serde_json::from_str(r.get(5)).unwrap_or_default(),
        rows_total: r.get::<_, Option<i64>>(6).unwrap_or(0).max(0) as u64,
        switch_model: r.get(7),
        attempt: r.get::<_, i32>(8).max(0) as u32,
        max_attempts: r.get::<_, i32>(9).max(0) as u32,
        prefs: prefs(client, &group)?,
        group,
    })
}

fn refused(target: String, message: String, job: Option<JobInfo>) -> Queued {
    Queued {
        target,
        ok: false,
        message,
        job,
        existing: false,
    }
}

/// Queue a re-embed of the newest version of each of `sources` of `group` (every source with
/// `all`, which may switch the group's model), each audited; answered per source.
pub fn reembed(
    client: &mut Client,
    node: &str,
    group: &str,
    sources: &[String],
    all: bool,
    actor: &Actor,
    max_attempts: u32,
) -> Result<Result<Vec<Queued>, String>, PgError> {
    let Some(group_id) = client
        .query_opt("SELECT id FROM groups WHERE name = $1", &[&group])?
        .map(|r| r.get::<_, i64>(0))
    else {
        return Ok(Err(format!("no group named {group:?}")));
    };
    let names: Vec<String> = if all {
        client
            .query(
                "SELECT name FROM sources WHERE group_id = $1 ORDER BY name",
                &[&group_id],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect()
    } else {
        sources.to_vec()
    };
    let mut out = Vec::new();
    for name in names {
        let newest = client.query_opt(
            "SELECT v.id, v.version_no FROM versions v JOIN sources s ON s.id = v.source_id
             WHERE s.group_id = $1 AND s.name = $2 AND v.version_no IS NOT NULL
               AND v.status NOT IN ('invalid', 'deleting', 'validating')
             ORDER BY v.version_no DESC LIMIT 1",
            &[&group_id, &name],
        )?;
        let Some(newest) = newest else {
            let exists: bool = client
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM sources WHERE group_id = $1 AND name = $2)",
                    &[&group_id, &name],
                )?
                .get(0);
            if all && exists {
                continue;
            }
            let message = if exists {
                format!("{name} has no accepted version to embed")
            } else {
                format!("no source named {name:?} in group {group:?}")
            };
            out.push(refused(name.clone(), message, None));
            continue;
        };
        let (version_id, version_no): (i64, i64) = (newest.get(0), newest.get(1));
        let mut tx = client.transaction()?;
        let mut records = Vec::new();
        let (job, existing) = enqueue(
            &mut tx,
            node,
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
        for record in &records {
            super::audit(&mut tx, node, record)?;
        }
        tx.commit()?;
        out.push(Queued {
            target: name.clone(),
            ok: true,
            message: if existing {
                format!("{name} v{version_no} is already queued as job {job}")
            } else {
                format!("queued {name} v{version_no} as job {job}")
            },
            job: job_info(client, job)?,
            existing,
        });
    }
    Ok(Ok(out))
}

/// Queue failed or cancelled jobs again (`ids`, or every failed job of `failed_in`), each
/// audited; answered per job. Only a job of its source's newest version is retried, and
/// only when no other job of the source is queued; not while this node's worker of it
/// (`running`) is still finishing. A worker of it still finishing on another node is fenced
/// off by its try ([`super::generations::Try`]).
pub fn retry(
    client: &mut Client,
    node: &str,
    ids: &[i64],
    failed_in: Option<&str>,
    running: &[i64],
    actor: &Actor,
    max_attempts: u32,
) -> Result<Vec<Queued>, PgError> {
    let ids: Vec<i64> = match failed_in {
        Some(group) => client
            .query(
                "SELECT j.id FROM jobs j JOIN groups g ON g.id = j.group_id
                 WHERE g.name = $1 AND j.state = $2 ORDER BY j.id",
                &[&group, &JobState::Failed.as_str()],
            )?
            .iter()
            .map(|r| r.get(0))
            .collect(),
        None => ids.to_vec(),
    };
    let max_attempts = i32::try_from(max_attempts.max(1)).unwrap_or(i32::MAX);
    let mut out = Vec::new();
    for id in ids {
        let mut tx = client.transaction()?;
        // Locked: a retry of one job on two nodes at once queues it once.
        let locked = tx.query_opt("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", &[&id])?;
        let job = match locked {
            Some(_) => job_info(&mut tx, id)?,
            None => None,
        };
        let Some(job) = job else {
            out.push(refused(id.to_string(), format!("no job {id}"), None));
            continue;
        };
        if running.contains(&id) {
            let message = format!(
                "job {id} was cancelled but its worker is still finishing a batch; try again \
                 in a moment"
            );
            out.push(refused(id.to_string(), message, Some(job)));
            continue;
        }
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            let message = format!(
                "job {id} is {}; only failed or cancelled jobs can be retried",
                job.state
            );
            out.push(refused(id.to_string(), message, Some(job)));
            continue;
        }
        let newest: Option<i64> = tx
            .query_one(
                "SELECT MAX(v.version_no) FROM versions v JOIN jobs j ON j.source_id = v.source_id
                 WHERE j.id = $1 AND v.version_no IS NOT NULL
                   AND v.status NOT IN ('invalid', 'deleting')",
                &[&id],
            )?
            .get(0);
        let newest = newest.unwrap_or_default();
        if format!("v{newest}") != job.version {
            let message = format!(
                "job {id} embedded {} {}, which is no longer the newest version (v{newest}); \
                 run `ingestctl reembed {} -g {}` instead",
                job.source, job.version, job.source, job.group
            );
            out.push(refused(id.to_string(), message, Some(job)));
            continue;
        }
        let other: Option<i64> = tx
            .query_opt(
                "SELECT id FROM jobs WHERE state = $2 AND source_id =
                    (SELECT source_id FROM jobs WHERE id = $1)",
                &[&id, &JobState::Queued.as_str()],
            )?
            .map(|r| r.get(0));
        if let Some(other) = other {
            let info = job_info(&mut tx, other)?;
            out.push(Queued {
                target: id.to_string(),
                ok: true,
                message: format!("{} is already queued as job {other}", job.source),
                job: info,
                existing: true,
            });
            continue;
        }
        // A new place in line, taken under the claim lock as in `queue::enqueue`.
        tx.execute(
            "SELECT pg_advisory_xact_lock($1)",
            &[&super::queue::CLAIM_LOCK_KEY],
        )?;
        let version_id: i64 = tx
            .query_one(
                &format!(
                    "UPDATE jobs SET state = $6, attempt = 0, max_attempts = $1, error = NULL,
                            not_before = NULL, started_at = NULL, finished_at = NULL,
                            rows_done = 0, reason = $2, requested_by = $3, requested_uid = $4,
                            queued_at = {NOW_MS}, node = NULL, lease_until = NULL
                     WHERE id = $5 RETURNING version_id"
                ),
                &[
                    &max_attempts,
                    &RETRY,
                    &actor.display_name(),
                    &actor.uid.map(i64::from),
                    &id,
                    &JobState::Queued.as_str(),
                ],
            )?
            .get(0);
        set_version_status(&mut tx, version_id, Status::Queued)?;
        let mut record = AuditRecord::new(actor.clone(), "retry", "queued")
            .on(&job.group, &job.source)
            .version(Some(job.version.clone()))
            .detail(format!("job {id} queued again (was {})", job.state));
        record.job = Some(id);
        super::audit(&mut tx, node, &record)?;
        super::notify::nudge(&mut tx, node)?;
        let info = job_info(&mut tx, id)?;
        tx.commit()?;
        out.push(Queued {
            target: id.to_string(),
            ok: true,
            message: format!("job {id} ({} {}) queued again", job.source, job.version),
            job: info,
            existing: false,
        });
    }
    Ok(out)
}

/// Cancel jobs, each audited. A queued job ends here; a processing one is marked cancelled
/// here too, and its worker (on whichever node) stops at its next call. Answers the outcome
/// per id and the ids that were processing on `node`, whose workers the caller stops at once.
pub fn cancel(
    client: &mut Client,
    node: &str,
    ids: &[i64],
    actor: &Actor,
) -> Result<(Vec<Queued>, Vec<i64>), PgError> {
    let mut out = Vec::new();
    let mut here = Vec::new();
    for &id in ids {
        let mut tx = client.transaction()?;
        let row = tx.query_opt(
            "SELECT version_id, node FROM jobs WHERE id = $1 FOR UPDATE",
            &[&id],
        )?;
        let job = match &row {
            Some(_) => job_info(&mut tx, id)?,
            None => None,
        };
        let (Some(row), Some(job)) = (row, job) else {
            out.push(refused(id.to_string(), format!("no job {id}"), None));
            continue;
        };
        if job.state.is_final() {
            let message = format!("job {id} is already {}", job.state);
            out.push(refused(id.to_string(), message, Some(job)));
            continue;
        }
        let (version_id, running_on): (i64, Option<String>) = (row.get(0), row.get(1));
        let was = job.state;
        let by = actor.display_name().unwrap_or_else(|| "the daemon".into());
        tx.execute(
            &format!(
                "UPDATE jobs SET state = $1, finished_at = {NOW_MS}, error = $2, node = NULL,
                        lease_until = NULL
                 WHERE id = $3"
            ),
            &[
                &JobState::Cancelled.as_str(),
                &format!("cancelled by {by}"),
                &id,
            ],
        )?;
        settle_version_status(&mut tx, version_id)?;
        sweep_retained(&mut tx)?;
        let mut record = AuditRecord::new(actor.clone(), "cancel", "ok")
            .on(&job.group, &job.source)
            .version(Some(job.version.clone()))
            .detail(format!(
                "job {id} cancelled while {was}; the previous embeddings stay active"
            ));
        record.job = Some(id);
        super::audit(&mut tx, node, &record)?;
        if was == JobState::Processing {
            // A slot is free on the cluster once its worker stops.
            super::notify::nudge(&mut tx, node)?;
            if running_on.as_deref() == Some(node) {
                here.push(id);
            }
        }
        let info = job_info(&mut tx, id)?;
        tx.commit()?;
        out.push(Queued {
            target: id.to_string(),
            ok: true,
            message: format!(
                "cancelled job {id} ({} {}); the previous embeddings stay active",
                job.source, job.version
            ),
            job: info,
            existing: false,
        });
    }
    Ok((out, here))
}

/// Every text the try `job` may reuse instead of embedding it again: (hash, generation, row)
/// of the vectors of its source's active and retained generations made by `identity_id`,
/// except `generation` (the job's own, empty when this runs).
pub fn reusable_texts(
    client: &mut Client,
    job: i64,
    generation: i64,
    identity_id: i32,
) -> Result<Vec<([u8; 16], crate::catalog::jobs::Origin)>, PgError> {
    let rows = client.query(
        "SELECT x.text_hash, x.generation_id, x.row_no FROM generations n
         JOIN vectors x ON x.generation_id = n.id
         WHERE n.source_id = (SELECT source_id FROM jobs WHERE id = $1) AND n.id != $2
           AND n.state IN ($3, $4) AND n.identity_id = $5 AND x.text_hash IS NOT NULL",
        &[
            &job,
            &generation,
            &Generation::Active.as_str(),
            &Generation::Retained.as_str(),
            &identity_id,
        ],
    )?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let hash: &[u8] = r.get(0);
            let row: i64 = r.get(2);
            <[u8; 16]>::try_from(hash)
                .ok()
                .map(|h| (h, (r.get::<_, i64>(1), row.max(0) as u64)))
        })
        .collect())
}

/// What a preview reads: the newest accepted version of `source` in `group`, as a job would
/// see it, and the node that holds its file.
pub fn newest_version(
    client: &mut Client,
    group: &str,
    source: &str,
) -> Result<Result<(Claimed, String), String>, PgError> {
    let row = client.query_opt(
        "SELECT v.stored_path, v.format, v.columns, v.rows, v.version_no, v.node
         FROM versions v JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
         WHERE g.name = $1 AND s.name = $2 AND v.version_no IS NOT NULL
           AND v.status NOT IN ('invalid', 'deleting', 'validating')
         ORDER BY v.version_no DESC LIMIT 1",
        &[&group, &source],
    )?;
    let Some(r) = row else {
        return Ok(Err(format!("{source} has no accepted version to preview")));
    };
    let claimed = Claimed {
        job: 0,
        set: super::manage::version_override(client, group, source, r.get(4))?,
        try_id: None,
        group: group.to_string(),
        source: source.to_string(),
        version_no: r.get(4),
        stored_path: PathBuf::from(r.get::<_, Option<String>>(0).unwrap_or_default()),
        format: r.get::<_, Option<String>>(1).unwrap_or_default(),
        columns: serde_json::from_str(r.get(2)).unwrap_or_default(),
        rows_total: r.get::<_, Option<i64>>(3).unwrap_or(0).max(0) as u64,
        prefs: prefs(client, group)?,
        switch_model: false,
        attempt: 0,
        max_attempts: 0,
    };
    Ok(Ok((claimed, r.get(5))))
}
