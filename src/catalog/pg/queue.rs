//! The cluster's embedding queue on PostgreSQL: which node runs which job, and what happens
//! when a node stops answering.
//!
//! - **Claims** ([`claim`]) are serialized across the cluster by a transaction-level advisory
//!   lock, so the cap (`embedding.concurrency`) counts every node's processing jobs, and the
//!   order is the SQLite catalog's ([`crate::catalog::jobs::order`]): FIFO within a group,
//!   round robin across groups with the turn kept in the database (`queue_turn`), never two
//!   jobs of one source at once. The queued rows are read `FOR UPDATE SKIP LOCKED`: a job that
//!   another transaction is changing (a cancel, a delete) is passed over, not waited on.
//! - **Where a job runs.** A node claims only jobs whose stored file it holds, unless every
//!   node mounts the same storage (`cluster.shared_storage`). A group's oldest startable job
//!   that this node cannot read holds back the group's later jobs on this node: FIFO within a
//!   group holds across nodes, and the node that holds the file starts it.
//! - **Leases.** A claim gives the job a lease of `cluster.lease_secs`; its node renews the
//!   leases of the jobs it runs together with its heartbeat ([`renew`]). A job whose lease ran
//!   out is taken over by any node ([`take_over_expired`]): its try counts as an attempt, and
//!   it goes back to the queue with what the try wrote kept as a retained generation (never
//!   searchable; the next try, on any node, copies its vectors instead of embedding those
//!   rows again), or fails when it has no attempt left, and then keeps nothing. The node that lost it learns so
//!   at its next renewal and must stop; everything it would write afterwards is fenced off by
//!   the job no longer being `processing` on its name.
//! - **Time** is the database's clock, never a node's, so nodes whose clocks disagree still
//!   agree on when a lease runs out.
//!
//! Everything here is one short transaction per call, on a connection of the caller's.

use super::generations::{set_version_status, settle_version_status, sweep_retained};
use super::{NOW_MS, PgError};
use crate::catalog::jobs::Generation;
use crate::catalog::jobs::order::{self, Waiting};
use crate::protocol::{JobState, Status};
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Serializes claims across the cluster: `pg_advisory_xact_lock` key (the schema lock is
/// `…01`).
pub const CLAIM_LOCK_KEY: i64 = 0x696e_6765_7374_6402;

/// What a node is, as the queue sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// `cluster.node`.
    pub name: String,
    /// `cluster.lease_secs`.
    pub lease: Duration,
    /// `cluster.shared_storage`: every node can read every stored file.
    pub shared_storage: bool,
}

impl Member {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 4)
    }
}

/// A job a claim started on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    pub job: i64,
    pub group_id: i64,
    pub source_id: i64,
    pub version_id: i64,
    /// This try's number, from 1.
    pub attempt: i32,
    /// This try's number, unique in the cluster: what fences its calls (`generations::Try`).
    pub try_id: i64,
    /// Database time (ms) until which the lease holds.
    pub lease_until: i64,
}

/// Say which jobs were taken over, whoever noticed (a claim or the heartbeat).
pub fn log_taken_over(taken: &[TakenOver]) {
    for lost in taken {
        tracing::warn!(
            job = lost.job,
            node = %lost.node,
            requeued = lost.requeued,
            "took over a job whose node stopped renewing its lease"
        );
    }
}

/// A processing job taken from a node that stopped renewing its lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenOver {
    pub job: i64,
    /// The node that held it.
    pub node: String,
    /// The try that was interrupted.
    pub attempt: i32,
    /// Back in the queue (`true`) or failed for good (no attempt left).
    pub requeued: bool,
    /// Vectors deleted with the generations it was writing (none when it was queued again:
    /// they are kept for its next try).
    pub vectors_dropped: u64,
}

/// A node as the registry shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    pub ingestd_version: String,
}

/// The database's clock, in ms since the epoch.
pub fn now_ms(client: &mut impl postgres::GenericClient) -> Result<i64, PgError> {
    Ok(client.query_one(&format!("SELECT {NOW_MS}"), &[])?.get(0))
}

