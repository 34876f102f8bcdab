//! A try of a job on PostgreSQL, after its claim ([`super::queue`]): its generation begun
//! ([`begin`]), its vectors written ([`write`], binary `COPY`), and the try ended ([`finish`]:
//! swap, requeue, failure, cancel), with the same rules as the SQLite catalog
//! (`catalog::jobs`) and one more: **fencing**. Every call names its try ([`Try`]: the job,
//! the node that runs it, the number its claim gave it), and does its work only while that
//! is the job's current try, checked under the job row's lock. A node whose lease was taken over (it was cut off, not dead) learns at its next
//! call that the job is no longer its own ([`Begun::Cancelled`], [`Written::Stopped`],
//! [`Finished::Dropped`]) and nothing it sends lands, so a source never gets two tries'
//! vectors or a half-written generation made active.
//!
//! The swap deletes the previous generation's vectors in its own transaction: PostgreSQL
//! locks rows, not the database, so unlike SQLite nothing else waits for that delete.
//! Audit records are written with the node's name, and each is sent to the other nodes as an
//! event ([`super::notify`]) when the transaction commits.

use super::notify;
use super::schema;
use super::{NOW_MS, PgError};
use crate::audit::AuditRecord;
use crate::catalog::jobs::{Begun, Ending, Finished, Generation, NewRow, RowVector, Written};
use crate::embed::Identity;
use crate::identity::{Actor, Resolve};
use crate::protocol::{JobState, Status};
use postgres::types::Type;
use postgres::{Client, Transaction};

/// The id of `identity`, recorded (and given its HNSW index) the first time it is seen. The
/// index is built outside any transaction of a job.
pub fn identity_id(client: &mut Client, identity: &Identity) -> Result<i32, PgError> {
    let dimension = i32::try_from(identity.dimension)
        .map_err(|_| PgError::Invalid(format!("dimension {}", identity.dimension)))?;
    let find = |client: &mut Client| -> Result<Option<i32>, PgError> {
        Ok(client
            .query_opt(
                "SELECT id FROM identities
                 WHERE provider = $1 AND model = $2 AND dimension = $3 AND weights_hash = $4",
                &[
                    &identity.provider,
                    &identity.model,
                    &dimension,
                    &identity.weights_hash,
                ],
            )?
            .map(|r| r.get(0)))
    };
    if let Some(id) = find(client)? {
        return Ok(id);
    }
    client.execute(
        "INSERT INTO identities (provider, model, dimension, weights_hash)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &[
            &identity.provider,
            &identity.model,
            &dimension,
            &identity.weights_hash,
        ],
    )?;
    let id = find(client)?.ok_or_else(|| PgError::Invalid("an identity vanished".into()))?;
    // Two jobs (or nodes) meeting a new identity at once would both create its index, and
    // the second `CREATE INDEX IF NOT EXISTS` fails on the catalog's unique name: one at a
    // time, under the schema's lock.
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&schema::LOCK_KEY])?;
    schema::ensure_index(&mut tx, id, identity.dimension)?;
    tx.commit()?;
    Ok(id)
}

/// One try of a job: the job, the node running it, and the number its claim gave it
/// (`queue::Started::try_id`, from a sequence: no two claims share one). A job cancelled,
/// retried and claimed again by the same node while the old try's worker still finishes has
/// a new number, so the old worker is fenced off too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Try<'a> {
    pub job: i64,
    pub node: &'a str,
    pub try_id: i64,
}

impl<'a> Try<'a> {
    /// The try a claim on `node` started.
    pub fn of(started: &crate::catalog::pg::queue::Started, node: &'a str) -> Self {
        Self {
            job: started.job,
            node,
            try_id: started.try_id,
        }
    }
}

/// The job's row, locked: `Some((source, group, version, switch_model))` while `at` is its
/// current try.
fn held(tx: &mut Transaction<'_>, at: &Try<'_>) -> Result<Option<(i64, i64, i64, bool)>, PgError> {
    let row = tx.query_opt(
        "SELECT source_id, group_id, version_id, switch_model FROM jobs
         WHERE id = $1 AND state = $2 AND node = $3 AND try_id = $4 FOR UPDATE",
        &[
            &at.job,
            &JobState::Processing.as_str(),
            &at.node,
            &at.try_id,
        ],
    )?;
    Ok(row.map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))))
}

