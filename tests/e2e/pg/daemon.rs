//! The real daemon on PostgreSQL (`catalog.backend = "postgres"`): one node ingests, embeds,
//! searches, deletes and comes back after a restart with everything in the shared catalog; two
//! nodes with their own drop and storage roots on one database each list what both hold,
//! each embeds the files it holds, and a delete taken on one node of a file the other holds
//! removes that node's file.

use super::TestDb;
use crate::helper::{Daemon, csv, wait_for};
use ingestd::protocol::{JobState, RmOutcome, SearchResult, cmd};

/// A daemon of node `node` on the catalog in `db`, searching with an `ef_search` of its own.
fn node(db: &TestDb, node: &str) -> Daemon {
    Daemon::start_with(&format!(
        "[ingest]\nsettle_ms = 150\n\
         [catalog]\nbackend = \"postgres\"\nurl = \"{}\"\nef_search = 40\n\
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
    // The node's indexing pass moves the swapped rows into the HNSW index, and status shows
    // the backlog going to nothing; the same search answers the same.
    crate::helper::wait_for("the index backlog to empty", || {
        (daemon.status().index_backlog == Some(0)).then_some(())
    });
    assert_eq!(
        count(&mut client, "SELECT COUNT(*) FROM vectors WHERE staged"),
        0
    );
    let again: SearchResult = daemon
        .client()
        .call(&cmd::Search {
            text: "row 7".into(),
            group: Some("sales".into()),
            k: Some(5),
        })
        .expect("search");
    // The nearest row is the same; the rest tie at score 0 (no shared hashed word), and which
    // of the tied rows an approximate index returns is its own.
    assert_eq!(again.hits[0], found.hits[0]);
    let scores = |r: &SearchResult| r.hits.iter().map(|h| h.score).collect::<Vec<_>>();
    assert_eq!(scores(&again), scores(&found));
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
    // Each node's audit.jsonl holds the records it wrote, as the catalog holds them: the
    // accept and the swap of each of its own files, none of the other node's.
    for (daemon, own, other) in [(&a, "north", "south"), (&b, "south", "north")] {
        let lines = wait_for("each node's accepts and swaps in its audit.jsonl", || {
            let lines = daemon.audit();
            let of = |action: &str| {
                lines
                    .iter()
                    .filter(|l| l["action"] == action && l["group"] == own)
                    .count()
            };
            (of("add") == 3 && of("swap") == 3).then_some(lines)
        });
        assert!(
            lines.iter().all(|l| l["group"] != other),
            "{own}'s node wrote only its own records: {lines:?}"
        );
        assert!(lines.iter().all(|l| l.get("id").is_none()), "{lines:?}");
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

/// A node's daemon embedding at `server`, with `cluster` keys and its storage root moved to
/// `storage` when given (every node mounting one storage root).
fn node_at(
    db: &TestDb,
    name: &str,
    server: &crate::helper::openai::FakeOpenAi,
    cluster: &str,
    storage: Option<&std::path::Path>,
) -> Daemon {
    node_with(db, name, server, 3, cluster, storage)
}

/// [`node_at`] with `embedding.concurrency = concurrency`.
fn node_with(
    db: &TestDb,
    name: &str,
    server: &crate::helper::openai::FakeOpenAi,
    concurrency: u32,
    cluster: &str,
    storage: Option<&std::path::Path>,
) -> Daemon {
    let mut daemon = Daemon::configure_embedding(
        &server.embedding_toml_with(&format!("concurrency = {concurrency}"), "max_in_flight = 1"),
        &format!(
            "[ingest]\nsettle_ms = 150\n\
             [catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n\
             [cluster]\nnode = \"{name}\"\n{cluster}\n",
            db.url()
        ),
    );
    if let Some(storage) = storage {
        let text = std::fs::read_to_string(&daemon.config).unwrap();
        let moved = text.replace(
            "storage_root = \"../store\"",
            &format!("storage_root = \"{}\"", storage.display()),
        );
        assert_ne!(text, moved);
        std::fs::write(&daemon.config, moved).unwrap();
        daemon.storage_root = storage.to_path_buf();
    }
    daemon.spawn();
    daemon
}

/// `files` files of `rows` rows into each of `groups` groups (`g0`, `g1`, …, file `gGfF.csv`),
/// dropped on node `a` and node `b` in turn, files first: each group's files in queue order.
fn drop_across(a: &Daemon, b: &Daemon, groups: usize, files: usize, rows: usize) {
    for f in 0..files {
        for g in 0..groups {
            let daemon = if (g + f) % 2 == 0 { a } else { b };
            daemon.drop_file(
                &format!("g{g}"),
                &format!("g{g}f{f}.csv"),
                &csv(g * 10 + f, rows),
            );
        }
    }
}

/// Wait until `daemon` lists `n` jobs, all completed.
fn wait_completed(daemon: &Daemon, n: usize) {
    wait_for(&format!("{n} completed jobs"), || {
        let jobs = daemon.jobs();
        (jobs.len() == n && jobs.iter().all(|j| j.state == JobState::Completed)).then_some(())
    });
}

fn fsck(daemon: &Daemon) -> ingestd::protocol::FsckReport {
    daemon
        .client()
        .call(&cmd::Fsck { repair: false })
        .expect("fsck")
}

#[test]
fn pg_two_nodes_keep_one_cap_and_fifo_per_group_at_one_embedding_server() {
    use crate::helper::openai::FakeOpenAi;
    use std::sync::atomic::Ordering;
    let Some(db) = TestDb::create() else { return };
    let server = FakeOpenAi::start();
    server.behaviour.delay_ms.store(25, Ordering::SeqCst);
    let a = node_at(&db, "a", &server, "", None);
    let b = node_at(&db, "b", &server, "", None);
    // 3 groups × 10 files, dropped on either node: each node embeds the files it holds.
    drop_across(&a, &b, 3, 10, 12);
    wait_completed(&a, 30);
    // One request in flight per job: the server's count of requests is a count of jobs, of
    // both nodes together.
    let most = server.max_in_flight();
    assert!(
        most <= 3,
        "{most} jobs embedded at once across the cluster, cap 3"
    );
    assert!(
        most >= 2,
        "jobs never ran in parallel (at most {most} at once)"
    );
    // FIFO within each group, whichever node ran each job: in the order they were queued,
    // jobs started (a claim's start time, the database's clock) never earlier than the ones
    // queued before them. With three running at once, jobs started a few milliseconds apart
    // reach the server in either order (a worker's first request waits for its parse worker);
    // the server's order is checked with one job at a time, below.
    let mut client = db.client();
    for g in 0..3 {
        let queued: Vec<(String, i64)> = client
            .query(
                "SELECT s.name, j.started_at FROM jobs j JOIN sources s ON s.id = j.source_id
                 JOIN groups g ON g.id = j.group_id WHERE g.name = $1
                 ORDER BY j.queued_at, j.id",
                &[&format!("g{g}")],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for pair in queued.windows(2) {
            let ((earlier, t0), (later, t1)) = (&pair[0], &pair[1]);
            assert!(
                t0 <= t1,
                "group g{g}: {later} (queued after {earlier}) started first: {queued:?}"
            );
        }
    }
    let one_each: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM generations WHERE state = 'active'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(one_each, 30);
    let all: i64 = client
        .query_one("SELECT COUNT(*) FROM generations", &[])
        .unwrap()
        .get(0);
    assert_eq!(all, 30, "no generation but the active ones");
    assert!(fsck(&a).is_clean() && fsck(&b).is_clean());
}

#[test]
fn pg_a_killed_nodes_job_is_taken_over_after_its_lease_and_completed() {
    use crate::helper::openai::FakeOpenAi;
    let Some(db) = TestDb::create() else { return };
    let server = FakeOpenAi::start();
    let shared = "lease_secs = 5\nshared_storage = true";
    let mut a = node_at(&db, "a", &server, shared, None);
    // The file's rows wait at the server: a's job stays processing until a is killed.
    server.hold("held row");
    let rows = (0..12)
        .map(|i| format!("{i},held row {i}\n"))
        .collect::<String>();
    a.drop_file("g", "slow.csv", format!("id,text\n{rows}").as_bytes());
    wait_for("a's job to reach the server", || {
        (server.held() > 0).then_some(())
    });
    let job = a.jobs()[0].id;
    a.kill9();
    server.release("held row");
    // b mounts the same storage: after the lease it takes the job over and completes it.
    let b = node_at(&db, "b", &server, shared, Some(&a.storage_root));
    let done = wait_for("b to complete the job a was running", || {
        let info = b.job(job);
        (info.state == JobState::Completed).then_some(info)
    });
    assert_eq!(done.attempt, 2, "the interrupted try counts: {done:?}");
    b.wait_embedded("g", "slow.csv", "v1");
    let mut client = db.client();
    let (active, all, vectors): (i64, i64, i64) = {
        let r = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM generations WHERE state = 'active'),
                        (SELECT COUNT(*) FROM generations),
                        (SELECT COUNT(*) FROM vectors)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    assert_eq!((active, all, vectors), (1, 1, 12));
    let audit: i64 = client
        .query_one(
            "SELECT COUNT(*) FROM audit WHERE action = 'swap' AND node = 'b'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(audit, 1);
    assert!(fsck(&b).is_clean(), "{:?}", fsck(&b));
}

#[test]
fn pg_a_follower_on_one_node_sees_what_another_accepted_and_embedded_and_status_lists_nodes() {
    use ingestd::protocol::{Event, EventKind, Response};
    let Some(db) = TestDb::create() else { return };
    let a = node(&db, "a");
    let b = node(&db, "b");
    let mut follower = b.client();
    follower.set_timeout(Some(crate::helper::TIMEOUT)).unwrap();
    follower
        .write_raw(b"{\"v\":1,\"cmd\":\"events\",\"all\":true}\n")
        .unwrap();
    assert!(follower.read_response().unwrap().ok);
    a.drop_file("g", "e.csv", &csv(1, 3));
    // What a commits reaches b's follower: the accept, the job a runs starting and making
    // progress, then the swap of its embeddings.
    let mut kinds = Vec::new();
    while !kinds.contains(&EventKind::Swapped) {
        let line: Response = follower.read_response().expect("an event line");
        let event: Event = serde_json::from_value(line.data.unwrap()).unwrap();
        if event.source.as_deref() == Some("e.csv") {
            kinds.push(event.kind);
        }
    }
    let audited: Vec<EventKind> = kinds
        .iter()
        .copied()
        .filter(|k| {
            matches!(
                k,
                EventKind::Accepted | EventKind::JobStarted | EventKind::Swapped
            )
        })
        .collect();
    assert_eq!(
        audited,
        [
            EventKind::Accepted,
            EventKind::JobStarted,
            EventKind::Swapped
        ],
        "{kinds:?}"
    );
    assert!(kinds.contains(&EventKind::JobProgress), "{kinds:?}");

    let status = a.status();
    let nodes: Vec<(&str, bool)> = status
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.this))
        .collect();
    assert_eq!(nodes, [("a", true), ("b", false)]);
    assert!(status.nodes.iter().all(|n| n.heartbeat_age_secs < 60));
    assert!(
        status.database.starts_with("postgresql://"),
        "{}",
        status.database
    );
}

#[test]
fn pg_one_job_at_a_time_across_two_nodes_reaches_the_server_in_queue_order() {
    use crate::helper::openai::FakeOpenAi;
    let Some(db) = TestDb::create() else { return };
    let server = FakeOpenAi::start();
    let a = node_with(&db, "a", &server, 1, "", None);
    let b = node_with(&db, "b", &server, 1, "", None);
    drop_across(&a, &b, 2, 6, 6);
    wait_completed(&b, 12);
    assert_eq!(server.max_in_flight(), 1, "a cap of 1 across the cluster");
    // The cluster ran one job at a time: the server saw each group's jobs in the order they
    // were queued, whichever node queued and ran each.
    let mut client = db.client();
    let mut seen: Vec<String> = Vec::new();
    for text in server.texts() {
        let source = text.split(" | ").next().unwrap().to_string();
        if !seen.contains(&source) {
            seen.push(source);
        }
    }
    for g in 0..2 {
        let queued: Vec<String> = client
            .query(
                "SELECT s.name FROM jobs j JOIN sources s ON s.id = j.source_id
                 JOIN groups g ON g.id = j.group_id WHERE g.name = $1
                 ORDER BY j.queued_at, j.id",
                &[&format!("g{g}")],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        let in_group: Vec<String> = seen
            .iter()
            .filter(|s| s.starts_with(&format!("g{g}f")))
            .cloned()
            .collect();
        assert_eq!(
            in_group, queued,
            "group g{g}: the server's order against the queue's"
        );
    }
}

/// A second daemon started as a node that is already running is refused at start with the
/// reason, and changes nothing; once the first has stopped, it starts.
#[test]
fn pg_a_second_daemon_with_a_running_nodes_name_is_refused() {
    let Some(db) = TestDb::create() else { return };
    let mut first = node(&db, "a");
    first.drop_file("g", "one.csv", &csv(1, 3));
    first.wait_embedded("g", "one.csv", "v1");

    let mut second = Daemon::configure(&format!(
        "[ingest]\nsettle_ms = 150\n\
         [catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n\
         [cluster]\nnode = \"a\"\nlease_secs = 5\n",
        db.url()
    ));
    second.launch(|_| {});
    let status = second.wait_exit();
    assert!(!status.success(), "{status:?}");
    let log = second.log_text();
    assert!(
        log.contains("another ingestd is running as node \"a\" of this cluster"),
        "{log}"
    );
    // The first node goes on, its job untouched.
    assert_eq!(first.jobs().len(), 1);
    assert!(first.status().nodes.iter().any(|n| n.name == "a" && n.this));

    assert!(first.stop().success());
    second.spawn();
    assert_eq!(second.ls(Some("g")).len(), 1);
}

/// `ingestd --config CONFIG catalog forget-node NAME`, the real binary.
fn forget_node(config: &std::path::Path, name: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ingestd"))
        .arg("--config")
        .arg(config)
        .args(["catalog", "forget-node", name])
        .env_remove("INGESTD_CONFIG")
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run ingestd catalog forget-node")
}

#[test]
fn pg_a_node_gone_for_good_is_forgotten_only_once_it_runs_nothing() {
    use super::text;
    use crate::helper::openai::FakeOpenAi;
    let Some(db) = TestDb::create() else { return };
    let server = FakeOpenAi::start();
    let mut a = node_at(&db, "a", &server, "lease_secs = 5", None);
    let b = node(&db, "b");
    // A running node holds its name.
    let out = forget_node(&b.config, "b");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node \"b\" is running"),
        "{}",
        text(&out)
    );
    // A node that beats without holding its name (an older version) is refused too, by its
    // heartbeat.
    db.client()
        .execute(
            "INSERT INTO nodes (name, started_at, heartbeat_at, ingestd_version)
             VALUES ('old', 0, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, '0.0.1')",
            &[],
        )
        .unwrap();
    let out = forget_node(&b.config, "old");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("node \"old\" sent a heartbeat 0 s ago"),
        "{}",
        text(&out)
    );

    // Node a dies with a job processing: refused until that job is taken over.
    server.hold("held row");
    a.drop_file("g", "slow.csv", b"id,text\n1,held row 1\n");
    wait_for("a's job to reach the server", || {
        (server.held() > 0).then_some(())
    });
    let job = a.jobs()[0].id;
    a.kill9();
    let out = forget_node(&b.config, "a");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("1 job(s) processing (#{job})")),
        "{}",
        text(&out)
    );
    server.release("held row");
    // Node b takes it over after the lease; it cannot read a's file, so it stays queued.
    wait_for("b to take the job over", || {
        (b.job(job).state == JobState::Queued).then_some(())
    });
    // Refused while its heartbeat is younger than two leases (lease_secs = 5: 10 s): a node
    // of an older version runs without holding its name the way this one does.
    let out = wait_for("a's heartbeat to be two leases old", || {
        let out = forget_node(&b.config, "a");
        if !out.status.success() {
            assert!(text(&out).contains("sent a heartbeat"), "{}", text(&out));
        }
        out.status.success().then_some(out)
    });
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("node a taken off the registry"), "{said}");
    assert!(
        said.contains("1 queued job(s) are of files a stored"),
        "{said}"
    );
    let nodes: Vec<String> = b.status().nodes.into_iter().map(|n| n.name).collect();
    assert_eq!(nodes, vec!["b".to_string(), "old".to_string()]);
    // What a held stays listed; the removal is in the audit trail.
    assert_eq!(b.ls(Some("g")).len(), 1);
    let audited: i64 = db
        .client()
        .query_one(
            "SELECT COUNT(*) FROM audit WHERE action = 'forget_node' AND detail LIKE 'node a %'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(audited, 1);
    // Once gone, it is not there to forget, and the message names the nodes there are.
    let out = forget_node(&b.config, "a");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("no node \"a\" in the cluster's registry; its nodes: b, old"),
        "{}",
        text(&out)
    );
}
