//! The state of `ingestctl ui`: what the daemon last told us (status, groups, the sources of the
//! group on view, the selected source's detail, the queue) and what the person is doing (focus,
//! cursor, sort, filter, marks, an open dialog).
//!
//! It changes only through [`App::on_reply`], [`App::on_event`] and the key handling in
//! `keys`; each returns the requests to send, so the whole UI can be tested without a
//! terminal or a daemon. It never does I/O itself.

use super::proto::{
    Command, Event, EventKind, GroupInfo, JobInfo, JobState, PrefsDraft, PrefsInfo, RmOutcome,
    SearchResult, SourceDetail, StatusInfo, cmd,
};
use super::reply::{Failure, Reply, SourceRow};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What the UI asks the worker to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// One protocol request; its answer comes back to [`App::on_reply`].
    Call(Command),
    /// Copy local files into a group's drop folder, as `ingestctl add` does.
    Add { group: String, files: Vec<PathBuf> },
}

/// The connection to the daemon, as the events stream sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Conn {
    Connecting,
    Up,
    /// Not reachable; the reason, and the UI keeps trying.
    Down(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Groups,
    Sources,
    Queue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    Name,
    Updated,
    Status,
}

impl Sort {
    pub fn next(self) -> Sort {
        match self {
            Sort::Name => Sort::Updated,
            Sort::Updated => Sort::Status,
            Sort::Status => Sort::Name,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Updated => "updated",
            Sort::Status => "status",
        }
    }
}

/// A dialog or input that takes the keys while it is open.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Normal,
    /// Typing into the filter box.
    Filter,
    Help,
    /// Asked before deleting `targets` of `group`.
    ConfirmDelete {
        group: String,
        targets: Vec<String>,
    },
    /// A delete was refused because jobs are embedding the targets: cancel them, or force.
    Guard {
        group: String,
        targets: Vec<String>,
        jobs: Vec<i64>,
        message: String,
    },
    /// The path prompt of `a`.
    Add {
        input: String,
        hint: Option<String>,
    },
    /// Typing a search; `results` once answered.
    Search {
        input: String,
        results: Option<SearchResult>,
    },
    Prefs(Box<PrefsEdit>),
}

/// The preferences editor: the saved preferences, the edits and the live preview.
///
/// The preview follows the edits: each edit counts in `edits`, and once they rest the loop
/// asks the daemon to render the first rows with the edited (unsaved) preferences. Only the
/// answer to the request sent last is shown, so a slow answer to an older edit never
/// replaces a newer one.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefsEdit {
    pub group: String,
    pub saved: Option<PrefsInfo>,
    /// Columns picked with checkboxes (`columns`); empty means every column.
    pub columns: Vec<String>,
    pub context: Vec<String>,
    pub template: String,
    /// The row of `known_columns` under the cursor.
    pub cursor: usize,
    /// Editing the template text rather than moving over columns.
    pub editing_template: bool,
    /// The source whose first rows are previewed.
    pub preview_source: Option<String>,
    pub preview: Option<Vec<String>>,
    /// What `preview` was rendered with (`None`: the saved preferences).
    pub preview_of: Option<PrefsDraft>,
    /// Why the last preview could not be rendered (a template that does not parse).
    pub preview_error: Option<String>,
    /// The preview asked for last: the source and the preferences sent.
    pub asked: Option<(String, Option<PrefsDraft>)>,
    /// Edits so far (ticks, context columns, template keys), for the debounce.
    pub edits: u64,
}

impl PrefsEdit {
    pub fn new(group: String, preview_source: Option<String>) -> PrefsEdit {
        PrefsEdit {
            group,
            saved: None,
            columns: Vec::new(),
            context: Vec::new(),
            template: String::new(),
            cursor: 0,
            editing_template: false,
            preview_source,
            preview: None,
            preview_of: None,
            preview_error: None,
            asked: None,
            edits: 0,
        }
    }

    /// The preferences as edited, in the shape a preview request carries.
    pub fn draft(&self) -> PrefsDraft {
        PrefsDraft {
            columns: self.columns.clone(),
            context: self.context.clone(),
            template: Some(self.template.clone()),
        }
    }

    /// Whether the edits differ from the saved preferences.
    pub fn unsaved(&self) -> bool {
        self.saved.as_ref().is_some_and(|s| {
            s.columns != self.columns
                || s.context != self.context
                || s.template.clone().unwrap_or_default() != self.template
        })
    }