/// Start an empty `writing` generation for the try `at`, made by `identity`
/// (whose id [`identity_id`] gave). Refused when the group's other sources hold embeddings
/// of another model and the job may not switch the group's model, as in SQLite.
pub fn begin(
    client: &mut Client,
    at: &Try<'_>,
    identity: &Identity,
    identity_id: i32,
) -> Result<Begun, PgError> {
    let job = at.job;
    let mut tx = client.transaction()?;
    let Some((source_id, group_id, version_id, switch)) = held(&mut tx, at)? else {
        tx.commit()?;
        return Ok(Begun::Cancelled);
    };
    let switching: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM jobs WHERE group_id = $1 AND switch_model
                            AND state IN ($2, $3))",
            &[
                &group_id,
                &JobState::Queued.as_str(),
                &JobState::Processing.as_str(),
            ],
        )?
        .get(0);
    if !switch && !switching {
        let other = tx.query_opt(
            "SELECT i.provider, i.model, COUNT(*) FROM generations n
             JOIN sources s ON s.id = n.source_id JOIN identities i ON i.id = n.identity_id
             WHERE s.group_id = $1 AND n.source_id != $2 AND n.state = $3
               AND n.identity_id != $4
             GROUP BY i.provider, i.model ORDER BY 3 DESC LIMIT 1",
            &[
                &group_id,
                &source_id,
                &Generation::Active.as_str(),
                &identity_id,
            ],
        )?;
        if let Some(other) = other {
            let (provider, model, n): (String, String, i64) =
                (other.get(0), other.get(1), other.get(2));
            let group: String = tx
                .query_one("SELECT name FROM groups WHERE id = $1", &[&group_id])?
                .get(0);
            tx.commit()?;
            return Ok(Begun::Refused(format!(
                "the group's other sources ({n} source{}) hold embeddings of {provider} model \
                 {model}, and the daemon now embeds with {} model {}; vectors of two models \
                 are never mixed in one group: switch the whole group with \
                 `ingestctl reembed --all -g {group}`",
                if n == 1 { "" } else { "s" },
                identity.provider,
                identity.model
            )));
        }
    }
    let id: i64 = tx
        .query_one(
            &format!(
                "INSERT INTO generations (source_id, version_id, job_id, state, identity_id,
                                          created_at)
                 VALUES ($1, $2, $3, $4, $5, {NOW_MS}) RETURNING id"
            ),
            &[
                &source_id,
                &version_id,
                &job,
                &Generation::Writing.as_str(),
                &identity_id,
            ],
        )?
        .get(0);
    tx.commit()?;
    Ok(Begun::Started(id))
}

/// Append `rows` to `generation` of the try `at` and record the job's progress (`done` rows),
/// in one transaction: embedded vectors by binary `COPY`, reused ones copied inside the
/// database. Nothing is stored unless `at` is still the job's current try and the generation
/// still being written by it.
pub fn write(
    client: &mut Client,
    at: &Try<'_>,
    generation: i64,
    rows: &[NewRow],
    done: u64,
) -> Result<Written, PgError> {
    let job = at.job;
    let mut tx = client.transaction()?;
    // Until the swap these rows are not searchable and a lost try is discarded: the commit
    // need not wait for the disk.
    tx.batch_execute("SET LOCAL synchronous_commit = off")?;
    if held(&mut tx, at)?.is_none() {
        tx.commit()?;
        return Ok(Written::Stopped);
    }
    let of = tx.query_opt(
        "SELECT identity_id, (SELECT group_id FROM sources WHERE id = source_id) FROM generations
         WHERE id = $1 AND job_id = $2 AND state = $3",
        &[&generation, &job, &Generation::Writing.as_str()],
    )?;
    let Some(of) = of else {
        tx.commit()?;
        return Ok(Written::Stopped);
    };
    let (identity_id, group_id): (i32, i64) = (of.get(0), of.get(1));
    let vector = tx.prepare("SELECT $1::vector")?.params()[0].clone();
    let types = [
        Type::INT8,
        Type::INT8,
        Type::INT4,
        Type::INT8,
        Type::TEXT,
        Type::BYTEA,
        vector,
        Type::BOOL,
    ];
    // Staged: out of the HNSW index, which would cost a graph insert per row here (`staging`).
    let sink = tx.copy_in(
        "COPY vectors (generation_id, row_no, identity_id, group_id, text, text_hash, embedding,
                       staged)
         FROM STDIN (FORMAT binary)",
    )?;
    let mut writer = postgres::binary_copy::BinaryCopyInWriter::new(sink, &types);
    let mut copies = Vec::new();
    for new in rows {
        let row = i64::try_from(new.row).map_err(|_| PgError::Invalid("row number".into()))?;
        match &new.vector {
            RowVector::Embedded(v) => {
                let embedding = pgvector::Vector::from(v.clone());
                writer.write(&[
                    &generation,
                    &row,
                    &identity_id,
                    &group_id,
                    &new.text,
                    &&new.text_hash[..],
                    &embedding,
                    &true,
                ])?;
            }
            RowVector::Copy {
                generation: from,
                row: from_row,
            } => copies.push((row, new, *from, *from_row as i64)),
        }
    }
    writer.finish()?;
    if !copies.is_empty() {
        copy_within(&mut tx, generation, identity_id, group_id, &copies)?;
    }
    tx.execute(
        "UPDATE generations SET rows = rows + $1 WHERE id = $2",
        &[&(rows.len() as i64), &generation],
    )?;
    tx.execute(
        "UPDATE jobs SET rows_done = $1 WHERE id = $2",
        &[&(done as i64), &job],
    )?;
    tx.commit()?;
    Ok(Written::Stored)
}

