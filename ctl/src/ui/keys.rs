//! Key handling as pure state transitions: `(state, key) -> (state, requests)`.
//!
//! Every key the UI understands is decided here, from the [`App`] alone; what must be asked of
//! the daemon comes back as [`Request`]s for the worker. Nothing here draws or talks to the
//! socket. The one thing it reads is the local file system, for path completion in the add
//! prompt.

use super::app::{App, Mode, Pane, PrefsEdit, Request, call};
use super::proto::{JobState, cmd};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::path::{Path, PathBuf};

/// How many hits a search asks for.
pub const SEARCH_K: u32 = 20;
/// How many rows the preferences preview renders.
pub const PREVIEW_ROWS: u32 = 5;

/// The keys of the normal screen, for the footer and `?`: (key, what it does, changes state).
pub const KEYS: &[(&str, &str, bool)] = &[
    ("?", "help", false),
    ("q", "quit", false),
    ("↑↓/jk", "move", false),
    ("Tab", "pane", false),
    ("Enter", "use group", false),
    ("/", "filter", false),
    ("o", "sort", false),
    ("space", "mark", false),
    ("J", "queue", false),
    ("a", "add", false),
    ("d", "delete", true),
    ("r", "re-embed", true),
    ("R", "re-embed group", true),
    ("t", "retry failed", true),
    ("c", "cancel", true),
    ("p", "prefs", false),
    ("s", "search", false),
];

pub fn on_key(mut app: App, key: KeyEvent) -> (App, Vec<Request>) {
    if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
        app.quit = true;
        return (app, Vec::new());
    }
    let mode = std::mem::replace(&mut app.mode, Mode::Normal);
    let requests = match mode {
        Mode::Normal => normal(&mut app, key),
        Mode::Help => Vec::new(),
        Mode::Filter => filter(&mut app, key),
        Mode::ConfirmDelete { group, targets } => confirm_delete(&mut app, key, group, targets),
        Mode::Guard {
            group,
            targets,
            jobs,
            message,
        } => guard(&mut app, key, group, targets, jobs, message),
        Mode::Add { input, hint } => add(&mut app, key, input, hint),
        Mode::Search { input, results } => search(&mut app, key, input, results),
        Mode::Prefs(edit) => prefs(&mut app, key, edit),
    };
    (app, requests)
}

