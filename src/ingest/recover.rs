//! Start-up recovery: finish or undo what a crash left half done, before any new file is taken.
//!
//! A reservation (a version in status `validating`) means the crash hit between reserving the
//! number and marking it ready. If its complete file is in place (or its temporary copy is
//! complete), it is finished; otherwise it is undone, and the drop original — never removed
//! before `ready` — is ingested again by the start-up scan. Deletions marked but not finished
//! are finished. Leftover temporary copies are deleted last: by then nothing refers to them.
//!
//! A drop original found under an aside name (`.ingestd-rm-…`, see `store::remove_if_same`)
//! was being removed when the daemon stopped: it is removed only if the catalog holds exactly
//! its content as a version of its name, and otherwise given its name back (or a free one).

use super::store;
use crate::catalog::{Catalog, CatalogError, Reservation};
use crate::config::Config;
use crate::dirs::Dir;
use std::ffi::OsStr;
use std::path::Path;

/// What recovery did, for the log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    pub completed: usize,
    pub undone: usize,
    pub drops_removed: usize,
    pub deletions_finished: usize,
    pub temporaries_removed: usize,
    /// Drop originals a crash left set aside mid-removal that were given back their name (or
    /// a free one): not proven to be stored content.
    pub asides_restored: usize,
}

/// Run recovery. Blocking; call before the watcher starts.
pub fn recover(config: &Config, catalog: &Catalog) -> Result<Recovered, CatalogError> {
    let mut report = Recovered::default();
    // Through handles, like the ingest path: a drop folder that is a link now is not
    // followed, and nothing outside the storage root is renamed or read.
    let storage = Dir::open(&config.paths.storage_root).ok();
    let drops = Dir::open(&config.paths.drop_root).ok();
    for reservation in catalog.reservations_blocking()? {
        if storage
            .as_ref()
            .is_some_and(|storage| complete(storage, &reservation))
        {
            catalog.complete_reservation_blocking(
                reservation.clone(),
                "completed at start-up after an interrupted store".into(),
            )?;
            report.completed += 1;
            if let Some(drops) = &drops
                && remove_drop_if_stored(drops, &reservation)
            {
                report.drops_removed += 1;
            }
        } else {
            let id = reservation.id;
            catalog.abandon_blocking(id)?;
            report.undone += 1;
        }
    }
    report.deletions_finished = catalog.finish_deletions_blocking()?;
    report.temporaries_removed = storage.as_ref().map(clean_temporaries).unwrap_or(0);
    if let Some(drops) = &drops {
        resolve_asides(drops, catalog, &mut report);
    }
    if report != Recovered::default() {
        tracing::info!(?report, "recovered from an interrupted run");
    }
    Ok(report)
}

fn file_name(path: &Path) -> Option<&OsStr> {
    path.file_name()
}

fn sha256_in(dir: &Dir, name: &OsStr) -> Option<String> {
    let file = dir.open_read(name).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    crate::sha256::of_reader(file).ok()
}

/// Is the reserved version's file in place, moving the finished temporary copy if needed?
fn complete(storage: &Dir, r: &Reservation) -> bool {
    let Ok(group) = storage.child(&r.group) else {
        return false;
    };
    let Some(stored) = file_name(&r.stored_path) else {
        return false;
    };
    if sha256_in(&group, stored).is_some_and(|sha| sha == r.sha256) {
        return true;
    }
    let Some(tmp) = r.tmp_path.as_deref().and_then(file_name) else {
        return false;
    };
    let Ok(tmp_dir) = group.child(store::TMP_DIR) else {
        return false;
    };
    if sha256_in(&tmp_dir, tmp).is_some_and(|sha| sha == r.sha256) {
        return tmp_dir.rename_durable(tmp, &group, stored, true).is_ok();
    }
    false
}

/// Remove the drop original of a completed reservation if it still holds the stored bytes.
fn remove_drop_if_stored(drops: &Dir, r: &Reservation) -> bool {
    let Ok(group) = drops.child(&r.group) else {
        return false;
    };
    let Ok(stat) = group.stat(&r.name) else {
        return false;
    };
    let identity = store::Identity::of_stat(&stat);
    if sha256_in(&group, OsStr::new(&r.name)).is_some_and(|sha| sha == r.sha256) {
        return matches!(
            store::remove_if_same(&group, &r.name, &identity),
            Ok(store::Removal::Removed)
        );
    }
    false
}

fn clean_temporaries(storage: &Dir) -> usize {
    let mut removed = 0;
    for group in storage.names().unwrap_or_default() {
        let Ok(tmp) = storage.child(&group).and_then(|g| g.child(store::TMP_DIR)) else {
            continue;
        };
        for name in tmp.names().unwrap_or_default() {
            if tmp.unlink(&name).is_ok() {
                removed += 1;
            }
        }
    }
    removed
}

/// Resolve every aside name a crash left in the group folders (see the module comment).
fn resolve_asides(drops: &Dir, catalog: &Catalog, report: &mut Recovered) {
    for group_name in drops.names().unwrap_or_default() {
        let Ok(group) = drops.child(&group_name) else {
            continue;
        };
        let group_text = group_name.to_string_lossy().into_owned();
        for name in group.names().unwrap_or_default() {
            if store::aside_original(&name).is_none() {
                continue;
            }
            let stored = |original: &OsStr, sha256: &str| {
                let (group, source, sha) = (
                    group_text.clone(),
                    original.to_string_lossy().into_owned(),
                    sha256.to_string(),
                );
                catalog
                    .holds_content_blocking(group, source, sha)
                    .unwrap_or(false)
            };
            match store::resolve_aside(&group, &name, stored) {
                Ok(store::AsideFate::Removed) => report.drops_removed += 1,
                Ok(store::AsideFate::Restored(fate)) => {
                    report.asides_restored += 1;
                    tracing::warn!(
                        folder = %group.shown().display(),
                        aside = %name.to_string_lossy(),
                        ?fate,
                        "a drop file set aside by an interrupted removal was put back"
                    );
                }
                Err(error) => tracing::warn!(
                    folder = %group.shown().display(),
                    aside = %name.to_string_lossy(),
                    %error,
                    "cannot resolve a drop file set aside by an interrupted removal"
                ),
            }
        }
    }
}
