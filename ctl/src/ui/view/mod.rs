//! Drawing the [`App`] into a ratatui frame: the layout, the colours (none with `NO_COLOR`),
//! the header, the status line and the footer. Each pane has its own file. Drawing reads the
//! state and never changes it, so a frame is a pure function of the state and the size.

mod detail;
mod dialogs;
mod groups;
mod queue;
mod sources;

use super::app::{App, Conn, Mode, Pane};
use super::keys::KEYS;
use jiff::tz::TimeZone;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Wrap};

/// What drawing needs besides the state.
pub struct Ctx {
    pub theme: Theme,
    /// Times are shown in this zone (the system's; tests use UTC).
    pub tz: TimeZone,
    /// The socket, for the daemon-not-running guidance.
    pub socket: String,
}

/// Styles, all plain when colour is off.
#[derive(Debug, Clone, Copy)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    /// Colour unless `NO_COLOR` is set to anything non-empty (no-color.org).
    pub fn from_env() -> Theme {
        Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        }
    }

    fn fg(self, color: Color) -> Style {
        if self.color {
            Style::default().fg(color)
        } else {
            Style::default()
        }
    }

    pub fn title(self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }

    /// The row under the cursor: reversed, which needs no colour.
    pub fn cursor(self, focused: bool) -> Style {
        if focused {
            Style::default().add_modifier(Modifier::REVERSED)
        } else {
            Style::default().add_modifier(Modifier::BOLD)
        }
    }

    pub fn error(self) -> Style {
        self.fg(Color::Red).add_modifier(Modifier::BOLD)
    }

    pub fn dim(self) -> Style {
        if self.color {
            Style::default().fg(Color::DarkGray)
        } else {
            Style::default()
        }
    }

    pub fn status(self, status: &str) -> Style {
        match status {
            "embedded" | "completed" => self.fg(Color::Green),
            "invalid" | "failed" => self.fg(Color::Red),
            "embedding" | "processing" => self.fg(Color::Cyan),
            "queued" | "pending" | "validating" => self.fg(Color::Yellow),
            _ => Style::default(),
        }
    }

    pub fn border(self, focused: bool) -> Style {
        if focused {
            self.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    }
}

/// A bordered block titled `title`, highlighted when focused.
pub fn block(title: String, focused: bool, theme: Theme) -> Block<'static> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(Span::styled(title, theme.title()))
}

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx) {
    let [header, body, status, footer] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(5),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header_line(app)), header);
    match &app.conn {
        Conn::Up => body_panes(frame, app, ctx, body),
        Conn::Connecting => frame.render_widget(
            Paragraph::new(format!("Connecting to ingestd at {}…", ctx.socket)).block(block(
                " ingestd ".into(),
                false,
                ctx.theme,
            )),
            body,
        ),
        Conn::Down(why) => frame.render_widget(
            Paragraph::new(down_text(why, &ctx.socket))
                .wrap(Wrap { trim: false })
                .block(block(" ingestd is not reachable ".into(), false, ctx.theme)),
            body,
        ),
    }
    frame.render_widget(status_line(app, ctx.theme), status);
    frame.render_widget(footer_line(app, ctx.theme), footer);
    dialogs::draw(frame, app, ctx, body);
}

fn body_panes(frame: &mut Frame, app: &App, ctx: &Ctx, area: Rect) {
    // Narrow terminals give the groups a third; wide ones a fixed column.
    let left = (area.width / 4).clamp(16, 28);
    let [groups_area, main] =
        Layout::horizontal([Constraint::Length(left), Constraint::Min(20)]).areas(area);
    groups::draw(frame, app, ctx, groups_area);
    let [list, bottom] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(main);
    sources::draw(frame, app, ctx, list);
    if app.show_queue {
        queue::draw(frame, app, ctx, bottom);
    } else {
        detail::draw(frame, app, ctx, bottom);
    }
}

fn header_line(app: &App) -> Line<'static> {
    let mut parts = vec![Span::styled(
        " ingestctl ui ",
        Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
    )];
    let group = match &app.viewing {
        Some(g) if app.current.as_ref() == Some(g) => format!(" group {g} (current)"),
        Some(g) => format!(" group {g}"),
        None => " no group".to_string(),
    };
    parts.push(Span::raw(group));
    if let Some(status) = &app.status {
        let q = &status.queue;
        parts.push(Span::raw(format!(
            " │ ingestd {} │ queue {} running/{} waiting/{} failed, cap {}",
            status.daemon_version, q.processing, q.queued, q.failed, q.concurrency
        )));
    }
    Line::from(parts)
}

fn down_text(why: &str, socket: &str) -> String {
    format!(
        "ingestd is not running, or this terminal cannot reach it:\n  {why}\n\n\
         Start it with `systemctl start ingestd`, or in the foreground with\n  \
         ingestd --config /etc/ingestd/ingestd.toml\n\
         If it listens elsewhere, pass --socket PATH (now {socket}).\n\n\
         This screen reconnects by itself when the daemon is back; q quits."
    )
}

fn status_line(app: &App, theme: Theme) -> Paragraph<'static> {
    match &app.message {
        Some(m) if m.error => Paragraph::new(Span::styled(format!(" {}", m.text), theme.error())),
        Some(m) => Paragraph::new(format!(" {}", m.text)),
        None => {
            let marked = if app.marked.is_empty() {
                String::new()
            } else {
                format!(" {} marked │", app.marked.len())
            };
            let filter = if app.filter.is_empty() && app.mode != Mode::Filter {
                String::new()
            } else {
                format!(" filter: {}│", app.filter)
            };
            let readonly = if app.readonly.is_some() {
                " read-only │"
            } else {
                ""
            };
            Paragraph::new(Span::styled(
                format!(
                    "{marked}{filter}{readonly} sort: {} │ {}",
                    app.sort.label(),
                    focus_name(app.focus)
                ),
                theme.dim(),
            ))
        }
    }
}

fn focus_name(pane: Pane) -> &'static str {
    match pane {
        Pane::Groups => "groups",
        Pane::Sources => "sources",
        Pane::Queue => "queue",
    }
}

/// The keys, shortest first so the essentials fit 80 columns; state-changing keys are dimmed
/// for a caller who may not use them.
fn footer_line(app: &App, theme: Theme) -> Line<'static> {
    let hint = match app.mode {
        Mode::Filter => Some(" type to filter │ Enter keep │ Esc clear"),
        Mode::Help => Some(" any key closes the help"),
        _ => None,
    };
    if let Some(hint) = hint {
        return Line::from(hint);
    }
    let mut spans = Vec::new();
    for (key, what, changes) in KEYS.iter().filter(|k| !k.0.contains("Tab")) {
        let disabled = *changes && app.readonly.is_some();
        let style = if disabled {
            theme.dim().add_modifier(Modifier::CROSSED_OUT)
        } else {
            Style::default()
        };
        spans.push(Span::styled(
            format!(" {key}"),
            style.add_modifier(Modifier::BOLD),
        ));
        spans.push(Span::styled(format!(" {what}"), style));
    }
    Line::from(spans)
}
