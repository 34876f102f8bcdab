//! The management commands on PostgreSQL, as in SQLite (`catalog::manage` and
//! `catalog::read_options`): each user's current group, group preferences, a source's read
//! options, reading the audit trail, and deleting sources or versions, from any node.
//!
//! A delete is the SQLite protocol with one more case. Its rows are marked `deleting` (and
//! audited) first; a version whose file another node holds is handed to that node in the same
//! transaction (`pending_deletes`, see [`super::deletes`]); this node removes the files it
//! holds itself; then the rows go. A stop in between leaves marked rows that
//! [`finish_deletions`] finishes at the next start of the node that holds their files (or of
//! any node, for files already handed over), so a delete is never half visible: no listing
//! shows a version whose file is gone, and no file of a listed version is removed.

use super::deletes::{self, Request};
use super::jobs::{job_info, prefs};
use super::queue::enqueue;
use super::{NOW_MS, PgError, json};
use crate::audit::AuditRecord;
use crate::catalog::jobs::{Generation, REEMBED};
use crate::catalog::manage::{AuditFilter, DELETING, PrefsChange, parse_target};
use crate::catalog::read_options::{Applied, ReadAs, Reread};
use crate::catalog::retain::remove_stored;
use crate::clock;
use crate::identity::{Actor, Via};
use crate::protocol::{
    AuditEntry, JobInfo, JobState, PrefsInfo, ReadOverride, Reading, RmOutcome, SourceOverride,
};
use postgres::{Client, GenericClient};
use std::path::{Path, PathBuf};

