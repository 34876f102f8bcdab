//! Events between nodes (`catalog::pg::notify`) on a real PostgreSQL: what one node commits
//! reaches another node's listener in commit order, a rolled-back change never does, an
//! oversize event is shortened rather than failing its change, and a listener whose
//! connection is killed comes back and says it may have missed something.

use super::TestDb;
use ingestd::catalog::pg::PgError;
use ingestd::catalog::pg::notify::{self, Heard, Listener, MAX_PAYLOAD};
use ingestd::protocol::{Event, EventKind};
use postgres::Client;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(300);

fn event(kind: EventKind, source: &str, detail: Option<String>) -> Event {
    Event {
        time: "2026-12-07T12:00:00Z".into(),
        kind,
        group: Some("sales".into()),
        source: Some(source.into()),
        version: Some("v1".into()),
        detail,
        actor: None,
        job: None,
        progress: None,
    }
}

fn listener(db: &TestDb, node: &str) -> Listener {
    let url = db.url();
    Listener::new(
        node,
        Box::new(move || {
            let config: postgres::Config = url.parse().unwrap();
            config.connect(postgres::NoTls).map_err(PgError::from)
        }),
    )
    .expect("listen")
}

/// What `listener` hears until `QUIET` passes with nothing.
fn heard(listener: &mut Listener) -> Vec<Heard> {
    let mut all = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    while let Some(h) = listener.recv(QUIET).unwrap() {
        all.push(h);
        assert!(
            Instant::now() < deadline,
            "{} notifications and counting",
            all.len()
        );
    }
    all
}

fn sources(heard: &[Heard]) -> Vec<(EventKind, String)> {
    heard
        .iter()
        .filter_map(|h| match h {
            Heard::Event(remote) => Some((
                remote.event.kind,
                remote.event.source.clone().unwrap_or_default(),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn committed_events_reach_the_other_nodes_in_commit_order_and_rolled_back_ones_never() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let mut b = listener(&db, "b");
    let mut a_itself = listener(&db, "a");
    let mut a: Client = db.client();

    let mut first = a.transaction().unwrap();
    notify::publish(&mut first, "a", &event(EventKind::Accepted, "one", None)).unwrap();
    let mut second = db.client();
    let mut second = second.transaction().unwrap();
    notify::publish(&mut second, "a", &event(EventKind::Accepted, "two", None)).unwrap();
    // Committed second, heard second.
    second.commit().unwrap();
    first.commit().unwrap();
    let mut undone = a.transaction().unwrap();
    notify::publish(
        &mut undone,
        "a",
        &event(EventKind::Accepted, "undone", None),
    )
    .unwrap();
    notify::nudge(&mut undone, "a").unwrap();
    undone.rollback().unwrap();
    let mut swap = a.transaction().unwrap();
    notify::publish(&mut swap, "a", &event(EventKind::Swapped, "one", None)).unwrap();
    notify::nudge(&mut swap, "a").unwrap();
    swap.commit().unwrap();

    let got = heard(&mut b);
    assert_eq!(
        sources(&got),
        vec![
            (EventKind::Accepted, "two".to_string()),
            (EventKind::Accepted, "one".to_string()),
            (EventKind::Swapped, "one".to_string()),
        ]
    );
    assert_eq!(got.last(), Some(&Heard::Nudge), "{got:?}");
    assert_eq!(got.len(), 4, "{got:?}");
    match &got[0] {
        Heard::Event(remote) => assert_eq!(remote.node, "a"),
        other => panic!("{other:?}"),
    }
    // A node does not hear itself: its own followers were told by its own hub.
    assert_eq!(heard(&mut a_itself), vec![]);
}

#[test]
fn an_event_too_long_for_a_notification_is_shortened_not_lost() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let mut b = listener(&db, "b");
    let mut a = db.client();
    // 30,000 characters of 1 to 6 bytes each in JSON: accents, quotes, control characters.
    let detail: String = "é\"\u{1}x".repeat(7_500);
    let mut tx = a.transaction().unwrap();
    notify::publish(
        &mut tx,
        "a",
        &event(EventKind::Accepted, "wide", Some(detail)),
    )
    .unwrap();
    tx.commit().unwrap();
    let got = heard(&mut b);
    let [Heard::Event(remote)] = got.as_slice() else {
        panic!("{got:?}");
    };
    let shortened = remote.event.detail.clone().unwrap();
    assert!(shortened.ends_with('…'), "{shortened:?}");
    assert!(shortened.starts_with("é\"\u{1}x"), "{shortened:?}");
    let size = serde_json::to_string(remote.as_ref()).unwrap().len();
    assert!(
        size <= MAX_PAYLOAD && size > MAX_PAYLOAD / 2,
        "{size} bytes"
    );
    assert_eq!(remote.event.source.as_deref(), Some("wide"));
}

#[test]
fn a_listener_whose_connection_is_killed_comes_back_and_says_so() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let mut b = listener(&db, "b");
    let mut admin = db.client();
    let killed: i64 = admin
        .query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    // The loss is noticed and the listener connects again.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match b.recv(QUIET) {
            Ok(Some(Heard::Reconnected)) => break,
            Ok(other) => assert!(Instant::now() < deadline, "still {other:?}"),
            Err(e) => panic!("the server is up, reconnecting cannot fail: {e}"),
        }
    }
    let mut a = db.client();
    let mut tx = a.transaction().unwrap();
    notify::publish(&mut tx, "a", &event(EventKind::Rejected, "after", None)).unwrap();
    tx.commit().unwrap();
    assert_eq!(
        sources(&heard(&mut b)),
        vec![(EventKind::Rejected, "after".to_string())]
    );
}
