//! Tests of the UI without a terminal or a daemon: every screen and empty state drawn on
//! ratatui's `TestBackend` from fixed data and compared as text with the snapshots in
//! `ctl/tests/snapshots/` (`INSTA_UPDATE=always` rewrites them after a deliberate change), and
//! key handling as a table of pure transitions.

use super::app::{App, Conn, Mode, Pane, Request, Sort, call};
use super::keys::on_key;
use super::proto::{Command, Event, JobState, PrefsDraft, cmd};
use super::reply::{self, Failure, Reply};
use super::view::{self, Ctx, Theme};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::{Value, json};

fn status() -> Value {
    json!({
        "by_status": {"embedded": 2, "invalid": 1, "embedding": 1},
        "daemon_version": "0.1.0", "database": "/srv/ingestd/ingestd.sqlite",
        "drop_root": "/srv/drop", "groups": 3, "in_flight": 0, "last_errors": [],
        "pid": 42, "protocol": 1, "provider": "hashing (feature hashing; for tests)",
        "queue": {"concurrency": 2, "failed": 0, "processing": 1, "queued": 1},
        "socket": "/run/ingestd.sock", "sources": 4, "started_at": "2026-11-27T02:00:00Z",
        "storage_root": "/srv/store", "uptime_secs": 60
    })
}

fn groups() -> Value {
    json!([
        {"by_status": {}, "current": false, "last_activity": null, "name": "empty", "sources": 0},
        {"by_status": {"embedded": 1}, "current": false, "last_activity": null, "name": "hr", "sources": 1},
        {"by_status": {"embedded": 1, "embedding": 1, "invalid": 1}, "current": true,
         "last_activity": null, "name": "sales", "sources": 3}
    ])
}

fn source(name: &str, status: &str, rows: Option<u64>, updated: &str) -> Value {
    let stored = status != "invalid";
    json!({
        "added_at": updated, "added_by": "alice", "added_by_uid": 1000,
        "columns": if stored { json!(["region", "month", "amount"]) } else { json!([]) },
        "format": if stored { json!("csv") } else { json!(null) },
        "group": "sales", "name": name,
        "reason": if stored { json!(null) } else { json!("files of type .txt are not accepted") },
        "rows": rows, "sha256": null, "size": 39, "skipped_columns": [],
        "status": status, "updated_at": updated,
        "version": if stored { json!("v1") } else { json!(null) }
    })
}

fn sources() -> Value {
    json!([
        source("big.csv", "embedding", Some(3000), "2026-11-27T02:10:00Z"),
        source("notes.txt", "invalid", None, "2026-11-27T02:05:00Z"),
        source("q1.csv", "embedded", Some(2), "2026-11-27T02:01:00Z"),
    ])
}

fn job(id: i64, source: &str, state: &str, done: u64, total: u64) -> Value {
    json!({
        "attempt": if state == "queued" { 0 } else { 1 }, "error": null,
        "finished_at": null, "group": "sales", "id": id, "max_attempts": 3, "not_before": null,
        "position": if state == "queued" { json!({"group": 1, "overall": 1}) } else { json!(null) },
        "progress": {"done": done, "total": total}, "queued_at": "2026-11-27T02:10:00Z",
        "reason": "new_version", "requested_by": "alice", "source": source,
        "started_at": null, "state": state, "version": "v1"
    })
}

fn detail_big() -> Value {
    let mut detail = source("big.csv", "embedding", Some(3000), "2026-11-27T02:10:00Z");
    detail["versions"] = json!([{
        "added_at": "2026-11-27T02:10:00Z", "added_by": "alice", "added_by_uid": 1000,
        "columns": ["region", "month", "amount"], "format": "csv", "notes": [], "reason": null,
        "rows": 3000, "sha256": "ab", "size": 39, "skipped_columns": [], "status": "ready",
        "stored_path": "/srv/store/sales/big_v1.csv", "version": "v1"
    }, {
        "added_at": "2026-11-27T02:09:00Z", "added_by": "alice", "added_by_uid": 1000,
        "columns": [], "format": null, "notes": [], "reason": "the file is empty",
        "rows": null, "sha256": null, "size": 0, "skipped_columns": [], "status": "invalid",
        "stored_path": null, "version": null
    }]);
    detail["jobs"] = json!([job(7, "big.csv", "processing", 1200, 3000)]);
    detail["embeddings"] = json!(null);
    detail
}

