//! The cluster queue (`catalog::pg::queue`) on a real PostgreSQL: two nodes with their own
//! connections claim from one database at once and the cap, FIFO within a group and round
//! robin across groups hold across both; a node claims only files it can read; a lease that
//! runs out is taken over as an attempt and what the interrupted try wrote is kept, unsearchable,
//! for the next try (and goes when the job fails for good); a renewed lease never is.

use super::TestDb;
use ingestd::catalog::pg::queue::{self, Member, TakenOver};
use postgres::Client;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One deadline for every wait of a test.
pub(super) const TIMEOUT: Duration = Duration::from_secs(60);
const CAP: usize = 3;

/// A migrated catalog in a fresh database.
pub(super) fn catalog() -> Option<(TestDb, Client)> {
    let db = TestDb::create()?;
    let mut client = db.client();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .unwrap();
    ingestd::catalog::pg::schema::migrate(&mut client).unwrap();
    Some((db, client))
}

pub(super) fn member(name: &str, lease: Duration, shared_storage: bool) -> Member {
    Member {
        name: name.into(),
        lease,
        shared_storage,
    }
}

pub(super) fn group(client: &mut Client, name: &str) -> i64 {
    client
        .query_one(
            "INSERT INTO groups (name, created_at) VALUES ($1, 0) RETURNING id",
            &[&name],
        )
        .unwrap()
        .get(0)
}

/// Queue a job for a new version of `source` in `group`, its file held by `node`; jobs are
/// queued in the order of these calls. Answers the job's id.
pub(super) fn queue_job(
    client: &mut Client,
    group: i64,
    source: &str,
    node: &str,
    max_attempts: i32,
) -> i64 {
    let source: i64 = client
        .query_one(
            "INSERT INTO sources (group_id, name, created_at) VALUES ($1, $2, 0)
             ON CONFLICT (group_id, name) DO UPDATE SET name = EXCLUDED.name RETURNING id",
            &[&group, &source],
        )
        .unwrap()
        .get(0);
    let version: i64 = client
        .query_one(
            "INSERT INTO versions (source_id, version_no, status, stored_path, node,
                                   created_at, updated_at)
             VALUES ($1, next_version_no($1), 'queued', '/stored/file.csv', $2, 0, 0)
             RETURNING id",
            &[&source, &node],
        )
        .unwrap()
        .get(0);
    client
        .query_one(
            "INSERT INTO jobs (group_id, source_id, version_id, state, reason, max_attempts,
                               queued_at)
             VALUES ($1, $2, $3, 'queued', 'new_version', $4,
                     (SELECT COALESCE(MAX(queued_at), 0) + 1 FROM jobs))
             RETURNING id",
            &[&group, &source, &version, &max_attempts],
        )
        .unwrap()
        .get(0)
}

/// Finish a job the way a worker of `node` would once its swap is done.
fn complete(client: &mut Client, job: i64, node: &str) {
    let n = client
        .execute(
            "UPDATE jobs SET state = 'completed', node = NULL, lease_until = NULL
             WHERE id = $1 AND node = $2 AND state = 'processing'",
            &[&job, &node],
        )
        .unwrap();
    assert_eq!(n, 1, "job {job} was processing on {node}");
}

pub(super) fn job_row(client: &mut Client, job: i64) -> (String, i32, Option<String>, String) {
    let r = client
        .query_one(
            "SELECT j.state, j.attempt, j.node, v.status FROM jobs j
             JOIN versions v ON v.id = j.version_id WHERE j.id = $1",
            &[&job],
        )
        .unwrap();
    (r.get(0), r.get(1), r.get(2), r.get(3))
}

