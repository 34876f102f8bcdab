//! Read models for `ls`, `show`, `groups` and `status`, straight from the catalog.
//!
//! A source is described by its newest accepted version; when its newest attempt came later
//! and was rejected, the status and reason are that attempt's, so a user sees at once that
//! their last drop was refused while the version they had stays listed.

use super::{CatalogError, Db};
use crate::clock;
use crate::protocol::{GroupInfo, SkippedColumn, SourceDetail, SourceSummary, Status, VersionInfo};
use rusqlite::{OptionalExtension, Row};
use std::collections::{BTreeMap, HashMap};

const VERSION_COLUMNS: &str = "v.version_no, v.status, v.reason, v.format, v.size, v.sha256, \
     v.rows, v.columns, v.skipped_columns, v.stored_path, v.created_at, v.added_by, \
     v.added_by_uid, v.updated_at, v.notes, v.reading";

fn version_from_row(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<(VersionInfo, i64)>> {
    let Some(status) = r.get::<_, Option<String>>(at + 1)? else {
        return Ok(None);
    };
    let columns: Vec<String> =
        serde_json::from_str(&r.get::<_, String>(at + 7)?).unwrap_or_default();
    let skipped: Vec<SkippedColumn> =
        serde_json::from_str(&r.get::<_, String>(at + 8)?).unwrap_or_default();
    let uid: Option<u32> = r.get(at + 12)?;
    let user: Option<String> = r.get(at + 11)?;
    let status = Status::parse(&status).unwrap_or(Status::Failed);
    let info = VersionInfo {
        version: r.get::<_, Option<i64>>(at)?.map(|n| format!("v{n}")),
        status,
        reason: r.get(at + 2)?,
        format: r.get(at + 3)?,
        size: r.get::<_, Option<i64>>(at + 4)?.map(|s| s as u64),
        sha256: r.get(at + 5)?,
        rows: r.get::<_, Option<i64>>(at + 6)?.map(|n| n as u64),
        columns,
        skipped_columns: skipped,
        stored_path: if status == Status::Invalid {
            None
        } else {
            r.get(at + 9)?
        },
        added_at: clock::rfc3339(r.get(at + 10)?),
        added_by: user.or_else(|| uid.map(|u| u.to_string())),
        added_by_uid: uid,
        notes: serde_json::from_str(&r.get::<_, String>(at + 14)?).unwrap_or_default(),
        reading: serde_json::from_str(&r.get::<_, String>(at + 15)?).unwrap_or_default(),
    };
    Ok(Some((info, r.get(at + 13)?)))
}

/// One row of [`Db::summaries`]: the source, its latest version's status and who added it,
/// and its current version's contents.
fn summary_from_row(r: &Row<'_>) -> rusqlite::Result<SourceSummary> {
    let status = Status::parse(&r.get::<_, String>(2)?).unwrap_or(Status::Failed);
    let reason = if status == Status::Invalid {
        r.get(3)?
    } else {
        None
    };
    let uid: Option<u32> = r.get(8)?;
    let user: Option<String> = r.get(7)?;
    // A current version exists when its `version_no` (never NULL for one) is there.
    let current = r.get::<_, Option<i64>>(10)?;
    let json_list = |at: usize| -> rusqlite::Result<String> {
        Ok(r.get::<_, Option<String>>(at)?.unwrap_or_default())
    };
    let (format, size) = if current.is_some() {
        (r.get(14)?, r.get::<_, Option<i64>>(15)?)
    } else {
        (r.get(4)?, r.get::<_, Option<i64>>(5)?)
    };
    Ok(SourceSummary {
        group: r.get(0)?,
        name: r.get(1)?,
        version: current.map(|n| format!("v{n}")),
        status,
        rows: r.get::<_, Option<i64>>(11)?.map(|n| n as u64),
        columns: serde_json::from_str(&json_list(12)?).unwrap_or_default(),
        skipped_columns: serde_json::from_str(&json_list(13)?).unwrap_or_default(),
        reason,
        format,
        size: size.map(|s| s as u64),
        sha256: r.get(16)?,
        added_at: Some(clock::rfc3339(r.get(6)?)),
        added_by: user.or_else(|| uid.map(|u| u.to_string())),
        added_by_uid: uid,
        updated_at: Some(clock::rfc3339(r.get(9)?)),
    })
}

impl Db {
    /// The id of source `name` of `group`, if there is one.
    pub fn source_id(&self, group: &str, name: &str) -> Result<Option<i64>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT s.id FROM sources s JOIN groups g ON g.id = s.group_id
                 WHERE g.name = ?1 AND s.name = ?2",
                rusqlite::params![group, name],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Every source of `group` (or of all groups), sorted by group and name.
    pub fn list_sources(&self, group: Option<&str>) -> Result<Vec<SourceSummary>, CatalogError> {
        self.summaries(group, None)
    }

    /// Summaries of the sources of `group` (all if `None`), only `name` if given.
    ///
    /// Each source's latest version and its current one (the newest stored version that is
    /// not invalid) are found through `versions_by_source`, so a listing costs what the
    /// listed sources have, not what the whole catalog holds; only the fields a summary shows
    /// are read and decoded.
    fn summaries(
        &self,
        group: Option<&str>,
        name: Option<&str>,
    ) -> Result<Vec<SourceSummary>, CatalogError> {
        // `?1 IS NULL` when no group is asked for, so the planner sees `g.name = ?1` (indexed)
        // whenever one is.
        let sql = format!(
            "SELECT g.name, s.name,
                    v.status, v.reason, v.format, v.size, v.created_at, v.added_by,
                    v.added_by_uid, v.updated_at,
                    c.version_no, c.rows, c.columns, c.skipped_columns, c.format, c.size,
                    c.sha256
             FROM groups g
             JOIN sources s ON s.group_id = g.id
             JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                        WHERE x.source_id = s.id AND x.status != 'deleting')
             LEFT JOIN versions c ON c.id = (SELECT MAX(y.id) FROM versions y
                                             WHERE y.source_id = s.id
                                               AND y.version_no IS NOT NULL
                                               AND y.status NOT IN ('invalid', 'deleting'))
             WHERE {in_group} AND {named}
             ORDER BY g.name, s.name",
            in_group = if group.is_some() {
                "g.name = ?1"
            } else {
                "?1 IS NULL"
            },
            named = if name.is_some() {
                "s.name = ?2"
            } else {
                "?2 IS NULL"
            },
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let rows = stmt.query_map([group, name], summary_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One source with every version and attempt, newest first.
    pub fn show_source(
        &self,
        group: Option<&str>,
        name: &str,
    ) -> Result<SourceDetail, CatalogError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT g.name, s.id FROM sources s JOIN groups g ON g.id = s.group_id
             WHERE s.name = ?1 AND (?2 IS NULL OR g.name = ?2) ORDER BY g.name",
        )?;
        let found: Vec<(String, i64)> = stmt
            .query_map(rusqlite::params![name, group], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<Result<_, _>>()?;
        let (group_name, source_id) = match found.as_slice() {
            [] => {
                let place = match group {
                    Some(g) => format!("in group {g:?}"),
                    None => "in any group".to_string(),
                };
                return Err(CatalogError::NotFound(format!(
                    "no source named {name:?} {place}; `ingestctl ls` lists the sources"
                )));
            }
            [one] => one.clone(),
            many => {
                let groups: Vec<&str> = many.iter().map(|(g, _)| g.as_str()).collect();
                return Err(CatalogError::Ambiguous(format!(
                    "{name:?} exists in several groups ({}); say which with -g GROUP",
                    groups.join(", ")
                )));
            }
        };
        let summary = self
            .summaries(Some(&group_name), Some(name))?
            .into_iter()
            .next()
            .ok_or_else(|| CatalogError::NotFound(format!("source {name:?} vanished")))?;
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM versions v
             WHERE v.source_id = ?1 AND v.status != 'deleting' ORDER BY v.id DESC"
        );
        let mut stmt = self.conn().prepare_cached(&sql)?;
        let versions = stmt
            .query_map([source_id], |r| version_from_row(r, 0))?
            .filter_map(|v| v.transpose())
            .map(|v| v.map(|(info, _)| info))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SourceDetail {
            summary,
            versions,
            jobs: self.source_jobs(source_id, 20)?,
            embeddings: self.active_embeddings(source_id)?,
            preview: None,
        })
    }

    /// Every column name of a group's current versions, in order of first appearance.
    pub fn known_columns(&self, group: &str) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self.conn().prepare_cached(
            "WITH current AS (SELECT source_id, MAX(id) AS id FROM versions
                              WHERE version_no IS NOT NULL
                                AND status NOT IN ('invalid', 'deleting')
                              GROUP BY source_id)
             SELECT v.columns, MIN(v.id) AS first FROM current
             JOIN versions v ON v.id = current.id
             JOIN sources s ON s.id = current.source_id
             JOIN groups g ON g.id = s.group_id
             WHERE g.name = ?1 GROUP BY v.columns ORDER BY first",
        )?;
        let mut known: Vec<String> = Vec::new();
        for columns in stmt.query_map([group], |r| r.get::<_, String>(0))? {
            let columns: Vec<String> = serde_json::from_str(&columns?).unwrap_or_default();
            for column in columns {
                if !known.contains(&column) {
                    known.push(column);
                }
            }
        }
        Ok(known)
    }

    /// Every group with counts of its sources by status.
    /// How many sources of each group are in each status (a source counts by its latest
    /// version, as `ls` shows it), counted by the database: `status` and `groups` cost the
    /// same at 100 sources as at 100,000.
    pub fn status_counts(&self) -> Result<Vec<(String, Status, u64)>, CatalogError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT g.name, v.status, COUNT(*) FROM groups g
             JOIN sources s ON s.group_id = g.id
             JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                        WHERE x.source_id = s.id AND x.status != 'deleting')
             GROUP BY g.name, v.status",
        )?;
        let rows = stmt.query_map([], |r| {
            let status: String = r.get(1)?;
            Ok((
                r.get(0)?,
                Status::parse(&status).unwrap_or(Status::Failed),
                r.get::<_, i64>(2)? as u64,
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The status `ls` shows for each of `sources` (group, name), `None` for a source the
    /// catalog does not hold.
    pub fn statuses_of(
        &self,
        sources: &[(String, String)],
    ) -> Result<Vec<Option<Status>>, CatalogError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT v.status FROM groups g
             JOIN sources s ON s.group_id = g.id
             JOIN versions v ON v.id = (SELECT MAX(x.id) FROM versions x
                                        WHERE x.source_id = s.id AND x.status != 'deleting')
             WHERE g.name = ?1 AND s.name = ?2",
        )?;
        sources
            .iter()
            .map(|(group, name)| {
                let status: Option<String> =
                    stmt.query_row([group, name], |r| r.get(0)).optional()?;
                Ok(status.map(|s| Status::parse(&s).unwrap_or(Status::Failed)))
            })
            .collect()
    }

    /// Every group name, sorted: what a request naming a group is checked against, without
    /// counting anything.
    pub fn group_names(&self) -> Result<Vec<String>, CatalogError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT name FROM groups ORDER BY name")?;
        let names = stmt.query_map([], |r| r.get(0))?;
        Ok(names.collect::<Result<_, _>>()?)
    }

    /// Every group with its sources counted by status (as `ls` shows each source), sorted by
    /// name.
    pub fn list_groups(&self) -> Result<Vec<GroupInfo>, CatalogError> {
        let mut groups = self.group_rows()?;
        let at: HashMap<String, usize> = groups
            .iter()
            .enumerate()
            .map(|(i, g)| (g.name.clone(), i))
            .collect();
        for (group, status, count) in self.status_counts()? {
            if let Some(&i) = at.get(&group) {
                groups[i].sources += count;
                *groups[i].by_status.entry(status).or_default() += count;
            }
        }
        Ok(groups)
    }

    /// Every group with its last activity, sorted by name, counts left at zero (the caller
    /// counts, e.g. with files in flight laid over the catalog's statuses).
    pub fn group_rows(&self) -> Result<Vec<GroupInfo>, CatalogError> {
        let mut groups: BTreeMap<String, GroupInfo> = BTreeMap::new();
        let mut stmt = self.conn().prepare_cached(
            "SELECT g.name, MAX(COALESCE(v.updated_at, g.created_at))
             FROM groups g LEFT JOIN sources s ON s.group_id = g.id
             LEFT JOIN versions v ON v.source_id = s.id GROUP BY g.id",
        )?;
        for row in stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?))
        })? {
            let (name, last) = row?;
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
        Ok(groups.into_values().collect())
    }
}
