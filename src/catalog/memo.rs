//! Answers the catalog keeps while nothing in it changes: the source listings of `ls` and the
//! pages of `jobs` (each with its JSON text, made once), and the group counts of `status`
//! and `groups`.
//!
//! A listing reads every source it lists, so at a thousand sources it cost the daemon about
//! 4 ms of the catalog thread per `ls`, and `status` 2 ms, for answers that had not changed
//! since the last one. Kept answers are dropped the moment the database may have changed:
//! the key is SQLite's count of rows this connection ever wrote (`sqlite3_total_changes`,
//! which every INSERT, UPDATE and DELETE moves, committed or not) with `PRAGMA data_version`
//! (which moves when another connection commits, e.g. a person with the sqlite3 shell). A
//! stale answer would need a change that moves neither, and SQLite has none. The queue's
//! round-robin cursor, which orders the queued jobs' positions and lives in memory, is part
//! of the key too. One write keeps them: a change of someone's current group, which nothing
//! kept depends on (`Db::keeping_memo`).

use super::{CatalogError, Db};
use crate::protocol::{GroupInfo, JobInfo, JobState, SourceSummary};
use serde::Serialize;
use serde_json::value::RawValue;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, OnceLock};

/// More distinct listings than this kept at once, and all of them are dropped: bounded
/// whatever groups a client names. The listings of single groups hold each source once
/// between them, and the listing of every group holds each once more.
const KEPT: usize = 64;

/// The same for pages of `jobs`, which may each hold `protocol::JOBS_MAX` jobs whatever the
/// catalog's size: a client paging through with a new cursor each time keeps at most this
/// many pages (about 10 MB).
const JOB_PAGES: usize = 8;

/// The JSON text of a `T`, made once: serialized, it writes that text as it is, so an answer
/// built from it is exactly the answer the `T` would give.
pub struct Encoded<T> {
    json: Arc<RawValue>,
    of: PhantomData<fn() -> T>,
}

impl<T> Clone for Encoded<T> {
    fn clone(&self) -> Self {
        Self {
            json: Arc::clone(&self.json),
            of: PhantomData,
        }
    }
}

impl<T: Serialize> Encoded<T> {
    pub fn new(value: &T) -> Result<Self, serde_json::Error> {
        Ok(Self {
            json: Arc::from(serde_json::value::to_raw_value(value)?),
            of: PhantomData,
        })
    }
}

impl<T> Encoded<T> {
    /// The JSON text, shared.
    pub fn text(&self) -> Arc<RawValue> {
        Arc::clone(&self.json)
    }
}

impl<T> Serialize for Encoded<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

/// An answer as the catalog read it, with its JSON text once someone asked for it.
pub struct Kept<T> {
    pub value: T,
    json: OnceLock<Encoded<T>>,
}

/// The sources of one group (or of every group), as the catalog holds them.
pub type Listing = Kept<Vec<SourceSummary>>;

impl<T: Serialize> Kept<T> {
    pub(in crate::catalog) fn new(value: T) -> Self {
        Self {
            value,
            json: OnceLock::new(),
        }
    }

    /// The answer as JSON, encoded the first time it is asked for (by whichever thread asks)
    /// and kept with it.
    pub fn encoded(&self) -> Result<Encoded<T>, serde_json::Error> {
        if let Some(json) = self.json.get() {
            return Ok(json.clone());
        }
        let json = Encoded::new(&self.value)?;
        Ok(self.json.get_or_init(|| json).clone())
    }
}

/// Which page of `jobs`: the group, the state, the ids, the limit and the cursor.
pub type JobsQuery = (Option<String>, Option<JobState>, Vec<i64>, u32, Option<i64>);

/// What is kept, and the state of the database it was read from.
#[derive(Default)]
pub struct Memo {
    key: Option<(u64, i64, Option<i64>)>,
    listings: HashMap<Option<String>, Arc<Listing>>,
    jobs: HashMap<JobsQuery, Arc<Kept<Vec<JobInfo>>>>,
    groups: Option<Arc<Vec<GroupInfo>>>,
}

impl Db {
    /// The state of the database, as the memo compares it: this connection's count of changed
    /// rows, SQLite's count of other connections' commits, the queue's cursor.
    fn memo_key(&self) -> Result<(u64, i64, Option<i64>), CatalogError> {
        let data_version: i64 = self
            .conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        Ok((self.conn.total_changes(), data_version, self.queue.cursor))
    }

    /// Run `write`, a change to nothing the memo keeps (a user's current group), and keep
    /// what was kept if it was still fresh before the write and nothing else changed.
    /// Otherwise every `use` would make the `ls` after it read the whole listing again.
    pub(in crate::catalog) fn keeping_memo<R>(
        &mut self,
        write: impl FnOnce(&mut Db) -> Result<R, CatalogError>,
    ) -> Result<R, CatalogError> {
        let before = self.memo_key()?;
        let fresh = self.memo.key == Some(before);
        let value = write(self)?;
        let after = self.memo_key()?;
        if fresh && (after.1, after.2) == (before.1, before.2) {
            self.memo.key = Some(after);
        }
        Ok(value)
    }

    /// Forget what was kept if the database may have changed since it was read.
    fn memo_check(&mut self) -> Result<(), CatalogError> {
        let key = self.memo_key()?;
        if self.memo.key != Some(key) {
            self.memo = Memo {
                key: Some(key),
                ..Memo::default()
            };
        }
        Ok(())
    }

    /// [`Db::list_sources`], kept until the catalog changes.
    pub fn listing(&mut self, group: Option<String>) -> Result<Arc<Listing>, CatalogError> {
        self.memo_check()?;
        if let Some(listing) = self.memo.listings.get(&group) {
            return Ok(Arc::clone(listing));
        }
        let listing = Arc::new(Kept::new(self.list_sources(group.as_deref())?));
        if self.memo.listings.len() >= KEPT {
            self.memo.listings.clear();
        }
        self.memo.listings.insert(group, Arc::clone(&listing));
        Ok(listing)
    }