pub(super) fn count(client: &mut Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn two_nodes_claiming_at_once_keep_the_cap_fifo_and_round_robin_across_the_cluster() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let groups: Vec<i64> = ["alpha", "beta", "gamma"]
        .iter()
        .map(|name| group(&mut client, name))
        .collect();
    // 3 groups × 10 files, dropped on either node; every node can read every file.
    let mut queued: HashMap<i64, Vec<i64>> = HashMap::new();
    for i in 0..10 {
        for (g, &group_id) in groups.iter().enumerate() {
            let node = if (i + g) % 2 == 0 { "a" } else { "b" };
            let job = queue_job(&mut client, group_id, &format!("s{g}-{i}"), node, 3);
            queued.entry(group_id).or_default().push(job);
        }
    }

    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let batches: Arc<Mutex<Vec<Vec<i64>>>> = Arc::default();
    let deadline = Instant::now() + TIMEOUT;
    let workers: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|name| {
            let mut client = db.client();
            let member = member(name, Duration::from_secs(30), true);
            let (in_flight, most, batches) = (in_flight.clone(), most.clone(), batches.clone());
            std::thread::spawn(move || {
                let mut held: Vec<i64> = Vec::new();
                loop {
                    let (started, taken) =
                        queue::claim(&mut client, &member, CAP, CAP - held.len()).unwrap();
                    assert!(taken.is_empty(), "no lease ran out: {taken:?}");
                    if !started.is_empty() {
                        let now = in_flight.fetch_add(started.len(), Ordering::SeqCst);
                        most.fetch_max(now + started.len(), Ordering::SeqCst);
                        batches
                            .lock()
                            .unwrap()
                            .push(started.iter().map(|s| s.group_id).collect());
                        held.extend(started.iter().map(|s| s.job));
                    }
                    // Hold the jobs for a while: finish the oldest one per round, so both
                    // nodes keep wanting slots the other holds.
                    if let Some(job) = (!held.is_empty()).then(|| held.remove(0)) {
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        complete(&mut client, job, &member.name);
                    }
                    let left = count(
                        &mut client,
                        "SELECT COUNT(*) FROM jobs WHERE state != 'completed'",
                    );
                    if left == 0 {
                        return;
                    }
                    assert!(Instant::now() < deadline, "{left} jobs never completed");
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("a node's worker panicked");
    }

    assert!(
        most.load(Ordering::SeqCst) <= CAP,
        "{} jobs processing at once across the cluster, cap {CAP}",
        most.load(Ordering::SeqCst)
    );
    // Every job ran once, on the first try.
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed' AND attempt = 1"
        ),
        30
    );
    // Round robin: no claim gave a group two jobs while another group had one waiting (the
    // groups drain evenly, so every batch holds distinct groups).
    for batch in batches.lock().unwrap().iter() {
        let distinct: HashSet<&i64> = batch.iter().collect();
        assert_eq!(distinct.len(), batch.len(), "one claim's groups: {batch:?}");
    }
    // FIFO within each group, whichever node started each job.
    for (group_id, jobs) in &queued {
        let started: Vec<i64> = client
            .query(
                "SELECT id FROM jobs WHERE group_id = $1 ORDER BY started_at, id",
                &[group_id],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(&started, jobs, "start order of group {group_id}");
    }
    let nodes: HashSet<String> = client
        .query("SELECT DISTINCT node FROM versions", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(nodes.len(), 2);
}

#[test]
fn a_node_claims_only_files_it_holds_and_a_groups_order_waits_for_the_holder() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    let (g, h) = (group(&mut client, "g"), group(&mut client, "h"));
    let g1 = queue_job(&mut client, g, "one", "a", 3);
    let g2 = queue_job(&mut client, g, "two", "b", 3);
    let h1 = queue_job(&mut client, h, "three", "b", 3);
    let lease = Duration::from_secs(30);
    let (a, b) = (member("a", lease, false), member("b", lease, false));

    // b may not start g's second job before a starts its first: only h's job is b's now.
    let (started, _) = queue::claim(&mut client, &b, CAP, CAP).unwrap();
    let ids: Vec<i64> = started.iter().map(|s| s.job).collect();
    assert_eq!(ids, vec![h1]);
    let (started, _) = queue::claim(&mut client, &a, CAP, CAP).unwrap();
    assert_eq!(started.iter().map(|s| s.job).collect::<Vec<_>>(), vec![g1]);
    assert_eq!(
        job_row(&mut client, g1),
        ("processing".into(), 1, Some("a".into()), "embedding".into())
    );
    // Once g's first job started, its second is b's to start.
    let (started, _) = queue::claim(&mut client, &b, CAP, CAP).unwrap();
    assert_eq!(started.iter().map(|s| s.job).collect::<Vec<_>>(), vec![g2]);

    // With shared storage every node reads every file.
    let k = group(&mut client, "k");
    let k1 = queue_job(&mut client, k, "four", "a", 3);
    let (started, _) = queue::claim(&mut client, &member("c", lease, true), 9, 1).unwrap();
    assert_eq!(started.iter().map(|s| s.job).collect::<Vec<_>>(), vec![k1]);
    // The cap counts every node's jobs: four processing, none more under a cap of 4.
    queue_job(&mut client, k, "five", "a", 3);
    let (started, _) = queue::claim(&mut client, &a, 4, CAP).unwrap();
    assert!(started.is_empty(), "{started:?}");
}

/// Give `job`'s source an active generation of 2 vectors and the job a writing one of 3.
fn generations(client: &mut Client, job: i64) -> (i64, i64) {
    let identity: i32 = client
        .query_one(
            "INSERT INTO identities (provider, model, dimension, weights_hash)
             VALUES ('hash', 'test', 3, '') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    let (source, version, group): (i64, i64, i64) = {
        let r = client
            .query_one(
                "SELECT source_id, version_id, group_id FROM jobs WHERE id = $1",
                &[&job],
            )
            .unwrap();
        (r.get(0), r.get(1), r.get(2))
    };
    let mut make = |state: &str, job: Option<i64>, rows: i64| -> i64 {
        let id: i64 = client
            .query_one(
                "INSERT INTO generations (source_id, version_id, job_id, state, identity_id,
                                          rows, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, 0) RETURNING id",
                &[&source, &version, &job, &state, &identity, &rows],
            )
            .unwrap()
            .get(0);
        for row in 0..rows {
            client
                .execute(
                    "INSERT INTO vectors (generation_id, row_no, identity_id, group_id, text,
                                          embedding)
                     VALUES ($1, $2, $3, $4, 'text', '[1,0,0]')",
                    &[&id, &row, &identity, &group],
                )
                .unwrap();
        }
        id
    };
    let active = make("active", None, 2);
    let writing = make("writing", Some(job), 3);
    (active, writing)
}

/// Take over expired leases as `client`'s node would, until one is taken.
pub(super) fn wait_for_takeover(client: &mut Client, deadline: Instant) -> Vec<TakenOver> {
    loop {
        let taken = queue::take_over_expired(client).unwrap();
        if !taken.is_empty() {
            return taken;
        }
        assert!(Instant::now() < deadline, "no lease ran out");
        std::thread::yield_now();
    }
}

#[test]
fn an_expired_lease_is_taken_over_as_an_attempt_and_its_rows_are_kept_for_the_next_try() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let deadline = Instant::now() + TIMEOUT;
    let g = group(&mut client, "g");
    let job = queue_job(&mut client, g, "sales", "a", 2);
    let lease = Duration::from_millis(200);
    let a = member("a", lease, true);
    let (started, _) = queue::claim(&mut client, &a, CAP, 1).unwrap();
    assert_eq!(started.len(), 1);
    let (active, writing) = generations(&mut client, job);

    // Node a stops renewing (killed): node b, on its own connection, takes the job over.
    let mut b_client = db.client();
    let taken = wait_for_takeover(&mut b_client, deadline);
    assert_eq!(
        taken,
        vec![TakenOver {
            job,
            node: "a".into(),
            attempt: 1,
            requeued: true,
            vectors_dropped: 0,
        }]
    );
    assert_eq!(
        job_row(&mut client, job),
        ("queued".into(), 1, None, "queued".into())
    );
    let error: String = client
        .query_one("SELECT error FROM jobs WHERE id = $1", &[&job])
        .unwrap()
        .get(0);
    assert!(
        error.contains("node a") && error.contains("attempt 1 of 2"),
        "{error}"
    );
    // What the interrupted try wrote is kept for the next try to copy, never searchable; the
    // active generation still answers.
    let gens: Vec<(i64, String)> = client
        .query("SELECT id, state FROM generations ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        gens,
        vec![(active, "active".into()), (writing, "retained".into())]
    );
    assert_eq!(
        count(
            &mut client,
            &format!("SELECT COUNT(*) FROM vectors WHERE generation_id = {writing}")
        ),
        3
    );
    assert_eq!(
        count(&mut client, "SELECT COUNT(*) FROM active_vectors"),
        2,
        "the active generation, and only it, is searchable"
    );
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM vectors"), 5);
    // Node a comes back: its renewal says the job is no longer its own.
    assert_eq!(queue::renew(&mut client, &a, &[job]).unwrap(), vec![job]);

    // Node b runs the second try; when its lease runs out too, that was the last attempt.
    let b = member("b", lease, true);
    let (started, _) = queue::claim(&mut b_client, &b, CAP, 1).unwrap();
    assert_eq!(
        started
            .iter()
            .map(|s| (s.job, s.attempt))
            .collect::<Vec<_>>(),
        vec![(job, 2)]
    );
    let taken = wait_for_takeover(&mut client, deadline);
    assert_eq!(
        (taken[0].job, taken[0].requeued, taken[0].node.as_str()),
        (job, false, "b")
    );
    assert_eq!(
        job_row(&mut client, job),
        ("failed".into(), 2, None, "failed".into())
    );
    // Failed for good: the kept rows go too, and only the active generation is left.
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM vectors"), 2);
}