fn normal(app: &mut App, key: KeyEvent) -> Vec<Request> {
    match key.code {
        KeyCode::Char('q') => {
            app.quit = true;
            Vec::new()
        }
        KeyCode::Char('?') => {
            app.mode = Mode::Help;
            Vec::new()
        }
        KeyCode::Esc => {
            app.marked.clear();
            app.message = None;
            Vec::new()
        }
        KeyCode::Tab => {
            app.focus = match app.focus {
                Pane::Groups => Pane::Sources,
                Pane::Sources if app.show_queue => Pane::Queue,
                Pane::Sources | Pane::Queue => Pane::Groups,
            };
            Vec::new()
        }
        KeyCode::BackTab => {
            app.focus = match app.focus {
                Pane::Groups if app.show_queue => Pane::Queue,
                Pane::Groups => Pane::Sources,
                Pane::Sources => Pane::Groups,
                Pane::Queue => Pane::Sources,
            };
            Vec::new()
        }
        KeyCode::Left | KeyCode::Char('h') => {
            app.focus = Pane::Groups;
            Vec::new()
        }
        KeyCode::Right | KeyCode::Char('l') => {
            app.focus = Pane::Sources;
            Vec::new()
        }
        KeyCode::Down | KeyCode::Char('j') => move_by(app, 1),
        KeyCode::Up | KeyCode::Char('k') => move_by(app, -1),
        KeyCode::PageDown => move_by(app, 10),
        KeyCode::PageUp => move_by(app, -10),
        KeyCode::Home | KeyCode::Char('g') => move_by(app, isize::MIN / 2),
        KeyCode::End | KeyCode::Char('G') => move_by(app, isize::MAX / 2),
        KeyCode::Enter if app.focus == Pane::Groups => switch_group(app),
        KeyCode::Char('/') => {
            app.mode = Mode::Filter;
            app.focus = Pane::Sources;
            Vec::new()
        }
        KeyCode::Char('o') => {
            app.sort = app.sort.next();
            after_cursor_change(app, |app| app.reorder())
        }
        KeyCode::Char(' ') => {
            if let Some(name) = app.selected().map(|s| s.name.clone())
                && !app.marked.remove(&name)
            {
                app.marked.insert(name);
            }
            move_by(app, 1)
        }
        KeyCode::Char('J') => {
            app.show_queue = !app.show_queue;
            if app.show_queue {
                app.focus = Pane::Queue;
                vec![app.load_jobs()]
            } else {
                if app.focus == Pane::Queue {
                    app.focus = Pane::Sources;
                }
                Vec::new()
            }
        }
        KeyCode::Char('a') => {
            if needs_group(app) {
                app.mode = Mode::Add {
                    input: String::new(),
                    hint: None,
                };
            }
            Vec::new()
        }
        KeyCode::Char('d') => {
            let targets = app.selection();
            if may_change(app) && needs_group(app) && !targets.is_empty() {
                app.mode = Mode::ConfirmDelete {
                    group: app.viewing.clone().unwrap_or_default(),
                    targets,
                };
            }
            Vec::new()
        }
        KeyCode::Char('r') => {
            let sources = app.selection();
            if !may_change(app) || !needs_group(app) || sources.is_empty() {
                return Vec::new();
            }
            vec![call(cmd::Reembed {
                sources,
                group: app.viewing.clone(),
                all: false,
            })]
        }
        KeyCode::Char('R') => {
            if !may_change(app) || !needs_group(app) {
                return Vec::new();
            }
            vec![call(cmd::Reembed {
                sources: Vec::new(),
                group: app.viewing.clone(),
                all: true,
            })]
        }
        KeyCode::Char('t') => {
            if !may_change(app) {
                return Vec::new();
            }
            // On the queue, the job under the cursor; elsewhere every failed job of the group.
            if app.focus == Pane::Queue {
                return match app.selected_job() {
                    Some(job) => vec![call(cmd::Retry {
                        jobs: vec![job.id],
                        failed: false,
                        group: None,
                    })],
                    None => Vec::new(),
                };
            }
            if !needs_group(app) {
                return Vec::new();
            }
            vec![call(cmd::Retry {
                jobs: Vec::new(),
                failed: true,
                group: app.viewing.clone(),
            })]
        }
        KeyCode::Char('c') => {
            if !may_change(app) {
                return Vec::new();
            }
            let jobs = cancellable(app);
            if jobs.is_empty() {
                app.info("nothing to cancel: no queued or processing job is selected");
                return Vec::new();
            }
            vec![call(cmd::Cancel { jobs })]
        }
        KeyCode::Char('p') => {
            if !needs_group(app) {
                return Vec::new();
            }
            let group = app.viewing.clone().unwrap_or_default();
            let preview_source = app.selected().map(|s| s.name.clone());
            let mut edit = Box::new(PrefsEdit::new(group.clone(), preview_source));
            // The saved preferences and their preview at once; edits are previewed as made.
            let mut out = vec![call(cmd::Prefs { group: Some(group) })];
            out.extend(edit.ask_preview());
            app.mode = Mode::Prefs(edit);
            out
        }
        KeyCode::Char('s') => {
            if needs_group(app) {
                app.mode = Mode::Search {
                    input: String::new(),
                    results: None,
                };
            }
            Vec::new()
        }
        _ => Vec::new(),
    }
}

/// The jobs `c` cancels: on the queue, the one under the cursor; elsewhere the selected
/// source's queued or processing jobs.
fn cancellable(app: &App) -> Vec<i64> {
    if app.focus == Pane::Queue {
        return app
            .selected_job()
            .filter(|j| !j.state.is_final())
            .map(|j| j.id)
            .into_iter()
            .collect();
    }
    let Some(detail) = &app.detail else {
        return Vec::new();
    };
    detail
        .jobs
        .iter()
        .filter(|j| matches!(j.state, JobState::Queued | JobState::Processing))
        .map(|j| j.id)
        .collect()
}

/// A state-changing key from a caller the daemon would refuse: say why, send nothing.
fn may_change(app: &mut App) -> bool {
    match app.readonly.clone() {
        Some(reason) => {
            app.error(format!("read-only: {reason}"));
            false
        }
        None => true,
    }
}

fn needs_group(app: &mut App) -> bool {
    if app.viewing.is_some() {
        return true;
    }
    app.error("no group on view: pick one on the left and press Enter");
    false
}

fn switch_group(app: &mut App) -> Vec<Request> {
    let Some(group) = app.groups.get(app.group_cursor).map(|g| g.name.clone()) else {
        return Vec::new();
    };
    let changed = app.viewing.as_ref() != Some(&group);
    app.viewing = Some(group.clone());
    if changed {
        app.sources.clear();
        app.sources_loaded = false;
        app.order.clear();
        app.source_cursor = 0;
        app.marked.clear();
        app.detail = None;
    }
    app.focus = Pane::Sources;
    let mut out = vec![call(cmd::Use {
        group: Some(group),
        clear: false,
    })];
    out.extend(app.load_view());
    out
}

