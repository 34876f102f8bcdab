//! A job's try on PostgreSQL (`catalog::pg::generations`) after its claim: vectors written by
//! binary COPY and copied for reused texts, the swap that keeps one active generation per
//! source and tells the other nodes, every other ending, the model-mixing refusal, and the
//! fencing that keeps a node cut off by a takeover from landing anything.

use super::queue::{TIMEOUT, catalog, count, group, job_row, member, queue_job, wait_for_takeover};
use ingestd::catalog::jobs::{Begun, Ending, Finished, NewRow, RowVector, Written, text_hash};
use ingestd::catalog::pg::PgError;
use ingestd::catalog::pg::generations::{self as run, Try, identity_id};
use ingestd::catalog::pg::notify::{Heard, Listener};
use ingestd::catalog::pg::queue;
use ingestd::embed::Identity;
use ingestd::protocol::EventKind;
use postgres::Client;
use std::time::{Duration, Instant};

const LONG: Duration = Duration::from_secs(3600);

fn identity(model: &str) -> Identity {
    Identity {
        provider: "hashing".into(),
        model: model.into(),
        dimension: 3,
        weights_hash: "w".into(),
    }
}

fn embedded(row: u64, text: &str) -> NewRow {
    NewRow {
        row,
        text: text.into(),
        text_hash: text_hash(text),
        vector: RowVector::Embedded(vec![row as f32 + 1.0, 0.5, 0.25]),
    }
}

/// Write a chunk that must be stored.
fn stored(client: &mut Client, at: &Try<'_>, generation: i64, rows: &[NewRow], done: u64) {
    let written = run::write(client, at, generation, rows, done).unwrap();
    assert_eq!(written, Written::Stored);
}

/// Claim the one job waiting on `node` and start its generation.
fn start(client: &mut Client, node: &'static str, identity: &Identity) -> (Try<'static>, i64) {
    let (started, _) = queue::claim(client, &member(node, LONG, true), 3, 1).unwrap();
    let at = Try::of(started.first().expect("a job to claim"), node);
    let id = identity_id(client, identity).unwrap();
    match run::begin(client, &at, identity, id).unwrap() {
        Begun::Started(generation) => (at, generation),
        other => panic!("{other:?}"),
    }
}

fn active(client: &mut Client) -> Vec<(i64, i64)> {
    client
        .query(
            "SELECT source_id, id FROM generations WHERE state = 'active' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn a_try_writes_by_copy_reuses_inside_the_database_and_swaps_one_active_generation() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let url = db.url();
    let mut b_hears = Listener::new(
        "b",
        Box::new(move || {
            let config: postgres::Config = url.parse().unwrap();
            config.connect(postgres::NoTls).map_err(PgError::from)
        }),
    )
    .unwrap();
    let g = group(&mut client, "sales");
    let minilm = identity("m");
    queue_job(&mut client, g, "q.csv", "a", 3);
    let (t1, first) = start(&mut client, "a", &minilm);
    let job = t1.job;
    let chunk = [
        embedded(0, "north"),
        embedded(1, "south"),
        embedded(2, "east"),
    ];
    assert_eq!(
        run::write(&mut client, &t1, first, &chunk, 3).unwrap(),
        Written::Stored
    );
    // Row 3 has row 0's text: copied inside the database, never sent again.
    let reused = NewRow {
        row: 3,
        text: "north".into(),
        text_hash: text_hash("north"),
        vector: RowVector::Copy {
            generation: first,
            row: 0,
        },
    };
    assert_eq!(
        run::write(&mut client, &t1, first, &[reused], 4).unwrap(),
        Written::Stored
    );
    assert_eq!(
        run::finish(&mut client, &t1, Some(first), Ending::Done).unwrap(),
        Finished::Swapped {
            rows: 4,
            replaced: 0
        }
    );
    assert_eq!(
        job_row(&mut client, job),
        ("completed".into(), 1, None, "embedded".into())
    );
    let same: bool = client
        .query_one(
            "SELECT a.embedding = b.embedding FROM vectors a, vectors b
             WHERE a.row_no = 0 AND b.row_no = 3",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(same);

    // v2 of the same source replaces it in one swap; v1's vectors go with their generation.
    queue_job(&mut client, g, "q.csv", "a", 3);
    let (t2, second) = start(&mut client, "a", &minilm);
    let job2 = t2.job;
    stored(&mut client, &t2, second, &chunk[..2], 2);
    assert_eq!(
        run::finish(&mut client, &t2, Some(second), Ending::Done).unwrap(),
        Finished::Swapped {
            rows: 2,
            replaced: 4
        }
    );
    let source: i64 = client
        .query_one("SELECT source_id FROM jobs WHERE id = $1", &[&job2])
        .unwrap()
        .get(0);
    assert_eq!(active(&mut client), vec![(source, second)]);
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM vectors"), 2);
    assert_eq!(job_row(&mut client, job).3, "ready", "v1 no longer serves");
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM audit WHERE action = 'swap' AND node = 'a'"
        ),
        2
    );
    // Node b's followers heard both swaps.
    let deadline = Instant::now() + TIMEOUT;
    let mut swaps = 0;
    while swaps < 2 {
        if let Some(Heard::Event(remote)) = b_hears.recv(Duration::from_millis(200)).unwrap()
            && remote.event.kind == EventKind::Swapped
        {
            assert_eq!(remote.node, "a");
            swaps += 1;
        }
        assert!(Instant::now() < deadline, "b heard {swaps} swaps");
    }
}