#[test]
fn a_renewed_lease_is_never_taken_over() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "g");
    let job = queue_job(&mut client, g, "sales", "a", 3);
    let lease = Duration::from_millis(200);
    let a = member("a", lease, true);
    queue::join(&mut client, "a").unwrap();
    queue::claim(&mut client, &a, CAP, 1).unwrap();
    let mut b_client = db.client();
    // Five leases long, node a renews and node b looks for expired leases, turn about.
    let start = Instant::now();
    let beat_before = queue::nodes(&mut client).unwrap()[0].heartbeat_at;
    while start.elapsed() < lease * 5 {
        assert_eq!(
            queue::renew(&mut client, &a, &[job]).unwrap(),
            Vec::<i64>::new()
        );
        assert_eq!(queue::take_over_expired(&mut b_client).unwrap(), vec![]);
    }
    let nodes = queue::nodes(&mut client).unwrap();
    assert_eq!(nodes.len(), 1);
    assert!(nodes[0].heartbeat_at >= beat_before + 4 * 200, "{nodes:?}");
    assert_eq!(job_row(&mut client, job).0, "processing");
    // Once a stops renewing, the lease is what held the job.
    let taken = wait_for_takeover(&mut b_client, Instant::now() + TIMEOUT);
    assert_eq!(taken[0].job, job);
}

