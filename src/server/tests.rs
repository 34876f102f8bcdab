//! The admin gate and the request bounds, through the real handler with a made-up caller:
//! every state-changing command refused for a uid that is not in `server.admins`, every
//! read-only command let through, and nothing changed by a refusal. No root needed: the
//! caller is whatever `Peer` the test says it is.

use super::auth::Peer;
use super::context::Shared;
use super::handlers::handle;
use crate::catalog::Catalog;
use crate::config::Config;
use crate::events::Events;
use crate::protocol::{Command, ErrorCode, PrefsDraft, cmd};
use crate::service::live::LiveConfig;
use std::sync::Arc;

/// A uid no system gives anyone, so no name lookup can make it an admin.
const STRANGER: Peer = Peer {
    uid: 4_000_123,
    gid: 4_000_123,
};

fn shared(dir: &std::path::Path) -> Shared {
    let mut config = Config::default();
    config.paths.drop_root = dir.join("drop");
    config.paths.storage_root = dir.join("store");
    config.paths.database = dir.join("ingestd.sqlite");
    config.paths.audit_log = dir.join("audit.jsonl");
    config.server.admins = vec!["root".into()];
    config.embedding.provider = crate::config::Provider::Hashing;
    std::fs::create_dir_all(config.paths.drop_root.join("g")).unwrap();
    let events = Events::default();
    let (catalog, _thread) = Catalog::open(
        &config.paths.database,
        &config.paths.audit_log,
        events.clone(),
    )
    .unwrap();
    let queue = crate::queue::Queue::new(&config);
    Shared {
        config: LiveConfig::new(Arc::new(config)),
        catalog,
        in_flight: Default::default(),
        notices: Default::default(),
        events,
        queue,
        started_ms: 0,
        started: std::time::Instant::now(),
        limits: Default::default(),
    }
}

fn state_changing() -> Vec<Command> {
    let g = Some("g".to_string());
    vec![
        Command::Rm(cmd::Rm {
            targets: vec!["a.csv".into()],
            group: g.clone(),
            force: false,
        }),
        Command::Rm(cmd::Rm {
            targets: vec!["a.csv".into()],
            group: g.clone(),
            force: true,
        }),
        Command::PrefsSet(cmd::PrefsSet {
            group: g.clone(),
            columns: Some(vec!["name".into()]),
            context: None,
            template: None,
            sheet: None,
            clear: false,
            reembed: false,
        }),
        Command::PrefsSet(cmd::PrefsSet {
            group: g.clone(),
            columns: None,
            context: None,
            template: None,
            sheet: None,
            clear: false,
            reembed: true,
        }),
        Command::Set(cmd::Set {
            source: "a.csv".into(),
            group: g.clone(),
            header_row: Some(4),
            ..Default::default()
        }),
        Command::Set(cmd::Set {
            source: "a.csv".into(),
            group: g.clone(),
            clear: true,
            ..Default::default()
        }),
        Command::Reembed(cmd::Reembed {
            sources: Vec::new(),
            group: g.clone(),
            all: true,
        }),
        Command::Reembed(cmd::Reembed {
            sources: vec!["a.csv".into()],
            group: g.clone(),
            all: false,
        }),
        Command::Retry(cmd::Retry {
            jobs: vec![1],
            failed: false,
            group: None,
        }),
        Command::Retry(cmd::Retry {
            jobs: Vec::new(),
            failed: true,
            group: g.clone(),
        }),
        Command::Cancel(cmd::Cancel { jobs: vec![1] }),
        Command::Fsck(cmd::Fsck { repair: true }),
    ]
}

fn read_only() -> Vec<Command> {
    let g = Some("g".to_string());
    vec![
        Command::Status(cmd::Status {}),
        Command::Groups(cmd::Groups {}),
        Command::Ls(cmd::Ls {
            group: g.clone(),
            all: false,
        }),
        Command::Prefs(cmd::Prefs { group: g.clone() }),
        Command::Jobs(cmd::Jobs {
            group: None,
            all: true,
            state: None,
            ids: Vec::new(),
            limit: None,
            before: None,
        }),
        Command::Audit(cmd::Audit {
            group: None,
            all: true,
            since: None,
            action: None,
            limit: Some(10),
            before: None,
        }),
        Command::Fsck(cmd::Fsck { repair: false }),
        // `use` changes only the caller's own current group, so it is open to everyone.
        Command::Use(cmd::Use {
            group: g.clone(),
            clear: false,
        }),
        Command::Use(cmd::Use {
            group: None,
            clear: true,
        }),
    ]
}

