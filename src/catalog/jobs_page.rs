//! One page of the `jobs` answer: the newest jobs below a cursor, so an answer never holds
//! more than `protocol::JOBS_MAX` jobs. The rows themselves are read by `list_jobs`; this
//! module only chooses which ids are on the page.

use super::{CatalogError, Db};
use crate::protocol::{JobInfo, JobState};
use rusqlite::params;

impl Db {
    /// The newest `limit` jobs matching the filters (of `group`, in `state`, among `ids`)
    /// whose id is below `before`, oldest first: the next page is `before` the first one.
    pub fn jobs_page(
        &self,
        group: Option<&str>,
        state: Option<JobState>,
        ids: &[i64],
        limit: u32,
        before: Option<i64>,
    ) -> Result<Vec<JobInfo>, CatalogError> {
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
        let page: Vec<i64> = self
            .conn()
            .prepare_cached(
                "SELECT j.id FROM jobs j JOIN groups g ON g.id = j.group_id
                  WHERE (?1 IS NULL OR g.name = ?1) AND (?2 IS NULL OR j.state = ?2)
                    AND (?3 = '[]' OR j.id IN (SELECT value FROM json_each(?3)))
                    AND (?5 IS NULL OR j.id < ?5)
                  ORDER BY j.id DESC LIMIT ?4",
            )?
            .query_map(
                params![group, state.map(JobState::as_str), ids_json, limit, before],
                |r| r.get(0),
            )?
            .collect::<Result<_, _>>()?;
        if page.is_empty() {
            return Ok(Vec::new());
        }
        self.list_jobs(None, None, &page, limit)
    }
}