/// Write the rows of `copies` (row, the new row, the generation and row to copy the vector
/// from) into `generation` with vectors copied inside the database, so a vector never travels
/// to the node, in one statement: a re-embed that reuses 20,000 rows makes one round trip per
/// chunk, not one per row. Fails, naming one, if a vector to copy is gone.
fn copy_within(
    tx: &mut Transaction<'_>,
    generation: i64,
    identity_id: i32,
    group_id: i64,
    copies: &[(i64, &NewRow, i64, i64)],
) -> Result<(), PgError> {
    let rows: Vec<i64> = copies.iter().map(|c| c.0).collect();
    let texts: Vec<&str> = copies.iter().map(|c| c.1.text.as_str()).collect();
    let hashes: Vec<&[u8]> = copies.iter().map(|c| &c.1.text_hash[..]).collect();
    let froms: Vec<i64> = copies.iter().map(|c| c.2).collect();
    let from_rows: Vec<i64> = copies.iter().map(|c| c.3).collect();
    // The rows wanted, from the five arrays at parameters $n..$n+4.
    let wanted = |n: usize| {
        format!(
            "unnest(${}::bigint[], ${}::text[], ${}::bytea[], ${}::bigint[], ${}::bigint[])
             AS c(row_no, text, text_hash, from_generation, from_row)",
            n,
            n + 1,
            n + 2,
            n + 3,
            n + 4
        )
    };
    let params: [&(dyn postgres::types::ToSql + Sync); 8] = [
        &generation,
        &identity_id,
        &group_id,
        &rows,
        &texts,
        &hashes,
        &froms,
        &from_rows,
    ];
    let copied = tx.execute(
        &format!(
            "INSERT INTO vectors (generation_id, row_no, identity_id, group_id, text, text_hash,
                                  embedding, staged)
             SELECT $1, c.row_no, $2, $3, c.text, c.text_hash, x.embedding, true
             FROM {}
             JOIN vectors x ON x.generation_id = c.from_generation AND x.row_no = c.from_row",
            wanted(4)
        ),
        &params,
    )?;
    if copied == copies.len() as u64 {
        return Ok(());
    }
    let gone = tx.query_opt(
        &format!(
            "SELECT c.row_no, c.from_generation, c.from_row FROM {}
             WHERE NOT EXISTS (SELECT 1 FROM vectors x WHERE x.generation_id = c.from_generation
                                                         AND x.row_no = c.from_row)
             ORDER BY c.row_no LIMIT 1",
            wanted(1)
        ),
        &params[3..],
    )?;
    Err(PgError::Invalid(match gone {
        Some(r) => {
            let (row, from, from_row): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
            format!(
                "the vector of row {from_row} of generation {from}, to reuse for row {row}, is \
                 gone"
            )
        }
        None => format!(
            "{} of {} vectors to reuse were copied; the others are gone",
            copied,
            copies.len()
        ),
    }))
}

/// The version a job is for, as `v3`, with its group and source, for audit records.
fn names(tx: &mut Transaction<'_>, job: i64) -> Result<(String, String, String), PgError> {
    let r = tx.query_one(
        "SELECT g.name, s.name, v.version_no FROM jobs j JOIN versions v ON v.id = j.version_id
         JOIN sources s ON s.id = j.source_id JOIN groups g ON g.id = j.group_id
         WHERE j.id = $1",
        &[&job],
    )?;
    let version: Option<i64> = r.get(2);
    Ok((
        r.get(0),
        r.get(1),
        format!("v{}", version.unwrap_or_default()),
    ))
}

