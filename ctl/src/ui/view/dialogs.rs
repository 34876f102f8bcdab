//! What opens over the panes: help, the delete confirmation, the embed-in-progress guard, the
//! add prompt, search and the preferences editor. Each is a centred box over the body.

use super::{Ctx, block};
use crate::ui::app::{App, Mode, PrefsEdit};
use crate::ui::keys::KEYS;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Clear, Paragraph, Wrap};

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx, body: Rect) {
    match &app.mode {
        Mode::Normal | Mode::Filter => {}
        Mode::Help => help(frame, app, ctx, body),
        Mode::ConfirmDelete { group, targets } => {
            let text = format!(
                "{}\n\nThis deletes stored files and cannot be undone.\ny deletes, any other key keeps them.",
                crate::commands::rm_question(targets, group)
            );
            popup(frame, ctx, body, " Delete ", text, 60, 8);
        }
        Mode::Guard { jobs, message, .. } => {
            let ids: Vec<String> = jobs.iter().map(i64::to_string).collect();
            let text = format!(
                "{message}\n\nc  cancel job {} and then delete\nf  delete with force (cancels it first)\nEsc  keep the source",
                ids.join(", ")
            );
            popup(frame, ctx, body, " Being embedded ", text, 70, 10);
        }
        Mode::Add { input, hint } => {
            let group = app.viewing.as_deref().unwrap_or("");
            let mut text = format!(
                "Add a file to group '{group}' (Tab completes, Enter adds, Esc closes)\n\n> {input}▏"
            );
            if let Some(hint) = hint {
                text.push_str(&format!("\n\n{hint}"));
            }
            popup(frame, ctx, body, " Add ", text, 70, 9);
        }
        Mode::Search { input, results } => search(frame, app, ctx, body, input, results.as_ref()),
        Mode::Prefs(edit) => prefs(frame, ctx, body, edit),
    }
}

fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn popup(frame: &mut Frame, ctx: &Ctx, body: Rect, title: &str, text: String, w: u16, h: u16) {
    let area = centered(body, w, h);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(text).wrap(Wrap { trim: false }).block(block(
            title.to_string(),
            true,
            ctx.theme,
        )),
        area,
    );
}

fn help(frame: &mut Frame, app: &App, ctx: &Ctx, body: Rect) {
    let mut lines = Vec::new();
    for (key, what, changes) in KEYS {
        let note = if *changes && app.readonly.is_some() {
            "  (disabled: read-only)"
        } else {
            ""
        };
        lines.push(Line::from(format!("{key:>8}  {what}{note}")));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(
        "Filter: / then type; Enter keeps it, Esc clears it.",
    ));
    lines.push(Line::from(
        "Queue pane: t retries, c cancels the job under the cursor.",
    ));
    if let Some(reason) = &app.readonly {
        lines.push(Line::from(Span::styled(
            format!("Read-only: {reason}"),
            ctx.theme.error(),
        )));
    }
    let height = lines.len() as u16 + 2;
    let area = centered(body, 64, height);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(" Keys ".into(), true, ctx.theme)),
        area,
    );
}

fn search(
    frame: &mut Frame,
    app: &App,
    ctx: &Ctx,
    body: Rect,
    input: &str,
    results: Option<&crate::ui::proto::SearchResult>,
) {
    let area = centered(body, body.width.saturating_sub(4), body.height);
    frame.render_widget(Clear, area);
    let group = app.viewing.as_deref().unwrap_or("");
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = vec![
        Line::from(format!(
            "Search group '{group}' (Enter searches, Esc closes)"
        )),
        Line::from(format!("> {input}▏")),
        Line::from(""),
    ];
    match results {
        None => {}
        Some(r) if r.hits.is_empty() => lines.push(Line::from(format!(
            "No rows: {} compared. Sources without embeddings are not searched.",
            r.searched
        ))),
        Some(r) => {
            lines.push(Line::from(Span::styled(
                format!("{} best of {} rows, {}", r.hits.len(), r.searched, r.model),
                ctx.theme.dim(),
            )));
            for hit in &r.hits {
                let head = format!(
                    "{:>6.3}  {} {} row {}  ",
                    hit.score, hit.source, hit.version, hit.row
                );
                let room = width.saturating_sub(head.chars().count());
                lines.push(Line::from(vec![
                    Span::styled(head, ctx.theme.title()),
                    Span::raw(crate::output::truncated(&hit.text, room)),
                ]));
            }
            for skipped in &r.skipped {
                lines.push(Line::from(Span::styled(skipped.clone(), ctx.theme.dim())));
            }
        }
    }
    frame.render_widget(
        Paragraph::new(lines).block(block(" Search ".into(), true, ctx.theme)),
        area,
    );
}

