//! Read models on PostgreSQL (`catalog::pg::read`): every node lists what every node stored or
//! rejected, a later rejected attempt shows over the version that stays, `show` gives versions,
//! jobs and the active embeddings, and groups are counted by the database.

use super::queue::{catalog, member};
use ingestd::catalog::jobs::{Begun, Ending, NewRow, RowVector, text_hash};
use ingestd::catalog::pg::generations::{self as run, Try, identity_id};
use ingestd::catalog::pg::read::{self, NotOne};
use ingestd::catalog::pg::{ingest, queue};
use ingestd::catalog::{Accepted, Decision, Rejected};
use ingestd::embed::Identity;
use ingestd::identity::{Actor, Via};
use ingestd::protocol::Status;
use postgres::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn dave() -> Actor {
    Actor {
        uid: Some(1003),
        user: Some("dave".into()),
        via: Via::Drop,
    }
}

fn store(client: &mut Client, node: &str, group: &str, name: &str, sha: &str) {
    let file = Accepted {
        group: group.into(),
        name: name.into(),
        format: "csv".into(),
        size: 12,
        sha256: sha.into(),
        columns: vec!["region".into()],
        skipped: Vec::new(),
        rows: 3,
        notes: Vec::new(),
        reading: Default::default(),
        actor: dave(),
        drop_path: PathBuf::from(format!("/drop/{group}/{name}")),
        tmp_path: PathBuf::from("/storage/.tmp"),
    };
    let Decision::Reserved(r) = ingest::decide(client, node, &file, Path::new("/storage")).unwrap()
    else {
        panic!()
    };
    ingest::mark_ready(client, node, &r, "3 rows".into(), 3).unwrap();
}

#[test]
fn every_node_lists_the_clusters_sources_and_counts_them() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    store(&mut b, "b", "sales", "r.csv", "two");
    store(&mut a, "a", "sales", "q.csv", "one");
    store(&mut b, "b", "other", "q.csv", "three");
    // A later drop of q.csv on b is rejected: q.csv shows the refusal over its v1.
    let rejected = Rejected {
        group: "sales".into(),
        name: "q.csv".into(),
        format: Some("csv".into()),
        size: Some(5),
        reason: "not a CSV: binary content".into(),
        actor: dave(),
        kept_at: None,
    };
    ingest::record_rejection(&mut b, "b", &rejected).unwrap();
    // r.csv, the oldest job of the first group, is embedded on b.
    let (started, _) =
        queue::claim(&mut b, &member("b", Duration::from_secs(60), false), 3, 1).unwrap();
    let at = Try::of(&started[0], "b");
    let identity = Identity {
        provider: "hashing".into(),
        model: "m".into(),
        dimension: 2,
        weights_hash: "w".into(),
    };
    let id = identity_id(&mut b, &identity).unwrap();
    let Begun::Started(generation) = run::begin(&mut b, &at, &identity, id).unwrap() else {
        panic!()
    };
    let row = NewRow {
        row: 0,
        text: "x".into(),
        text_hash: text_hash("x"),
        vector: RowVector::Embedded(vec![1.0, 0.0]),
    };
    let _ = run::write(&mut b, &at, generation, &[row], 1).unwrap();
    run::finish(&mut b, &at, Some(generation), Ending::Done).unwrap();

    let listed = read::summaries(&mut a, Some("sales"), None).unwrap();
    let rows: Vec<(&str, Option<&str>, Status)> = listed
        .iter()
        .map(|s| (s.name.as_str(), s.version.as_deref(), s.status))
        .collect();
    // a's listing shows what b stored and embedded.
    assert_eq!(
        rows,
        vec![
            ("q.csv", Some("v1"), Status::Invalid),
            ("r.csv", Some("v1"), Status::Embedded),
        ]
    );
    assert_eq!(
        listed[0].reason.as_deref(),
        Some("not a CSV: binary content")
    );
    assert_eq!(listed[0].format.as_deref(), Some("csv"));
    assert_eq!(listed[0].added_by.as_deref(), Some("dave"));
    assert_eq!(read::summaries(&mut b, None, None).unwrap().len(), 3);

    let counts = read::group_counts(&mut b).unwrap();
    let sales = counts.iter().find(|g| g.name == "sales").unwrap();
    assert_eq!(sales.sources, 2);
    assert_eq!(sales.by_status.get(&Status::Invalid), Some(&1));
    assert_eq!(sales.by_status.get(&Status::Embedded), Some(&1));
    assert!(sales.last_activity.is_some());
    assert_eq!(
        read::statuses_of(
            &mut a,
            &[
                ("sales".into(), "r.csv".into()),
                ("sales".into(), "nothing.csv".into())
            ]
        )
        .unwrap(),
        vec![Some(Status::Embedded), None]
    );

    let detail = read::show_source(&mut a, Some("sales"), "r.csv")
        .unwrap()
        .unwrap();
    assert_eq!(detail.versions.len(), 1);
    assert_eq!(detail.jobs.len(), 1);
    let embeddings = detail.embeddings.expect("r.csv's active embeddings");
    assert_eq!(
        (
            embeddings.version.as_str(),
            embeddings.rows,
            embeddings.model.as_str(),
            embeddings.dimension
        ),
        ("v1", 1, "m", 2)
    );
    let q = read::show_source(&mut a, Some("sales"), "q.csv")
        .unwrap()
        .unwrap();
    let statuses: Vec<Status> = q.versions.iter().map(|v| v.status).collect();
    assert_eq!(
        statuses,
        vec![Status::Invalid, Status::Queued],
        "newest first"
    );
    assert!(matches!(
        read::show_source(&mut a, None, "q.csv").unwrap(),
        Err(NotOne::Ambiguous(m)) if m.contains("other, sales")
    ));
    assert!(matches!(
        read::show_source(&mut a, None, "none.csv").unwrap(),
        Err(NotOne::Missing(_))
    ));
}
