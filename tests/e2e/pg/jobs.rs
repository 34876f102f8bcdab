//! Jobs as users steer them on PostgreSQL (`catalog::pg::jobs`): positions in the cluster's
//! order, listings and counts; re-embed, retry and cancel from any node, audited with that
//! node; and a cancel of a job running on another node, whose old worker stays fenced off even
//! when the job is retried and claimed again by the same node.

use super::queue::{catalog, count, member};
use ingestd::catalog::jobs::{Begun, Ending, Finished, NewRow, RowVector, Written, text_hash};
use ingestd::catalog::pg::generations::{self as run, Try, identity_id};
use ingestd::catalog::pg::{ingest, jobs, queue};
use ingestd::catalog::{Accepted, Decision};
use ingestd::embed::Identity;
use ingestd::identity::{Actor, Via};
use ingestd::protocol::JobState;
use postgres::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;

const LONG: Duration = Duration::from_secs(3600);

fn bob() -> Actor {
    Actor {
        uid: Some(1001),
        user: Some("bob".into()),
        via: Via::Socket,
    }
}

/// Drop `name` into `group` on `node` with content `sha`: stored, ready, its job queued.
fn drop_file(client: &mut Client, node: &str, group: &str, name: &str, sha: &str) -> i64 {
    let file = Accepted {
        group: group.into(),
        name: name.into(),
        format: "csv".into(),
        size: 10,
        sha256: sha.into(),
        columns: vec!["region".into(), "amount".into()],
        skipped: Vec::new(),
        rows: 2,
        notes: Vec::new(),
        reading: Default::default(),
        actor: bob(),
        drop_path: PathBuf::from(format!("/drop/{group}/{name}")),
        tmp_path: PathBuf::from(format!("/storage/{group}/.tmp")),
    };
    let Decision::Reserved(r) = ingest::decide(client, node, &file, Path::new("/storage")).unwrap()
    else {
        panic!("{name} was unchanged")
    };
    ingest::mark_ready(client, node, &r, "2 rows".into(), 3).unwrap()
}

fn state(client: &mut Client, job: i64) -> JobState {
    jobs::job_info(client, job).unwrap().expect("the job").state
}

#[test]
fn positions_follow_the_clusters_order_and_listings_filter() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    let a1 = drop_file(&mut client, "a", "alpha", "1.csv", "x1");
    let a2 = drop_file(&mut client, "a", "alpha", "2.csv", "x2");
    let b1 = drop_file(&mut client, "b", "beta", "1.csv", "y1");
    let position = |client: &mut Client, job| {
        let p = jobs::job_info(client, job)
            .unwrap()
            .unwrap()
            .position
            .unwrap();
        (p.overall, p.group)
    };
    // Round robin across groups: alpha, beta, alpha.
    assert_eq!(position(&mut client, a1), (1, 1));
    assert_eq!(position(&mut client, b1), (2, 1));
    assert_eq!(position(&mut client, a2), (3, 2));
    // Once alpha got a job, beta is next, wherever it is claimed.
    let (started, _) = queue::claim(&mut client, &member("a", LONG, true), 3, 1).unwrap();
    assert_eq!(started[0].job, a1);
    assert_eq!(position(&mut client, b1), (1, 1));
    assert_eq!(position(&mut client, a2), (2, 1));

    let listed = jobs::list_jobs(&mut client, Some("alpha"), None, &[], 10, None).unwrap();
    assert_eq!(
        listed.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![a1, a2]
    );
    assert_eq!(listed[0].state, JobState::Processing);
    assert_eq!(listed[1].position.map(|p| p.overall), Some(2));
    let queued = jobs::list_jobs(&mut client, None, Some(JobState::Queued), &[], 10, None).unwrap();
    assert_eq!(queued.len(), 2);
    let by_id = jobs::list_jobs(&mut client, None, None, &[b1], 10, None).unwrap();
    assert_eq!(by_id.len(), 1);
    let page = jobs::list_jobs(&mut client, None, None, &[], 1, Some(b1)).unwrap();
    assert_eq!(page.iter().map(|j| j.id).collect::<Vec<_>>(), vec![a2]);
    let counts = jobs::queue_counts(&mut client).unwrap();
    assert_eq!(counts.get(&JobState::Queued), Some(&2));
    assert_eq!(counts.get(&JobState::Processing), Some(&1));

    assert_eq!(jobs::next_due(&mut client).unwrap(), None);
    let later = i64::MAX / 4;
    client
        .execute(
            "UPDATE jobs SET not_before = $1 WHERE id = $2",
            &[&later, &b1],
        )
        .unwrap();
    assert_eq!(jobs::next_due(&mut client).unwrap(), Some(later));

    let claimed = jobs::claimed(&mut client, a1).unwrap();
    assert_eq!(
        (
            claimed.group.as_str(),
            claimed.source.as_str(),
            claimed.version_no
        ),
        ("alpha", "1.csv", 1)
    );
    assert_eq!(claimed.prefs.known_columns, vec!["region", "amount"]);
    assert_eq!(claimed.attempt, 1);
}

