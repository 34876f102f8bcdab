//! The queue pane (the `J` toggle): jobs of every group, running and waiting first, with
//! their queue positions, attempts, progress bars and errors; the title has the cap and how
//! many are processing.

use super::{Ctx, block};
use crate::ui::app::{App, Pane};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table};

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx, area: Rect) {
    let focused = app.focus == Pane::Queue;
    let title = match &app.status {
        Some(s) => format!(
            " Queue: {} processing of at most {}, {} waiting, {} failed ",
            s.queue.processing, s.queue.concurrency, s.queue.queued, s.queue.failed
        ),
        None => " Queue ".into(),
    };
    let block = block(title, focused, ctx.theme);
    if app.jobs.is_empty() {
        frame.render_widget(
            Paragraph::new("No embedding jobs yet: every accepted version queues one.")
                .block(block),
            area,
        );
        return;
    }
    let height = area.height.saturating_sub(3) as usize;
    let offset = app.job_cursor.saturating_sub(height.saturating_sub(1));
    let rows = app
        .jobs
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(at, job)| {
            let state = job.state.as_str();
            let position = job
                .position
                .map_or("-".to_string(), |p| format!("{}/{}", p.group, p.overall));
            let row = Row::new(vec![
                Cell::from(job.id.to_string()),
                Cell::from(format!("{}/{} {}", job.group, job.source, job.version)),
                Cell::from(Span::styled(state, ctx.theme.status(state))),
                Cell::from(position),
                Cell::from(format!("{}/{}", job.attempt, job.max_attempts)),
                Cell::from(format!(
                    "{} {}",
                    bar(job.progress.done, job.progress.total, 10),
                    percent(job.progress.done, job.progress.total)
                )),
                Cell::from(Span::styled(
                    job.error.clone().unwrap_or_default(),
                    ctx.theme.error(),
                )),
            ]);
            if at == app.job_cursor {
                row.style(ctx.theme.cursor(focused))
            } else {
                row
            }
        });
    let header = Row::new(["JOB", "SOURCE", "STATE", "POS", "TRY", "PROGRESS", "ERROR"])
        .style(ctx.theme.title());
    let table = Table::new(
        rows,
        [
            Constraint::Length(4),
            Constraint::Min(14),
            Constraint::Length(10),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Length(17),
            Constraint::Fill(1),
        ],
    )
    .header(header)
    .block(block);
    frame.render_widget(table, area);
}

/// A text progress bar of `width` cells: "[#####.....]" (plain characters, so it reads the
/// same without colour and over any terminal).
pub fn bar(done: u64, total: u64, width: usize) -> String {
    let filled = if total == 0 {
        0
    } else {
        ((done.min(total) as u128 * width as u128) / total as u128) as usize
    };
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

fn percent(done: u64, total: u64) -> String {
    if total == 0 {
        return "-".into();
    }
    format!("{:>3}%", done.min(total) * 100 / total)
}
