//! Read models for `ls`, `show`, `groups` and `status` on PostgreSQL, as in SQLite
//! (`catalog::read`): a source is described by its newest accepted version, and by its newest
//! attempt's status and reason when that attempt came later and was rejected. Every node
//! answers for the cluster: what any node stored or rejected is listed, with the node that
//! holds each stored file left to the catalog (`versions.node`).

use super::PgError;
use super::jobs::list_jobs_in;
use crate::catalog::jobs::Generation;
use crate::clock;
use crate::protocol::{
    ActiveEmbeddings, GroupInfo, SkippedColumn, SourceDetail, SourceSummary, Status, VersionInfo,
};
use postgres::{Client, GenericClient, Row};
use std::collections::BTreeMap;

fn status_of(text: &str) -> Status {
    // A word no ingestd writes reads as `failed`, the status that asks for attention.
    Status::parse(text).unwrap_or(Status::Failed)
}

fn uid_of(value: Option<i64>) -> Option<u32> {
    value.and_then(|u| u32::try_from(u).ok())
}

fn summary_from_row(r: &Row) -> SourceSummary {
    let status = status_of(r.get(2));
    let reason = if status == Status::Invalid {
        r.get(3)
    } else {
        None
    };
    let uid = uid_of(r.get(8));
    let user: Option<String> = r.get(7);
    // A current version exists when its `version_no` (never NULL for one) is there.
    let current: Option<i64> = r.get(10);
    let json_list = |at: usize| r.get::<_, Option<String>>(at).unwrap_or_default();
    let (format, size): (Option<String>, Option<i64>) = if current.is_some() {
        (r.get(14), r.get(15))
    } else {
        (r.get(4), r.get(5))
    };
    SourceSummary {
        group: r.get(0),
        name: r.get(1),
        version: current.map(|n| format!("v{n}")),
        status,
        rows: r.get::<_, Option<i64>>(11).map(|n| n.max(0) as u64),
        columns: serde_json::from_str(&json_list(12)).unwrap_or_default(),
        skipped_columns: serde_json::from_str(&json_list(13)).unwrap_or_default(),
        reason,
        format,
        size: size.map(|s| s.max(0) as u64),
        sha256: r.get(16),
        added_at: Some(clock::rfc3339(r.get(6))),
        added_by: user.or_else(|| uid.map(|u| u.to_string())),
        added_by_uid: uid,
        updated_at: Some(clock::rfc3339(r.get(9))),
    }
}

/// Summaries of the sources of `group` (all if `None`), only `name` if given, sorted by group
/// and name.
pub fn summaries(
    client: &mut impl GenericClient,
    group: Option<&str>,
    name: Option<&str>,
) -> Result<Vec<SourceSummary>, PgError> {
    let rows = client.query(
        "SELECT g.name, s.name,
                v.status, v.reason, v.format, v.size, v.created_at, v.added_by,
                v.added_by_uid, v.updated_at,
                c.version_no, c.rows, c.columns, c.skipped_columns, c.format, c.size, c.sha256
         FROM groups g
         JOIN sources s ON s.group_id = g.id
         JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                    WHERE x.source_id = s.id AND x.status != 'deleting')
         LEFT JOIN versions c ON c.id = (SELECT MAX(y.id) FROM versions y
                                         WHERE y.source_id = s.id AND y.version_no IS NOT NULL
                                           AND y.status NOT IN ('invalid', 'deleting'))
         WHERE ($1::text IS NULL OR g.name = $1) AND ($2::text IS NULL OR s.name = $2)
         ORDER BY g.name, s.name",
        &[&group, &name],
    )?;
    Ok(rows.iter().map(summary_from_row).collect())
}

/// The active generation of a source.
fn active_embeddings(
    client: &mut impl GenericClient,
    source: i64,
) -> Result<Option<ActiveEmbeddings>, PgError> {
    Ok(client
        .query_opt(
            "SELECT v.version_no, n.rows, i.provider, i.model, i.dimension, n.job_id,
                    n.activated_at
             FROM generations n JOIN versions v ON v.id = n.version_id
             JOIN identities i ON i.id = n.identity_id
             WHERE n.source_id = $1 AND n.state = $2",
            &[&source, &Generation::Active.as_str()],
        )?
        .map(|r| ActiveEmbeddings {
            version: format!("v{}", r.get::<_, Option<i64>>(0).unwrap_or_default()),
            rows: r.get::<_, i64>(1).max(0) as u64,
            provider: r.get(2),
            model: r.get(3),
            dimension: r.get::<_, i32>(4).max(0) as u32,
            job: r.get(5),
            activated_at: clock::rfc3339(r.get::<_, Option<i64>>(6).unwrap_or(0)),
        }))
}

/// What `show` says when a name is not one source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotOne {
    Missing(String),
    Ambiguous(String),
}

/// One source with every version and attempt, newest first, its last 20 jobs and its active
/// embeddings.
pub fn show_source(
    client: &mut Client,
    group: Option<&str>,
    name: &str,
) -> Result<Result<SourceDetail, NotOne>, PgError> {
    // One moment of the catalog: never a swap's new embeddings with the status from before it.
    let mut tx = super::jobs::snapshot(client)?;
    let detail = show_source_in(&mut tx, group, name)?;
    tx.commit()?;
    Ok(detail)
}

