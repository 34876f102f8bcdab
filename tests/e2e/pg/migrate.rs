//! `ingestd catalog migrate` on a catalog the real daemon wrote from real fixture files: every
//! table arrives with the same rows, search answers the same, a re-run changes nothing, and
//! databases it must not write into, servers it cannot reach and passwords that are wrong get
//! clear refusals.

use super::{TestDb, migrate, text};
use crate::helper::{Daemon, corpus, csv, wait_for};
use ingestd::catalog::pg;
use ingestd::embed::Identity;
use ingestd::protocol::{JobState, SearchResult, cmd};

/// Real files for three groups (CSV, Parquet, XLSX), by group.
const FIXTURES: &[(&str, &str)] = &[
    ("places", "csv-spectrum/csvs/comma_in_quotes.csv"),
    ("places", "csv-spectrum/csvs/quotes_and_newlines.csv"),
    ("sales", "parquet-testing/data/alltypes_plain.parquet"),
    (
        "sales",
        "fastparquet/test-data/snappy-nation.impala.parquet",
    ),
    ("sheets", "poi/test-data/spreadsheet/InlineStrings.xlsx"),
    (
        "sheets",
        "phpspreadsheet/tests/data/Reader/XLSX/data_with_tables.xlsx",
    ),
];

/// Tables compared one by one, with how each is counted on either side.
const COUNTS: &[(&str, &str, &str)] = &[
    (
        "groups",
        "SELECT COUNT(*) FROM groups",
        "SELECT COUNT(*) FROM groups",
    ),
    (
        "sources",
        "SELECT COUNT(*) FROM sources",
        "SELECT COUNT(*) FROM sources",
    ),
    (
        "versions",
        "SELECT COUNT(*) FROM versions",
        "SELECT COUNT(*) FROM versions",
    ),
    (
        "audit",
        "SELECT COUNT(*) FROM audit",
        "SELECT COUNT(*) FROM audit",
    ),
    (
        "current_groups",
        "SELECT COUNT(*) FROM current_groups",
        "SELECT COUNT(*) FROM current_groups",
    ),
    (
        "preferences",
        "SELECT COUNT(*) FROM preferences",
        "SELECT COUNT(*) FROM preferences",
    ),
    (
        "source_reading",
        "SELECT COUNT(*) FROM source_reading",
        "SELECT COUNT(*) FROM source_reading",
    ),
    (
        "jobs",
        "SELECT COUNT(*) FROM jobs",
        "SELECT COUNT(*) FROM jobs",
    ),
    (
        "generations",
        "SELECT COUNT(*) FROM generations",
        "SELECT COUNT(*) FROM generations",
    ),
    (
        "vectors",
        "SELECT COUNT(*) FROM vectors",
        "SELECT COUNT(*) FROM vectors",
    ),
    (
        "active vectors",
        "SELECT COUNT(*) FROM active_vectors",
        "SELECT COUNT(*) FROM active_vectors",
    ),
];

/// A daemon's catalog with three groups of real files, a second version, preferences, read
/// options, a current group, jobs, vectors and audit; the daemon stopped. `None` without the corpus.
fn written_catalog() -> Option<Daemon> {
    let root = corpus();
    if !FIXTURES.iter().all(|(_, path)| root.join(path).is_file()) {
        eprintln!("SKIPPED: fixture corpus not found at {}", root.display());
        return None;
    }
    let mut daemon = Daemon::start();
    for (group, path) in FIXTURES {
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        daemon.drop_file(group, name, &std::fs::read(root.join(path)).unwrap());
    }
    daemon.drop_file("places", "items.csv", &csv(1, 40));
    daemon.wait_stored("places", "items.csv");
    daemon.drop_file("places", "items.csv", &csv(2, 40));
    wait_for("items.csv v2", || {
        daemon
            .ls(Some("places"))
            .into_iter()
            .find(|s| s.name == "items.csv" && s.version.as_deref() == Some("v2"))
    });
    // Through the protocol client (the ctl binary is a release build this test need not wait for).
    daemon
        .client()
        .call(&cmd::PrefsSet {
            group: Some("places".into()),
            columns: Some(vec!["id".into(), "name".into()]),
            context: None,
            template: None,
            sheet: None,
            clear: false,
            reembed: false,
        })
        .expect("prefs set");
    daemon
        .client()
        .call(&cmd::Use {
            group: Some("sales".into()),
            clear: false,
        })
        .expect("use");
    for (group, path) in FIXTURES {
        let name = std::path::Path::new(path)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        daemon.wait_settled(group, name);
    }
    // A source's read options (`ingestctl set`): the header where detection found it too.
    daemon
        .client()
        .call(&cmd::Set {
            source: "comma_in_quotes.csv".into(),
            group: Some("places".into()),
            header_row: Some(1),
            no_header: false,
            encoding: None,
            sheet: None,
            delimiter: None,
            clear: false,
        })
        .expect("set");
    wait_for("every job to end", || {
        let jobs = daemon.jobs();
        (!jobs.is_empty()
            && jobs
                .iter()
                .all(|j| !matches!(j.state, JobState::Queued | JobState::Processing)))
        .then_some(())
    });
    daemon.wait_embedded("places", "items.csv", "v2");
    // The copy leaves out the vectors of dropped generations; the counts below compare whole
    // tables, so none may be left.
    crate::jobs::wait_trash_emptied(&daemon);
    daemon.stop();
    Some(daemon)
}

