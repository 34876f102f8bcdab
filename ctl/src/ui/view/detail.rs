//! The detail pane of the source under the cursor: its versions and rejected attempts with
//! reasons, its columns (skipped ones marked), the active embeddings and its jobs with
//! progress.

use super::queue::bar;
use super::{Ctx, block};
use crate::output;
use crate::ui::app::App;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx, area: Rect) {
    let Some(selected) = app.selected() else {
        frame.render_widget(
            Paragraph::new("").block(block(" Detail ".into(), false, ctx.theme)),
            area,
        );
        return;
    };
    let title = format!(" {} ", selected.name);
    let Some(detail) = app
        .detail
        .as_ref()
        .filter(|d| d.summary.name == selected.name)
    else {
        frame.render_widget(
            Paragraph::new("loading…").block(block(title, false, ctx.theme)),
            area,
        );
        return;
    };
    let theme = ctx.theme;
    let width = area.width.saturating_sub(2) as usize;
    let mut lines: Vec<Line> = Vec::new();
    let s = &detail.summary;
    let status = s.status.as_str();
    lines.push(Line::from(vec![
        Span::styled(status.to_string(), theme.status(status)),
        Span::raw(format!(
            "  {}  {} rows  {}  added by {}",
            output::or_dash(s.version.as_deref()),
            output::or_dash(s.rows),
            output::or_dash(s.format.as_deref()),
            output::who(s.added_by.as_deref(), s.added_by_uid),
        )),
    ]));
    if let Some(reason) = &s.reason {
        lines.push(Line::from(Span::styled(
            format!("rejected: {reason}"),
            theme.error(),
        )));
    }
    // Columns, with skipped ones marked: "region, month, amount; skipped: #4 (blank header)".
    let mut columns = if s.columns.is_empty() {
        "columns: none".to_string()
    } else {
        format!("columns: {}", s.columns.join(", "))
    };
    if !s.skipped_columns.is_empty() {
        let skipped: Vec<String> = s
            .skipped_columns
            .iter()
            .map(|c| format!("#{} ({})", c.position, c.reason))
            .collect();
        columns.push_str(&format!("; skipped: {}", skipped.join(", ")));
    }
    lines.push(Line::from(output::truncated(&columns, width)));
    match &detail.embeddings {
        Some(e) => lines.push(Line::from(format!(
            "embeddings: {} rows of {} by {} {} (dim {}), job {}, since {}",
            e.rows,
            e.version,
            e.provider,
            e.model,
            e.dimension,
            output::or_dash(e.job),
            super::sources::short_time(Some(&e.activated_at), ctx)
        ))),
        None => lines.push(Line::from(Span::styled(
            "no embeddings yet: a job embeds each new version; r re-embeds it",
            theme.dim(),
        ))),
    }
    for job in detail.jobs.iter().rev().take(3) {
        let state = job.state.as_str();
        let mut spans = vec![
            Span::raw(format!("job {} {} ", job.id, job.version)),
            Span::styled(format!("{state:<10}"), theme.status(state)),
            Span::raw(format!(
                " {} ",
                bar(job.progress.done, job.progress.total, 12)
            )),
            Span::raw(format!("{}/{}", job.progress.done, job.progress.total)),
        ];
        if let Some(error) = &job.error {
            spans.push(Span::styled(format!("  {error}"), theme.error()));
        }
        lines.push(Line::from(spans));
    }
    lines.push(Line::from(Span::styled("versions:", theme.title())));
    for v in &detail.versions {
        let what = match (&v.version, &v.reason) {
            (Some(label), _) => format!(
                "  {label:<4} {}  {} rows  {}",
                v.status,
                output::or_dash(v.rows),
                super::sources::short_time(Some(&v.added_at), ctx)
            ),
            (None, reason) => format!(
                "  rejected {}: {}",
                super::sources::short_time(Some(&v.added_at), ctx),
                reason.as_deref().unwrap_or("no reason recorded")
            ),
        };
        lines.push(Line::from(what));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block(title, false, theme)),
        area,
    );
}