fn show_source_in(
    client: &mut impl GenericClient,
    group: Option<&str>,
    name: &str,
) -> Result<Result<SourceDetail, NotOne>, PgError> {
    let found: Vec<(String, i64)> = client
        .query(
            "SELECT g.name, s.id FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE s.name = $1 AND ($2::text IS NULL OR g.name = $2) ORDER BY g.name",
            &[&name, &group],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (group_name, source) = match found.as_slice() {
        [] => {
            let place = match group {
                Some(g) => format!("in group {g:?}"),
                None => "in any group".to_string(),
            };
            return Ok(Err(NotOne::Missing(format!(
                "no source named {name:?} {place}; `ingestctl ls` lists the sources"
            ))));
        }
        [one] => one.clone(),
        many => {
            let groups: Vec<&str> = many.iter().map(|(g, _)| g.as_str()).collect();
            return Ok(Err(NotOne::Ambiguous(format!(
                "{name:?} exists in several groups ({}); say which with -g GROUP",
                groups.join(", ")
            ))));
        }
    };
    let Some(summary) = summaries(client, Some(&group_name), Some(name))?
        .into_iter()
        .next()
    else {
        return Ok(Err(NotOne::Missing(format!("source {name:?} vanished"))));
    };
    let versions = client
        .query(
            "SELECT version_no, status, reason, format, size, sha256, rows, columns,
                    skipped_columns, stored_path, created_at, added_by, added_by_uid, notes,
                    reading
             FROM versions WHERE source_id = $1 AND status != 'deleting' ORDER BY id DESC",
            &[&source],
        )?
        .iter()
        .map(|r| {
            let status = status_of(r.get(1));
            let uid = uid_of(r.get(12));
            let user: Option<String> = r.get(11);
            VersionInfo {
                version: r.get::<_, Option<i64>>(0).map(|n| format!("v{n}")),
                status,
                reason: r.get(2),
                format: r.get(3),
                size: r.get::<_, Option<i64>>(4).map(|s| s.max(0) as u64),
                sha256: r.get(5),
                rows: r.get::<_, Option<i64>>(6).map(|n| n.max(0) as u64),
                columns: serde_json::from_str(r.get(7)).unwrap_or_default(),
                skipped_columns: serde_json::from_str::<Vec<SkippedColumn>>(r.get(8))
                    .unwrap_or_default(),
                stored_path: if status == Status::Invalid {
                    None
                } else {
                    r.get(9)
                },
                added_at: clock::rfc3339(r.get(10)),
                added_by: user.or_else(|| uid.map(|u| u.to_string())),
                added_by_uid: uid,
                notes: serde_json::from_str(r.get(13)).unwrap_or_default(),
                reading: serde_json::from_str(r.get(14)).unwrap_or_default(),
            }
        })
        .collect();
    let ids: Vec<i64> = client
        .query(
            "SELECT id FROM jobs WHERE source_id = $1 ORDER BY id DESC LIMIT 20",
            &[&source],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let jobs = if ids.is_empty() {
        Vec::new()
    } else {
        let mut jobs = list_jobs_in(client, None, None, &ids, 20, None)?;
        jobs.reverse();
        jobs
    };
    Ok(Ok(SourceDetail {
        summary,
        versions,
        jobs,
        embeddings: active_embeddings(client, source)?,
        preview: None,
    }))
}

/// Every group with its sources counted by status (a source counts by its latest version,
/// as `ls` shows it) and its last activity, sorted by name; counted by the database.
pub fn group_counts(client: &mut Client) -> Result<Vec<GroupInfo>, PgError> {
    let mut groups: BTreeMap<String, GroupInfo> = BTreeMap::new();
    for row in client.query(
        "SELECT g.name, MAX(COALESCE(v.updated_at, g.created_at))
         FROM groups g LEFT JOIN sources s ON s.group_id = g.id
         LEFT JOIN versions v ON v.source_id = s.id GROUP BY g.id, g.name",
        &[],
    )? {
        let name: String = row.get(0);
        let last: Option<i64> = row.get(1);
        groups.insert(
            name.clone(),
            GroupInfo {
                name,
                current: false,
                sources: 0,
                by_status: BTreeMap::new(),
                last_activity: last.map(clock::rfc3339),
            },
        );
    }
    for row in client.query(
        "SELECT g.name, v.status, COUNT(*) FROM groups g
         JOIN sources s ON s.group_id = g.id
         JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                    WHERE x.source_id = s.id AND x.status != 'deleting')
         GROUP BY g.name, v.status",
        &[],
    )? {
        let name: String = row.get(0);
        let count = row.get::<_, i64>(2).max(0) as u64;
        if let Some(group) = groups.get_mut(&name) {
            group.sources += count;
            *group.by_status.entry(status_of(row.get(1))).or_default() += count;
        }
    }
    Ok(groups.into_values().collect())
}

/// The status `ls` shows for each of `sources` (group, name), `None` for a source the catalog
/// does not hold.
pub fn statuses_of(
    client: &mut Client,
    sources: &[(String, String)],
) -> Result<Vec<Option<Status>>, PgError> {
    let statement = client.prepare(
        "SELECT v.status FROM groups g
         JOIN sources s ON s.group_id = g.id
         JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                    WHERE x.source_id = s.id AND x.status != 'deleting')
         WHERE g.name = $1 AND s.name = $2",
    )?;
    sources
        .iter()
        .map(|(group, name)| {
            Ok(client
                .query_opt(&statement, &[group, name])?
                .map(|r| status_of(r.get(0))))
        })
        .collect()
}
