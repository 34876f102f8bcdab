//! The trash is emptied a chunk at a time, only when the catalog thread has nothing else to
//! do, and a request never waits for more than one chunk.

use super::*;
use crate::events::Events;
use rusqlite::params;

fn db(dir: &std::path::Path) -> Db {
    Db::in_dir(dir)
}

/// `rows` vectors of generation `generation`, which has no row in `generations`.
fn trashed(db: &mut Db, generation: i64, rows: i64) {
    let tx = db.conn.transaction().unwrap();
    let mut insert = tx
        .prepare(
            "INSERT INTO vectors (generation_id, row_no, text, embedding)
             VALUES (?1, ?2, 'text', zeroblob(16))",
        )
        .unwrap();
    for row in 1..=rows {
        insert.execute(params![generation, row]).unwrap();
    }
    drop(insert);
    tx.execute(
        "INSERT INTO vector_trash (generation_id) VALUES (?1)",
        [generation],
    )
    .unwrap();
    tx.commit().unwrap();
}

fn count(db: &Db, sql: &str) -> i64 {
    db.conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

#[test]
fn chunks_empty_the_trash_generation_by_generation() {
    let dir = tempfile::tempdir().unwrap();
    let mut db = db(dir.path());
    assert!(!db.trash_pending().unwrap());
    assert!(
        !db.purge_chunk().unwrap(),
        "an empty trash is nothing to do"
    );
    trashed(&mut db, 7, CHUNK + 5);
    trashed(&mut db, 9, 3);
    assert!(db.trash_pending().unwrap());

    // One chunk: CHUNK vectors of the first generation, nothing of the second.
    assert!(db.purge_chunk().unwrap());
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM vectors WHERE generation_id = 7"),
        5
    );
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM vectors WHERE generation_id = 9"),
        3
    );
    assert!(
        db.purge_chunk().unwrap(),
        "generation 9 is still in the trash"
    );
    assert_eq!(count(&db, "SELECT COUNT(*) FROM vector_trash"), 1);
    assert!(!db.purge_chunk().unwrap(), "the trash is empty");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM vectors"), 0);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM vector_trash"), 0);
}

/// A catalog `c.sqlite` in a new folder, left by a run that stopped before its trash of one
/// generation of `rows` vectors was emptied.
fn left_with_trash(rows: i64) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    trashed(&mut db(dir.path()), 3, rows);
    dir
}

#[test]
fn the_catalog_thread_empties_the_trash_between_requests() {
    let dir = left_with_trash(4 * CHUNK);
    let path = dir.path().join("c.sqlite");
    let (catalog, thread) =
        crate::catalog::Catalog::open(&path, &dir.path().join("audit.jsonl"), Events::default())
            .unwrap();
    let reader = rusqlite::Connection::open(&path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let count = |sql: &str| -> i64 { reader.query_row(sql, [], |r| r.get(0)).unwrap() };
    loop {
        // Requests keep being answered while the trash is emptied.
        catalog.reservations_blocking().unwrap();
        // The vectors go first; the generation leaves the trash with the chunk that finds
        // fewer than CHUNK left (here one more, as 4 × CHUNK divides evenly).
        let left = count("SELECT COUNT(*) FROM vectors");
        let trash = count("SELECT COUNT(*) FROM vector_trash");
        if left == 0 && trash == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{left} vectors and {trash} generations left in the trash"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    drop(catalog);
    thread.join();
}

#[test]
fn requests_that_never_stop_slow_the_purge_but_cannot_stop_it() {
    use crate::catalog::tests::{held_at, queue};
    // More calls than PURGE_RUN queued behind a held thread, then all let go: the main queue
    // is never empty until the last one has run. Each records the vectors it sees.
    let (_dir, catalog, release) = held_at(left_with_trash(50 * CHUNK));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = 2 * crate::catalog::PURGE_RUN as usize;
    let threads: Vec<_> = (0..calls)
        .map(|_| {
            let record = |db: &mut Db| count(db, "SELECT COUNT(*) FROM vectors").to_string();
            queue(&catalog, false, record, &seen)
        })
        .collect();
    release.send(()).unwrap();
    for thread in threads {
        thread.join().unwrap();
    }
    let seen: Vec<i64> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|n| n.parse().unwrap())
        .collect();
    assert!(seen[0] > 0, "the trash was emptied before the calls ran");
    assert!(
        seen[calls - 1] < seen[0],
        "no chunk was deleted between {calls} calls in a row: {seen:?}"
    );
}