    /// Whether the preview shown is that of the edits as they are now.
    pub fn preview_current(&self) -> bool {
        match &self.preview_of {
            Some(draft) => *draft == self.draft(),
            None => !self.unsaved(),
        }
    }

    /// Ask for the preview of the edits as they are now (the saved preferences until they are
    /// loaded), and remember it as the one whose answer counts.
    pub fn ask_preview(&mut self) -> Option<Request> {
        let source = self.preview_source.clone()?;
        let draft = self.saved.is_some().then(|| self.draft());
        self.asked = Some((source.clone(), draft.clone()));
        Some(call(cmd::Show {
            source,
            group: Some(self.group.clone()),
            preview: Some(super::keys::PREVIEW_ROWS),
            prefs: draft,
        }))
    }
}

/// A line for the status bar.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub text: String,
    pub error: bool,
}

/// Everything the screen shows.
#[derive(Debug, Clone, PartialEq)]
pub struct App {
    pub conn: Conn,
    pub status: Option<StatusInfo>,
    pub groups: Vec<GroupInfo>,
    pub group_cursor: usize,
    /// The group whose sources are shown: `-g`, else the caller's current group.
    pub viewing: Option<String>,
    /// The caller's current group as the daemon last said.
    pub current: Option<String>,
    /// What the list shows of each source; the detail pane has the rest of the one selected.
    pub sources: Vec<SourceRow>,
    /// Whether `sources` has been answered for `viewing` (not just empty because unknown).
    pub sources_loaded: bool,
    /// Indices into `sources`, filtered and sorted: what the list shows.
    pub order: Vec<usize>,
    pub source_cursor: usize,
    pub sort: Sort,
    pub filter: String,
    pub marked: BTreeSet<String>,
    pub focus: Pane,
    pub detail: Option<SourceDetail>,
    pub show_queue: bool,
    pub jobs: Vec<JobInfo>,
    pub job_cursor: usize,
    pub mode: Mode,
    pub message: Option<Message>,
    /// Why this caller may not change state, when the daemon says so.
    pub readonly: Option<String>,
    pub quit: bool,
}

/// How many jobs the queue pane asks for.
pub const QUEUE_LIMIT: u32 = 200;

impl App {
    pub fn new(group: Option<String>) -> App {
        App {
            conn: Conn::Connecting,
            status: None,
            groups: Vec::new(),
            group_cursor: 0,
            viewing: group,
            current: None,
            sources: Vec::new(),
            sources_loaded: false,
            order: Vec::new(),
            source_cursor: 0,
            sort: Sort::Name,
            filter: String::new(),
            marked: BTreeSet::new(),
            focus: Pane::Sources,
            detail: None,
            show_queue: false,
            jobs: Vec::new(),
            job_cursor: 0,
            mode: Mode::Normal,
            message: None,
            readonly: None,
            quit: false,
        }
    }

    /// What to load after (re)connecting: everything on screen.
    pub fn on_connected(&mut self) -> Vec<Request> {
        self.conn = Conn::Up;
        let mut out = vec![
            call(cmd::Status {}),
            call(cmd::Groups {}),
            call(cmd::Use {
                group: None,
                clear: false,
            }),
        ];
        out.extend(self.load_view());
        out
    }

    pub fn on_disconnected(&mut self, why: String) {
        self.conn = Conn::Down(why);
    }

    /// The requests that refill the sources, the detail and the queue of the group on view.
    pub fn load_view(&self) -> Vec<Request> {
        let mut out = Vec::new();
        if let Some(group) = &self.viewing {
            out.push(call(cmd::Ls {
                group: Some(group.clone()),
                all: false,
            }));
        }
        out.extend(self.load_detail());
        if self.show_queue {
            out.push(self.load_jobs());
        }
        out
    }

    pub fn load_jobs(&self) -> Request {
        call(cmd::Jobs {
            group: None,
            all: true,
            state: None,
            ids: Vec::new(),
            limit: Some(QUEUE_LIMIT),
            before: None,
        })
    }

    pub fn load_detail(&self) -> Option<Request> {
        let source = self.selected()?;
        Some(call(cmd::Show {
            source: source.name.clone(),
            group: self.viewing.clone(),
            preview: None,
            prefs: None,
        }))
    }

    /// The edit counter of an open preferences editor, for the preview's debounce.
    pub fn preview_edits(&self) -> Option<u64> {
        match &self.mode {
            Mode::Prefs(edit) => Some(edit.edits),
            _ => None,
        }
    }