pub(super) fn set_version_status(
    tx: &mut Transaction<'_>,
    version_id: i64,
    status: Status,
) -> Result<(), PgError> {
    tx.execute(
        &format!(
            "UPDATE versions SET status = $1, updated_at = {NOW_MS}
             WHERE id = $2 AND status != 'deleting'"
        ),
        &[&status.as_str(), &version_id],
    )?;
    Ok(())
}

/// `embedded` if the version holds its source's active generation, else `ready`.
pub(super) fn settle_version_status(
    tx: &mut Transaction<'_>,
    version_id: i64,
) -> Result<(), PgError> {
    let active: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM generations WHERE version_id = $1 AND state = $2)",
            &[&version_id, &Generation::Active.as_str()],
        )?
        .get(0);
    let status = if active {
        Status::Embedded
    } else {
        Status::Ready
    };
    set_version_status(tx, version_id, status)
}

/// Drop a generation with its vectors; how many it held.
fn drop_generation(tx: &mut Transaction<'_>, generation: i64) -> Result<u64, PgError> {
    let rows: Option<i64> = tx
        .query_opt(
            "DELETE FROM generations WHERE id = $1 RETURNING rows",
            &[&generation],
        )?
        .map(|r| r.get(0));
    Ok(rows.unwrap_or(0).max(0) as u64)
}