/// Move the cursor of the focused pane; a new source under the cursor loads its detail.
fn move_by(app: &mut App, delta: isize) -> Vec<Request> {
    let step = |at: usize, len: usize| -> usize {
        if len == 0 {
            return 0;
        }
        (at as isize)
            .saturating_add(delta)
            .clamp(0, len as isize - 1) as usize
    };
    match app.focus {
        Pane::Groups => {
            app.group_cursor = step(app.group_cursor, app.groups.len());
            Vec::new()
        }
        Pane::Queue => {
            app.job_cursor = step(app.job_cursor, app.jobs.len());
            Vec::new()
        }
        Pane::Sources => after_cursor_change(app, |app| {
            app.source_cursor = step(app.source_cursor, app.order.len());
        }),
    }
}

/// Run `change`; if another source is under the cursor afterwards, load its detail.
fn after_cursor_change(app: &mut App, change: impl FnOnce(&mut App)) -> Vec<Request> {
    let before = app.selected().map(|s| s.name.clone());
    change(app);
    let after = app.selected().map(|s| s.name.clone());
    if before == after {
        return Vec::new();
    }
    app.detail = None;
    app.load_detail().into_iter().collect()
}

fn filter(app: &mut App, key: KeyEvent) -> Vec<Request> {
    match key.code {
        KeyCode::Enter => Vec::new(),
        KeyCode::Esc => after_cursor_change(app, |app| {
            app.filter.clear();
            app.reorder();
        }),
        KeyCode::Backspace => {
            app.mode = Mode::Filter;
            after_cursor_change(app, |app| {
                app.filter.pop();
                app.reorder();
            })
        }
        KeyCode::Char(c) => {
            app.mode = Mode::Filter;
            after_cursor_change(app, |app| {
                app.filter.push(c);
                app.reorder();
            })
        }
        _ => {
            app.mode = Mode::Filter;
            Vec::new()
        }
    }
}

fn confirm_delete(
    app: &mut App,
    key: KeyEvent,
    group: String,
    targets: Vec<String>,
) -> Vec<Request> {
    if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) {
        return vec![call(cmd::Rm {
            targets,
            group: Some(group),
            force: false,
        })];
    }
    app.info("cancelled; nothing was deleted");
    Vec::new()
}

fn guard(
    app: &mut App,
    key: KeyEvent,
    group: String,
    targets: Vec<String>,
    jobs: Vec<i64>,
    message: String,
) -> Vec<Request> {
    match key.code {
        // Cancel the jobs; the delete is sent again once the cancel is answered.
        KeyCode::Char('c') => {
            let cancel = call(cmd::Cancel { jobs: jobs.clone() });
            app.mode = Mode::Guard {
                group,
                targets,
                jobs,
                message,
            };
            vec![cancel]
        }
        KeyCode::Char('f') => vec![call(cmd::Rm {
            targets,
            group: Some(group),
            force: true,
        })],
        _ => {
            app.info("nothing was deleted");
            Vec::new()
        }
    }
}

fn add(app: &mut App, key: KeyEvent, mut input: String, hint: Option<String>) -> Vec<Request> {
    match key.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Enter => {
            let path = input.trim();
            if path.is_empty() {
                return Vec::new();
            }
            let Some(group) = app.viewing.clone() else {
                return Vec::new();
            };
            app.info(format!("adding {path} to group '{group}'…"));
            return vec![Request::Add {
                group,
                files: vec![expand_home(path)],
            }];
        }
        KeyCode::Tab => {
            let (completed, choices) = complete(&input);
            input = completed;
            app.mode = Mode::Add {
                input,
                hint: choices,
            };
            return Vec::new();
        }
        KeyCode::Backspace => {
            input.pop();
        }
        KeyCode::Char(c) => input.push(c),
        _ => {
            app.mode = Mode::Add { input, hint };
            return Vec::new();
        }
    }
    app.mode = Mode::Add { input, hint: None };
    Vec::new()
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => Path::new(&home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Complete `input` as far as the file names under its folder agree; when several names
/// remain, also return them (the first few) as a hint.
pub fn complete(input: &str) -> (String, Option<String>) {
    let (dir_part, stem) = match input.rfind('/') {
        Some(at) => (&input[..=at], &input[at + 1..]),
        None => ("", input),
    };
    let dir = if dir_part.is_empty() {
        PathBuf::from(".")
    } else {
        expand_home(dir_part)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return (
            input.to_string(),
            Some(format!("no folder {}", dir.display())),
        );
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let hidden = name.starts_with('.') && !stem.starts_with('.');
            if hidden || !name.starts_with(stem) {
                return None;
            }
            let is_dir = e.file_type().ok()?.is_dir();
            Some(if is_dir { format!("{name}/") } else { name })
        })
        .collect();
    names.sort();
    match names.as_slice() {
        [] => (input.to_string(), Some("no match".into())),
        [one] => (format!("{dir_part}{one}"), None),
        many => {
            let mut common = many[0].clone();
            for name in &many[1..] {
                let same = common
                    .chars()
                    .zip(name.chars())
                    .take_while(|(a, b)| a == b)
                    .count();
                common = common.chars().take(same).collect();
            }
            let shown: Vec<&str> = many.iter().take(8).map(String::as_str).collect();
            let more = if many.len() > 8 { " …" } else { "" };
            (
                format!("{dir_part}{common}"),
                Some(format!("{}{more}", shown.join("  "))),
            )
        }
    }
}

