//! Staged vectors (`catalog::pg::staging`): a try's rows are written outside the HNSW index,
//! are searchable from the swap on (scanned exactly), and a pass moves the active ones into
//! the index without changing what a search answers; a try's rows before its swap are never
//! indexed; a catalog made before staging existed gets the new index definition when it is
//! migrated.

use super::TestDb;
use super::queue::{catalog, count, group, queue_job};
use ingestd::catalog::jobs::{Begun, Ending, Finished, NewRow, RowVector, Written, text_hash};
use ingestd::catalog::pg::generations::{self as run, Try, identity_id};
use ingestd::catalog::pg::{queue, schema, search, staging};
use ingestd::embed::Identity;
use postgres::Client;
use std::time::Duration;

fn identity() -> Identity {
    Identity {
        provider: "hashing".into(),
        model: "staged".into(),
        dimension: 3,
        weights_hash: "w".into(),
    }
}

fn row(row: u64, text: &str, vector: [f32; 3]) -> NewRow {
    NewRow {
        row,
        text: text.into(),
        text_hash: text_hash(text),
        vector: RowVector::Embedded(vector.to_vec()),
    }
}

/// (row, text) of each hit, nearest first.
fn hits(client: &mut Client, query: &[f32]) -> Vec<(u64, String)> {
    search::search(client, "sales", &identity(), query, 3, 100)
        .unwrap()
        .hits
        .into_iter()
        .map(|h| (h.row, h.text))
        .collect()
}

fn staged(client: &mut Client) -> i64 {
    count(client, "SELECT COUNT(*) FROM vectors WHERE staged")
}

#[test]
fn staged_rows_are_searchable_from_the_swap_and_the_pass_indexes_them_without_changing_answers() {
    let Some((_db, mut client)) = catalog() else {
        return;
    };
    let g = group(&mut client, "sales");
    queue_job(&mut client, g, "q.csv", "a", 3);
    let member = super::queue::member("a", Duration::from_secs(3600), true);
    let (started, _) = queue::claim(&mut client, &member, 3, 1).unwrap();
    let at = Try::of(&started[0], "a");
    let id = identity_id(&mut client, &identity()).unwrap();
    let Begun::Started(generation) = run::begin(&mut client, &at, &identity(), id).unwrap() else {
        panic!("the try did not begin");
    };
    let chunk = [
        row(0, "north", [1.0, 0.0, 0.0]),
        row(1, "south", [0.0, 1.0, 0.0]),
        row(2, "east", [0.0, 0.0, 1.0]),
        row(3, "north-east", [0.7, 0.0, 0.7]),
    ];
    assert_eq!(
        run::write(&mut client, &at, generation, &chunk, 4).unwrap(),
        Written::Stored
    );
    let reused = NewRow {
        row: 4,
        text: "north".into(),
        text_hash: text_hash("north"),
        vector: RowVector::Copy { generation, row: 0 },
    };
    assert_eq!(
        run::write(&mut client, &at, generation, &[reused], 5).unwrap(),
        Written::Stored
    );
    assert_eq!(staged(&mut client), 5, "written and copied rows are staged");
    // Before the swap the rows are nobody's search, and the pass leaves them alone: a try
    // that is discarded never cost an index insert.
    assert_eq!(staging::index_some(&mut client, 100).unwrap(), 0);
    assert_eq!(staging::backlog(&mut client).unwrap(), 0);
    assert_eq!(
        run::finish(&mut client, &at, Some(generation), Ending::Done).unwrap(),
        Finished::Swapped {
            rows: 5,
            replaced: 0
        }
    );
    assert_eq!(staging::backlog(&mut client).unwrap(), 5);

    // Searchable at once, by the exact scan of the staged rows.
    let query = [0.9, 0.1, 0.3];
    let before = hits(&mut client, &query);
    assert_eq!(
        before.iter().map(|h| h.1.as_str()).collect::<Vec<_>>(),
        ["north", "north", "north-east"]
    );

    // A pass moves a batch at a time; the next ones take the rest, then there is nothing.
    assert_eq!(staging::index_some(&mut client, 2).unwrap(), 2);
    assert_eq!(staging::backlog(&mut client).unwrap(), 3);
    assert_eq!(
        hits(&mut client, &query),
        before,
        "half indexed, half staged"
    );
    assert_eq!(staging::index_some(&mut client, 256).unwrap(), 3);
    assert_eq!(staging::index_some(&mut client, 256).unwrap(), 0);
    assert_eq!(staged(&mut client), 0);
    assert_eq!(staging::backlog(&mut client).unwrap(), 0);
    assert_eq!(hits(&mut client, &query), before, "all indexed");

    // The index leaves staged rows out, so what the pass did was the index insert.
    let definition: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = $1",
            &[&schema::index_name(id)],
        )
        .unwrap()
        .get(0);
    assert!(
        definition.contains("hnsw") && definition.contains("NOT staged"),
        "{definition}"
    );
}

#[test]
fn a_catalog_from_before_staging_gets_indexes_that_leave_staged_rows_out() {
    let Some(db) = TestDb::create() else {
        return;
    };
    let mut client = db.client();
    client
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .unwrap();
    // Schema 2 as a released ingestd left it, with one identity and its old index.
    client
        .batch_execute(
            "CREATE TABLE schema_migrations (
                 version INTEGER PRIMARY KEY,
                 description TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .unwrap();
    for (n, (description, sql)) in schema::MIGRATIONS[..2].iter().enumerate() {
        client.batch_execute(sql).unwrap();
        client
            .execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                &[&(n as i32 + 1), description],
            )
            .unwrap();
    }
    client
        .batch_execute(
            "INSERT INTO identities (id, provider, model, dimension, weights_hash)
                 VALUES (1, 'hashing', 'old', 3, 'w');
             CREATE INDEX vectors_hnsw_1 ON vectors USING hnsw
                 ((embedding::vector(3)) vector_cosine_ops) WHERE identity_id = 1",
        )
        .unwrap();

    assert_eq!(
        schema::migrate(&mut client).unwrap(),
        schema::MIGRATIONS.len() as i32
    );
    let definition: String = client
        .query_one(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'vectors_hnsw_1'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(definition.contains("NOT staged"), "{definition}");
    // Readers of the view get what they need to use the index the same way.
    client
        .query("SELECT identity_id, staged FROM active_vectors", &[])
        .unwrap();
    assert_eq!(
        count(&mut client, "SELECT COUNT(*) FROM vectors WHERE staged"),
        0
    );
}