#[tokio::test]
async fn every_state_changing_command_is_refused_for_a_non_admin_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let before = shared.catalog.prefs("g".into()).await.unwrap();
    for command in state_changing() {
        assert!(command.changes_state(), "{command:?}");
        let error = handle(&shared, Some(STRANGER), command.clone())
            .await
            .expect_err("refused");
        assert_eq!(
            error.code,
            ErrorCode::PermissionDenied,
            "{command:?}: {error:?}"
        );
        assert!(
            error.message.contains("not in server.admins"),
            "{command:?}: {}",
            error.message
        );
        // Root is let through the gate (what happens next depends on the catalog).
        if let Err(error) = handle(&shared, Some(Peer { uid: 0, gid: 0 }), command.clone()).await {
            assert_ne!(error.code, ErrorCode::PermissionDenied, "{command:?}");
        }
    }
    // Root's prefs_set went through; the stranger's never did: the saver is root.
    let after = shared.catalog.prefs("g".into()).await.unwrap();
    assert_ne!(before.updated_by, after.updated_by);
    assert_ne!(after.updated_by.as_deref(), Some("uid 4000123"));
}

#[tokio::test]
async fn every_read_only_command_is_open_to_a_non_admin() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    for command in read_only() {
        assert!(!command.changes_state(), "{command:?}");
        if let Err(error) = handle(&shared, Some(STRANGER), command.clone()).await {
            panic!("{command:?} refused for a non-admin: {error:?}");
        }
    }
}

/// Read-only commands whose answer needs data this catalog does not have (a stored source,
/// embeddings): a non-admin may get "not found", never "permission denied".
fn read_only_needing_data() -> Vec<Command> {
    let g = Some("g".to_string());
    vec![
        Command::Show(cmd::Show {
            source: "a.csv".into(),
            group: g.clone(),
            preview: None,
            prefs: None,
        }),
        Command::Show(cmd::Show {
            source: "a.csv".into(),
            group: g.clone(),
            preview: Some(2),
            prefs: None,
        }),
        // Trying preferences in a preview saves nothing: no admin needed.
        Command::Show(cmd::Show {
            source: "a.csv".into(),
            group: g.clone(),
            preview: Some(2),
            prefs: Some(PrefsDraft {
                columns: vec!["region".into()],
                context: Vec::new(),
                template: Some("{region}".into()),
            }),
        }),
        Command::Search(cmd::Search {
            text: "north".into(),
            group: g.clone(),
            k: Some(3),
        }),
        Command::Jobs(cmd::Jobs {
            group: None,
            all: false,
            state: None,
            ids: vec![1, 2],
            limit: Some(10),
            before: Some(5),
        }),
    ]
}

/// Which list a command belongs to. An exhaustive match: a new command does not compile
/// here until it is put in one, and its list above is what tests it.
fn gate_list(command: &Command) -> &'static str {
    match command {
        Command::PrefsSet(_)
        | Command::Set(_)
        | Command::Rm(_)
        | Command::Reembed(_)
        | Command::Retry(_)
        | Command::Cancel(_)
        | Command::Fsck(cmd::Fsck { repair: true }) => "state_changing",
        // Asking for named jobs needs them to exist.
        Command::Jobs(jobs) if !jobs.ids.is_empty() => "read_only_needing_data",
        Command::Status(_)
        | Command::Groups(_)
        | Command::Ls(_)
        | Command::Prefs(_)
        | Command::Jobs(_)
        | Command::Audit(_)
        | Command::Fsck(cmd::Fsck { repair: false })
        | Command::Use(_) => "read_only",
        Command::Show(_) | Command::Search(_) => "read_only_needing_data",
        // A stream, answered by the connection itself; read-only (`changes_state` is false,
        // checked below) and run end to end in tests/e2e/attack_socket.rs.
        Command::Events(_) => "events",
    }
}

#[test]
fn every_command_is_in_the_list_that_matches_the_gate() {
    for (list, commands) in [
        ("state_changing", state_changing()),
        ("read_only", read_only()),
        ("read_only_needing_data", read_only_needing_data()),
    ] {
        for command in commands {
            assert_eq!(gate_list(&command), list, "{command:?}");
            assert_eq!(
                command.changes_state(),
                list == "state_changing",
                "{command:?}"
            );
        }
    }
    let events = Command::Events(cmd::Events {
        group: None,
        all: true,
    });
    assert_eq!(gate_list(&events), "events");
    assert!(!events.changes_state());
}

