//! The real daemon on PostgreSQL (`catalog.backend = "postgres"`): one node ingests, embeds,
//! searches, deletes and comes back after a restart with everything in the shared catalog; two
//! nodes with their own drop and storage roots on one database each list what both hold,
//! each embeds the files it holds, and a delete taken on one node of a file the other holds
//! removes that node's file.

use super::TestDb;
use crate::helper::{Daemon, csv, wait_for};
use ingestd::protocol::{JobState, RmOutcome, SearchResult, cmd};

/// A daemon of node `node` on the catalog in `db`.
fn node(db: &TestDb, node: &str) -> Daemon {
    Daemon::start_with(&format!(
        "[ingest]\nsettle_ms = 150\n\
         [catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n\
         [cluster]\nnode = \"{node}\"\nlease_secs = 5\n",
        db.url()
    ))
}

fn rm(daemon: &Daemon, group: &str, target: &str) -> RmOutcome {
    let mut answers: Vec<RmOutcome> = daemon
        .client()
        .call(&cmd::Rm {
            targets: vec![target.to_string()],
            group: Some(group.to_string()),
            force: false,
        })
        .expect("rm");
    answers.remove(0)
}

#[test]
fn pg_a_daemon_on_postgres_ingests_embeds_searches_deletes_and_restarts() {
    let Some(db) = TestDb::create() else { return };
    let mut daemon = node(&db, "a");
    daemon.drop_file("sales", "items.csv", &csv(1, 40));
    daemon.wait_embedded("sales", "items.csv", "v1");
    daemon.drop_file("sales", "items.csv", &csv(2, 40));
    let detail = daemon.wait_embedded("sales", "items.csv", "v2");
    assert_eq!(detail.embeddings.as_ref().map(|e| e.rows), Some(40));
    assert_eq!(detail.versions.len(), 2);

    let mut client = db.client();
    let count = |client: &mut postgres::Client, sql: &str| -> i64 {
        client.query_one(sql, &[]).unwrap().get(0)
    };
    assert_eq!(
        count(&mut client, "SELECT COUNT(*) FROM active_vectors"),
        40
    );
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM generations"), 1);
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM versions WHERE node = 'a'"
        ),
        2
    );
    let found: SearchResult = daemon
        .client()
        .call(&cmd::Search {
            text: "row 7".into(),
            group: Some("sales".into()),
            k: Some(5),
        })
        .expect("search");
    assert_eq!(found.hits.len(), 5, "{found:?}");
    assert_eq!(found.searched, 40);
    let jobs = daemon.jobs();
    assert_eq!(jobs.len(), 2);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Completed),
        "{jobs:?}"
    );

    // Everything is in the database: a restart finds it all.
    assert!(daemon.stop().success());
    daemon.spawn();
    let listed = daemon.ls(Some("sales"));
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].version.as_deref(), Some("v2"));

    let stored = daemon.storage_root.join("sales/items_v2.csv");
    assert!(stored.is_file());
    let out = rm(&daemon, "sales", "items.csv");
    assert!(out.ok, "{out:?}");
    assert!(daemon.ls(Some("sales")).is_empty());
    assert!(!stored.exists());
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM vectors"), 0);
    assert!(daemon.stop().success());
}

#[test]
fn pg_two_nodes_on_one_catalog_list_embed_and_delete_across_nodes() {
    let Some(db) = TestDb::create() else { return };
    let a = node(&db, "a");
    let b = node(&db, "b");
    for i in 0..3 {
        a.drop_file("north", &format!("a{i}.csv"), &csv(10 + i, 20));
        b.drop_file("south", &format!("b{i}.csv"), &csv(20 + i, 20));
    }
    // Each node embeds the files it holds; both list all six, embedded.
    for daemon in [&a, &b] {
        wait_for("six embedded sources on every node", || {
            let all = daemon.ls(None);
            (all.len() == 6
                && all
                    .iter()
                    .all(|s| s.status == ingestd::protocol::Status::Embedded))
            .then_some(())
        });
    }
    let jobs = b.jobs();
    assert_eq!(jobs.len(), 6, "b lists a's jobs too: {jobs:?}");
    let mut client = db.client();
    let held: Vec<(String, String)> = client
        .query(
            "SELECT s.name, v.node FROM versions v JOIN sources s ON s.id = v.source_id
             ORDER BY s.name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        held.iter()
            .filter(|(name, node)| name.starts_with('a') && node == "a")
            .count(),
        3,
        "{held:?}"
    );

    // A delete on b of a file a holds: the rows go at once, a removes its file.
    let file = a.storage_root.join("north/a1_v1.csv");
    assert!(file.is_file());
    let out = rm(&b, "north", "a1.csv");
    assert!(out.ok, "{out:?}");
    assert_eq!(a.ls(Some("north")).len(), 2);
    wait_for("a to remove the file b deleted", || {
        (!file.exists()).then_some(())
    });
    let pending: i64 = client
        .query_one("SELECT COUNT(*) FROM pending_deletes", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 0);
}