    /// The preview request of an open preferences editor: its edits have rested.
    pub fn ask_preview(&mut self) -> Option<Request> {
        match &mut self.mode {
            Mode::Prefs(edit) => edit.ask_preview(),
            _ => None,
        }
    }

    /// The source under the cursor.
    pub fn selected(&self) -> Option<&SourceRow> {
        self.order
            .get(self.source_cursor)
            .and_then(|&i| self.sources.get(i))
    }

    /// The marked sources, else the one under the cursor.
    pub fn selection(&self) -> Vec<String> {
        if !self.marked.is_empty() {
            return self.marked.iter().cloned().collect();
        }
        self.selected()
            .map(|s| s.name.clone())
            .into_iter()
            .collect()
    }

    /// The job under the queue cursor.
    pub fn selected_job(&self) -> Option<&JobInfo> {
        self.jobs.get(self.job_cursor)
    }

    /// Whether a job is running, so progress bars may move without events (the redraw timer).
    pub fn jobs_running(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.queue.processing > 0 || s.queue.queued > 0)
    }

    pub fn info(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: false,
        });
    }

    pub fn error(&mut self, text: impl Into<String>) {
        self.message = Some(Message {
            text: text.into(),
            error: true,
        });
    }

    /// Recompute [`App::order`] after the sources, the sort or the filter changed, keeping the
    /// same source under the cursor when it is still listed.
    pub fn reorder(&mut self) {
        let keep = self.selected().map(|s| s.name.clone());
        let needle = self.filter.to_lowercase();
        let mut order: Vec<usize> = (0..self.sources.len())
            .filter(|&i| needle.is_empty() || self.sources[i].name.to_lowercase().contains(&needle))
            .collect();
        let sources = &self.sources;
        match self.sort {
            Sort::Name => order.sort_by(|&a, &b| sources[a].name.cmp(&sources[b].name)),
            // Newest first: what just changed is what one looks for.
            Sort::Updated => order.sort_by(|&a, &b| {
                sources[b]
                    .updated
                    .cmp(&sources[a].updated)
                    .then_with(|| sources[a].name.cmp(&sources[b].name))
            }),
            Sort::Status => order.sort_by(|&a, &b| {
                sources[a]
                    .status
                    .cmp(&sources[b].status)
                    .then_with(|| sources[a].name.cmp(&sources[b].name))
            }),
        }
        self.order = order;
        self.source_cursor = keep
            .and_then(|name| {
                self.order
                    .iter()
                    .position(|&i| self.sources[i].name == name)
            })
            .unwrap_or(self.source_cursor.min(self.order.len().saturating_sub(1)));
    }

    /// An answer from the daemon to `command`: its typed reply, or why there is none.
    pub fn on_reply(&mut self, command: &Command, result: Result<Reply, Failure>) -> Vec<Request> {
        match result {
            Ok(reply) => self.apply(command, reply),
            // Whatever was asked, a garbled answer is worth saying.
            Err(Failure::Unreadable(message)) => {
                self.error(message);
                Vec::new()
            }
            Err(Failure::Refused(message)) => self.on_failure(command, message),
        }
    }

    fn on_failure(&mut self, command: &Command, message: String) -> Vec<Request> {
        match command {
            // A preview that cannot be rendered (a template being typed) says why in its
            // place, if it is still the one wanted.
            Command::Show(cmd::Show {
                source,
                preview: Some(_),
                prefs,
                ..
            }) => {
                if let Mode::Prefs(edit) = &mut self.mode
                    && edit.asked.as_ref() == Some(&(source.clone(), prefs.clone()))
                {
                    edit.preview = None;
                    edit.preview_of = prefs.clone();
                    edit.preview_error = Some(message);
                }
            }
            // The viewed group is gone (deleted folder, a typo in -g): say so and show none.
            Command::Ls(cmd::Ls { group, .. }) if *group == self.viewing => {
                self.sources.clear();
                self.sources_loaded = true;
                self.reorder();
                self.error(message);
            }
            // A detail of a source that just went away is not worth a red line.
            Command::Show(_) => self.detail = None,
            Command::Status(cmd::Status {}) | Command::Groups(cmd::Groups {}) => {}
            Command::Search(_) => {
                if let Mode::Search { results, .. } = &mut self.mode {
                    *results = None;
                }
                self.error(message);
            }
            _ => self.error(message),
        }
        Vec::new()
    }

    fn apply(&mut self, command: &Command, reply: Reply) -> Vec<Request> {
        let mut out = Vec::new();
        match reply {
            Reply::Status(status) => {
                self.readonly = status.read_only.clone();
                self.status = Some(*status);
            }
            Reply::Groups(groups) => {
                let at = self.groups.get(self.group_cursor).map(|g| g.name.clone());
                self.groups = groups;
                if let Some(current) = self.groups.iter().find(|g| g.current) {
                    self.current = Some(current.name.clone());
                }
                self.group_cursor = at
                    .or_else(|| self.viewing.clone())
                    .and_then(|name| self.groups.iter().position(|g| g.name == name))
                    .unwrap_or(0);
            }
            Reply::Use(info) => {
                self.current = info.group.clone();
                for g in &mut self.groups {
                    g.current = Some(&g.name) == info.group.as_ref();
                }
                if matches!(command, Command::Use(cmd::Use { group: Some(_), .. })) {
                    self.info(format!(
                        "now using group '{}' (as `ingestctl use` does)",
                        info.group.as_deref().unwrap_or("")
                    ));
                }
                // The first answer decides what is on view when no -g was given.
                if self.viewing.is_none() && info.group.is_some() {
                    self.viewing = info.group;
                    if let Some(at) = self
                        .groups
                        .iter()
                        .position(|g| Some(&g.name) == self.viewing.as_ref())
                    {
                        self.group_cursor = at;
                    }
                    out.extend(self.load_view());
                }
            }
            Reply::Sources(sources) => {
                // An answer for a group no longer on view is stale.
                if !matches!(command, Command::Ls(cmd::Ls { group, .. }) if *group == self.viewing)
                {
                    return out;
                }
                let before = self.selected().map(|s| s.name.clone());
                self.sources = sources;
                self.sources_loaded = true;
                let names: BTreeSet<&str> = self.sources.iter().map(|s| s.name.as_str()).collect();
                self.marked.retain(|m| names.contains(m.as_str()));
                self.reorder();
                let after = self.selected().map(|s| s.name.clone());
                if after.is_none() {
                    self.detail = None;
                } else if after != before || self.detail.is_none() {
                    out.extend(self.load_detail());
                }
            }
            Reply::Detail(detail) => {
                let Command::Show(cmd::Show {
                    source,
                    group,
                    preview,
                    prefs,
                }) = command
                else {
                    return out;
                };
                if preview.is_some() {
                    // Only the answer to the preview asked last counts: an older one is stale.
                    if let Mode::Prefs(edit) = &mut self.mode
                        && edit.asked.as_ref() == Some(&(source.clone(), prefs.clone()))
                    {
                        edit.preview = detail.preview;
                        edit.preview_of = prefs.clone();
                        edit.preview_error = None;
                    }
                    return out;
                }
                let wanted =
                    self.selected().is_some_and(|s| &s.name == source) && *group == self.viewing;
                if wanted {
                    self.detail = Some(*detail);
                }
            }
            Reply::Jobs(mut jobs) => {
                // Running and waiting work first, then the newest finished.
                jobs.sort_by_key(|j| (job_rank(j.state), -j.id));
                let at = self.selected_job().map(|j| j.id);
                self.jobs = jobs;
                self.job_cursor = at
                    .and_then(|id| self.jobs.iter().position(|j| j.id == id))
                    .unwrap_or(self.job_cursor.min(self.jobs.len().saturating_sub(1)));
            }
            Reply::Prefs(prefs) => {
                if let Mode::Prefs(edit) = &mut self.mode
                    && edit.group == prefs.group
                {
                    edit.columns = prefs.columns.clone();
                    edit.context = prefs.context.clone();
                    edit.template = prefs.template.clone().unwrap_or_default();
                    edit.saved = Some(*prefs);
                }
            }
            Reply::PrefsSaved(saved) => {
                let mut text = format!("saved the preferences of group '{}'", saved.prefs.group);
                if matches!(
                    command,
                    Command::PrefsSet(cmd::PrefsSet { reembed: true, .. })
                ) {
                    text.push_str(&format!("; queued {} re-embeds", saved.jobs.len()));
                }
                for warning in &saved.warnings {
                    text.push_str("; ");
                    text.push_str(warning);
                }
                if let Mode::Prefs(edit) = &mut self.mode {
                    // The preview already shows the edits, which are now the saved ones.
                    edit.saved = Some(saved.prefs);
                }
                self.info(text);
            }
            Reply::Removed(outcomes) => {
                if let Command::Rm(cmd::Rm { group, targets, .. }) = command {
                    self.on_rm(group.clone().unwrap_or_default(), targets, outcomes);
                }
                out.extend(self.load_view());
            }
            Reply::Queued(outcomes) => {
                let verb = match command {
                    Command::Reembed(_) => "re-embed",
                    Command::Retry(_) => "retry",
                    _ => "cancel",
                };
                self.summarize(verb, outcomes.iter().map(|o| (o.ok, o.message.as_str())));
                if matches!(command, Command::Cancel(_)) {
                    out.extend(self.after_cancel());
                }
                self.marked.clear();
                out.extend(self.load_view());
            }
            Reply::Search(result) => {
                if let Mode::Search { results, .. } = &mut self.mode {
                    *results = Some(*result);
                }
            }
            Reply::Other => {}
        }
        out
    }

    /// One status line for per-item outcomes: the message when there is one, else counts and
    /// the first failure.
    fn summarize<'a>(&mut self, verb: &str, outcomes: impl Iterator<Item = (bool, &'a str)>) {
        let outcomes: Vec<(bool, &str)> = outcomes.collect();
        let failed: Vec<&str> = outcomes.iter().filter(|o| !o.0).map(|o| o.1).collect();
        match (outcomes.as_slice(), failed.first()) {
            ([], _) => self.info(format!("{verb}: nothing to do")),
            ([(ok, message)], _) => {
                let message = message.to_string();
                if *ok {
                    self.info(message)
                } else {
                    self.error(message)
                }
            }
            (_, None) => self.info(format!("{verb}: {} done", outcomes.len())),
            (_, Some(first)) => {
                let first = first.to_string();
                self.error(format!(
                    "{verb}: {} of {} failed; {first}",
                    failed.len(),
                    outcomes.len()
                ))
            }
        }
    }

    fn on_rm(&mut self, group: String, targets: &[String], outcomes: Vec<RmOutcome>) {
        let guarded: Vec<&RmOutcome> = outcomes
            .iter()
            .filter(|o| {
                !o.ok
                    && o.job
                        .as_ref()
                        .is_some_and(|j| j.state == JobState::Processing)
            })
            .collect();
        if let Some(first) = guarded.first() {
            // The embed-in-progress guard: the daemon's own message, and the ways out.
            let jobs = guarded.iter().filter_map(|o| o.job.as_ref().map(|j| j.id));
            self.mode = Mode::Guard {
                group,
                targets: guarded.iter().map(|o| o.target.clone()).collect(),
                jobs: jobs.collect(),
                message: first.message.clone(),
            };
        }
        self.marked.retain(|m| !targets.contains(m));
        self.summarize(
            "delete",
            outcomes.iter().map(|o| (o.ok, o.message.as_str())),
        );
    }

    /// After cancelling from the guard, the delete that was refused is sent again.
    fn after_cancel(&mut self) -> Vec<Request> {
        if let Mode::Guard { group, targets, .. } = &self.mode {
            let retry = call(cmd::Rm {
                targets: targets.clone(),
                group: Some(group.clone()),
                force: false,
            });
            self.mode = Mode::Normal;
            return vec![retry];
        }
        Vec::new()
    }

    /// A live event: patch what can be patched in place, and ask again for what it changed.
    pub fn on_event(&mut self, event: &Event) -> Vec<Request> {
        let mut out = Vec::new();
        if event.kind == EventKind::JobProgress {
            // Many per second while a job runs: moved in place, never refetched.
            if let (Some(id), Some(progress)) = (event.job, event.progress) {
                for job in self.jobs.iter_mut().filter(|j| j.id == id) {
                    job.progress = progress;
                }
                if let Some(detail) = &mut self.detail {
                    for job in detail.jobs.iter_mut().filter(|j| j.id == id) {
                        job.progress = progress;
                    }
                }
            }
            return out;
        }
        out.push(call(cmd::Groups {}));
        out.push(call(cmd::Status {}));
        if event.group.is_some() && event.group == self.viewing {
            out.push(call(cmd::Ls {
                group: self.viewing.clone(),
                all: false,
            }));
            if self.selected().map(|s| &s.name) == event.source.as_ref() {
                out.extend(self.load_detail());
            }
        }
        if self.show_queue && event.job.is_some() {
            out.push(self.load_jobs());
        }
        out
    }
}

pub fn call(command: impl Into<Command>) -> Request {
    Request::Call(command.into())
}

fn job_rank(state: JobState) -> u8 {
    match state {
        JobState::Processing => 0,
        JobState::Queued => 1,
        JobState::Failed => 2,
        JobState::Cancelled => 3,
        JobState::Completed => 4,
    }
}