fn pg_count(client: &mut postgres::Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).expect(sql).get(0)
}

/// The active identity of `group`'s vectors and a few of its stored vectors to search with.
fn queries(daemon: &Daemon, group: &str) -> (Identity, Vec<Vec<f32>>) {
    let db = daemon.db();
    let identity = db
        .query_row(
            "SELECT provider, model, dimension, weights_hash FROM active_vectors
             WHERE group_name = ?1 LIMIT 1",
            [group],
            |r| {
                Ok(Identity {
                    provider: r.get(0)?,
                    model: r.get(1)?,
                    dimension: r.get::<_, i64>(2)? as usize,
                    weights_hash: r.get(3)?,
                })
            },
        )
        .expect("the group has active vectors");
    let mut stmt = db
        .prepare(
            "SELECT embedding FROM active_vectors WHERE group_name = ?1
             ORDER BY source, row_no LIMIT 3",
        )
        .unwrap();
    let vectors = stmt
        .query_map([group], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|blob| ingestd::catalog::search::decode(&blob.unwrap()))
        .collect();
    (identity, vectors)
}

/// The hits of two answers agree: same scores in order, and the same rows wherever a score
/// is not tied with its neighbour (ties may come in either order).
fn assert_same_hits(exact: &SearchResult, hnsw: &SearchResult, what: &str) {
    assert_eq!(exact.searched, hnsw.searched, "{what}: rows searched");
    assert_eq!(exact.skipped, hnsw.skipped, "{what}: skipped sources");
    assert_eq!(
        exact.hits.len(),
        hnsw.hits.len(),
        "{what}: {exact:?}\n{hnsw:?}"
    );
    for (i, (a, b)) in exact.hits.iter().zip(&hnsw.hits).enumerate() {
        assert!(
            (a.score - b.score).abs() < 1e-4,
            "{what} hit {i}: {a:?} vs {b:?}"
        );
        // A near-tie may also sit at the k boundary: a row just outside the exact top k can
        // come back instead of one just inside, with the same score.
        let tied = exact.hits.iter().chain(&hnsw.hits).any(|other| {
            (&other.source, other.row) != (&a.source, a.row) && (other.score - a.score).abs() < 1e-4
        });
        if !tied {
            assert_eq!(
                (&a.source, &a.version, a.row, &a.text),
                (&b.source, &b.version, b.row, &b.text),
                "{what} hit {i}"
            );
        }
    }
}