fn jobs() -> Value {
    let mut failed = job(5, "q2.csv", "failed", 0, 4);
    failed["error"] = json!("the provider is not reachable");
    json!([
        job(7, "big.csv", "processing", 1200, 3000),
        job(8, "q1.csv", "queued", 0, 2),
        failed,
    ])
}

fn ls(group: &str) -> Command {
    Command::Ls(cmd::Ls {
        group: Some(group.into()),
        all: false,
    })
}

fn show(source: &str) -> Command {
    Command::Show(cmd::Show {
        source: source.into(),
        group: Some("sales".into()),
        preview: None,
        prefs: None,
    })
}

/// The state after connecting to a daemon with three groups, `sales` current and loaded.
fn loaded() -> App {
    let mut app = App::new(None);
    app.on_connected();
    answer(&mut app, &Command::Status(cmd::Status {}), status());
    answer(&mut app, &Command::Groups(cmd::Groups {}), groups());
    let use_ = Command::Use(cmd::Use {
        group: None,
        clear: false,
    });
    answer(&mut app, &use_, json!({"group": "sales", "uid": 1000}));
    answer(&mut app, &ls("sales"), sources());
    answer(&mut app, &show("big.csv"), detail_big());
    app
}

/// `data` as the daemon sends it, read as the UI's workers read it.
fn ok(command: &Command, data: Value) -> Result<Reply, Failure> {
    let line = serde_json::to_vec(&json!({"ok": true, "v": 1, "data": data})).unwrap();
    reply::decode(command, &line)
}

/// The state after the answer `data` to `command`; the requests it calls for.
fn answer(app: &mut App, command: &Command, data: Value) -> Vec<Request> {
    let result = ok(command, data);
    assert!(result.is_ok(), "{command:?}: {result:?}");
    app.on_reply(command, result)
}

