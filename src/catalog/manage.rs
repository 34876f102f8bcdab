//! Catalog side of the management commands: each user's current group, group preferences,
//! reading the audit trail, and deleting sources or versions.
//!
//! Deleting is two transactions around the file removals: rows are first marked `deleting`
//! (and audited), then their stored files are removed, then the rows. A crash in between leaves
//! marked rows that start-up recovery finishes, so a delete is never half visible: the catalog
//! never lists a version whose file is gone, and no file is removed while listed.

use super::{CatalogError, Db};
use crate::audit::AuditRecord;
use crate::clock;
use crate::identity::Actor;
use crate::protocol::{AuditEntry, PrefsInfo, RmOutcome};
use rusqlite::{OptionalExtension, params};

/// Internal status of rows being deleted; never shown.
pub const DELETING: &str = "deleting";

/// A change to a group's preferences; `None` keeps the current value.
#[derive(Debug, Clone, Default)]
pub struct PrefsChange {
    pub columns: Option<Vec<String>>,
    pub context: Option<Vec<String>>,
    /// `Some(None)` removes the template.
    pub template: Option<Option<String>>,
    pub sheet: Option<Option<String>>,
    pub clear: bool,
}

/// What the audit trail is filtered by.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub group: Option<String>,
    pub since_ms: Option<i64>,
    pub action: Option<String>,
    pub limit: u32,
    /// Only records older (in the listing's order) than the record with this id.
    pub before: Option<i64>,
}

fn group_id(db: &Db, group: &str) -> Result<Option<i64>, CatalogError> {
    Ok(db
        .conn()
        .query_row("SELECT id FROM groups WHERE name = ?1", [group], |r| {
            r.get(0)
        })
        .optional()?)
}

impl Db {
    pub fn current_group(&self, uid: u32) -> Result<Option<String>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT group_name FROM current_groups WHERE uid = ?1",
                [uid],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Set (or with `None` clear) the group `uid` works in. Nothing the catalog keeps for
    /// `ls`, `jobs` or `status` depends on it, so what it keeps stays (`Db::keeping_memo`).
    pub fn set_current_group(&mut self, uid: u32, group: Option<&str>) -> Result<(), CatalogError> {
        self.keeping_memo(|db| {
            db.write(|tx| {
                match group {
                    Some(group) => tx.execute(
                        "INSERT INTO current_groups (uid, group_name, updated_at)
                         VALUES (?1, ?2, ?3)
                         ON CONFLICT (uid) DO UPDATE SET group_name = ?2, updated_at = ?3",
                        params![uid, group, clock::now_ms()],
                    )?,
                    None => tx.execute("DELETE FROM current_groups WHERE uid = ?1", [uid])?,
                };
                Ok(((), Vec::new()))
            })
        })
    }

