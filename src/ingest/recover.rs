//! Start-up recovery: finish or undo what a crash left half done, before any new file is taken.
//!
//! A reservation (a version in status `validating`) means the crash hit between reserving the
//! number and marking it ready. If its complete file is in place (or its temporary copy is
//! complete), it is finished; otherwise it is undone, and the drop original — never removed
//! before `ready` — is ingested again by the start-up scan. Deletions marked but not finished
//! are finished. Leftover temporary copies are deleted last: by then nothing refers to them.

use super::store;
use crate::catalog::{Catalog, CatalogError, Reservation};
use crate::config::Config;
use std::path::Path;

/// What recovery did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub completed: usize,
    pub undone: usize,
    pub drops_removed: usize,
    pub deletions_finished: usize,
    pub temporaries_removed: usize,
}

/// Run recovery. Blocking; call before the watcher starts.
pub fn recover(config: &Config, catalog: &Catalog) -> Result<Recovered, CatalogError> {
    let mut report = Recovered::default();
    for reservation in catalog.call_blocking(|db| db.reservations())? {
        if complete(&reservation) {
            let ready = reservation.clone();
            catalog.call_blocking(move |db| {
                db.mark_ready(
                    &ready,
                    "completed at start-up after an interrupted store".into(),
                )
            })?;
            report.completed += 1;
            if let Some(drop) = &reservation.drop_path
                && remove_drop_if_stored(drop, &reservation.sha256)
            {
                report.drops_removed += 1;
            }
        } else {
            let id = reservation.id;
            catalog.call_blocking(move |db| db.abandon(id))?;
            report.undone += 1;
        }
    }
    report.deletions_finished = catalog.call_blocking(|db| db.finish_deletions())?;
    report.temporaries_removed = clean_temporaries(&config.paths.storage_root);
    if report != Recovered::default() {
        tracing::info!(?report, "recovered from an interrupted run");
    }
    Ok(report)
}

/// Is the reserved version's file in place, moving the finished temporary copy if needed?
fn complete(r: &Reservation) -> bool {
    if store::sha256_file(&r.stored_path).is_ok_and(|sha| sha == r.sha256) {
        return true;
    }
    let Some(tmp) = &r.tmp_path else {
        return false;
    };
    if store::sha256_file(tmp).is_ok_and(|sha| sha == r.sha256) {
        return store::rename_durable(tmp, &r.stored_path).is_ok();
    }
    false
}

fn remove_drop_if_stored(drop: &Path, sha256: &str) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(drop) else {
        return false;
    };
    let identity = store::Identity::of(&meta);
    if store::sha256_file(drop).is_ok_and(|sha| sha == sha256) {
        return store::remove_if_same(drop, &identity).unwrap_or(false);
    }
    false
}

fn clean_temporaries(storage_root: &Path) -> usize {
    let mut removed = 0;
    let Ok(groups) = std::fs::read_dir(storage_root) else {
        return 0;
    };
    for group in groups.flatten() {
        let tmp = group.path().join(store::TMP_DIR);
        let Ok(entries) = std::fs::read_dir(&tmp) else {
            continue;
        };
        for entry in entries.flatten() {
            if std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}