#[test]
fn requests_from_any_node_and_a_cancelled_try_stays_fenced_off_after_a_retry() {
    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let job = drop_file(&mut a, "a", "sales", "q.csv", "one");

    // On node b: re-embedding what is queued answers the queued job; unknown names are said.
    let answers = jobs::reembed(
        &mut b,
        "b",
        "sales",
        &["q.csv".into(), "nope.csv".into()],
        false,
        &bob(),
        3,
    )
    .unwrap()
    .unwrap();
    assert!(answers[0].ok && answers[0].existing, "{answers:?}");
    assert_eq!(answers[0].job.as_ref().map(|j| j.id), Some(job));
    assert!(!answers[1].ok && answers[1].message.contains("no source named"));
    assert_eq!(
        jobs::reembed(&mut b, "b", "nowhere", &[], true, &bob(), 3).unwrap(),
        Err("no group named \"nowhere\"".to_string())
    );

    // Node a runs the job; node b cancels it: a is not told to stop by b's answer (the
    // job is not b's), but every call of a's try is refused from now on.
    let (started, _) = queue::claim(&mut a, &member("a", LONG, false), 3, 1).unwrap();
    let old = Try::of(&started[0], "a");
    let identity = Identity {
        provider: "hashing".into(),
        model: "m".into(),
        dimension: 2,
        weights_hash: "w".into(),
    };
    let id = identity_id(&mut a, &identity).unwrap();
    let Begun::Started(old_generation) = run::begin(&mut a, &old, &identity, id).unwrap() else {
        panic!()
    };
    let (outcomes, here) = jobs::cancel(&mut b, "b", &[job], &bob()).unwrap();
    assert!(outcomes[0].ok, "{outcomes:?}");
    assert!(here.is_empty(), "the job ran on a, not b");
    assert_eq!(state(&mut a, job), JobState::Cancelled);
    let (again, _) = jobs::cancel(&mut b, "b", &[job, 999], &bob()).unwrap();
    assert!(again[0].message.contains("already cancelled"), "{again:?}");
    assert_eq!(again[1].message, "no job 999");

    // While a's worker is still finishing, a refuses to retry it; b may.
    let refused = jobs::retry(&mut a, "a", &[job], None, &[job], &bob(), 3).unwrap();
    assert!(!refused[0].ok && refused[0].message.contains("still finishing"));
    let retried = jobs::retry(&mut b, "b", &[job], None, &[], &bob(), 3).unwrap();
    assert!(retried[0].ok, "{retried:?}");
    assert_eq!(state(&mut a, job), JobState::Queued);

    // a claims it again: a new try. The old worker's calls still land nowhere, and its end
    // does not end the new try.
    let (started, _) = queue::claim(&mut a, &member("a", LONG, false), 3, 1).unwrap();
    let new = Try::of(&started[0], "a");
    assert_eq!(new.job, job);
    assert_ne!(new.try_id, old.try_id, "{old:?} {new:?}");
    let row = NewRow {
        row: 0,
        text: "north".into(),
        text_hash: text_hash("north"),
        vector: RowVector::Embedded(vec![1.0, 0.0]),
    };
    assert_eq!(
        run::write(&mut a, &old, old_generation, std::slice::from_ref(&row), 1).unwrap(),
        Written::Stopped
    );
    assert_eq!(
        run::finish(&mut a, &old, Some(old_generation), Ending::Cancelled).unwrap(),
        Finished::Dropped
    );
    assert_eq!(state(&mut a, job), JobState::Processing);
    let Begun::Started(generation) = run::begin(&mut a, &new, &identity, id).unwrap() else {
        panic!()
    };
    assert_eq!(
        run::write(&mut a, &new, generation, &[row], 1).unwrap(),
        Written::Stored
    );
    assert_eq!(
        run::finish(&mut a, &new, Some(generation), Ending::Done).unwrap(),
        Finished::Swapped {
            rows: 1,
            replaced: 0
        }
    );
    // Every request was audited with the node that took it.
    let audit: Vec<(String, String, String)> = a
        .query(
            "SELECT action, outcome, node FROM audit WHERE action IN ('reembed', 'cancel', 'retry')
             ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        audit,
        vec![
            ("reembed".into(), "existing".into(), "b".into()),
            ("cancel".into(), "ok".into(), "b".into()),
            ("retry".into(), "queued".into(), "b".into()),
        ]
    );
    assert_eq!(count(&mut a, "SELECT COUNT(*) FROM generations"), 1);
}