/// Every group's name, sorted.
pub fn group_names(client: &mut Client) -> Result<Vec<String>, PgError> {
    Ok(client
        .query("SELECT name FROM groups ORDER BY name", &[])?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// The group `uid` chose with `use`.
pub fn current_group(client: &mut Client, uid: u32) -> Result<Option<String>, PgError> {
    Ok(client
        .query_opt(
            "SELECT group_name FROM current_groups WHERE uid = $1",
            &[&i64::from(uid)],
        )?
        .map(|r| r.get(0)))
}

/// Set (or with `None` clear) the group `uid` works in; the same on every node.
pub fn set_current_group(
    client: &mut Client,
    uid: u32,
    group: Option<&str>,
) -> Result<(), PgError> {
    let uid = i64::from(uid);
    match group {
        Some(group) => client.execute(
            &format!(
                "INSERT INTO current_groups (uid, group_name, updated_at) VALUES ($1, $2, {NOW_MS})
                 ON CONFLICT (uid) DO UPDATE SET group_name = $2, updated_at = {NOW_MS}"
            ),
            &[&uid, &group],
        )?,
        None => client.execute("DELETE FROM current_groups WHERE uid = $1", &[&uid])?,
    };
    Ok(())
}

/// The sheet a group's preferences name for spreadsheets, if any.
pub fn preferred_sheet(client: &mut Client, group: &str) -> Result<Option<String>, PgError> {
    Ok(client
        .query_opt(
            "SELECT p.sheet FROM preferences p JOIN groups g ON g.id = p.group_id
             WHERE g.name = $1",
            &[&group],
        )?
        .and_then(|r| r.get(0)))
}

/// Apply `change` to a group's preferences and audit it (the caller has validated it).
/// Two nodes changing one group at once are serialized on its row: neither change is lost.
pub fn set_prefs(
    client: &mut Client,
    node: &str,
    group: &str,
    change: PrefsChange,
    actor: &Actor,
    detail: String,
) -> Result<PrefsInfo, PgError> {
    let mut tx = client.transaction()?;
    let id: i64 = match tx.query_opt(
        &format!(
            "INSERT INTO groups (name, created_at) VALUES ($1, {NOW_MS})
             ON CONFLICT (name) DO NOTHING RETURNING id"
        ),
        &[&group],
    )? {
        Some(row) => row.get(0),
        None => tx
            .query_one("SELECT id FROM groups WHERE name = $1", &[&group])?
            .get(0),
    };
    tx.execute("SELECT 1 FROM groups WHERE id = $1 FOR UPDATE", &[&id])?;
    let mut next = if change.clear {
        PrefsInfo::default()
    } else {
        prefs(&mut tx, group)?
    };
    if let Some(columns) = change.columns {
        next.columns = columns;
    }
    if let Some(context) = change.context {
        next.context = context;
    }
    if let Some(template) = change.template {
        next.template = template;
    }
    if let Some(sheet) = change.sheet {
        next.sheet = sheet;
    }
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    tx.execute(
        &format!(
            "INSERT INTO preferences (group_id, columns, context, template, sheet, updated_at,
                                      updated_by)
             VALUES ($1, $2, $3, $4, $5, {NOW_MS}, $6)
             ON CONFLICT (group_id) DO UPDATE SET columns = $2, context = $3, template = $4,
                 sheet = $5, updated_at = {NOW_MS}, updated_by = $6"
        ),
        &[
            &id,
            &json(&next.columns),
            &json(&next.context),
            &next.template,
            &next.sheet,
            &actor.display_name(),
        ],
    )?;
    let record = AuditRecord::new(actor.clone(), "prefs", "ok")
        .in_group(group)
        .detail(detail);
    super::audit(&mut tx, node, &record)?;
    let info = prefs(&mut tx, group)?;
    tx.commit()?;
    Ok(info)
}

/// The cluster's audit trail, newest first, one page (as in SQLite: at most `filter.limit`
/// records after the cursor `filter.before`).
pub fn audit_entries(
    client: &mut Client,
    filter: &AuditFilter,
) -> Result<Vec<AuditEntry>, PgError> {
    let rows = client.query(
        "SELECT time, actor_uid, actor_user, via, action, group_name, source, version, job,
                outcome, detail, id
         FROM audit
         WHERE ($1::text IS NULL OR group_name = $1) AND ($2::bigint IS NULL OR time >= $2)
           AND ($3::text IS NULL OR action = $3)
           AND ($5::bigint IS NULL OR (time, id) <
                (SELECT c.time, c.id FROM audit c WHERE c.id = $5))
         ORDER BY time DESC, id DESC LIMIT $4",
        &[
            &filter.group,
            &filter.since_ms,
            &filter.action,
            &i64::from(filter.limit),
            &filter.before,
        ],
    )?;
    Ok(rows.iter().map(entry_of).collect())
}

/// Audit record `id` as it was written, without its id (the shape of `audit.jsonl`), if it
/// exists.
pub fn audit_record(client: &mut Client, id: i64) -> Result<Option<AuditEntry>, PgError> {
    let row = client.query_opt(
        "SELECT time, actor_uid, actor_user, via, action, group_name, source, version, job,
                outcome, detail, id
         FROM audit WHERE id = $1",
        &[&id],
    )?;
    Ok(row.map(|r| AuditEntry {
        id: None,
        ..entry_of(&r)
    }))
}

/// An entry from a row of `time, actor_uid, actor_user, via, action, group_name, source,
/// version, job, outcome, detail, id`.
fn entry_of(r: &postgres::Row) -> AuditEntry {
    let via: Option<String> = r.get(3);
    AuditEntry {
        id: Some(r.get(11)),
        time: clock::rfc3339(r.get(0)),
        actor: Actor {
            uid: r
                .get::<_, Option<i64>>(1)
                .and_then(|u| u32::try_from(u).ok()),
            user: r.get(2),
            via: via
                .and_then(|v| serde_json::from_value(serde_json::Value::String(v)).ok())
                .unwrap_or(Via::Daemon),
        },
        action: r.get(4),
        group: r.get(5),
        source: r.get(6),
        version: r.get(7),
        job: r.get(8),
        outcome: r.get(9),
        detail: r.get(10),
    }
}

fn source_id(
    client: &mut impl GenericClient,
    group: &str,
    name: &str,
) -> Result<Option<i64>, PgError> {
    Ok(client
        .query_opt(
            "SELECT s.id FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2",
            &[&group, &name],
        )?
        .map(|r| r.get(0)))
}

/// Processing jobs of `source_id` (of `version_no` only, if given): what blocks a delete.
fn processing_jobs(
    client: &mut impl GenericClient,
    source_id: i64,
    version_no: Option<i64>,
) -> Result<Vec<JobInfo>, PgError> {
    let ids: Vec<i64> = client
        .query(
            "SELECT j.id FROM jobs j JOIN versions v ON v.id = j.version_id
             WHERE j.source_id = $1 AND j.state = $3 AND ($2::bigint IS NULL OR v.version_no = $2)",
            &[&source_id, &version_no, &JobState::Processing.as_str()],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut jobs = Vec::new();
    for id in ids {
        jobs.extend(job_info(client, id)?);
    }
    Ok(jobs)
}

/// `rm --force` from `node`: cancel the jobs processing the targets (on any node) so the
/// delete guard lets them go; answers those that ran on `node`, whose workers the caller
/// stops (another node's worker learns of the cancel at its next call).
pub fn cancel_for_delete(
    client: &mut Client,
    node: &str,
    group: &str,
    targets: &[String],
    actor: &Actor,
) -> Result<Vec<i64>, PgError> {
    let mut ids = Vec::new();
    for target in targets {
        let Ok((name, version)) = parse_target(target) else {
            continue;
        };
        if let Some(source) = source_id(client, group, name)? {
            ids.extend(
                processing_jobs(client, source, version)?
                    .iter()
                    .map(|j| j.id),
            );
        }
    }
    let (_, here) = super::jobs::cancel(client, node, &ids, actor)?;
    Ok(here)
}

/// Delete `target` (`name` or `name@vN`) from `group`, from `node`, whose stored files are
/// under `storage_root`. Answered, never an error: the message says what went wrong.
pub fn delete(
    client: &mut Client,
    node: &str,
    storage_root: &Path,
    group: &str,
    target: &str,
    actor: &Actor,
    max_attempts: u32,
) -> RmOutcome {
    match try_delete(
        client,
        node,
        storage_root,
        group,
        target,
        actor,
        max_attempts,
    ) {
        Ok(outcome) => outcome,
        Err(error) => RmOutcome {
            target: target.to_string(),
            ok: false,
            message: error.to_string(),
            removed: Vec::new(),
            job: None,
        },
    }
}

/// A version as a delete sees it: id, number, stored path, status, the node holding it.
type VersionRow = (i64, Option<i64>, Option<String>, String, String);

fn try_delete(
    client: &mut Client,
    node: &str,
    storage_root: &Path,
    group: &str,
    target: &str,
    actor: &Actor,
    max_attempts: u32,
) -> Result<RmOutcome, PgError> {
    let (name, version) = parse_target(target).map_err(PgError::Invalid)?;
    let mut tx = client.transaction()?;
    let Some(source) = source_id(&mut tx, group, name)? else {
        return Err(PgError::Invalid(format!(
            "no source named {name:?} in group {group:?}"
        )));
    };
    // Locked: a delete and a store of one source on two nodes happen one after the other.
    tx.execute("SELECT 1 FROM sources WHERE id = $1 FOR UPDATE", &[&source])?;
    let rows: Vec<VersionRow> = tx
        .query(
            "SELECT id, version_no, stored_path, status, node FROM versions
             WHERE source_id = $1 AND status != 'deleting' ORDER BY id",
            &[&source],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    let chosen: Vec<&VersionRow> = match version {
        None => rows.iter().collect(),
        Some(no) => rows.iter().filter(|r| r.1 == Some(no)).collect(),
    };
    if chosen.is_empty() {
        let have: Vec<String> = rows
            .iter()
            .filter_map(|r| r.1.map(|n| format!("v{n}")))
            .collect();
        return Err(PgError::Invalid(format!(
            "{name} has no version v{} (versions: {})",
            version.unwrap_or(0),
            if have.is_empty() {
                "none".into()
            } else {
                have.join(", ")
            }
        )));
    }
    if chosen.iter().any(|r| r.3 == "validating") {
        return Err(PgError::Invalid(format!(
            "{target} is being stored right now; try again in a moment"
        )));
    }
    if let Some(job) = processing_jobs(&mut tx, source, version)?
        .into_iter()
        .next()
    {
        return Ok(RmOutcome {
            target: target.to_string(),
            ok: false,
            message: format!(
                "{name} {} is being embedded by job {} ({} of {} rows done); cancel it with \
                 `ingestctl cancel {}`, or delete with --force, which cancels it first",
                job.version, job.id, job.progress.done, job.progress.total, job.id
            ),
            removed: Vec::new(),
            job: Some(job),
        });
    }
    let removed: Vec<String> = chosen
        .iter()
        .filter_map(|r| r.1.map(|n| format!("v{n}")))
        .collect();
    let attempts = chosen.iter().filter(|r| r.1.is_none()).count();
    let mut detail = if version.is_some() {
        format!("deleted {}", removed.join(", "))
    } else {
        let mut text = format!(
            "deleted the source: {} version{}",
            removed.len(),
            if removed.len() == 1 { "" } else { "s" }
        );
        if attempts > 0 {
            text.push_str(&format!(
                " and {attempts} rejected attempt{}",
                if attempts == 1 { "" } else { "s" }
            ));
        }
        text
    };
    // 1: mark the rows, hand other nodes' files to them, audit.
    for (id, _, path, _, holder) in &chosen {
        tx.execute(
            &format!("UPDATE versions SET status = $1, updated_at = {NOW_MS} WHERE id = $2"),
            &[&DELETING, id],
        )?;
        if holder != node
            && let Some(path) = path
        {
            deletes::request(
                &mut tx,
                &Request {
                    holder,
                    group,
                    stored_path: Path::new(path),
                    version_id: Some(*id),
                    requested_by: actor.display_name().as_deref(),
                },
            )?;
        }
    }
    let record = AuditRecord::new(actor.clone(), "delete", "ok")
        .on(group, name)
        .version(version.map(|n| format!("v{n}")))
        .detail(detail.clone());
    super::audit(&mut tx, node, &record)?;
    tx.commit()?;
    // 2 and 3: remove this node's files, then the rows.
    finish_deletions(client, node, storage_root)?;
    // 4: the newest version left is the one to serve; embed it if nothing does.
    if let Some(job) = embed_newest_if_bare(client, node, source, actor, max_attempts)? {
        detail.push_str(&format!(
            "; the newest version left had no embeddings, queued job {job} for it"
        ));
    }
    Ok(RmOutcome {
        target: target.to_string(),
        ok: true,
        message: detail,
        removed,
        job: None,
    })
}

/// Remove the files `node` holds of rows marked `deleting`, then the rows whose files are
/// gone or handed to their holder (also start-up recovery). Answers how many rows went.
pub fn finish_deletions(
    client: &mut Client,
    node: &str,
    storage_root: &Path,
) -> Result<usize, PgError> {
    let mine: Vec<(i64, Option<String>)> = client
        .query(
            "SELECT id, stored_path FROM versions WHERE status = $1 AND node = $2",
            &[&DELETING, &node],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let mut gone: Vec<i64> = Vec::new();
    for (id, path) in mine {
        match path.map(PathBuf::from) {
            None => gone.push(id),
            Some(path) => match remove_stored(storage_root, &path) {
                Ok(()) => gone.push(id),
                // Kept marked (never listed): fsck reports it, and the next start tries again.
                Err(e) => tracing::warn!(
                    path = %path.display(),
                    "cannot remove a deleted version's file: {e}"
                ),
            },
        }
    }
    let mut tx = client.transaction()?;
    // Other nodes' files were handed to them when the rows were marked.
    let handed: Vec<i64> = tx
        .query(
            "SELECT v.id FROM versions v WHERE v.status = $1 AND v.node != $2
               AND (v.stored_path IS NULL
                    OR EXISTS (SELECT 1 FROM pending_deletes p WHERE p.version_id = v.id))",
            &[&DELETING, &node],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    gone.extend(handed);
    // The versions' generations (their vectors cascade) and jobs go with their rows: a search
    // never finds a row of a deleted version.
    tx.execute(
        "DELETE FROM generations WHERE version_id = ANY($1)",
        &[&gone],
    )?;
    tx.execute(
        "UPDATE generations SET job_id = NULL WHERE job_id IN
            (SELECT id FROM jobs WHERE version_id = ANY($1))",
        &[&gone],
    )?;
    tx.execute("DELETE FROM jobs WHERE version_id = ANY($1)", &[&gone])?;
    tx.execute("DELETE FROM versions WHERE id = ANY($1)", &[&gone])?;
    tx.execute(
        "DELETE FROM sources s WHERE NOT EXISTS (SELECT 1 FROM versions v WHERE v.source_id = s.id)",
        &[],
    )?;
    tx.commit()?;
    Ok(gone.len())
}

/// After a delete: a source left without active embeddings whose newest version has no job
/// gets one (deleting the embedded v2 makes v1 the version to serve).
pub fn embed_newest_if_bare(
    client: &mut Client,
    node: &str,
    source: i64,
    actor: &Actor,
    max_attempts: u32,
) -> Result<Option<i64>, PgError> {
    let mut tx = client.transaction()?;
    let newest = tx.query_opt(
        "SELECT v.id, v.version_no, g.name, s.name FROM versions v
         JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
         WHERE v.source_id = $1 AND v.version_no IS NOT NULL
           AND v.status NOT IN ('invalid', 'deleting', 'validating')
           AND NOT EXISTS (SELECT 1 FROM generations n WHERE n.source_id = $1 AND n.state = $2)
           AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.source_id = $1 AND j.state IN ($3, $4))
         ORDER BY v.version_no DESC LIMIT 1",
        &[
            &source,
            &Generation::Active.as_str(),
            &JobState::Queued.as_str(),
            &JobState::Processing.as_str(),
        ],
    )?;
    let Some(newest) = newest else {
        return Ok(None);
    };
    let (version_id, version_no, group, name): (i64, i64, String, String) =
        (newest.get(0), newest.get(1), newest.get(2), newest.get(3));
    let mut records = Vec::new();
    let (job, _) = enqueue(
        &mut tx,
        node,
        version_id,
        REEMBED,
        actor,
        max_attempts,
        false,
        &mut records,
    )?;
    let mut record = AuditRecord::new(actor.clone(), "reembed", "queued")
        .on(&group, &name)
        .version(Some(format!("v{version_no}")))
        .detail(format!(
            "queued job {job}: v{version_no} is the newest version left and has no embeddings"
        ));
    record.job = Some(job);
    records.push(record);
    for record in &records {
        super::audit(&mut tx, node, record)?;
    }
    tx.commit()?;
    Ok(Some(job))
}

/// The read options set for `source` of `group` (`ingestctl set`), if any.
pub fn source_override(
    client: &mut impl GenericClient,
    group: &str,
    source: &str,
) -> Result<Option<SourceOverride>, PgError> {
    Ok(client
        .query_opt(
            "SELECT r.options, r.set_by, r.set_at FROM source_reading r
             JOIN sources s ON s.id = r.source_id JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2",
            &[&group, &source],
        )?
        .map(|r| SourceOverride {
            options: serde_json::from_str(r.get(0)).unwrap_or_default(),
            set_by: r.get(1),
            set_at: clock::rfc3339(r.get(2)),
        }))
}

/// The newest accepted version of `source`, as a job or a re-embed would pick it.
fn newest(
    client: &mut impl GenericClient,
    group: &str,
    source: &str,
) -> Result<Option<Reread>, PgError> {
    Ok(client
        .query_opt(
            "SELECT v.id, v.version_no, v.stored_path, v.format, v.columns, v.node
             FROM versions v JOIN sources s ON s.id = v.source_id
             JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2 AND v.version_no IS NOT NULL
               AND v.status NOT IN ('invalid', 'deleting', 'validating', 'pruned')
             ORDER BY v.version_no DESC LIMIT 1",
            &[&group, &source],
        )?
        .map(|r| Reread {
            group: group.to_string(),
            source: source.to_string(),
            version_id: r.get(0),
            version_no: r.get(1),
            stored_path: PathBuf::from(r.get::<_, Option<String>>(2).unwrap_or_default()),
            format: r.get::<_, Option<String>>(3).unwrap_or_default(),
            columns: serde_json::from_str(r.get(4)).unwrap_or_default(),
        }))
}

/// The newest accepted version of `source`, which `set` reads again, and the node that holds
/// its file (only that node, or any with shared storage, can read it).
pub fn version_to_reread(
    client: &mut Client,
    group: &str,
    source: &str,
) -> Result<Result<(Reread, String), String>, PgError> {
    let mut tx = client.transaction()?;
    let exists: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2)",
            &[&group, &source],
        )?
        .get(0);
    if !exists {
        return Ok(Err(format!(
            "no source named {source:?} in group {group:?}"
        )));
    }
    let Some(reread) = newest(&mut tx, group, source)? else {
        return Ok(Err(format!(
            "{source} has no accepted version to read again; its options apply to files \
             accepted from now on only once one was"
        )));
    };
    let holder: String = tx
        .query_one(
            "SELECT node FROM versions WHERE id = $1",
            &[&reread.version_id],
        )?
        .get(0);
    tx.commit()?;
    Ok(Ok((reread, holder)))
}

/// Store `options` for the source of `reread` (`None`: remove them), make the version read as
/// `read`, audit it with `detail` and queue its embedding job, in one transaction;
/// `Ok(Err(why))` when a newer version arrived since `reread` was chosen (nothing changed).
#[allow(clippy::too_many_arguments)]
pub fn apply_override(
    client: &mut Client,
    node: &str,
    reread: &Reread,
    options: Option<&ReadOverride>,
    read: &ReadAs,
    actor: &Actor,
    detail: String,
    max_attempts: u32,
) -> Result<Result<Applied, String>, PgError> {
    let (group, source) = (reread.group.as_str(), reread.source.as_str());
    let mut tx = client.transaction()?;
    let source_id: i64 = tx
        .query_one(
            "SELECT source_id FROM versions WHERE id = $1",
            &[&reread.version_id],
        )?
        .get(0);
    // Locked: a store of this source on another node waits, or has already happened.
    tx.execute(
        "SELECT 1 FROM sources WHERE id = $1 FOR UPDATE",
        &[&source_id],
    )?;
    let current = newest(&mut tx, group, source)?;
    if current.as_ref().map(|v| v.version_id) != Some(reread.version_id) {
        return Ok(Err(format!(
            "a newer version of {source} arrived while v{} was read again; nothing was \
             changed, run the command again",
            reread.version_no
        )));
    }
    tx.execute(
        &format!(
            "UPDATE versions SET columns = $1, skipped_columns = $2, rows = $3, notes = $4,
                    reading = $5, updated_at = {NOW_MS}
             WHERE id = $6"
        ),
        &[
            &json(&read.columns),
            &json(&read.skipped),
            &(read.rows as i64),
            &json(&read.notes),
            &json(&read.reading),
            &reread.version_id,
        ],
    )?;
    match options {
        Some(options) => tx.execute(
            &format!(
                "INSERT INTO source_reading (source_id, options, set_by, set_uid, set_at)
                 VALUES ($1, $2, $3, $4, {NOW_MS})
                 ON CONFLICT (source_id) DO UPDATE SET options = EXCLUDED.options,
                    set_by = EXCLUDED.set_by, set_uid = EXCLUDED.set_uid,
                    set_at = EXCLUDED.set_at"
            ),
            &[
                &source_id,
                &json(options),
                &actor.display_name(),
                &actor.uid.map(i64::from),
            ],
        )?,
        None => tx.execute(
            "DELETE FROM source_reading WHERE source_id = $1",
            &[&source_id],
        )?,
    };
    let mut records = Vec::new();
    let (job, _) = enqueue(
        &mut tx,
        node,
        reread.version_id,
        REEMBED,
        actor,
        max_attempts,
        false,
        &mut records,
    )?;
    let mut record = AuditRecord::new(actor.clone(), "set", "ok")
        .on(group, source)
        .version(Some(format!("v{}", reread.version_no)))
        .detail(detail);
    record.job = Some(job);
    records.push(record);
    for record in &records {
        super::audit(&mut tx, node, record)?;
    }
    let options = source_override(&mut tx, group, source)?;
    tx.commit()?;
    Ok(Ok(Applied { options, job }))
}

/// The read options version `version_no` of `source` was read with: a row stream must read
/// the file exactly as its columns were read.
pub fn version_override(
    client: &mut Client,
    group: &str,
    source: &str,
    version_no: i64,
) -> Result<Option<ReadOverride>, PgError> {
    let reading: Option<String> = client
        .query_opt(
            "SELECT v.reading FROM versions v JOIN sources s ON s.id = v.source_id
             JOIN groups g ON g.id = s.group_id
             WHERE g.name = $1 AND s.name = $2 AND v.version_no = $3",
            &[&group, &source, &version_no],
        )?
        .map(|r| r.get(0));
    Ok(reading
        .and_then(|text| serde_json::from_str::<Reading>(&text).ok())
        .and_then(|reading| reading.set))
}