    /// [`Db::jobs_page`], kept until the catalog changes.
    pub fn jobs_kept(&mut self, query: JobsQuery) -> Result<Arc<Kept<Vec<JobInfo>>>, CatalogError> {
        self.memo_check()?;
        if let Some(page) = self.memo.jobs.get(&query) {
            return Ok(Arc::clone(page));
        }
        let (group, state, ids, limit, before) = &query;
        let page = Arc::new(Kept::new(self.jobs_page(
            group.as_deref(),
            *state,
            ids,
            *limit,
            *before,
        )?));
        if self.memo.jobs.len() >= JOB_PAGES {
            self.memo.jobs.clear();
        }
        self.memo.jobs.insert(query, Arc::clone(&page));
        Ok(page)
    }

    /// [`Db::list_groups`], kept until the catalog changes.
    pub fn group_counts(&mut self) -> Result<Arc<Vec<GroupInfo>>, CatalogError> {
        self.memo_check()?;
        if let Some(groups) = &self.memo.groups {
            return Ok(Arc::clone(groups));
        }
        let groups = Arc::new(self.list_groups()?);
        self.memo.groups = Some(Arc::clone(&groups));
        Ok(groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db(dir: &std::path::Path) -> Db {
        let db = Db::in_dir(dir);
        db.conn
            .execute_batch(
                "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
                 INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 'a.csv', 0);
                 INSERT INTO versions (id, source_id, version_no, status, created_at, updated_at,
                                       columns, skipped_columns)
                 VALUES (1, 1, 1, 'embedded', 0, 0, '[\"x\"]', '[]');",
            )
            .unwrap();
        db
    }

    fn statuses(listing: &Listing) -> Vec<(String, String)> {
        listing
            .value
            .iter()
            .map(|s| (s.name.clone(), s.status.to_string()))
            .collect()
    }

    #[test]
    fn a_listing_is_kept_until_the_catalog_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = db(dir.path());
        let first = db.listing(Some("g".into())).unwrap();
        let again = db.listing(Some("g".into())).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "read again with nothing changed"
        );
        assert_eq!(
            first.encoded().unwrap().json.get(),
            serde_json::to_string(&first.value).unwrap(),
            "the kept text is the listing's own encoding"
        );
        // A change through the catalog's connection: a second source.
        db.conn
            .execute_batch(
                "INSERT INTO sources (id, group_id, name, created_at) VALUES (2, 1, 'b.csv', 0);
                 INSERT INTO versions (id, source_id, version_no, status, created_at, updated_at)
                 VALUES (2, 2, 1, 'ready', 0, 0);",
            )
            .unwrap();
        let changed = db.listing(Some("g".into())).unwrap();
        assert_eq!(
            statuses(&changed),
            [
                ("a.csv".into(), "embedded".into()),
                ("b.csv".into(), "ready".into())
            ]
        );
        // A change an UPDATE makes that leaves every count of rows as it was.
        db.conn
            .execute("UPDATE versions SET status = 'invalid' WHERE id = 2", [])
            .unwrap();
        let updated = db.listing(Some("g".into())).unwrap();
        assert_eq!(updated.value[1].status.to_string(), "invalid");
    }

    #[test]
    fn a_users_current_group_changes_nothing_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = db(dir.path());
        let first = db.listing(Some("g".into())).unwrap();
        db.set_current_group(1000, Some("g")).unwrap();
        db.set_current_group(1000, None).unwrap();
        let again = db.listing(Some("g".into())).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "kept across a change of current group"
        );
        // Changes after it are still seen.
        db.conn
            .execute("UPDATE versions SET status = 'failed' WHERE id = 1", [])
            .unwrap();
        let after = db.listing(Some("g".into())).unwrap();
        assert_eq!(statuses(&after), [("a.csv".into(), "failed".into())]);
        // A memo already stale before the change stays stale.
        db.conn
            .execute("UPDATE versions SET status = 'ready' WHERE id = 1", [])
            .unwrap();
        db.set_current_group(1000, Some("g")).unwrap();
        let stale = db.listing(Some("g".into())).unwrap();
        assert_eq!(statuses(&stale), [("a.csv".into(), "ready".into())]);
    }

    #[test]
    fn a_change_by_another_connection_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = db(dir.path());
        let groups = db.group_counts().unwrap();
        assert_eq!(groups[0].sources, 1);
        let first = db.listing(None).unwrap();
        let other = rusqlite::Connection::open(dir.path().join("c.sqlite")).unwrap();
        other
            .execute("UPDATE versions SET status = 'failed' WHERE id = 1", [])
            .unwrap();
        let after = db.listing(None).unwrap();
        assert!(!Arc::ptr_eq(&first, &after));
        assert_eq!(statuses(&after), [("a.csv".into(), "failed".into())]);
        let counts = db.group_counts().unwrap();
        assert_eq!(
            counts[0]
                .by_status
                .keys()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
            ["failed"]
        );
    }

    #[test]
    fn kept_answers_are_bounded_whatever_is_asked() {
        let dir = tempfile::tempdir().unwrap();
        let mut db = db(dir.path());
        for before in 0..(KEPT as i64 * 3) {
            db.jobs_kept((None, None, Vec::new(), 10, Some(before)))
                .unwrap();
            db.listing(Some(format!("nope{before}"))).unwrap();
            assert!(db.memo.jobs.len() <= JOB_PAGES && db.memo.listings.len() <= KEPT);
        }
    }
}