fn render(app: &App, width: u16, height: u16) -> String {
    let ctx = Ctx {
        theme: Theme { color: false },
        tz: jiff::tz::TimeZone::UTC,
        socket: "/run/ingestd.sock".into(),
    };
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| view::draw(f, app, &ctx)).unwrap();
    let buffer = terminal.backend().buffer();
    let mut text = String::new();
    for y in 0..height {
        let mut line = String::new();
        for x in 0..width {
            line.push_str(buffer[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({snapshot_path => "../../tests/snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn press(app: App, code: KeyCode) -> (App, Vec<Request>) {
    on_key(app, key(code))
}

fn chars(mut app: App, text: &str) -> App {
    for c in text.chars() {
        app = press(app, KeyCode::Char(c)).0;
    }
    app
}

#[test]
fn screen_main_at_80x24() {
    snapshot!("main_80x24", render(&loaded(), 80, 24));
}

#[test]
fn screen_main_wide() {
    snapshot!("main_120x32", render(&loaded(), 120, 32));
}

#[test]
fn screen_queue() {
    let (mut app, requests) = press(loaded(), KeyCode::Char('J'));
    assert_eq!(requests, vec![app.load_jobs()]);
    answer(&mut app, &requests_command(&requests[0]), jobs());
    snapshot!("queue", render(&app, 80, 24));
}

fn requests_command(request: &Request) -> Command {
    match request {
        Request::Call(c) => c.clone(),
        other => panic!("not a call: {other:?}"),
    }
}

#[test]
fn screen_help() {
    let (app, _) = press(loaded(), KeyCode::Char('?'));
    snapshot!("help", render(&app, 80, 24));
}

#[test]
fn screen_confirm_delete_and_guard() {
    let (app, _) = press(loaded(), KeyCode::Char('d'));
    snapshot!("confirm_delete", render(&app, 80, 24));
    let (mut app, requests) = press(app, KeyCode::Char('y'));
    let rm = requests_command(&requests[0]);
    let refused = json!([{
        "job": job(7, "big.csv", "processing", 384, 3000),
        "message": "big.csv v1 is being embedded by job 7 (384 of 3000 rows done); cancel it with `ingestctl cancel 7`, or delete with --force, which cancels it first",
        "ok": false, "removed": [], "target": "big.csv"
    }]);
    answer(&mut app, &rm, refused);
    assert!(matches!(app.mode, Mode::Guard { .. }), "{:?}", app.mode);
    snapshot!("guard", render(&app, 80, 24));
}

#[test]
fn screen_add_prompt() {
    let (app, _) = press(loaded(), KeyCode::Char('a'));
    let app = chars(app, "/tmp/q2.csv");
    snapshot!("add", render(&app, 80, 24));
}

#[test]
fn screen_search_results() {
    let (app, _) = press(loaded(), KeyCode::Char('s'));
    let app = chars(app, "north");
    let (mut app, requests) = press(app, KeyCode::Enter);
    let found = json!({
        "group": "sales", "model": "hashing fnv1a-words-trigrams", "searched": 5, "skipped": [],
        "hits": [
            {"row": 1, "score": 0.81, "source": "q1.csv", "text": "q1.csv | sales | region: north; month: 2026-01; amount: 1200", "version": "v1"},
            {"row": 2, "score": 0.12, "source": "q1.csv", "text": "q1.csv | sales | region: south; month: 2026-01; amount: 900", "version": "v1"}
        ]
    });
    answer(&mut app, &requests_command(&requests[0]), found);
    snapshot!("search", render(&app, 80, 24));
}

fn preview_answer(texts: &[&str]) -> Value {
    let mut detail = detail_big();
    detail["preview"] = json!(texts);
    detail
}

fn edit(app: &App) -> &super::app::PrefsEdit {
    match &app.mode {
        Mode::Prefs(edit) => edit,
        other => panic!("not the preferences editor: {other:?}"),
    }
}

/// The preferences editor: its preview follows the edits before they are saved, and an
/// answer to an older edit never replaces a newer one.
#[test]
fn screen_prefs_editor_previews_the_edits() {
    let (mut app, requests) = press(loaded(), KeyCode::Char('p'));
    let prefs = json!({
        "columns": ["region", "amount"], "context": ["month"], "group": "sales",
        "known_columns": ["region", "month", "amount"], "sheet": null,
        "template": "{region} sold {amount} in {month}", "updated_at": null, "updated_by": null
    });
    answer(&mut app, &requests_command(&requests[0]), prefs);
    // Asked before the saved preferences were known: rendered with them.
    let saved = requests_command(&requests[1]);
    assert!(
        matches!(
            &saved,
            Command::Show(cmd::Show {
                preview: Some(5),
                prefs: None,
                ..
            })
        ),
        "{saved:?}"
    );
    let rendered = ["north sold 1200 in 2026-01", "south sold 900 in 2026-01"];
    answer(&mut app, &saved, preview_answer(&rendered));
    snapshot!("prefs", render(&app, 80, 24));

    // Untick amount: nothing is sent at the key; the loop asks once the edits rest.
    let (app, _) = press(app, KeyCode::Down);
    let (app, _) = press(app, KeyCode::Down);
    let (mut app, sent) = press(app, KeyCode::Char(' '));
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(app.preview_edits(), Some(1));
    let unticked = requests_command(&app.ask_preview().unwrap());
    let draft = PrefsDraft {
        columns: vec!["region".into()],
        context: vec!["month".into()],
        template: Some("{region} sold {amount} in {month}".into()),
    };
    assert_eq!(
        unticked,
        Command::Show(cmd::Show {
            source: "big.csv".into(),
            group: Some("sales".into()),
            preview: Some(5),
            prefs: Some(draft),
        })
    );
    // Until its answer comes, the last preview stays, marked as being updated.
    snapshot!("prefs_updating", render(&app, 80, 24));

    // Then a new template, typed; its preview is asked before the first one is answered.
    let (app, _) = press(app, KeyCode::Char('e'));
    let mut app = app;
    for _ in 0.."{region} sold {amount} in {month}".len() {
        app = press(app, KeyCode::Backspace).0;
    }
    let app = chars(app, "{month}: {region}");
    let (mut app, _) = press(app, KeyCode::Enter);
    let typed = requests_command(&app.ask_preview().unwrap());
    answer(
        &mut app,
        &typed,
        preview_answer(&["2026-01: north", "2026-01: south"]),
    );
    // The answer to the untick, late: stale, so it changes nothing.
    answer(&mut app, &unticked, preview_answer(&["north in 2026-01"]));
    assert_eq!(
        edit(&app).preview.as_deref(),
        Some(&["2026-01: north".to_string(), "2026-01: south".to_string()][..])
    );
    assert!(edit(&app).preview_current());
    snapshot!("prefs_live", render(&app, 80, 24));

    // A template that does not parse yet: the daemon's reason in the preview's place, not
    // in the status line.
    let (app, _) = press(app, KeyCode::Char('e'));
    let (mut app, _) = press(app, KeyCode::Char('{'));
    let broken = requests_command(&app.ask_preview().unwrap());
    let reason = "template: the '{' at character 18 is never closed; write {{ for a literal brace";
    app.on_reply(&broken, Err(Failure::Refused(reason.into())));
    assert_eq!(edit(&app).preview_error.as_deref(), Some(reason));
    assert!(app.message.is_none(), "{:?}", app.message);
    assert!(render(&app, 80, 24).contains("template: the '{' at character 18"));

    // Saved: the preview is already that of the saved preferences; nothing more is asked.
    let (app, _) = press(app, KeyCode::Backspace);
    let (app, _) = press(app, KeyCode::Enter);
    let (mut app, save) = press(app, KeyCode::Char('w'));
    let saved_prefs = json!({
        "prefs": {"columns": ["region"], "context": ["month"], "group": "sales",
            "known_columns": ["region", "month", "amount"], "sheet": null,
            "template": "{month}: {region}", "updated_at": null, "updated_by": null},
        "jobs": [], "warnings": []
    });
    let after = answer(&mut app, &requests_command(&save[0]), saved_prefs);
    assert!(after.is_empty(), "{after:?}");
    assert!(!edit(&app).unsaved());
}

#[test]
fn screen_empty_no_groups() {
    let mut app = App::new(None);
    app.on_connected();
    answer(&mut app, &Command::Status(cmd::Status {}), status());
    answer(&mut app, &Command::Groups(cmd::Groups {}), json!([]));
    snapshot!("empty_no_groups", render(&app, 80, 24));
}

#[test]
fn screen_empty_no_current_group() {
    let mut app = App::new(None);
    app.on_connected();
    answer(&mut app, &Command::Status(cmd::Status {}), status());
    let mut list = groups();
    list[2]["current"] = json!(false);
    answer(&mut app, &Command::Groups(cmd::Groups {}), list);
    snapshot!("empty_no_current_group", render(&app, 80, 24));
}

#[test]
fn screen_empty_group() {
    let mut app = loaded();
    app.group_cursor = 0;
    app.focus = Pane::Groups;
    let (mut app, requests) = press(app, KeyCode::Enter);
    assert!(requests.contains(&call(ls("empty"))), "{requests:?}");
    answer(&mut app, &ls("empty"), json!([]));
    snapshot!("empty_group", render(&app, 80, 24));
}

#[test]
fn screen_no_embeddings_yet() {
    let (mut app, requests) = press(loaded(), KeyCode::Down);
    assert_eq!(requests, vec![call(show("notes.txt"))]);
    let mut detail = source("notes.txt", "invalid", None, "2026-11-27T02:05:00Z");
    detail["versions"] = json!([]);
    answer(&mut app, &show("notes.txt"), detail);
    snapshot!("no_embeddings", render(&app, 80, 24));
}

#[test]
fn screen_daemon_down_and_reconnect() {
    let mut app = loaded();
    app.on_disconnected(
        "cannot reach ingestd at /run/ingestd.sock: Connection refused (os error 111)".into(),
    );
    snapshot!("daemon_down", render(&app, 80, 24));
    // Back: everything on screen is asked for again.
    let requests = app.on_connected();
    assert_eq!(app.conn, Conn::Up);
    for wanted in [
        Command::Status(cmd::Status {}),
        Command::Groups(cmd::Groups {}),
        ls("sales"),
        show("big.csv"),
    ] {
        assert!(
            requests.contains(&call(wanted.clone())),
            "{wanted:?} in {requests:?}"
        );
    }
}

#[test]
fn screen_read_only() {
    let mut app = loaded();
    app.readonly =
        Some("permission denied: bob is not in server.admins (alice); ask an administrator".into());
    let (app, requests) = press(app, KeyCode::Char('d'));
    assert!(requests.is_empty());
    assert_eq!(app.mode, Mode::Normal);
    assert!(
        app.message
            .as_ref()
            .unwrap()
            .text
            .starts_with("read-only: ")
    );
    snapshot!("read_only", render(&app, 80, 24));
}

#[test]
fn no_color_draws_no_colour() {
    let app = loaded();
    let ctx = Ctx {
        theme: Theme { color: false },
        tz: jiff::tz::TimeZone::UTC,
        socket: "/s".into(),
    };
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    terminal.draw(|f| view::draw(f, &app, &ctx)).unwrap();
    for cell in terminal.backend().buffer().content() {
        assert_eq!(cell.fg, ratatui::style::Color::Reset, "{cell:?}");
        assert_eq!(cell.bg, ratatui::style::Color::Reset, "{cell:?}");
    }
    let colour = Ctx {
        theme: Theme { color: true },
        ..ctx
    };
    terminal.draw(|f| view::draw(f, &app, &colour)).unwrap();
    let coloured = terminal.backend().buffer().content().iter();
    assert!(
        coloured
            .into_iter()
            .any(|c| c.fg != ratatui::style::Color::Reset)
    );
}

/// Key handling: state + key → state + requests.
#[test]
fn keys_are_pure_transitions() {
    type Check = fn(&App);
    let cases: Vec<(&str, Vec<KeyCode>, Vec<Request>, Check)> = vec![
        ("q quits", vec![KeyCode::Char('q')], vec![], |a| {
            assert!(a.quit)
        }),
        (
            "j moves and loads the detail",
            vec![KeyCode::Char('j')],
            vec![call(show("notes.txt"))],
            |a| assert_eq!(a.source_cursor, 1),
        ),
        (
            "k at the top stays",
            vec![KeyCode::Char('k')],
            vec![],
            |a| assert_eq!(a.source_cursor, 0),
        ),
        (
            "G goes to the end",
            vec![KeyCode::Char('G')],
            vec![call(show("q1.csv"))],
            |a| assert_eq!(a.source_cursor, 2),
        ),
        ("tab cycles panes", vec![KeyCode::Tab], vec![], |a| {
            assert_eq!(a.focus, Pane::Groups)
        }),
        (
            "enter on a group uses it and loads it",
            vec![KeyCode::Left, KeyCode::Up, KeyCode::Enter],
            vec![
                call(cmd::Use {
                    group: Some("hr".into()),
                    clear: false,
                }),
                call(ls("hr")),
            ],
            |a| {
                assert_eq!(a.viewing.as_deref(), Some("hr"));
                assert!(!a.sources_loaded);
                assert_eq!(a.focus, Pane::Sources);
            },
        ),
        (
            "o sorts by updated",
            vec![KeyCode::Char('o')],
            vec![],
            |a| {
                assert_eq!(a.sort, Sort::Updated);
                assert_eq!(a.selected().unwrap().name, "big.csv");
            },
        ),
        (
            "o twice sorts by status",
            vec![KeyCode::Char('o'), KeyCode::Char('o')],
            vec![],
            |a| {
                assert_eq!(a.sort, Sort::Status);
                let names: Vec<&str> = a
                    .order
                    .iter()
                    .map(|&i| a.sources[i].name.as_str())
                    .collect();
                assert_eq!(names, ["big.csv", "q1.csv", "notes.txt"]);
            },
        ),
        (
            "/ filters as you type",
            vec![KeyCode::Char('/'), KeyCode::Char('q')],
            vec![call(show("q1.csv"))],
            |a| {
                assert_eq!(a.filter, "q");
                assert_eq!(a.order.len(), 1);
                assert_eq!(a.mode, Mode::Filter);
            },
        ),
        (
            "Esc clears the filter",
            vec![KeyCode::Char('/'), KeyCode::Char('z'), KeyCode::Esc],
            vec![call(show("big.csv"))],
            |a| {
                assert_eq!(a.filter, "");
                assert_eq!(a.order.len(), 3);
            },
        ),
        (
            "space marks and r re-embeds the marked",
            vec![KeyCode::Char(' '), KeyCode::Char(' '), KeyCode::Char('r')],
            vec![call(cmd::Reembed {
                sources: vec!["big.csv".into(), "notes.txt".into()],
                group: Some("sales".into()),
                all: false,
            })],
            |a| assert_eq!(a.marked.len(), 2),
        ),
        (
            "R re-embeds the group",
            vec![KeyCode::Char('R')],
            vec![call(cmd::Reembed {
                sources: vec![],
                group: Some("sales".into()),
                all: true,
            })],
            |_| {},
        ),
        (
            "t retries the group's failed jobs",
            vec![KeyCode::Char('t')],
            vec![call(cmd::Retry {
                jobs: vec![],
                failed: true,
                group: Some("sales".into()),
            })],
            |_| {},
        ),
        (
            "c cancels the selected source's running job",
            vec![KeyCode::Char('c')],
            vec![call(cmd::Cancel { jobs: vec![7] })],
            |_| {},
        ),
        ("d asks first", vec![KeyCode::Char('d')], vec![], |a| {
            assert_eq!(
                a.mode,
                Mode::ConfirmDelete {
                    group: "sales".into(),
                    targets: vec!["big.csv".into()]
                }
            )
        }),
        (
            "d then y deletes",
            vec![KeyCode::Char('d'), KeyCode::Char('y')],
            vec![call(cmd::Rm {
                targets: vec!["big.csv".into()],
                group: Some("sales".into()),
                force: false,
            })],
            |a| assert_eq!(a.mode, Mode::Normal),
        ),
        (
            "d then n keeps",
            vec![KeyCode::Char('d'), KeyCode::Char('n')],
            vec![],
            |a| {
                assert_eq!(a.mode, Mode::Normal);
                assert_eq!(
                    a.message.as_ref().unwrap().text,
                    "cancelled; nothing was deleted"
                );
            },
        ),
        (
            "a, a path and Enter adds it",
            vec![KeyCode::Char('a'), KeyCode::Char('x'), KeyCode::Enter],
            vec![Request::Add {
                group: "sales".into(),
                files: vec!["x".into()],
            }],
            |a| assert_eq!(a.mode, Mode::Normal),
        ),
        (
            "s, text and Enter searches",
            vec![KeyCode::Char('s'), KeyCode::Char('n'), KeyCode::Enter],
            vec![call(cmd::Search {
                text: "n".into(),
                group: Some("sales".into()),
                k: Some(20),
            })],
            |a| assert!(matches!(a.mode, Mode::Search { .. })),
        ),
        ("J shows the queue", vec![KeyCode::Char('J')], vec![], |a| {
            assert!(a.show_queue);
            assert_eq!(a.focus, Pane::Queue);
        }),
        (
            "? opens help, any key closes it",
            vec![KeyCode::Char('?'), KeyCode::Char('x')],
            vec![],
            |a| {
                assert_eq!(a.mode, Mode::Normal);
                assert!(!a.quit);
            },
        ),
    ];
    for (name, keys, want, check) in cases {
        let mut app = loaded();
        let mut last = Vec::new();
        for code in keys {
            let (next, requests) = press(app, code);
            app = next;
            last = requests;
        }
        // J's request is checked in `screen_queue`; here only that nothing else is asked.
        if name.starts_with("J ") {
            last.retain(|r| !matches!(r, Request::Call(Command::Jobs(_))));
        }
        assert_eq!(last, want, "{name}");
        check(&app);
    }
}

#[test]
fn ctrl_c_quits_from_any_dialog() {
    let (app, _) = press(loaded(), KeyCode::Char('s'));
    let (app, _) = on_key(
        app,
        KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL),
    );
    assert!(app.quit);
}

#[test]
fn the_guard_offers_cancel_then_deletes_again() {
    let mut app = loaded();
    app.mode = Mode::Guard {
        group: "sales".into(),
        targets: vec!["big.csv".into()],
        jobs: vec![7],
        message: "being embedded".into(),
    };
    let (mut app, requests) = press(app, KeyCode::Char('c'));
    assert_eq!(requests, vec![call(cmd::Cancel { jobs: vec![7] })]);
    let mut cancelled = job(7, "big.csv", "cancelled", 384, 3000);
    cancelled["error"] = json!("cancelled by alice");
    let cancelled = json!([{"existing": false, "job": cancelled, "ok": true, "target": "7",
        "message": "cancelled job 7 (big.csv v1); the previous embeddings stay active"}]);
    let again = answer(
        &mut app,
        &Command::Cancel(cmd::Cancel { jobs: vec![7] }),
        cancelled,
    );
    assert!(
        again.contains(&call(cmd::Rm {
            targets: vec!["big.csv".into()],
            group: Some("sales".into()),
            force: false
        })),
        "{again:?}"
    );
    assert_eq!(app.mode, Mode::Normal);

    let mut app = loaded();
    app.mode = Mode::Guard {
        group: "sales".into(),
        targets: vec!["big.csv".into()],
        jobs: vec![7],
        message: "being embedded".into(),
    };
    let (_, requests) = press(app, KeyCode::Char('f'));
    assert_eq!(
        requests,
        vec![call(cmd::Rm {
            targets: vec!["big.csv".into()],
            group: Some("sales".into()),
            force: true
        })]
    );
}

#[test]
fn events_refetch_what_they_change_and_progress_moves_in_place() {
    let mut app = loaded();
    let event = |kind: &str, group: &str, source: &str| -> Event {
        serde_json::from_value(json!({"actor": null, "detail": null, "group": group,
            "kind": kind, "source": source, "time": "2026-11-27T02:11:00Z", "version": "v1",
            "job": 7, "progress": {"done": 2000, "total": 3000}}))
        .unwrap()
    };
    let requests = app.on_event(&event("accepted", "sales", "big.csv"));
    for wanted in [
        Command::Groups(cmd::Groups {}),
        Command::Status(cmd::Status {}),
        ls("sales"),
        show("big.csv"),
    ] {
        assert!(
            requests.contains(&call(wanted.clone())),
            "{wanted:?} in {requests:?}"
        );
    }
    // Another group: only the counts.
    let requests = app.on_event(&event("accepted", "hr", "x.csv"));
    assert!(
        !requests
            .iter()
            .any(|r| matches!(r, Request::Call(Command::Ls(_))))
    );
    // Progress: no request, the bar moves.
    let requests = app.on_event(&event("job_progress", "sales", "big.csv"));
    assert!(requests.is_empty());
    let job = &app.detail.as_ref().unwrap().jobs[0];
    assert_eq!((job.progress.done, job.state), (2000, JobState::Processing));
}

#[test]
fn stale_answers_are_ignored_and_errors_go_to_the_status_line() {
    let mut app = loaded();
    // An ls of a group no longer on view changes nothing.
    answer(&mut app, &ls("hr"), json!([]));
    assert_eq!(app.sources.len(), 3);
    app.on_reply(
        &Command::Reembed(cmd::Reembed {
            sources: vec!["x".into()],
            group: Some("sales".into()),
            all: false,
        }),
        Err(Failure::Refused(
            "permission denied: bob is not in server.admins (alice); ask an administrator".into(),
        )),
    );
    let message = app.message.clone().unwrap();
    assert!(
        message.error && message.text.contains("permission denied"),
        "{message:?}"
    );
    // A garbled answer is a message, not a crash, whatever was asked.
    let garbled = ok(&Command::Groups(cmd::Groups {}), json!({"not": "a list"}));
    assert!(
        matches!(garbled, Err(Failure::Unreadable(_))),
        "{garbled:?}"
    );
    app.on_reply(&Command::Groups(cmd::Groups {}), garbled);
    assert!(app.message.unwrap().text.contains("cannot read"));
    let wrong_version = br#"{"ok":true,"v":9,"data":[]}"#;
    let read = reply::decode(&Command::Groups(cmd::Groups {}), wrong_version);
    assert!(
        matches!(&read, Err(Failure::Unreadable(m)) if m.contains("protocol version 9")),
        "{read:?}"
    );
    let refused = br#"{"ok":false,"v":1,"error":{"code":"not_found","message":"no group 'x'"}}"#;
    assert_eq!(
        reply::decode(&ls("x"), refused),
        Err(Failure::Refused("no group 'x'".into()))
    );
}

#[test]
fn bursts_of_reads_collapse_to_the_newest() {
    let batch = vec![
        call(cmd::Groups {}),
        call(ls("sales")),
        call(cmd::Cancel { jobs: vec![1] }),
        call(cmd::Groups {}),
        call(ls("hr")),
    ];
    assert_eq!(
        super::net::coalesce(batch),
        vec![
            call(cmd::Cancel { jobs: vec![1] }),
            call(cmd::Groups {}),
            call(ls("hr")),
        ]
    );
}

#[test]
fn completion_extends_to_what_the_names_share() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["sales_q1.csv", "sales_q2.csv", "hr.xlsx"] {
        std::fs::write(dir.path().join(name), "a\n1\n").unwrap();
    }
    std::fs::create_dir(dir.path().join("old")).unwrap();
    let base = format!("{}/", dir.path().display());
    let (done, hint) = super::keys::complete(&format!("{base}sa"));
    assert_eq!(done, format!("{base}sales_q"));
    assert_eq!(hint.as_deref(), Some("sales_q1.csv  sales_q2.csv"));
    let (done, hint) = super::keys::complete(&format!("{base}h"));
    assert_eq!((done, hint), (format!("{base}hr.xlsx"), None));
    let (done, _) = super::keys::complete(&format!("{base}o"));
    assert_eq!(done, format!("{base}old/"));
}