#[test]
fn a_restarted_node_takes_its_own_jobs_back_at_once() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "g");
    let mine = queue_job(&mut client, g, "one", "a", 3);
    let theirs = queue_job(&mut client, g, "two", "b", 3);
    let hour = Duration::from_secs(3600);
    queue::claim(&mut client, &member("a", hour, false), CAP, 1).unwrap();
    queue::claim(&mut client, &member("b", hour, false), CAP, 1).unwrap();
    let back = queue::recover_own(&mut client, "a").unwrap();
    assert_eq!(
        back.iter().map(|t| (t.job, t.requeued)).collect::<Vec<_>>(),
        vec![(mine, true)]
    );
    assert_eq!(job_row(&mut client, mine).0, "queued");
    assert_eq!(job_row(&mut client, theirs).0, "processing");
    // An hour's lease of another node is not run out: nothing to take over.
    assert!(queue::take_over_expired(&mut client).unwrap().is_empty());
}

#[test]
fn a_job_another_transaction_holds_is_passed_over_not_waited_on() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "g");
    let held = queue_job(&mut client, g, "one", "a", 3);
    let free = queue_job(&mut client, g, "two", "a", 3);
    // Another node is cancelling the first job: its row is locked until that commits.
    let mut other = db.client();
    let mut cancel = other.transaction().unwrap();
    cancel
        .execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", &[&held])
        .unwrap();
    let a = member("a", Duration::from_secs(30), false);
    let (started, _) = queue::claim(&mut client, &a, CAP, 1).unwrap();
    assert!(started.is_empty(), "the picked job was locked: {started:?}");
    let (started, _) = queue::claim(&mut client, &a, CAP, 2).unwrap();
    assert_eq!(
        started.iter().map(|s| s.job).collect::<Vec<_>>(),
        vec![free]
    );
    cancel
        .execute(
            "UPDATE jobs SET state = 'cancelled' WHERE id = $1",
            &[&held],
        )
        .unwrap();
    cancel.commit().unwrap();
    // Cancelled meanwhile: never started.
    let (started, _) = queue::claim(&mut client, &a, CAP, CAP).unwrap();
    assert!(started.is_empty(), "{started:?}");
    assert_eq!(job_row(&mut client, held).0, "cancelled");
}