fn search(
    app: &mut App,
    key: KeyEvent,
    mut input: String,
    results: Option<super::proto::SearchResult>,
) -> Vec<Request> {
    let mut out = Vec::new();
    match key.code {
        KeyCode::Esc => return out,
        KeyCode::Enter => {
            if input.trim().is_empty() {
                app.error("give the text to search for");
            } else {
                out.push(call(cmd::Search {
                    text: input.clone(),
                    group: app.viewing.clone(),
                    k: Some(SEARCH_K),
                }));
            }
        }
        KeyCode::Backspace => {
            input.pop();
        }
        KeyCode::Char(c) => input.push(c),
        _ => {}
    }
    app.mode = Mode::Search { input, results };
    out
}

fn prefs(app: &mut App, key: KeyEvent, mut edit: Box<PrefsEdit>) -> Vec<Request> {
    let mut out = Vec::new();
    let known = edit
        .saved
        .as_ref()
        .map(|p| p.known_columns.clone())
        .unwrap_or_default();
    // Edits are not sent here: the loop asks for their preview once they rest (`debounce`).
    if edit.editing_template {
        match key.code {
            KeyCode::Enter | KeyCode::Esc => edit.editing_template = false,
            // Backspace on an empty template changes nothing, so it is no edit.
            KeyCode::Backspace => edit.edits += u64::from(edit.template.pop().is_some()),
            KeyCode::Char(c) => {
                edit.template.push(c);
                edit.edits += 1;
            }
            _ => {}
        }
        app.mode = Mode::Prefs(edit);
        return out;
    }
    match key.code {
        KeyCode::Esc | KeyCode::Char('q') => return out,
        KeyCode::Down | KeyCode::Char('j') => {
            edit.cursor = (edit.cursor + 1).min(known.len().saturating_sub(1));
        }
        KeyCode::Up | KeyCode::Char('k') => edit.cursor = edit.cursor.saturating_sub(1),
        KeyCode::Char(' ') => {
            if let Some(column) = known.get(edit.cursor) {
                toggle(&mut edit.columns, column, &known);
                edit.edits += 1;
            }
        }
        KeyCode::Char('x') => {
            if let Some(column) = known.get(edit.cursor) {
                toggle(&mut edit.context, column, &known);
                edit.edits += 1;
            }
        }
        KeyCode::Char('e') => edit.editing_template = true,
        KeyCode::Char('v') => {
            // Preview the next source of the group.
            let names: Vec<String> = app
                .order
                .iter()
                .map(|&i| app.sources[i].name.clone())
                .collect();
            let at = edit
                .preview_source
                .as_ref()
                .and_then(|s| names.iter().position(|n| n == s))
                .map_or(0, |i| (i + 1) % names.len().max(1));
            edit.preview_source = names.get(at).cloned();
            edit.preview = None;
            edit.preview_error = None;
            out.extend(edit.ask_preview());
        }
        // A read-only caller gets the reason in the status line, and nothing is sent.
        KeyCode::Char('w') | KeyCode::Char('W') if may_change(app) => {
            out.push(call(cmd::PrefsSet {
                group: Some(edit.group.clone()),
                columns: Some(edit.columns.clone()),
                context: Some(edit.context.clone()),
                template: Some(edit.template.clone()),
                sheet: None,
                clear: false,
                reembed: key.code == KeyCode::Char('W'),
            }));
        }
        _ => {}
    }
    app.mode = Mode::Prefs(edit);
    out
}

/// Add or remove `column`, keeping the order of `known`.
fn toggle(list: &mut Vec<String>, column: &str, known: &[String]) {
    if let Some(at) = list.iter().position(|c| c == column) {
        list.remove(at);
        return;
    }
    list.push(column.to_string());
    list.sort_by_key(|c| known.iter().position(|k| k == c).unwrap_or(usize::MAX));
}
