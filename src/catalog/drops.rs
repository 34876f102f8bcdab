//! What the catalog can prove about a file in a drop folder: whether its content is stored
//! as a version of its name. Start-up recovery asks before it removes a drop original an
//! interrupted removal left set aside; this module never touches a file.

use super::{CatalogError, Db};
use rusqlite::{OptionalExtension, params};

impl Db {
    /// Does `group` hold a stored version of `source` (ready, embedded, failed to embed or
    /// pruned since — anything but a reservation or a rejection) whose content is `sha256`?
    pub fn holds_content(
        &self,
        group: &str,
        source: &str,
        sha256: &str,
    ) -> Result<bool, CatalogError> {
        Ok(self
            .conn()
            .query_row(
                "SELECT 1 FROM versions v
                   JOIN sources s ON s.id = v.source_id JOIN groups g ON g.id = s.group_id
                  WHERE g.name = ?1 AND s.name = ?2 AND v.sha256 = ?3
                    AND v.version_no IS NOT NULL AND v.status NOT IN ('validating', 'invalid')
                  LIMIT 1",
                params![group, source, sha256],
                |_| Ok(()),
            )
            .optional()?
            .is_some())
    }
}
