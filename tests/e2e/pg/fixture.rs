//! What the PostgreSQL catalog tests share: a user, a file stored on a node as the ingest
//! path stores it (its file really there), and a job run to its swap.

use super::queue::member;
use ingestd::catalog::jobs::{Begun, Ending, NewRow, RowVector, text_hash};
use ingestd::catalog::pg::generations::{self as run, Try, identity_id};
use ingestd::catalog::pg::{ingest, queue};
use ingestd::catalog::{Accepted, Decision};
use ingestd::embed::Identity;
use ingestd::identity::{Actor, Via};
use postgres::Client;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const LONG: Duration = Duration::from_secs(3600);

pub fn carol() -> Actor {
    Actor {
        uid: Some(1002),
        user: Some("carol".into()),
        via: Via::Socket,
    }
}

/// Store `name` in `group` on `node` under `root` with content `sha`, its file really there.
pub fn store(
    client: &mut Client,
    node: &str,
    root: &Path,
    group: &str,
    name: &str,
    sha: &str,
) -> PathBuf {
    let file = Accepted {
        group: group.into(),
        name: name.into(),
        format: "csv".into(),
        size: 4,
        sha256: sha.into(),
        columns: vec!["a".into()],
        skipped: Vec::new(),
        rows: 1,
        notes: Vec::new(),
        reading: Default::default(),
        actor: carol(),
        drop_path: PathBuf::from(format!("/drop/{group}/{name}")),
        tmp_path: root.join(group).join(".tmp"),
    };
    let Decision::Reserved(r) = ingest::decide(client, node, &file, root).unwrap() else {
        panic!("{name} was unchanged")
    };
    std::fs::create_dir_all(r.stored_path.parent().unwrap()).unwrap();
    std::fs::write(&r.stored_path, "a\n1\n").unwrap();
    ingest::mark_ready(client, node, &r, "1 row".into(), 3).unwrap();
    r.stored_path
}

/// Run the one queued job on `node` to its swap.
pub fn embed(client: &mut Client, node: &'static str) {
    let (started, _) = queue::claim(client, &member(node, LONG, true), 3, 1).unwrap();
    let at = Try::of(&started[0], node);
    let identity = Identity {
        provider: "hashing".into(),
        model: "m".into(),
        dimension: 2,
        weights_hash: "w".into(),
    };
    let id = identity_id(client, &identity).unwrap();
    let Begun::Started(generation) = run::begin(client, &at, &identity, id).unwrap() else {
        panic!()
    };
    let row = NewRow {
        row: 0,
        text: "x".into(),
        text_hash: text_hash("x"),
        vector: RowVector::Embedded(vec![1.0, 0.0]),
    };
    let _ = run::write(client, &at, generation, &[row], 1).unwrap();
    run::finish(client, &at, Some(generation), Ending::Done).unwrap();
}