#[test]
fn reuse_previews_and_read_options_see_the_whole_cluster() {
    use ingestd::catalog::pg::manage;
    use ingestd::catalog::read_options::ReadAs;
    use ingestd::protocol::{ReadOverride, Reading};

    let Some((db, mut a)) = catalog() else {
        return;
    };
    let mut b = db.client();
    let identity = Identity {
        provider: "hashing".into(),
        model: "m".into(),
        dimension: 2,
        weights_hash: "w".into(),
    };
    let id = identity_id(&mut a, &identity).unwrap();
    drop_file(&mut a, "a", "sales", "q.csv", "one");
    let (started, _) = queue::claim(&mut a, &member("a", LONG, true), 3, 1).unwrap();
    let first = Try::of(&started[0], "a");
    let Begun::Started(g1) = run::begin(&mut a, &first, &identity, id).unwrap() else {
        panic!()
    };
    let rows: Vec<NewRow> = ["north", "south"]
        .iter()
        .enumerate()
        .map(|(i, text)| NewRow {
            row: i as u64,
            text: text.to_string(),
            text_hash: text_hash(text),
            vector: RowVector::Embedded(vec![i as f32, 1.0]),
        })
        .collect();
    assert_eq!(
        run::write(&mut a, &first, g1, &rows, 2).unwrap(),
        Written::Stored
    );
    run::finish(&mut a, &first, Some(g1), Ending::Done).unwrap();

    // v2 of the source, claimed on b: it may reuse every text v1's generation holds.
    drop_file(&mut a, "a", "sales", "q.csv", "two");
    let (started, _) = queue::claim(&mut b, &member("b", LONG, true), 3, 1).unwrap();
    let second = Try::of(&started[0], "b");
    let Begun::Started(g2) = run::begin(&mut b, &second, &identity, id).unwrap() else {
        panic!()
    };
    let mut reusable = jobs::reusable_texts(&mut b, second.job, g2, id).unwrap();
    reusable.sort();
    let mut expected = vec![(text_hash("north"), (g1, 0)), (text_hash("south"), (g1, 1))];
    expected.sort();
    assert_eq!(reusable, expected);
    let other = identity_id(
        &mut b,
        &Identity {
            model: "other".into(),
            ..identity.clone()
        },
    )
    .unwrap();
    assert!(
        jobs::reusable_texts(&mut b, second.job, g2, other)
            .unwrap()
            .is_empty()
    );

    // A preview on b reads what a holds: it is told which node that is.
    let (preview, holder) = jobs::newest_version(&mut b, "sales", "q.csv")
        .unwrap()
        .unwrap();
    assert_eq!((preview.version_no, holder.as_str()), (2, "a"));
    assert!(
        jobs::newest_version(&mut b, "sales", "none.csv")
            .unwrap()
            .is_err()
    );

    // Read options set from b on the version a holds.
    let (reread, holder) = manage::version_to_reread(&mut b, "sales", "q.csv")
        .unwrap()
        .unwrap();
    assert_eq!((reread.version_no, holder.as_str()), (2, "a"));
    let options = ReadOverride {
        header_row: Some(2),
        ..ReadOverride::default()
    };
    let read = ReadAs {
        columns: vec!["amount".into()],
        skipped: Vec::new(),
        rows: 7,
        notes: Vec::new(),
        reading: Reading {
            set: Some(options.clone()),
            ..Reading::default()
        },
    };
    let applied = manage::apply_override(
        &mut b,
        "b",
        &reread,
        Some(&options),
        &read,
        &bob(),
        "header on row 2".into(),
        3,
    )
    .unwrap()
    .unwrap();
    assert_eq!(applied.options.as_ref().map(|o| &o.options), Some(&options));
    assert_eq!(
        manage::source_override(&mut a, "sales", "q.csv")
            .unwrap()
            .map(|o| o.set_by),
        Some(Some("bob".into()))
    );
    assert_eq!(
        manage::version_override(&mut a, "sales", "q.csv", 2).unwrap(),
        Some(options.clone())
    );
    // A newer version arriving meanwhile: nothing changes, and the caller is told.
    drop_file(&mut a, "a", "sales", "q.csv", "three");
    let stale =
        manage::apply_override(&mut b, "b", &reread, None, &read, &bob(), "clear".into(), 3)
            .unwrap();
    assert!(stale.unwrap_err().contains("a newer version"));
    assert!(
        manage::source_override(&mut a, "sales", "q.csv")
            .unwrap()
            .is_some()
    );
    assert!(
        manage::version_to_reread(&mut b, "sales", "none.csv")
            .unwrap()
            .unwrap_err()
            .contains("no source named")
    );
}