#[test]
fn a_node_cut_off_by_a_takeover_lands_nothing_and_one_generation_stays_active() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let g = group(&mut a, "sales");
    let minilm = identity("m");
    let m = identity_id(&mut a, &minilm).unwrap();
    let job = queue_job(&mut a, g, "q.csv", "a", 3);
    // a claims with a short lease, begins and writes one chunk, then is cut off.
    let (started, _) =
        queue::claim(&mut a, &member("a", Duration::from_millis(200), true), 3, 1).unwrap();
    assert_eq!(started[0].job, job);
    let cut_off = Try::of(&started[0], "a");
    let Begun::Started(lost) = run::begin(&mut a, &cut_off, &minilm, m).unwrap() else {
        panic!()
    };
    stored(&mut a, &cut_off, lost, &[embedded(0, "x")], 1);
    wait_for_takeover(&mut b, Instant::now() + TIMEOUT);
    let (on_b, mine) = start(&mut b, "b", &minilm);
    assert_eq!(on_b.job, job);

    // Whatever a still sends is refused, and b's try is untouched.
    assert_eq!(
        run::write(&mut a, &cut_off, lost, &[embedded(1, "y")], 2).unwrap(),
        Written::Stopped
    );
    assert_eq!(
        run::write(&mut a, &cut_off, mine, &[embedded(1, "y")], 2).unwrap(),
        Written::Stopped
    );
    assert_eq!(
        run::begin(&mut a, &cut_off, &minilm, m).unwrap(),
        Begun::Cancelled
    );
    assert_eq!(
        run::finish(&mut a, &cut_off, Some(lost), Ending::Done).unwrap(),
        Finished::Dropped
    );
    stored(&mut b, &on_b, mine, &[embedded(0, "x")], 1);
    assert_eq!(
        run::finish(&mut b, &on_b, Some(mine), Ending::Done).unwrap(),
        Finished::Swapped {
            rows: 1,
            replaced: 0
        }
    );
    let source: i64 = a
        .query_one("SELECT source_id FROM jobs WHERE id = $1", &[&job])
        .unwrap()
        .get(0);
    assert_eq!(active(&mut a), vec![(source, mine)]);
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM generations"), 1);
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM vectors"), 1);
    assert_eq!(
        job_row(&mut a, job),
        ("completed".into(), 2, None, "embedded".into())
    );
}

