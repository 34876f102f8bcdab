//! Deletes across nodes (`catalog::pg::deletes`) on a real PostgreSQL: a delete taken on node
//! B of a version whose file node A holds wakes A, which removes its own file; requests made
//! while A was down wait for it; a request that names a file outside A's storage root, or a
//! group folder swapped for a symlink, is refused, removes nothing and stays for fsck.

use super::TestDb;
use ingestd::catalog::pg::PgError;
use ingestd::catalog::pg::deletes::{self, Request};
use ingestd::catalog::pg::notify::{Heard, Listener};
use std::path::Path;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(60);

fn ask(client: &mut postgres::Client, holder: &str, group: &str, path: &Path) {
    let mut tx = client.transaction().unwrap();
    deletes::request(
        &mut tx,
        &Request {
            holder,
            group,
            stored_path: path,
            version_id: None,
            requested_by: Some("bob (uid 1001)"),
        },
    )
    .unwrap();
    tx.commit().unwrap();
}

#[test]
fn a_delete_on_one_node_removes_the_file_its_holder_keeps_and_nothing_outside() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let mut client = db.client();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .unwrap();
    ingestd::catalog::pg::schema::migrate(&mut client).unwrap();

    // Node a's storage: sales/ with two stored versions; and things that are not a's to touch.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage-a");
    std::fs::create_dir_all(root.join("sales")).unwrap();
    let (v1, v2) = (root.join("sales/q_v1.csv"), root.join("sales/q_v2.csv"));
    std::fs::write(&v1, "a\n1\n").unwrap();
    std::fs::write(&v2, "a\n2\n").unwrap();
    let outside = dir.path().join("precious.csv");
    std::fs::write(&outside, "keep\n").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("q_v1.csv"), "keep\n").unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("linked")).unwrap();

    let url = db.url();
    let mut a_hears = Listener::new(
        "a",
        Box::new(move || {
            let config: postgres::Config = url.parse().unwrap();
            config.connect(postgres::NoTls).map_err(PgError::from)
        }),
    )
    .unwrap();

    // Node b deletes v1 while a is up: a hears of it and removes the file.
    let mut b = db.client();
    ask(&mut b, "a", "sales", &v1);
    // A request for another node is not a's business.
    ask(&mut b, "c", "sales", &root.join("sales/q_v2.csv"));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match a_hears.recv(Duration::from_millis(200)).unwrap() {
            Some(Heard::Deletes) => break,
            other => assert!(Instant::now() < deadline, "a heard {other:?}"),
        }
    }
    let mut a = db.client();
    let carried = deletes::carry_out(&mut a, "a", &root).unwrap();
    assert_eq!(carried.removed, vec![v1.clone()]);
    assert!(carried.refused.is_empty(), "{carried:?}");
    assert!(!v1.exists());
    assert!(v2.exists(), "only the deleted version's file goes");

    // While a is down, b deletes v2 and two hostile rows name what is not a's storage.
    ask(&mut b, "a", "sales", &v2);
    ask(&mut b, "a", "sales", &outside);
    ask(&mut b, "a", "linked", &root.join("linked/q_v1.csv"));
    assert_eq!(
        deletes::pending(&mut b).unwrap(),
        vec![("a".to_string(), 3), ("c".to_string(), 1)]
    );
    // a at start-up.
    let carried = deletes::carry_out(&mut a, "a", &root).unwrap();
    assert_eq!(carried.removed, vec![v2.clone()]);
    assert_eq!(carried.refused.len(), 2, "{carried:?}");
    assert!(
        carried.refused[1].1.contains("symlink"),
        "{:?}",
        carried.refused
    );
    assert!(!v2.exists());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep\n");
    assert_eq!(
        std::fs::read_to_string(elsewhere.join("q_v1.csv")).unwrap(),
        "keep\n"
    );
    // The refused rows stay for fsck; c's request waits for c.
    assert_eq!(
        deletes::pending(&mut b).unwrap(),
        vec![("a".to_string(), 2), ("c".to_string(), 1)]
    );
    // Carrying out again changes nothing and never fails.
    let again = deletes::carry_out(&mut a, "a", &root).unwrap();
    assert!(again.removed.is_empty() && again.refused.len() == 2);
}