/// A node's worker names its try in every call: an old worker of a job cancelled, retried and
/// claimed again by the same node, still finishing, neither writes to nor ends the new try,
/// and the new try runs to its swap.
#[test]
fn an_old_worker_of_a_job_claimed_again_on_the_same_node_never_ends_the_new_try() {
    use ingestd::catalog::Catalog;
    use ingestd::catalog::pg::Target;
    let Some((db, mut client)) = catalog() else {
        return;
    };
    let g = super::queue::group(&mut client, "sales");
    let job = super::queue::queue_job(&mut client, g, "q.csv", "a", 3);
    let dir = tempfile::tempdir().unwrap();
    let target = Target::new("catalog.url", &db.url(), Path::new("")).unwrap();
    let (node_a, _thread) = Catalog::open_postgres(
        target,
        member("a", LONG, true),
        dir.path().join("store"),
        ingestd::events::Events::default(),
        &dir.path().join("audit.jsonl"),
    )
    .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let identity = Identity {
        provider: "hashing".into(),
        model: "m".into(),
        dimension: 2,
        weights_hash: "w".into(),
    };
    let row = |text: &str| NewRow {
        row: 0,
        text: text.into(),
        text_hash: text_hash(text),
        vector: RowVector::Embedded(vec![1.0, 0.0]),
    };

    let first = runtime.block_on(node_a.claim(3, 3)).unwrap();
    assert_eq!(first.len(), 1);
    let old = first[0].try_id;
    assert!(old.is_some(), "a claim on PostgreSQL names its try");
    let Begun::Started(old_generation) = node_a
        .begin_generation_blocking(job, old, identity.clone())
        .unwrap()
    else {
        panic!("the first try did not begin")
    };
    // Cancelled and retried on another node while a's worker still embeds; a claims it again.
    let (outcomes, _) = jobs::cancel(&mut client, "b", &[job], &bob()).unwrap();
    assert!(outcomes[0].ok, "{outcomes:?}");
    let retried = jobs::retry(&mut client, "b", &[job], None, &[], &bob(), 3).unwrap();
    assert!(retried[0].ok, "{retried:?}");
    let second = runtime.block_on(node_a.claim(3, 3)).unwrap();
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].job, job);
    let new = second[0].try_id;
    assert_ne!(new, old);

    // The old worker's next write stops it, and its end changes nothing.
    assert_eq!(
        node_a
            .write_vectors_blocking(job, old, old_generation, vec![row("old")], 1)
            .unwrap(),
        Written::Stopped
    );
    assert_eq!(
        node_a
            .finish_job_blocking(job, old, Some(old_generation), Ending::Cancelled)
            .unwrap(),
        Finished::Dropped
    );
    assert_eq!(state(&mut client, job), JobState::Processing);

    // The new try runs to its swap.
    let Begun::Started(generation) = node_a
        .begin_generation_blocking(job, new, identity.clone())
        .unwrap()
    else {
        panic!("the new try did not begin")
    };
    assert_eq!(
        node_a
            .write_vectors_blocking(job, new, generation, vec![row("new")], 1)
            .unwrap(),
        Written::Stored
    );
    assert_eq!(
        node_a
            .finish_job_blocking(job, new, Some(generation), Ending::Done)
            .unwrap(),
        Finished::Swapped {
            rows: 1,
            replaced: 0
        }
    );
    assert_eq!(state(&mut client, job), JobState::Completed);
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM vectors WHERE text = 'new'"
        ),
        1
    );
    assert_eq!(
        count(
            &mut client,
            "SELECT COUNT(*) FROM vectors WHERE text = 'old'"
        ),
        0
    );
}