#[test]
fn every_other_ending_keeps_the_active_generation_and_models_are_never_mixed() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "sales");
    let (old, new) = (identity("old"), identity("new"));
    queue_job(&mut client, g, "one.csv", "a", 2);
    let (first, generation) = start(&mut client, "a", &old);
    stored(&mut client, &first, generation, &[embedded(0, "x")], 1);
    run::finish(&mut client, &first, Some(generation), Ending::Done).unwrap();

    // Another source of the group may not start with another model.
    let two = queue_job(&mut client, g, "two.csv", "a", 2);
    let (started, _) = queue::claim(&mut client, &member("a", LONG, true), 3, 1).unwrap();
    assert_eq!(started[0].job, two);
    let t2 = Try::of(&started[0], "a");
    let new_id = identity_id(&mut client, &new).unwrap();
    let Begun::Refused(why) = run::begin(&mut client, &t2, &new, new_id).unwrap() else {
        panic!("mixed two models in one group")
    };
    assert!(why.contains("reembed --all -g sales"), "{why}");
    let old_id = identity_id(&mut client, &old).unwrap();
    let Begun::Started(tried) = run::begin(&mut client, &t2, &old, old_id).unwrap() else {
        panic!()
    };
    stored(&mut client, &t2, tried, &[embedded(0, "y")], 1);

    // A transient error: queued again after a backoff, what it wrote kept for reuse.
    let at = i64::MAX / 2;
    let retry = Ending::Retry {
        error: "timed out".into(),
        at_ms: at,
    };
    assert_eq!(
        run::finish(&mut client, &t2, Some(tried), retry).unwrap(),
        Finished::Requeued
    );
    assert_eq!(
        job_row(&mut client, two),
        ("queued".into(), 1, None, "queued".into())
    );
    let state: String = client
        .query_one("SELECT state FROM generations WHERE id = $1", &[&tried])
        .unwrap()
        .get(0);
    assert_eq!(state, "retained");
    // Waiting out its backoff, it is not claimed.
    let (none, _) = queue::claim(&mut client, &member("a", LONG, true), 3, 1).unwrap();
    assert!(none.is_empty(), "{none:?}");
    client
        .execute("UPDATE jobs SET not_before = NULL WHERE id = $1", &[&two])
        .unwrap();

    // Failed for good on its second try: its writes and the retained generation go.
    let (t2, second) = start(&mut client, "a", &old);
    let failed = Ending::Failed("the server said no".into());
    assert_eq!(
        run::finish(&mut client, &t2, Some(second), failed).unwrap(),
        Finished::Failed
    );
    assert_eq!(
        job_row(&mut client, two),
        ("failed".into(), 2, None, "failed".into())
    );
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM generations"), 1);
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM audit WHERE action = 'embed' AND outcome = 'failed'"
        ),
        1
    );

    // A stop gives the try back; a cancel settles the version on what it serves.
    let three = queue_job(&mut client, g, "one.csv", "a", 2);
    let (t3, gen3) = start(&mut client, "a", &old);
    assert_eq!(
        run::finish(&mut client, &t3, Some(gen3), Ending::Interrupted).unwrap(),
        Finished::Requeued
    );
    assert_eq!(job_row(&mut client, three).1, 0, "a stop does not count");
    let (t3, gen3) = start(&mut client, "a", &old);
    assert_eq!(
        run::finish(&mut client, &t3, Some(gen3), Ending::Cancelled).unwrap(),
        Finished::Cancelled
    );
    assert_eq!(
        job_row(&mut client, three),
        ("cancelled".into(), 1, None, "ready".into())
    );
    // Through all of it the first source's generation stayed the one active.
    assert_eq!(active(&mut client).len(), 1);
    assert_eq!(count(&mut client, "SELECT COUNT(*) FROM generations"), 1);
}

/// Jobs on several connections meeting a new model at once all get its id, and its index is
/// created once (a second `CREATE INDEX IF NOT EXISTS` racing the first fails on the unique
/// name unless they take turns).
#[test]
fn connections_meeting_a_new_model_at_once_all_get_its_id() {
    let Some((db, mut client)) = catalog() else {
        return;
    };
    for round in 0..8 {
        let model = identity(&format!("new-{round}"));
        let ids: Vec<i32> = std::thread::scope(|s| {
            let racers: Vec<_> = (0..4)
                .map(|_| {
                    let (db, model) = (&db, model.clone());
                    s.spawn(move || identity_id(&mut db.client(), &model).unwrap())
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    }
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname LIKE 'vectors_hnsw_%'"
        ),
        8
    );
}
