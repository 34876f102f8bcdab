//! Storing dropped files on PostgreSQL (`catalog::pg::ingest`): two nodes storing versions of
//! one source at once get distinct version numbers and one `unchanged` for one content; an
//! accepted version is ready with its job queued in one transaction, audited with its node,
//! and supersedes the job of an older queued version; a node's recovery sees only its own
//! reservations.

use super::queue::{catalog, count};
use ingestd::catalog::pg::ingest;
use ingestd::catalog::{Accepted, Decision, Rejected};
use ingestd::identity::{Actor, Via};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};

fn alice() -> Actor {
    Actor {
        uid: Some(1000),
        user: Some("alice".into()),
        via: Via::Drop,
    }
}

fn accepted(group: &str, name: &str, sha256: &str) -> Accepted {
    Accepted {
        group: group.into(),
        name: name.into(),
        format: "csv".into(),
        size: 10,
        sha256: sha256.into(),
        columns: vec!["a".into()],
        skipped: Vec::new(),
        rows: 2,
        notes: Vec::new(),
        reading: Default::default(),
        actor: alice(),
        drop_path: PathBuf::from(format!("/drop/{group}/{name}")),
        tmp_path: PathBuf::from(format!("/storage/{group}/.tmp-{sha256}")),
    }
}

#[test]
fn two_nodes_storing_one_source_at_once_get_distinct_numbers_and_one_content_is_one_version() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    const EACH: usize = 20;
    let start = Arc::new(Barrier::new(2));
    let nodes: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let mut client = db.client();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                (0..EACH)
                    .map(|i| {
                        let file = accepted("sales", "q.csv", &format!("{node}{i}"));
                        match ingest::decide(&mut client, node, &file, Path::new("/storage"))
                            .unwrap()
                        {
                            Decision::Reserved(r) => r.version_no,
                            other => panic!("{other:?}"),
                        }
                    })
                    .collect::<Vec<i64>>()
            })
        })
        .collect();
    let numbers: Vec<i64> = nodes
        .into_iter()
        .flat_map(|t| t.join().expect("a node's decisions"))
        .collect();
    let distinct: HashSet<i64> = numbers.iter().copied().collect();
    assert_eq!(distinct, (1..=2 * EACH as i64).collect::<HashSet<_>>());
    assert_eq!(
        count(&mut client, "SELECT COUNT(*) FROM sources"),
        1,
        "one source, however many nodes saw it new"
    );

    // The same content dropped on both nodes at once: one version, one `unchanged`.
    let start = Arc::new(Barrier::new(2));
    let both: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let mut client = db.client();
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let file = accepted("sales", "q.csv", "same");
                ingest::decide(&mut client, node, &file, Path::new("/storage")).unwrap()
            })
        })
        .collect();
    let decisions: Vec<Decision> = both.into_iter().map(|t| t.join().unwrap()).collect();
    let reserved = decisions
        .iter()
        .filter(|d| matches!(d, Decision::Reserved(_)))
        .count();
    assert_eq!(reserved, 1, "{decisions:?}");
    assert!(decisions.iter().any(|d| *d
        == Decision::Unchanged {
            version: format!("v{}", 2 * EACH + 1)
        }));
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM audit WHERE outcome = 'unchanged'"
        ),
        1
    );
}

#[test]
fn an_accepted_version_is_ready_with_its_job_and_a_nodes_recovery_sees_only_its_own() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    assert!(ingest::ensure_group(&mut client, "sales").unwrap());
    assert!(!ingest::ensure_group(&mut client, "sales").unwrap());
    let storage = Path::new("/storage-a");
    let Decision::Reserved(v1) = ingest::decide(
        &mut client,
        "a",
        &accepted("sales", "q.csv", "one"),
        storage,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(v1.stored_path, Path::new("/storage-a/sales/q_v1.csv"));
    let Decision::Reserved(v2) = ingest::decide(
        &mut client,
        "a",
        &accepted("sales", "q.csv", "two"),
        storage,
    )
    .unwrap() else {
        panic!()
    };
    let Decision::Reserved(on_b) = ingest::decide(
        &mut client,
        "b",
        &accepted("sales", "r.csv", "three"),
        Path::new("/storage-b"),
    )
    .unwrap() else {
        panic!()
    };
    // A stop before the files were in place: each node finishes its own.
    let mine: Vec<i64> = ingest::reservations(&mut client, "a")
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(mine, vec![v1.id, v2.id]);
    assert_eq!(
        ingest::reservations(&mut client, "b").unwrap(),
        vec![on_b.clone()]
    );
    ingest::abandon(&mut client, on_b.id).unwrap();
    assert!(ingest::reservations(&mut client, "b").unwrap().is_empty());

    let job1 = ingest::mark_ready(&mut client, "a", &v1, "2 rows".into(), 3).unwrap();
    assert!(!ingest::holds_content(&mut client, "sales", "q.csv", "two").unwrap());
    let job2 = ingest::mark_ready(&mut client, "a", &v2, "2 rows".into(), 3).unwrap();
    assert!(ingest::holds_content(&mut client, "sales", "q.csv", "two").unwrap());
    let state = |client: &mut postgres::Client, job: i64| -> (String, String) {
        let r = client
            .query_one(
                "SELECT j.state, v.status FROM jobs j JOIN versions v ON v.id = j.version_id
                 WHERE j.id = $1",
                &[&job],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    // v2 queued after v1: v1's job is superseded, never run.
    assert_eq!(
        state(&mut client, job1),
        ("cancelled".into(), "ready".into())
    );
    assert_eq!(state(&mut client, job2), ("queued".into(), "queued".into()));
    let audit: Vec<(String, String, Option<i64>, String)> = client
        .query(
            "SELECT action, outcome, job, node FROM audit ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        audit,
        vec![
            ("add".into(), "accepted".into(), Some(job1), "a".into()),
            ("add".into(), "accepted".into(), Some(job2), "a".into()),
            ("cancel".into(), "superseded".into(), Some(job1), "a".into()),
        ]
    );

    // A rejection: recorded without a version number, audited with its reason.
    let rejected = Rejected {
        group: "sales".into(),
        name: "bad.csv".into(),
        format: Some("csv".into()),
        size: Some(3),
        reason: "not a CSV: binary content".into(),
        actor: alice(),
        kept_at: Some(PathBuf::from("/drop/sales/.rejected/bad.csv")),
    };
    ingest::record_rejection(&mut client, "b", &rejected).unwrap();
    let (status, version_no, node): (String, Option<i64>, String) = {
        let r = client
            .query_one(
                "SELECT v.status, v.version_no, v.node FROM versions v
                 JOIN sources s ON s.id = v.source_id WHERE s.name = 'bad.csv'",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!(
        (status.as_str(), version_no, node.as_str()),
        ("invalid", None, "b")
    );
    let detail: String = client
        .query_one("SELECT detail FROM audit WHERE outcome = 'rejected'", &[])
        .unwrap()
        .get(0);
    assert!(detail.contains("binary content") && detail.contains(".rejected/bad.csv"));
}
