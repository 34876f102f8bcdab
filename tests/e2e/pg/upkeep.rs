//! Upkeep of the shared catalog: retention from any node with each file removed by its holder
//! (`catalog::pg::retain`), `fsck` of one node against its own storage root and the deletes
//! left to it (`catalog::pg::fsck`), and a node's start finishing what it left
//! (`catalog::pg::start_up`).

use super::fixture::{LONG, carol, embed, store};
use super::queue::{TIMEOUT, catalog, count, member};
use ingestd::catalog::pg::{self, fsck, manage, queue, retain};
use std::time::{Duration, Instant};

#[test]
fn retention_prunes_from_any_node_and_each_file_goes_with_its_holder() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let v1 = store(&mut a, "a", &root_a, "sales", "q.csv", "one");
    embed(&mut a, "a");
    let v2 = store(&mut b, "b", &root_b, "sales", "q.csv", "two");
    embed(&mut b, "b");

    // b keeps one version: v1 (a's file) is pruned, its row stays, its file waits for a.
    let pruned = retain::prune_source(&mut b, "b", "sales", "q.csv", 1, &root_b).unwrap();
    assert_eq!(
        pruned.iter().map(|p| p.version_no).collect::<Vec<_>>(),
        vec![1]
    );
    assert!(v1.exists() && v2.exists());
    let (status, path): (String, Option<String>) = {
        let r = a
            .query_one(
                "SELECT status, stored_path FROM versions WHERE version_no = 1",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!((status.as_str(), path.is_some()), ("pruned", true));
    // The newest and active version is never pruned, however small the limit.
    assert!(
        retain::prune_source(&mut b, "b", "sales", "q.csv", 1, &root_b)
            .unwrap()
            .is_empty()
    );
    // a removes its own file, and the row forgets it.
    assert_eq!(retain::finish_prunes(&mut a, "a", &root_a).unwrap(), 1);
    assert!(!v1.exists() && v2.exists());
    assert_eq!(
        count(
            &mut a,
            "SELECT COUNT(*) FROM versions WHERE stored_path IS NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &mut a,
            "SELECT COUNT(*) FROM audit WHERE action = 'prune' AND node = 'b'"
        ),
        1
    );
    assert_eq!(
        retain::prune_source(&mut a, "a", "sales", "q.csv", 0, &root_a).unwrap(),
        vec![]
    );
}

#[test]
fn fsck_checks_one_nodes_files_and_repairs_them_and_the_deletes_left_to_it() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    store(&mut a, "a", &root_a, "sales", "kept.csv", "one");
    let gone = store(&mut a, "a", &root_a, "sales", "gone.csv", "two");
    let handed = store(&mut a, "a", &root_a, "sales", "handed.csv", "three");
    store(&mut b, "b", &root_b, "sales", "theirs.csv", "four");
    std::fs::remove_file(&gone).unwrap();
    let stray = root_a.join("sales/stray.csv");
    std::fs::write(&stray, "?\n").unwrap();
    // A node b delete of a's file, while a was busy.
    let out = manage::delete(&mut b, "b", &root_b, "sales", "handed.csv", &carol(), 3);
    assert!(out.ok, "{out:?}");
    // One of a's jobs processing with no worker: a crashed mid-job, say.
    let (started, _) = queue::claim(&mut a, &member("a", LONG, false), 3, 1).unwrap();
    let stuck = started[0].job;

    let deadline = Instant::now() + TIMEOUT;
    let (report, pending) = loop {
        let (report, pending) =
            fsck::fsck(&mut a, "a", &root_a, false, &[], false, &carol()).unwrap();
        // A job started less than a second ago may be on its way to its worker.
        if !report.stuck_jobs.is_empty() {
            break (report, pending);
        }
        assert!(
            Instant::now() < deadline,
            "job {stuck} never looked stuck: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(report.orphan_files, vec![stray.display().to_string()]);
    assert_eq!(report.missing_files.len(), 1, "{report:?}");
    assert!(report.missing_files[0].starts_with("sales/gone.csv v1"));
    assert_eq!(report.stuck_jobs, vec![stuck]);
    assert_eq!(report.orphan_vectors, 0);
    assert_eq!(pending.mine, vec![format!("a: {}", handed.display())]);
    assert!(pending.others.is_empty());
    // b's own check sees none of a's files, and a's pending delete as a's.
    let (theirs, pending_b) =
        fsck::fsck(&mut b, "b", &root_b, false, &[], false, &carol()).unwrap();
    assert!(theirs.is_clean(), "{theirs:?}");
    assert_eq!(pending_b.others.len(), 1);

    let (repaired, pending) = fsck::fsck(&mut a, "a", &root_a, false, &[], true, &carol()).unwrap();
    assert!(repaired.repaired);
    assert!(!stray.exists() && !handed.exists());
    assert!(root_a.join("lost+found/sales/stray.csv").is_file());
    assert!(pending.mine.is_empty(), "{pending:?}");
    let (again, pending) = fsck::fsck(&mut a, "a", &root_a, false, &[], false, &carol()).unwrap();
    assert!(
        again.is_clean() && pending.mine.is_empty(),
        "{again:?} {pending:?}"
    );
    assert_eq!(
        count(
            &mut a,
            &format!("SELECT COUNT(*) FROM jobs WHERE id = {stuck} AND state = 'queued'")
        ),
        1
    );
}

#[test]
fn a_restarting_node_finishes_what_it_left_and_what_others_asked_of_it() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let dir = tempfile::tempdir().unwrap();
    let root_a = dir.path().join("a");
    store(&mut a, "a", &root_a, "sales", "r.csv", "two");
    let file = store(&mut a, "a", &root_a, "sales", "q.csv", "one");
    let (started, _) = queue::claim(&mut a, &member("a", LONG, false), 3, 1).unwrap();
    // a goes down; b deletes q.csv meanwhile (its job is not processing: r.csv's is).
    let processing = started[0].job;
    let out = manage::delete(&mut b, "b", dir.path(), "sales", "q.csv", &carol(), 3);
    assert!(out.ok, "{out:?}");
    let back = pg::start_up(&mut a, "a", &root_a).unwrap();
    assert_eq!(
        back.requeued.iter().map(|t| t.job).collect::<Vec<_>>(),
        vec![processing]
    );
    assert_eq!(back.carried.removed, vec![file.clone()]);
    assert!(!file.exists());
    assert_eq!(queue::nodes(&mut b).unwrap()[0].name, "a");
}