    /// The sheet a group's preferences name for spreadsheets, if any.
    pub fn preferred_sheet(&self, group: &str) -> Result<Option<String>, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT p.sheet FROM preferences p JOIN groups g ON g.id = p.group_id
                 WHERE g.name = ?1",
                [group],
                |r| r.get(0),
            )
            .optional()?
            .flatten())
    }

    /// A group's preferences (defaults if never saved) and the columns its sources have.
    pub fn prefs(&self, group: &str) -> Result<PrefsInfo, CatalogError> {
        let mut info = PrefsInfo {
            group: group.to_string(),
            ..PrefsInfo::default()
        };
        if let Some(id) = group_id(self, group)? {
            self.conn()
                .query_row(
                    "SELECT columns, context, template, sheet, updated_at, updated_by
                     FROM preferences WHERE group_id = ?1",
                    [id],
                    |r| {
                        let columns: String = r.get(0)?;
                        let context: String = r.get(1)?;
                        info.columns = serde_json::from_str(&columns).unwrap_or_default();
                        info.context = serde_json::from_str(&context).unwrap_or_default();
                        info.template = r.get(2)?;
                        info.sheet = r.get(3)?;
                        info.updated_at = Some(clock::rfc3339(r.get(4)?));
                        info.updated_by = r.get(5)?;
                        Ok(())
                    },
                )
                .optional()?;
        }
        info.known_columns = self.known_columns(group)?;
        Ok(info)
    }

    /// Apply `change` to a group's preferences and audit it. The caller has validated it.
    pub fn set_prefs(
        &mut self,
        group: &str,
        change: PrefsChange,
        actor: &Actor,
        detail: String,
    ) -> Result<PrefsInfo, CatalogError> {
        let mut next = if change.clear {
            PrefsInfo::default()
        } else {
            self.prefs(group)?
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
        let by = actor.display_name();
        self.write(|tx| {
            let id: i64 = match tx
                .query_row("SELECT id FROM groups WHERE name = ?1", [group], |r| {
                    r.get(0)
                })
                .optional()?
            {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO groups (name, created_at) VALUES (?1, ?2)",
                        params![group, clock::now_ms()],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            tx.execute(
                "INSERT INTO preferences (group_id, columns, context, template, sheet,
                    updated_at, updated_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (group_id) DO UPDATE SET columns = ?2, context = ?3,
                    template = ?4, sheet = ?5, updated_at = ?6, updated_by = ?7",
                params![
                    id,
                    serde_json::to_string(&next.columns).unwrap_or_else(|_| "[]".into()),
                    serde_json::to_string(&next.context).unwrap_or_else(|_| "[]".into()),
                    next.template,
                    next.sheet,
                    clock::now_ms(),
                    by,
                ],
            )?;
            let record = AuditRecord::new(actor.clone(), "prefs", "ok")
                .in_group(group)
                .detail(detail);
            Ok(((), vec![record]))
        })?;
        self.prefs(group)
    }

    /// The audit trail, newest first, one page: at most `filter.limit` records, after the
    /// cursor `filter.before` (a record id; a cursor whose record is gone ends the listing).
    pub fn audit_entries(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, CatalogError> {
        let mut stmt = self.conn().prepare_cached(
            "SELECT time, actor_uid, actor_user, via, action, group_name, source, version, job,
                    outcome, detail, id
             FROM audit
             WHERE (?1 IS NULL OR group_name = ?1) AND (?2 IS NULL OR time >= ?2)
               AND (?3 IS NULL OR action = ?3)
               AND (?5 IS NULL OR (time, id) <
                    (SELECT c.time, c.id FROM audit c WHERE c.id = ?5))
             ORDER BY time DESC, id DESC LIMIT ?4",
        )?;
        let rows = stmt.query_map(
            params![
                filter.group,
                filter.since_ms,
                filter.action,
                filter.limit,
                filter.before
            ],
            |r| {
                let via: Option<String> = r.get(3)?;
                Ok(AuditEntry {
                    id: Some(r.get(11)?),
                    time: clock::rfc3339(r.get(0)?),
                    actor: Actor {
                        uid: r.get(1)?,
                        user: r.get(2)?,
                        via: via
                            .and_then(|v| serde_json::from_value(serde_json::Value::String(v)).ok())
                            .unwrap_or(crate::identity::Via::Daemon),
                    },
                    action: r.get(4)?,
                    group: r.get(5)?,
                    source: r.get(6)?,
                    version: r.get(7)?,
                    job: r.get(8)?,
                    outcome: r.get(9)?,
                    detail: r.get(10)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Delete `target` (`name` or `name@vN`) from `group`: mark, remove files, remove rows.
    pub fn delete(&mut self, group: &str, target: &str, actor: &Actor) -> RmOutcome {
        match self.try_delete(group, target, actor) {
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

    fn try_delete(
        &mut self,
        group: &str,
        target: &str,
        actor: &Actor,
    ) -> Result<RmOutcome, CatalogError> {
        let (name, version) = parse_target(target).map_err(CatalogError::NotFound)?;
        let Some(source_id) = self.source_id(group, name)? else {
            return Err(CatalogError::NotFound(format!(
                "no source named {name:?} in group {group:?}"
            )));
        };
        let mut stmt = self.conn().prepare_cached(
            "SELECT id, version_no, stored_path, status FROM versions
             WHERE source_id = ?1 AND status != 'deleting' ORDER BY id",
        )?;
        let rows: Vec<(i64, Option<i64>, Option<String>, String)> = stmt
            .query_map([source_id], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        let chosen: Vec<&(i64, Option<i64>, Option<String>, String)> = match version {
            None => rows.iter().collect(),
            Some(no) => rows.iter().filter(|r| r.1 == Some(no)).collect(),
        };
        if chosen.is_empty() {
            let have: Vec<String> = rows
                .iter()
                .filter_map(|r| r.1.map(|n| format!("v{n}")))
                .collect();
            return Err(CatalogError::NotFound(format!(
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
            return Err(CatalogError::NotFound(format!(
                "{target} is being stored right now; try again in a moment"
            )));
        }
        // The embed-in-progress guard: deleting what a worker is reading and writing would
        // throw its work away behind the user's back. Name the job and how to stop it.
        if let Some(job) = self.processing_jobs(source_id, version)?.into_iter().next() {
            return Ok(RmOutcome {
                target: target.to_string(),
                ok: false,
                message: format!(
                    "{name} {} is being embedded by job {} ({} of {} rows done); cancel it \
                     with `ingestctl cancel {}`, or delete with --force, which cancels it first",
                    job.version, job.id, job.progress.done, job.progress.total, job.id
                ),
                removed: Vec::new(),
                job: Some(job),
            });
        }
        let ids: Vec<i64> = chosen.iter().map(|r| r.0).collect();
        let removed: Vec<String> = chosen
            .iter()
            .filter_map(|r| r.1.map(|n| format!("v{n}")))
            .collect();
        let attempts = chosen.iter().filter(|r| r.1.is_none()).count();
        let detail = if version.is_some() {
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
        // 1: mark the rows and audit the deletion.
        self.write(|tx| {
            for id in &ids {
                tx.execute(
                    "UPDATE versions SET status = ?1, updated_at = ?2 WHERE id = ?3",
                    params![DELETING, clock::now_ms(), id],
                )?;
            }
            let record = AuditRecord::new(actor.clone(), "delete", "ok")
                .on(group, name)
                .version(version.map(|n| format!("v{n}")))
                .detail(detail.clone());
            Ok(((), vec![record]))
        })?;
        // 2 and 3: remove the files, then the rows.
        self.finish_deletions()?;
        // 4: the newest version left is the one to serve; embed it if nothing does.
        let mut detail = detail;
        if let Some(job) = self.embed_newest_if_bare(source_id, actor)? {
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

    /// Remove the files and rows of every row marked `deleting` (also start-up recovery).
    pub fn finish_deletions(&mut self) -> Result<usize, CatalogError> {
        let mut stmt = self
            .conn()
            .prepare_cached("SELECT id, stored_path, status FROM versions WHERE status = ?1")?;
        let marked: Vec<(i64, Option<String>)> = stmt
            .query_map([DELETING], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        drop(stmt);
        for (_, path) in &marked {
            if let Some(path) = path {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(%path, "cannot remove a deleted version's file: {e}"),
                }
            }
        }
        self.write(|tx| {
            // The versions' generations and jobs go in the same transaction as their rows: a
            // search never finds a row of a deleted version. Their vectors go to the trash,
            // deleted a chunk at a time after the commit (`catalog::purge`): deleting a
            // million of them here held the catalog for 1.5 s.
            tx.execute(
                "INSERT OR IGNORE INTO vector_trash (generation_id)
                    SELECT n.id FROM generations n JOIN versions v ON v.id = n.version_id
                    WHERE v.status = ?1",
                [DELETING],
            )?;
            tx.execute(
                "DELETE FROM generations WHERE version_id IN
                    (SELECT id FROM versions WHERE status = ?1)",
                [DELETING],
            )?;
            tx.execute(
                "UPDATE generations SET job_id = NULL WHERE job_id IN
                    (SELECT j.id FROM jobs j JOIN versions v ON v.id = j.version_id
                     WHERE v.status = ?1)",
                [DELETING],
            )?;
            tx.execute(
                "DELETE FROM jobs WHERE version_id IN (SELECT id FROM versions WHERE status = ?1)",
                [DELETING],
            )?;
            tx.execute("DELETE FROM versions WHERE status = ?1", [DELETING])?;
            tx.execute(
                "DELETE FROM sources WHERE NOT EXISTS
                    (SELECT 1 FROM versions v WHERE v.source_id = sources.id)",
                [],
            )?;
            Ok(((), Vec::new()))
        })?;
        Ok(marked.len())
    }
}

/// `sales.csv` → (name, None); `sales.csv@v2` → (name, Some(2)).
pub fn parse_target(target: &str) -> Result<(&str, Option<i64>), String> {
    if target.trim().is_empty() {
        return Err("an empty name names no source".into());
    }
    // Only `@v<digits>` at the end is a version: `me@home.csv` is a name.
    match target.rsplit_once('@') {
        Some((name, version))
            if !name.is_empty()
                && version.len() > 1
                && version.starts_with(['v', 'V'])
                && version[1..].bytes().all(|b| b.is_ascii_digit()) =>
        {
            match version[1..].parse::<i64>() {
                Ok(number) if number > 0 => Ok((name, Some(number))),
                _ => Err(format!(
                    "{target:?}: versions are numbered from 1, like {name}@v1"
                )),
            }
        }
        _ => Ok((target, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target("a.csv"), Ok(("a.csv", None)));
        assert_eq!(parse_target("a.csv@v12"), Ok(("a.csv", Some(12))));
        assert_eq!(parse_target("me@home.csv@v1"), Ok(("me@home.csv", Some(1))));
        assert_eq!(parse_target("me@home.csv"), Ok(("me@home.csv", None)));
        assert_eq!(parse_target("a.csv@2x"), Ok(("a.csv@2x", None)));
        assert!(parse_target("a.csv@v0").is_err());
        assert!(parse_target("").is_err());
    }
}
