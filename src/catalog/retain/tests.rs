use super::*;

/// A catalog with one source `g/s.csv` of `versions` stored versions (files in a temporary
/// storage root), keeping `keep`.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    db: Db,
}

impl Fixture {
    fn new(keep: u32, versions: i64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("storage");
        std::fs::create_dir_all(root.join("g")).unwrap();
        let mut db = Db::in_dir(dir.path());
        db.retention = Retention {
            keep,
            storage_root: root.clone(),
        };
        db.conn
            .execute_batch(
                "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0);
                 INSERT INTO sources (id, group_id, name, created_at) VALUES (1, 1, 's.csv', 0);",
            )
            .unwrap();
        let mut fixture = Fixture {
            _dir: dir,
            root,
            db,
        };
        for no in 1..=versions {
            fixture.add_version(no, "ready");
        }
        fixture
    }

    fn file(&self, no: i64) -> PathBuf {
        self.root.join("g").join(format!("s_v{no}.csv"))
    }

    fn add_version(&mut self, no: i64, status: &str) {
        let path = self.file(no);
        std::fs::write(&path, b"a\n1\n").unwrap();
        self.db
            .conn
            .execute(
                "INSERT INTO versions (id, source_id, version_no, status, stored_path,
                                       created_at, updated_at)
                 VALUES (?1, 1, ?1, ?2, ?3, 0, 0)",
                params![no, status, path.to_str().unwrap()],
            )
            .unwrap();
    }

    /// Give version `no` a generation in `state` with one vector.
    fn generation(&mut self, no: i64, state: &str) {
        self.db
            .conn
            .execute(
                "INSERT INTO generations (source_id, version_id, state, provider, model,
                                          dimension, weights_hash, created_at)
                 VALUES (1, ?1, ?2, 'hashing', 'h', 4, 'x', 0)",
                params![no, state],
            )
            .unwrap();
        let id = self.db.conn.last_insert_rowid();
        self.db
            .conn
            .execute(
                "INSERT INTO vectors (generation_id, row_no, text, embedding)
                 VALUES (?1, 1, 't', x'00')",
                [id],
            )
            .unwrap();
    }

    fn job(&mut self, no: i64, state: &str) {
        self.db
            .conn
            .execute(
                "INSERT INTO jobs (group_id, source_id, version_id, state, reason,
                                   max_attempts, queued_at)
                 VALUES (1, 1, ?1, ?2, 'new_version', 3, 0)",
                params![no, state],
            )
            .unwrap();
    }

    fn statuses(&self) -> Vec<(i64, String, bool)> {
        self.db
            .conn
            .prepare("SELECT version_no, status, stored_path IS NOT NULL FROM versions ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn prune(&mut self) -> Vec<i64> {
        self.db
            .prune_source(1)
            .unwrap()
            .into_iter()
            .map(|p| p.version_no)
            .collect()
    }
}

#[test]
fn versions_beyond_the_limit_are_pruned_oldest_first() {
    let mut f = Fixture::new(2, 4);
    assert_eq!(f.prune(), vec![1, 2]);
    let expected = |no: i64, status: &str, file: bool| (no, status.to_string(), file);
    assert_eq!(
        f.statuses(),
        vec![
            expected(1, "pruned", false),
            expected(2, "pruned", false),
            expected(3, "ready", true),
            expected(4, "ready", true),
        ]
    );
    for no in 1..=4 {
        assert_eq!(f.file(no).exists(), no > 2, "v{no}");
    }
    let audited: Vec<(String, String)> =
        f.db.conn
            .prepare("SELECT action, version FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(
        audited,
        vec![
            ("prune".to_string(), "v1".to_string()),
            ("prune".to_string(), "v2".to_string())
        ]
    );
    // Nothing more to do: pruning again prunes nothing and audits nothing.
    assert_eq!(f.prune(), Vec::<i64>::new());
}

#[test]
fn the_active_version_and_versions_a_job_needs_are_kept() {
    let mut f = Fixture::new(1, 5);
    f.generation(1, "active");
    f.generation(2, "superseded");
    f.job(3, "queued");
    f.job(4, "processing");
    assert_eq!(f.prune(), vec![2]);
    let pruned: Vec<i64> = f
        .statuses()
        .into_iter()
        .filter(|(_, status, _)| status == PRUNED)
        .map(|(no, _, _)| no)
        .collect();
    assert_eq!(pruned, vec![2]);
    // v2's vectors went with it; v1's active ones stay.
    let vectors: Vec<i64> = f
        .db
        .conn
        .prepare("SELECT n.version_id FROM vectors x JOIN generations n ON n.id = x.generation_id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(vectors, vec![1]);
}

#[test]
fn rejected_attempts_do_not_count_and_the_newest_is_never_pruned() {
    let mut f = Fixture::new(1, 1);
    f.db.conn
        .execute(
            "INSERT INTO versions (source_id, status, reason, created_at, updated_at)
             VALUES (1, 'invalid', 'no header', 0, 0)",
            [],
        )
        .unwrap();
    assert_eq!(f.prune(), Vec::<i64>::new());
    assert!(f.file(1).exists());
}

#[test]
fn keep_zero_turns_pruning_off() {
    let mut f = Fixture::new(0, 3);
    assert_eq!(f.prune(), Vec::<i64>::new());
}

#[test]
fn an_interrupted_prune_is_finished_and_fsck_agrees() {
    let mut f = Fixture::new(2, 3);
    // As if a stop came between marking and removing.
    f.db.conn
        .execute(
            "UPDATE versions SET status = 'pruned' WHERE version_no = 1",
            [],
        )
        .unwrap();
    let root = f.root.clone();
    let actor = Actor::daemon();
    let report = f.db.fsck(&root, &[], 0, false, &actor).unwrap();
    assert!(
        report.is_clean(),
        "a pruned row's file is no orphan: {report:?}"
    );
    assert_eq!(f.db.finish_prunes().unwrap(), 1);
    assert!(!f.file(1).exists());
    let report = f.db.fsck(&root, &[], 0, false, &actor).unwrap();
    assert!(
        report.is_clean(),
        "a pruned row's missing file is not missing: {report:?}"
    );
}

#[test]
fn removal_never_leaves_the_group_folder_nor_follows_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("storage");
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("precious"), b"x").unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("g")).unwrap();
    let refused = remove_stored(&root, &root.join("g/precious")).unwrap_err();
    assert!(refused.to_string().contains("symlink"), "{refused}");
    assert!(elsewhere.join("precious").exists());
    for outside in [
        elsewhere.join("precious"),
        root.join("precious"),
        root.join("g/sub/precious"),
        root.join("g/../elsewhere/precious"),
    ] {
        assert!(
            matches!(
                remove_stored(&root, &outside),
                Err(RemoveError::Outside { .. })
            ),
            "{outside:?}"
        );
    }
    assert!(elsewhere.join("precious").exists());
}