#[test]
fn pg_migrate_copies_every_table_and_searches_agree_and_a_rerun_changes_nothing() {
    let Some(db) = TestDb::create() else { return };
    let Some(daemon) = written_catalog() else {
        return;
    };
    let sqlite = daemon.db();
    for (table, min) in [("groups", 3), ("versions", 8), ("jobs", 7), ("audit", 8)] {
        let n: i64 = sqlite
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert!(n >= min, "the daemon wrote only {n} {table}");
    }

    let out = migrate(&daemon.config, &["--to", &db.url(), "--node", "node-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": copied"), "{}", text(&out));
    for table in [
        "groups",
        "versions",
        "audit",
        "jobs",
        "generations",
        "vectors",
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{table} ")))
            .unwrap_or_else(|| panic!("no line for {table}: {stdout}"));
        assert!(line.ends_with(" ok"), "{line}");
    }

    // Counted independently of migrate's own report.
    let mut client = db.client();
    for (what, in_sqlite, in_pg) in COUNTS {
        let expected: i64 = sqlite.query_row(in_sqlite, [], |r| r.get(0)).unwrap();
        assert_eq!(pg_count(&mut client, in_pg), expected, "{what}");
    }
    assert!(pg_count(&mut client, "SELECT COUNT(*) FROM active_vectors") > 0);
    assert_eq!(
        pg_count(&mut client, "SELECT COUNT(*) FROM source_reading"),
        1,
        "the read options set above were copied"
    );
    assert_eq!(
        pg_count(
            &mut client,
            "SELECT COUNT(*) FROM versions WHERE node <> 'node-a'"
        ),
        0,
        "every version is held by the migrating node"
    );
    // Ids continue after the copied ones.
    let next_job: i64 = client
        .query_one("SELECT nextval(pg_get_serial_sequence('jobs', 'id'))", &[])
        .unwrap()
        .get(0);
    let max_job: i64 = sqlite
        .query_row("SELECT MAX(id) FROM jobs", [], |r| r.get(0))
        .unwrap();
    assert!(next_job > max_job, "next job id {next_job} after {max_job}");
    assert_eq!(
        pg_count(
            &mut client,
            "SELECT COUNT(*) FROM pg_indexes WHERE indexname LIKE 'vectors_hnsw_%'"
        ),
        pg_count(&mut client, "SELECT COUNT(*) FROM identities"),
        "one HNSW index per identity"
    );

    for group in ["places", "sales", "sheets"] {
        let (identity, vectors) = queries(&daemon, group);
        for (i, query) in vectors.iter().enumerate() {
            let exact = ingestd::catalog::search::search(
                &daemon.dir.path().join("state/ingestd.sqlite"),
                group,
                &identity,
                query,
                5,
            )
            .unwrap();
            let hnsw = pg::search::search(
                &mut client,
                group,
                &identity,
                query,
                5,
                pg::search::DEFAULT_EF_SEARCH,
            )
            .unwrap();
            assert!(!exact.hits.is_empty(), "{group}");
            assert_same_hits(&exact, &hnsw, &format!("{group} query {i}"));
        }
    }

    // A second run finds its own finished copy and writes nothing.
    let stamp = |client: &mut postgres::Client| -> Vec<String> {
        ["groups", "versions", "audit", "jobs", "generations", "vectors", "copied_from"]
            .iter()
            .map(|t| {
                client
                    .query_one(
                        &format!("SELECT COALESCE(string_agg(xmin::text, ',' ORDER BY xmin::text), '') FROM {t}"),
                        &[],
                    )
                    .unwrap()
                    .get(0)
            })
            .collect()
    };
    let before = stamp(&mut client);
    let again = migrate(&daemon.config, &["--to", &db.url(), "--node", "node-a"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already copied"),
        "{}",
        text(&again)
    );
    assert_eq!(stamp(&mut client), before, "a re-run rewrote rows");
}

#[test]
fn pg_migrate_refuses_a_database_holding_other_data() {
    let Some(db) = TestDb::create() else { return };
    let mut daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 5));
    daemon.wait_stored("g", "a.csv");
    daemon.stop();
    let mut client = db.client();
    client
        .batch_execute("CREATE TABLE customers (id INT); INSERT INTO customers VALUES (7);")
        .unwrap();

    let out = migrate(&daemon.config, &["--to", &db.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert!(stderr.contains("customers"), "{stderr}");
    assert_eq!(pg_count(&mut client, "SELECT COUNT(*) FROM customers"), 1);
    assert_eq!(
        pg_count(
            &mut client,
            "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'groups'"
        ),
        0,
        "nothing was created"
    );

    // Nor is a copy of another SQLite catalog overwritten.
    let other = TestDb::create().unwrap();
    let first = migrate(&daemon.config, &["--to", &other.url()]);
    assert!(first.status.success(), "{}", text(&first));
    let mut second = Daemon::start();
    second.stop();
    let out = migrate(&second.config, &["--to", &other.url()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds an ingestd catalog"),
        "{stderr}"
    );
    assert!(stderr.contains("copied from"), "{stderr}");
}

#[test]
fn pg_migrate_explains_unreachable_servers_wrong_passwords_and_a_missing_pgvector() {
    let Some(db) = TestDb::create() else { return };
    let mut daemon = Daemon::start();
    daemon.stop();

    let nowhere = tempfile::tempdir().unwrap();
    let url = format!("postgresql:///ingestd?host={}", nowhere.path().display());
    let out = migrate(&daemon.config, &["--to", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot reach PostgreSQL at"), "{stderr}");
    assert!(stderr.contains(&url), "{stderr}");

    let with_password = format!("postgresql://postgres:hunter2@/x?host={}", db.host);
    let out = migrate(&daemon.config, &["--to", &with_password]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("catalog.password_file"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");

    // A role that must give its password (tests/pg/start.sh's pg_hba), owning a database made
    // from template0, so without pgvector.
    let mut admin = db.admin();
    admin
        .batch_execute(
            "DO $$ BEGIN
                 IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ingestd_pw_test') THEN
                     CREATE ROLE ingestd_pw_test LOGIN PASSWORD 'right-horse';
                 END IF;
             END $$;",
        )
        .unwrap();
    let bare = TestDb::create_with("TEMPLATE template0 OWNER ingestd_pw_test").unwrap();
    let config_with = |password: &str| {
        let file = daemon.dir.path().join(format!("pw-{password}"));
        std::fs::write(&file, format!("{password}\n")).unwrap();
        let config = daemon.dir.path().join(format!("migrate-{password}.toml"));
        std::fs::write(
            &config,
            format!(
                "[paths]\ndatabase = {:?}\n[catalog]\nurl = {:?}\npassword_file = {:?}\n",
                daemon.dir.path().join("state/ingestd.sqlite"),
                bare.url_as("ingestd_pw_test"),
                file
            ),
        )
        .unwrap();
        config
    };
    let out = migrate(&config_with("wrong-staple"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the password of role ingestd_pw_test"),
        "{stderr}"
    );
    assert!(!stderr.contains("wrong-staple"), "{stderr}");

    let out = migrate(&config_with("right-horse"), &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("a superuser must run CREATE EXTENSION vector"),
        "{stderr}"
    );
    assert!(!stderr.contains("right-horse"), "{stderr}");
    drop(bare);
}

/// A job the SQLite daemon left processing is taken back by the copy's node on PostgreSQL and
/// completed; once a node has run on the copy, a re-run of `migrate` refuses to copy over
/// what it did.
#[test]
fn pg_a_copied_processing_job_is_taken_back_and_a_used_copy_is_never_copied_over() {
    let Some(db) = TestDb::create() else { return };
    let mut daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(1, 5));
    daemon.wait_embedded("g", "a.csv", "v1");
    daemon.stop();
    // As a SQLite daemon killed in the middle of the job leaves it.
    let sqlite =
        rusqlite::Connection::open(daemon.dir.path().join("state/ingestd.sqlite")).unwrap();
    sqlite
        .execute(
            "UPDATE jobs SET state = 'processing', finished_at = NULL
             WHERE id = (SELECT MAX(id) FROM jobs)",
            [],
        )
        .unwrap();
    drop(sqlite);

    let out = migrate(&daemon.config, &["--to", &db.url(), "--node", "node-a"]);
    assert!(out.status.success(), "{}", text(&out));
    let mut client = db.client();
    let row = client
        .query_one("SELECT state, node, lease_until FROM jobs", &[])
        .unwrap();
    let copied: (String, Option<String>, Option<i64>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(
        copied,
        ("processing".into(), Some("node-a".into()), Some(0))
    );

    // The same folders, now as node-a of a cluster on the copy.
    let mut config = std::fs::read_to_string(&daemon.config).unwrap();
    config.push_str(&format!(
        "\n[catalog]\nbackend = \"postgres\"\nurl = \"{}\"\n[cluster]\nnode = \"node-a\"\n",
        db.url()
    ));
    std::fs::write(&daemon.config, config).unwrap();
    daemon.spawn();
    wait_for("the copied job to run again and complete", || {
        let jobs = daemon.jobs();
        (jobs.len() == 1 && jobs[0].state == JobState::Completed).then_some(())
    });
    let versions = pg_count(&mut client, "SELECT COUNT(*) FROM versions");
    let audit = pg_count(&mut client, "SELECT COUNT(*) FROM audit");
    daemon.stop();

    let out = migrate(&daemon.config, &["--to", &db.url(), "--node", "node-a"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nodes have run on it since (node-a)"),
        "{stderr}"
    );
    assert_eq!(
        pg_count(&mut client, "SELECT COUNT(*) FROM versions"),
        versions
    );
    assert_eq!(pg_count(&mut client, "SELECT COUNT(*) FROM audit"), audit);
    assert_eq!(
        pg_count(
            &mut client,
            "SELECT COUNT(*) FROM jobs WHERE state = 'completed'"
        ),
        1,
        "the cluster's work is still there"
    );
    assert!(
        pg_count(
            &mut client,
            "SELECT COUNT(*) FROM audit WHERE node = 'node-a' AND action = 'swap'"
        ) == 1,
        "and its audit records"
    );
}