/// Enter the registry as `node` (or come back to it after a restart): started now, heartbeat
/// now.
pub fn join(client: &mut Client, node: &str) -> Result<(), PgError> {
    client.execute(
        "INSERT INTO nodes (name, started_at, heartbeat_at, ingestd_version)
         VALUES ($1, 0, 0, $2)
         ON CONFLICT (name) DO UPDATE SET ingestd_version = EXCLUDED.ingestd_version",
        &[&node, &env!("CARGO_PKG_VERSION")],
    )?;
    client.execute(
        &format!("UPDATE nodes SET started_at = {NOW_MS}, heartbeat_at = {NOW_MS} WHERE name = $1"),
        &[&node],
    )?;
    Ok(())
}

/// Every node that ever joined, by name.
pub fn nodes(client: &mut Client) -> Result<Vec<NodeInfo>, PgError> {
    Ok(client
        .query(
            "SELECT name, started_at, heartbeat_at, ingestd_version FROM nodes ORDER BY name",
            &[],
        )?
        .iter()
        .map(|r| NodeInfo {
            name: r.get(0),
            started_at: r.get(1),
            heartbeat_at: r.get(2),
            ingestd_version: r.get(3),
        })
        .collect())
}

/// The heartbeat: record that `member` is alive and extend the leases of the jobs it runs.
/// Answers which of `running` it no longer holds (taken over, cancelled, deleted): their
/// workers must stop, and nothing they write afterwards lands.
pub fn renew(client: &mut Client, member: &Member, running: &[i64]) -> Result<Vec<i64>, PgError> {
    let mut tx = client.transaction()?;
    let now = now_ms(&mut tx)?;
    tx.execute(
        "UPDATE nodes SET heartbeat_at = $2 WHERE name = $1",
        &[&member.name, &now],
    )?;
    // A job whose row a chunk of vectors being written holds is skipped, not waited on: the
    // heartbeat must not stall behind a slow write (and so let this node's other leases run
    // out), and a locked row cannot be taken over meanwhile (takeovers skip locked rows).
    // Its lease is renewed at the next beat.
    tx.execute(
        "UPDATE jobs SET lease_until = $3
         WHERE id IN (SELECT id FROM jobs WHERE id = ANY($2) AND node = $1 AND state = $4
                      FOR UPDATE SKIP LOCKED)",
        &[
            &member.name,
            &running,
            &now.saturating_add(member.lease_ms()),
            &JobState::Processing.as_str(),
        ],
    )?;
    let held: HashSet<i64> = tx
        .query(
            "SELECT id FROM jobs WHERE id = ANY($2) AND node = $1 AND state = $3",
            &[&member.name, &running, &JobState::Processing.as_str()],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.commit()?;
    Ok(running
        .iter()
        .copied()
        .filter(|id| !held.contains(id))
        .collect())
}

/// Start up to `slots` queued jobs on `member`, keeping at most `cap` processing across the
/// cluster. Expired leases are taken over first, so their slots count as free.
///
/// Seven round trips when a job starts: claims queue behind one lock, so each statement
/// counts (measured with `cargo bench --bench cluster`).
pub fn claim(
    client: &mut Client,
    member: &Member,
    cap: usize,
    slots: usize,
) -> Result<(Vec<Started>, Vec<TakenOver>), PgError> {
    let taken = take_over_expired(client)?;
    if slots == 0 {
        return Ok((Vec::new(), taken));
    }
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK_KEY])?;
    // Read after the lock: every claim before this one has committed. One row per
    // processing job (never two of one source), with the clock and the turn.
    let processing = JobState::Processing.as_str();
    let rows = tx.query(
        &format!(
            "SELECT t.group_id, {NOW_MS}, j.source_id FROM queue_turn t
             LEFT JOIN jobs j ON j.state = $1"
        ),
        &[&processing],
    )?;
    let turn: Option<i64> = rows.first().and_then(|r| r.get(0));
    let now: i64 = rows.first().map_or(0, |r| r.get(1));
    let busy: HashSet<i64> = rows.iter().filter_map(|r| r.get(2)).collect();
    let running = rows.iter().filter(|r| r.get::<_, Option<i64>>(2).is_some());
    let slots = slots.min(cap.saturating_sub(running.count()));
    if slots == 0 {
        tx.commit()?;
        return Ok((Vec::new(), taken));
    }
    // Claims are serialized, so the queue is read without locking its rows; only the picked
    // ones are locked, below.
    let rows = tx.query(
        "SELECT j.id, j.group_id, j.source_id, j.not_before IS NULL OR j.not_before <= $2,
                v.node = $3
         FROM jobs j JOIN versions v ON v.id = j.version_id
         WHERE j.state = $1 AND v.status != 'deleting'
         ORDER BY j.queued_at, j.id",
        &[&JobState::Queued.as_str(), &now, &member.name],
    )?;
    let mut blocked: HashSet<i64> = HashSet::new();
    let mut waiting = Vec::with_capacity(rows.len());
    for r in &rows {
        let job = Waiting {
            id: r.get(0),
            group: r.get(1),
            source: r.get(2),
            due: r.get(3),
        };
        let readable = member.shared_storage || r.get::<_, bool>(4);
        if blocked.contains(&job.group) {
            continue;
        }
        if !readable {
            // Startable now, by the node that holds its file: later jobs of its group wait
            // for it, here as on that node.
            if job.due && !busy.contains(&job.source) {
                blocked.insert(job.group);
            }
            continue;
        }
        waiting.push(job);
    }
    let (picked, turn) = order::pick(&waiting, &busy, turn, slots);
    if picked.is_empty() {
        tx.commit()?;
        return Ok((Vec::new(), taken));
    }
    // One statement starts the jobs, marks their versions and moves the turn. A picked job
    // that another transaction holds (a cancel, a delete under way) is skipped, and one that
    // changed state since the read is not started: `state` is checked again under the lock.
    let lease_until = now.saturating_add(member.lease_ms());
    let updated = tx.query(
        "WITH started AS (
             UPDATE jobs SET state = $2, attempt = attempt + 1, started_at = $3,
                    finished_at = NULL, rows_done = 0, not_before = NULL, node = $4,
                    lease_until = $5, try_id = nextval('try_ids')
             WHERE id IN (SELECT id FROM jobs WHERE id = ANY($1) AND state = $6
                          FOR UPDATE SKIP LOCKED)
             RETURNING id, group_id, source_id, version_id, attempt, try_id
         ), marked AS (
             UPDATE versions SET status = $7, updated_at = $3
             WHERE id IN (SELECT version_id FROM started) AND status != 'deleting'
         ), turned AS (
             UPDATE queue_turn SET group_id = $8
         )
         SELECT id, group_id, source_id, version_id, attempt, try_id FROM started",
        &[
            &picked,
            &processing,
            &now,
            &member.name,
            &lease_until,
            &JobState::Queued.as_str(),
            &Status::Embedding.as_str(),
            &turn,
        ],
    )?;
    let mut by_id: HashMap<i64, Started> = updated
        .iter()
        .map(|r| {
            let job: i64 = r.get(0);
            let started = Started {
                job,
                group_id: r.get(1),
                source_id: r.get(2),
                version_id: r.get(3),
                attempt: r.get(4),
                try_id: r.get(5),
                lease_until,
            };
            (job, started)
        })
        .collect();
    tx.commit()?;
    // In the order they were picked: the order the workers start them.
    let started = picked.iter().filter_map(|id| by_id.remove(id)).collect();
    Ok((started, taken))
}