#[tokio::test]
async fn read_only_commands_on_missing_data_are_never_a_permission_error() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    for command in read_only_needing_data() {
        if let Err(error) = handle(&shared, Some(STRANGER), command.clone()).await {
            assert_ne!(
                error.code,
                ErrorCode::PermissionDenied,
                "{command:?}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn refusals_of_one_uid_are_audited_once_per_window_with_a_bounded_detail() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let targets: Vec<String> = (0..1000).map(|i| format!("{i:0>250}.csv")).collect();
    for _ in 0..200 {
        let error = handle(
            &shared,
            Some(STRANGER),
            Command::Rm(cmd::Rm {
                targets: targets.clone(),
                group: Some("g".into()),
                force: false,
            }),
        )
        .await
        .unwrap_err();
        assert_eq!(error.code, ErrorCode::PermissionDenied);
    }
    let entries = shared
        .catalog
        .audit_entries(crate::catalog::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let refused: Vec<_> = entries.iter().filter(|e| e.outcome == "refused").collect();
    assert_eq!(refused.len(), 1, "one record until the window ends");
    let detail = refused[0].detail.as_deref().unwrap();
    assert!(
        detail.len() <= super::refusals::MAX_DETAIL_BYTES,
        "{}",
        detail.len()
    );
    assert!(detail.contains("more"), "{detail}");
    // At a stop the rest is summarized in one more record.
    let summary = shared.limits.refusals.due(std::time::Instant::now(), true);
    assert_eq!(summary.len(), 1);
    assert!(
        summary[0]
            .detail
            .as_deref()
            .unwrap()
            .starts_with("199 more refused requests"),
        "{:?}",
        summary[0].detail
    );
}

#[tokio::test]
async fn requests_that_name_too_much_are_refused_before_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let too_many = Command::Rm(cmd::Rm {
        targets: (0..1001).map(|i| format!("{i}.csv")).collect(),
        group: Some("g".into()),
        force: false,
    });
    let too_long = Command::Reembed(cmd::Reembed {
        sources: vec!["x".repeat(300)],
        group: Some("g".into()),
        all: false,
    });
    for command in [too_many, too_long] {
        let error = handle(&shared, Some(STRANGER), command).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::BadArgs, "{error:?}");
    }
    let audited = shared
        .catalog
        .audit_entries(crate::catalog::AuditFilter {
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(audited.is_empty(), "nothing audited: {audited:?}");
}

#[tokio::test]
async fn group_counts_lay_the_files_in_flight_over_the_catalog_like_ls() {
    use crate::protocol::{GroupInfo, Status};
    use crate::watch::inflight::Phase;
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    // g: a.csv embedded (v1 then v2), b.csv ready, c.csv rejected; h: d.csv embedded; an
    // older version or a deleting one never counts.
    let conn = rusqlite::Connection::open(dir.path().join("ingestd.sqlite")).unwrap();
    conn.execute_batch(
        "INSERT INTO groups (id, name, created_at) VALUES (1, 'g', 0), (2, 'h', 0);
         INSERT INTO sources (id, group_id, name, created_at)
             VALUES (1, 1, 'a.csv', 0), (2, 1, 'b.csv', 0), (3, 1, 'c.csv', 0), (4, 2, 'd.csv', 0);
         INSERT INTO versions (id, source_id, version_no, status, created_at, updated_at)
             VALUES (1, 1, 1, 'embedded', 0, 0), (2, 1, 2, 'embedded', 0, 0),
                    (3, 2, 1, 'ready', 0, 0), (4, 3, NULL, 'invalid', 0, 0),
                    (5, 4, 1, 'embedded', 0, 0), (6, 4, 2, 'deleting', 0, 0);",
    )
    .unwrap();
    drop(conn);
    let counts = |groups: &[GroupInfo], name: &str| {
        let group = groups.iter().find(|g| g.name == name).unwrap();
        (group.sources, group.by_status.clone())
    };
    let groups = super::context::group_list(&shared).await.unwrap();
    assert_eq!(
        counts(&groups, "g"),
        (
            3,
            [
                (Status::Embedded, 1),
                (Status::Ready, 1),
                (Status::Invalid, 1)
            ]
            .into()
        )
    );
    assert_eq!(counts(&groups, "h"), (1, [(Status::Embedded, 1)].into()));

    // A new version of b.csv being validated, a new file settling, a file in a group the
    // catalog has not recorded yet: counted as `ls` would list them.
    shared.in_flight.set("g", "b.csv", Phase::Validating);
    shared.in_flight.set("g", "new.csv", Phase::Pending);
    shared.in_flight.set("nowhere", "x.csv", Phase::Pending);
    let groups = super::context::group_list(&shared).await.unwrap();
    assert_eq!(
        counts(&groups, "g"),
        (
            4,
            [
                (Status::Embedded, 1),
                (Status::Validating, 1),
                (Status::Invalid, 1),
                (Status::Pending, 1)
            ]
            .into()
        )
    );
    assert_eq!(counts(&groups, "h"), (1, [(Status::Embedded, 1)].into()));
    assert!(groups.iter().all(|g| g.name != "nowhere"));
}

#[tokio::test]
async fn a_listing_that_names_a_group_and_asks_for_all_is_refused_as_bad_args() {
    let dir = tempfile::tempdir().unwrap();
    let shared = shared(dir.path());
    let both = [
        Command::Ls(cmd::Ls {
            group: Some("g".into()),
            all: true,
        }),
        Command::Jobs(cmd::Jobs {
            group: Some("g".into()),
            all: true,
            ..Default::default()
        }),
        Command::Audit(cmd::Audit {
            group: Some("g".into()),
            all: true,
            ..Default::default()
        }),
    ];
    for command in both {
        let error = handle(&shared, Some(STRANGER), command.clone())
            .await
            .expect_err("refused");
        assert_eq!(error.code, ErrorCode::BadArgs, "{command:?}");
        assert!(error.message.contains("not both"), "{}", error.message);
    }
    // Each half alone is fine.
    let ls = cmd::Ls {
        group: Some("g".into()),
        all: false,
    };
    handle(&shared, Some(STRANGER), Command::Ls(ls))
        .await
        .unwrap();
}