#[test]
fn a_job_queued_first_is_started_first_however_the_two_commits_interleave() {
    use ingestd::catalog::pg::ingest;
    use ingestd::catalog::{Accepted, Decision};
    use ingestd::identity::{Actor, Via};
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let accepted = |name: &str| Accepted {
        group: "g".into(),
        name: name.into(),
        format: "csv".into(),
        size: 1,
        sha256: name.into(),
        columns: vec!["a".into()],
        skipped: Vec::new(),
        rows: 1,
        notes: Vec::new(),
        reading: Default::default(),
        actor: Actor {
            uid: Some(1),
            user: None,
            via: Via::Drop,
        },
        drop_path: "/drop/g/x".into(),
        tmp_path: "/storage/g/.x".into(),
    };
    let reserve = |client: &mut Client, node: &str, name: &str| {
        let Decision::Reserved(r) = ingest::decide(
            client,
            node,
            &accepted(name),
            std::path::Path::new("/storage"),
        )
        .unwrap() else {
            panic!()
        };
        r
    };
    let first = reserve(&mut client, "a", "first.csv");
    let second = reserve(&mut client, "b", "second.csv");
    // Node a queues `first` and has not committed yet when node b queues `second`, whose
    // transaction would commit first; a claim comes in between.
    let mut a = db.client();
    let mut tx = a.transaction().unwrap();
    let mut audit = Vec::new();
    let actor = first.actor.clone();
    queue::enqueue(
        &mut tx,
        "a",
        first.id,
        "new_version",
        &actor,
        3,
        false,
        &mut audit,
    )
    .unwrap();
    let (b_url, c_url) = (db.client(), db.client());
    let b_id = second.id;
    let b = std::thread::spawn(move || {
        let mut b = b_url;
        ingest::mark_ready(&mut b, "b", &second, "1 row".into(), 3).unwrap()
    });
    let c = std::thread::spawn(move || {
        let mut c = c_url;
        // Shared storage: both files are startable here; one slot.
        queue::claim(&mut c, &member("c", Duration::from_secs(60), true), 1, 1).unwrap()
    });
    // Let b and the claim reach the database before a commits (they wait on the claim lock
    // a holds; without it b would commit first and the claim start `second`).
    let deadline = Instant::now() + TIMEOUT;
    while count(
        &mut client,
        "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
    ) < 2
    {
        assert!(Instant::now() < deadline, "b and the claim never waited");
        std::thread::yield_now();
    }
    tx.commit().unwrap();
    let _ = b.join().unwrap();
    let (started, _) = c.join().unwrap();
    let first_job: i64 = client
        .query_one("SELECT id FROM jobs WHERE version_id = $1", &[&first.id])
        .unwrap()
        .get(0);
    let second_job: i64 = client
        .query_one("SELECT id FROM jobs WHERE version_id = $1", &[&b_id])
        .unwrap()
        .get(0);
    // Whichever of b and the claim got the lock next, the claim never started `second` first.
    assert_ne!(
        started.first().map(|s| s.job),
        Some(second_job),
        "the job queued later started first"
    );
    assert!(started.is_empty() || started[0].job == first_job);
}

#[test]
fn a_heartbeat_is_not_held_up_by_a_job_whose_row_a_write_holds() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "g");
    let busy = queue_job(&mut client, g, "one", "a", 3);
    let other = queue_job(&mut client, g, "two", "a", 3);
    let a = member("a", Duration::from_secs(30), true);
    let (started, _) = queue::claim(&mut client, &a, CAP, 2).unwrap();
    assert_eq!(started.len(), 2);
    // A chunk of `busy`'s vectors being written holds its row.
    let mut writer = db.client();
    let mut write = writer.transaction().unwrap();
    write
        .execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", &[&busy])
        .unwrap();
    let before: i64 = client
        .query_one("SELECT lease_until FROM jobs WHERE id = $1", &[&other])
        .unwrap()
        .get(0);
    // The renewal answers at once (never waiting for the lock: it fails if it would), renews
    // the other job, and loses neither.
    client.batch_execute("SET lock_timeout = '2s'").unwrap();
    let lost = queue::renew(&mut client, &a, &[busy, other]).unwrap();
    assert!(lost.is_empty(), "{lost:?}");
    let after: i64 = client
        .query_one("SELECT lease_until FROM jobs WHERE id = $1", &[&other])
        .unwrap()
        .get(0);
    assert!(after >= before, "{before} -> {after}");
    write.commit().unwrap();
}

#[test]
fn calls_that_panic_give_their_connection_back() {
    use ingestd::catalog::pg::{Target, node::MAX_CONNECTIONS, node::Node};
    let Some((db, _client)) = catalog() else {
        return;
    };
    let target = Target::new("catalog.url", &db.url(), std::path::Path::new("")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        target,
        member("a", Duration::from_secs(30), false),
        dir.path().join("storage"),
        ingestd::events::Events::default(),
        Arc::default(),
        &dir.path().join("audit.jsonl"),
    )
    .unwrap();
    for _ in 0..MAX_CONNECTIONS + 2 {
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = node.with(|_| -> Result<(), ingestd::catalog::pg::PgError> {
                panic!("a bug in one call")
            });
        }));
        assert!(panicked.is_err());
    }
    // Every connection came back (or was counted out): the next call gets one at once rather
    // than waiting forever for a pool the panics emptied.
    let (tx, rx) = std::sync::mpsc::channel();
    let node_ = Arc::clone(&node);
    std::thread::spawn(move || {
        let one: i32 = node_
            .with(|c| Ok(c.query_one("SELECT 1", &[])?.get(0)))
            .unwrap();
        tx.send(one).unwrap();
    });
    assert_eq!(rx.recv_timeout(TIMEOUT), Ok(1));
}