/// Take over every processing job whose lease ran out, one transaction each (two nodes
/// doing this at once split the jobs between them).
pub fn take_over_expired(client: &mut Client) -> Result<Vec<TakenOver>, PgError> {
    let mut taken = Vec::new();
    // One round trip when, as nearly always, no lease ran out.
    let any: bool = client
        .query_one(
            &format!(
                "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = $1 AND lease_until < {NOW_MS})"
            ),
            &[&JobState::Processing.as_str()],
        )?
        .get(0);
    if !any {
        return Ok(taken);
    }
    loop {
        let mut tx = client.transaction()?;
        let now = now_ms(&mut tx)?;
        let row = tx.query_opt(
            "SELECT id FROM jobs WHERE state = $1 AND lease_until < $2
             ORDER BY lease_until LIMIT 1 FOR UPDATE SKIP LOCKED",
            &[&JobState::Processing.as_str(), &now],
        )?;
        let Some(row) = row else {
            tx.commit()?;
            return Ok(taken);
        };
        let job: i64 = row.get(0);
        let why = "stopped renewing its lease while this job ran";
        taken.push(interrupt(&mut tx, job, now, why)?);
        tx.commit()?;
    }
}

/// Start-up of `node`: the jobs it left processing (it stopped or crashed, and came back
/// before their leases ran out) are interrupted at once, as a takeover would.
pub fn recover_own(client: &mut Client, node: &str) -> Result<Vec<TakenOver>, PgError> {
    let mut tx = client.transaction()?;
    let now = now_ms(&mut tx)?;
    let jobs: Vec<i64> = tx
        .query(
            "SELECT id FROM jobs WHERE state = $1 AND node = $2 ORDER BY id FOR UPDATE",
            &[&JobState::Processing.as_str(), &node],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut taken = Vec::with_capacity(jobs.len());
    for job in jobs {
        taken.push(interrupt(&mut tx, job, now, "stopped while this job ran")?);
    }
    tx.commit()?;
    Ok(taken)
}

/// End the try of processing `job` (locked by the caller): queue it again, keeping what the
/// try wrote for the next one, or fail it when it has no attempt left, deleting that.
fn interrupt(
    tx: &mut postgres::Transaction<'_>,
    job: i64,
    now: i64,
    why: &str,
) -> Result<TakenOver, PgError> {
    let row = tx.query_one(
        "SELECT COALESCE(node, ''), attempt, max_attempts, version_id FROM jobs WHERE id = $1",
        &[&job],
    )?;
    let node: String = row.get(0);
    let attempt: i32 = row.get(1);
    let max_attempts: i32 = row.get(2);
    let version_id: i64 = row.get(3);
    let requeued = attempt < max_attempts;
    // Never an active generation: the source's current embeddings stay searchable. A job
    // queued again keeps what its try wrote as a retained generation, never searchable, that
    // its next try (on any node: the vectors are in the database) copies instead of embedding
    // again, as after a stop on SQLite; the try that lost the job is fenced off from it by its
    // try number. A job that failed for good keeps nothing.
    let dropped: Vec<i64> = if requeued {
        tx.execute(
            "UPDATE generations SET state = $2 WHERE job_id = $1 AND state = $3",
            &[
                &job,
                &Generation::Retained.as_str(),
                &Generation::Writing.as_str(),
            ],
        )?;
        Vec::new()
    } else {
        tx.query(
            "DELETE FROM generations WHERE job_id = $1 AND state IN ($2, $3) RETURNING rows",
            &[
                &job,
                &Generation::Writing.as_str(),
                &Generation::Retained.as_str(),
            ],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect()
    };
    let (state, status, error) = if requeued {
        (
            JobState::Queued,
            Status::Queued,
            format!(
                "node {node} {why} (attempt {attempt} of {max_attempts}); queued again, on any \
                 node that can read the file"
            ),
        )
    } else {
        (
            JobState::Failed,
            Status::Failed,
            format!("node {node} {why}, and that was the last of {max_attempts} attempts"),
        )
    };
    if requeued {
        // Startable again: every node's scheduler hears of it at the commit.
        super::notify::nudge(tx, "takeover")?;
    }
    let finished_at = (!requeued).then_some(now);
    tx.execute(
        "UPDATE jobs SET state = $2, error = $3, node = NULL, lease_until = NULL, rows_done = 0,
                not_before = NULL, finished_at = $4
         WHERE id = $1",
        &[&job, &state.as_str(), &error, &finished_at],
    )?;
    tx.execute(
        "UPDATE versions SET status = $2, updated_at = $3 WHERE id = $1 AND status != 'deleting'",
        &[&version_id, &status.as_str(), &now],
    )?;
    Ok(TakenOver {
        job,
        node,
        attempt,
        requeued,
        vectors_dropped: dropped.iter().map(|&n| n.max(0) as u64).sum(),
    })
}

/// Queue an embedding of `version_id` in the caller's transaction, as the SQLite catalog does
/// (`catalog::jobs::enqueue`): a job already queued for this version is the answer (marked to
/// switch the group's model when asked); jobs queued for older versions of the source are
/// cancelled as superseded, with an audit record each in `audit`. The other nodes' schedulers
/// are nudged when the transaction commits. Answers `(job, whether it was queued already)`.
#[allow(clippy::too_many_arguments)]
pub fn enqueue(
    tx: &mut postgres::Transaction<'_>,
    node: &str,
    version_id: i64,
    reason: &str,
    actor: &crate::identity::Actor,
    max_attempts: u32,
    switch_model: bool,
    audit: &mut Vec<crate::audit::AuditRecord>,
) -> Result<(i64, bool), PgError> {
    use crate::identity::Resolve;
    // Queued in commit order: a job's place (`queued_at`) is taken under the claim lock, held
    // to the commit, so no claim sees a job queued later while an earlier one is still
    // uncommitted (FIFO across nodes; the two-node test caught a claim doing that).
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CLAIM_LOCK_KEY])?;
    let row = tx.query_one(
        "SELECT v.source_id, s.group_id, v.version_no, v.rows, g.name, s.name
         FROM versions v JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
         WHERE v.id = $1",
        &[&version_id],
    )?;
    let (source_id, group_id, version_no, rows): (i64, i64, Option<i64>, Option<i64>) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let (group, source): (String, String) = (row.get(4), row.get(5));
    let version_no = version_no.unwrap_or_default();
    let queued: Vec<(i64, i64, Option<i64>)> = tx
        .query(
            "SELECT j.id, j.version_id, v.version_no FROM jobs j
             JOIN versions v ON v.id = j.version_id
             WHERE j.source_id = $1 AND j.state = $2 ORDER BY j.id FOR UPDATE OF j",
            &[&source_id, &JobState::Queued.as_str()],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let now = now_ms(tx)?;
    for (job, queued_version, old_no) in &queued {
        if *queued_version == version_id {
            if switch_model {
                tx.execute("UPDATE jobs SET switch_model = true WHERE id = $1", &[job])?;
            }
            return Ok((*job, true));
        }
        let why = format!("superseded by v{version_no}, which was queued after it");
        tx.execute(
            "UPDATE jobs SET state = $1, finished_at = $2, error = $3 WHERE id = $4",
            &[&JobState::Cancelled.as_str(), &now, &why, job],
        )?;
        settle_version_status(tx, *queued_version)?;
        let mut record = crate::audit::AuditRecord::new(
            crate::identity::Actor::daemon(),
            "cancel",
            "superseded",
        )
        .on(&group, &source)
        .version(Some(format!("v{}", old_no.unwrap_or_default())))
        .detail(format!("job {job} {why}"));
        record.job = Some(*job);
        audit.push(record);
    }
    if queued.iter().any(|(_, v, _)| *v != version_id) {
        // Kept only while their job may run again: a superseded job will not.
        sweep_retained(tx)?;
    }
    let max_attempts = i32::try_from(max_attempts.max(1)).unwrap_or(i32::MAX);
    let job: i64 = tx
        .query_one(
            "INSERT INTO jobs (group_id, source_id, version_id, state, reason, switch_model,
                               max_attempts, requested_by, requested_uid, rows_total, queued_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &group_id,
                &source_id,
                &version_id,
                &JobState::Queued.as_str(),
                &reason,
                &switch_model,
                &max_attempts,
                &actor.display_name(),
                &actor.uid.map(i64::from),
                &rows.unwrap_or(0),
                &now,
            ],
        )?
        .get(0);
    set_version_status(tx, version_id, Status::Queued)?;
    super::notify::nudge(tx, node)?;
    Ok((job, false))
}