fn prefs(frame: &mut Frame, ctx: &Ctx, body: Rect, edit: &PrefsEdit) {
    let area = centered(body, body.width.saturating_sub(2), body.height);
    frame.render_widget(Clear, area);
    let outer = block(
        format!(" Preferences of '{}' ", edit.group),
        true,
        ctx.theme,
    );
    let inner = outer.inner(area);
    frame.render_widget(outer, area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(inner);
    let mut lines = vec![Line::from(Span::styled(
        "emb ctx column",
        ctx.theme.title(),
    ))];
    match &edit.saved {
        None => lines.push(Line::from("loading…")),
        Some(saved) if saved.known_columns.is_empty() => {
            lines.push(Line::from("no columns known yet: add a file first"))
        }
        Some(saved) => {
            for (i, column) in saved.known_columns.iter().enumerate() {
                let emb = if edit.columns.contains(column) {
                    "[x]"
                } else {
                    "[ ]"
                };
                let cx = if edit.context.contains(column) {
                    "[x]"
                } else {
                    "[ ]"
                };
                let line = format!("{emb} {cx} {column}");
                let style = if i == edit.cursor && !edit.editing_template {
                    ctx.theme.cursor(true)
                } else {
                    ratatui::style::Style::default()
                };
                lines.push(Line::from(Span::styled(line, style)));
            }
        }
    }
    lines.push(Line::from(""));
    if edit.columns.is_empty() {
        lines.push(Line::from("no column ticked: every column is embedded"));
    }
    lines.push(Line::from("space emb  x context  e template"));
    lines.push(Line::from("w save  W save+re-embed  v next  Esc"));
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), left);

    let cursor = if edit.editing_template { "▏" } else { "" };
    let template = if edit.template.is_empty() && !edit.editing_template {
        "(none: column: value pairs)".to_string()
    } else {
        format!("{}{cursor}", edit.template)
    };
    let mut right_lines = vec![
        Line::from(Span::styled("template", ctx.theme.title())),
        Line::from(template),
        Line::from(""),
    ];
    let source = edit.preview_source.as_deref().unwrap_or("no source");
    let of = if edit.unsaved() {
        "as edited, not saved"
    } else {
        "saved preferences"
    };
    // Until the answer for the edits as they are now comes, the last one stays, marked.
    let updating = if edit.preview_current() {
        ""
    } else {
        ", updating…"
    };
    right_lines.push(Line::from(Span::styled(
        format!("preview of {source} ({of}{updating})"),
        ctx.theme.title(),
    )));
    match (&edit.preview, &edit.preview_error) {
        (_, Some(error)) => {
            right_lines.push(Line::from(Span::styled(error.clone(), ctx.theme.error())))
        }
        (None, None) if edit.preview_source.is_none() => {
            right_lines.push(Line::from("the group has no source to preview"))
        }
        (None, None) => right_lines.push(Line::from("loading…")),
        (Some(texts), None) if texts.is_empty() => right_lines.push(Line::from("no rows")),
        (Some(texts), None) => {
            for text in texts {
                right_lines.push(Line::from(format!("• {text}")));
            }
        }
    }
    if edit.unsaved() {
        right_lines.push(Line::from(""));
        right_lines.push(Line::from(Span::styled(
            "unsaved: w saves, W saves and re-embeds the group, Esc drops the edits",
            ctx.theme.error(),
        )));
    }
    frame.render_widget(
        Paragraph::new(right_lines).wrap(Wrap { trim: false }),
        right,
    );
}