/// End the try `at`: swap on success, otherwise keep the source's active generation. A job
/// whose current try is no longer `at` is not touched: only the generation this try wrote
/// goes ([`Finished::Dropped`], or `Cancelled` when it was cancelled).
pub fn finish(
    client: &mut Client,
    at: &Try<'_>,
    generation: Option<i64>,
    ending: Ending,
) -> Result<Finished, PgError> {
    let (job, node) = (at.job, at.node);
    let mut tx = client.transaction()?;
    let now: i64 = tx.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0);
    let Some((source_id, _group, version_id, _switch)) = held(&mut tx, at)? else {
        if let Some(generation) = generation {
            tx.execute(
                "DELETE FROM generations WHERE id = $1 AND job_id = $2 AND state = $3",
                &[&generation, &job, &Generation::Writing.as_str()],
            )?;
        }
        let state: Option<String> = tx
            .query_opt("SELECT state FROM jobs WHERE id = $1", &[&job])?
            .map(|r| r.get(0));
        tx.commit()?;
        return Ok(match state.as_deref() {
            Some("cancelled") => Finished::Cancelled,
            _ => Finished::Dropped,
        });
    };
    let set_job = |tx: &mut Transaction<'_>, state: JobState, error: Option<&str>| {
        tx.execute(
            "UPDATE jobs SET state = $1, finished_at = $2, error = $3, node = NULL,
                    lease_until = NULL
             WHERE id = $4",
            &[&state.as_str(), &now, &error, &job],
        )
    };
    let (group, source, version) = names(&mut tx, job)?;
    let record = |action: &'static str, outcome: &'static str, detail: String| {
        let mut r = AuditRecord::new(Actor::daemon(), action, outcome)
            .on(&group, &source)
            .version(Some(version.clone()))
            .detail(detail);
        r.job = Some(job);
        r
    };
    let finished = match ending {
        Ending::Done => {
            let Some(generation) = generation else {
                return Err(PgError::Invalid(format!(
                    "job {job} finished without a generation"
                )));
            };
            let newer: Option<i64> = tx
                .query_opt(
                    "SELECT v.version_no FROM generations n JOIN versions v ON v.id = n.version_id
                     WHERE n.source_id = $1 AND n.state = $3
                       AND v.version_no > (SELECT version_no FROM versions WHERE id = $2)",
                    &[&source_id, &version_id, &Generation::Active.as_str()],
                )?
                .map(|r| r.get(0));
            if let Some(newer) = newer {
                drop_generation(&mut tx, generation)?;
                set_job(
                    &mut tx,
                    JobState::Cancelled,
                    Some(&format!(
                        "v{newer} was embedded meanwhile; this older version's embeddings \
                         were not kept"
                    )),
                )?;
                settle_version_status(&mut tx, version_id)?;
                Finished::Dropped
            } else {
                let previous: Vec<(i64, i64)> = tx
                    .query(
                        "SELECT id, version_id FROM generations WHERE source_id = $1
                         AND state = $2 FOR UPDATE",
                        &[&source_id, &Generation::Active.as_str()],
                    )?
                    .iter()
                    .map(|r| (r.get(0), r.get(1)))
                    .collect();
                let mut replaced = 0;
                for (old, old_version) in &previous {
                    replaced += drop_generation(&mut tx, *old)?;
                    if *old_version != version_id {
                        set_version_status(&mut tx, *old_version, Status::Ready)?;
                    }
                }
                // Only the generation this try is writing: never a kept one, nor another job's.
                let rows: i64 = tx
                    .query_opt(
                        "UPDATE generations SET state = $1, activated_at = $2
                         WHERE id = $3 AND job_id = $4 AND state = $5 RETURNING rows",
                        &[
                            &Generation::Active.as_str(),
                            &now,
                            &generation,
                            &job,
                            &Generation::Writing.as_str(),
                        ],
                    )?
                    .ok_or_else(|| {
                        PgError::Invalid(format!(
                            "job {job} finished with generation {generation}, which is not the \
                             one it is writing"
                        ))
                    })?
                    .get(0);
                tx.execute(
                    "UPDATE jobs SET state = $1, finished_at = $2, error = NULL, node = NULL,
                            lease_until = NULL, rows_done = GREATEST(rows_total, $3)
                     WHERE id = $4",
                    &[&JobState::Completed.as_str(), &now, &rows, &job],
                )?;
                set_version_status(&mut tx, version_id, Status::Embedded)?;
                let plural = |n: u64| format!("{n} row{}", if n == 1 { "" } else { "s" });
                let detail = format!(
                    "{} now active{}",
                    plural(rows as u64),
                    if previous.is_empty() {
                        String::new()
                    } else {
                        format!(", replacing {}", plural(replaced))
                    }
                );
                super::audit(&mut tx, node, &record("swap", "ok", detail))?;
                Finished::Swapped {
                    rows: rows as u64,
                    replaced,
                }
            }
        }
        Ending::Retry { error, at_ms } => {
            retain(&mut tx, generation)?;
            tx.execute(
                "UPDATE jobs SET state = $1, error = $2, not_before = $3, node = NULL,
                        lease_until = NULL
                 WHERE id = $4",
                &[&JobState::Queued.as_str(), &error, &at_ms, &job],
            )?;
            set_version_status(&mut tx, version_id, Status::Queued)?;
            Finished::Requeued
        }
        Ending::Interrupted => {
            retain(&mut tx, generation)?;
            tx.execute(
                "UPDATE jobs SET state = $1, attempt = GREATEST(attempt - 1, 0), rows_done = 0,
                        node = NULL, lease_until = NULL,
                        error = 'interrupted by a daemon stop; queued again'
                 WHERE id = $2",
                &[&JobState::Queued.as_str(), &job],
            )?;
            set_version_status(&mut tx, version_id, Status::Queued)?;
            Finished::Requeued
        }
        Ending::Failed(error) => {
            if let Some(generation) = generation {
                drop_generation(&mut tx, generation)?;
            }
            set_job(&mut tx, JobState::Failed, Some(&error))?;
            set_version_status(&mut tx, version_id, Status::Failed)?;
            super::audit(&mut tx, node, &record("embed", "failed", error))?;
            Finished::Failed
        }
        Ending::Cancelled => {
            if let Some(generation) = generation {
                drop_generation(&mut tx, generation)?;
            }
            set_job(&mut tx, JobState::Cancelled, None)?;
            settle_version_status(&mut tx, version_id)?;
            Finished::Cancelled
        }
    };
    sweep_retained(&mut tx)?;
    // A slot is free on the cluster.
    notify::nudge(&mut tx, node)?;
    tx.commit()?;
    Ok(finished)
}

/// Keep what the try wrote for the job's next try to reuse.
fn retain(tx: &mut Transaction<'_>, generation: Option<i64>) -> Result<(), PgError> {
    if let Some(generation) = generation {
        tx.execute(
            "UPDATE generations SET state = $1 WHERE id = $2",
            &[&Generation::Retained.as_str(), &generation],
        )?;
    }
    Ok(())
}

/// Drop the retained generations of jobs that are no longer queued or processing.
pub(super) fn sweep_retained(tx: &mut Transaction<'_>) -> Result<(), PgError> {
    tx.execute(
        "DELETE FROM generations n WHERE n.state = $1 AND NOT EXISTS
             (SELECT 1 FROM jobs j WHERE j.id = n.job_id AND j.state IN ($2, $3))",
        &[
            &Generation::Retained.as_str(),
            &JobState::Queued.as_str(),
            &JobState::Processing.as_str(),
        ],
    )?;
    Ok(())
}
