//! The sources pane: the group on view, one row per source (name, version, status, rows,
//! columns, updated), sorted and filtered as the state says, with marks for multi-select.
//! Only the rows that fit are built, so a group of 10,000 sources draws as fast as one of 20.
//! Empty and not-yet-chosen groups get guidance instead of an empty table.

use super::{Ctx, block};
use crate::output;
use crate::ui::app::{App, Mode, Pane};
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::Style;
use ratatui::text::Span;
use ratatui::widgets::{Cell, Paragraph, Row, Table, Wrap};

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx, area: Rect) {
    let focused = app.focus == Pane::Sources;
    let Some(group) = &app.viewing else {
        let text = if app.groups.is_empty() {
            "No group to show yet: make a group folder in the drop root (see the left)."
        } else {
            "No current group. Pick a group on the left (←, ↑↓) and press Enter to make it \
             current, as `ingestctl use GROUP` does; the next `ingestctl ls` and `ui` start \
             there."
        };
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block(
                " Sources ".into(),
                focused,
                ctx.theme,
            )),
            area,
        );
        return;
    };
    let filter = if app.filter.is_empty() && app.mode != Mode::Filter {
        String::new()
    } else {
        format!(" /{}", app.filter)
    };
    let title = format!(
        " {group}: {} of {} sources, by {}{filter} ",
        app.order.len(),
        app.sources.len(),
        app.sort.label()
    );
    let block = block(title, focused, ctx.theme);
    if !app.sources_loaded {
        frame.render_widget(Paragraph::new("loading…").block(block), area);
        return;
    }
    if app.sources.is_empty() {
        let folder = app.status.as_ref().map_or_else(
            || format!("{group}/ in the drop root"),
            |s| format!("{}/{group}/", s.drop_root),
        );
        let text = format!(
            "No files in group '{group}' yet.\n\
             Drop {} files into\n  {folder}\n\
             or press a to add one (as `ingestctl add FILE… -g {group}` does).\n\
             ingestd takes each file once it stops changing; it appears here by itself.",
            crate::commands::FORMATS
        );
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
            area,
        );
        return;
    }
    if app.order.is_empty() {
        frame.render_widget(
            Paragraph::new(format!(
                "No source matches the filter '{}'. Esc clears it.",
                app.filter
            ))
            .block(block),
            area,
        );
        return;
    }
    let height = area.height.saturating_sub(3) as usize; // borders and the header row
    let offset = app.source_cursor.saturating_sub(height.saturating_sub(1));
    let rows = app
        .order
        .iter()
        .enumerate()
        .skip(offset)
        .take(height)
        .map(|(at, &i)| {
            let s = &app.sources[i];
            let mark = if app.marked.contains(&s.name) {
                "●"
            } else {
                " "
            };
            let status = s.status.as_str();
            let row = Row::new(vec![
                Cell::from(mark),
                Cell::from(s.name.clone()),
                Cell::from(output::or_dash(s.version.as_deref())),
                Cell::from(Span::styled(status, ctx.theme.status(status))),
                Cell::from(output::or_dash(s.rows)),
                Cell::from(s.columns.to_string()),
                Cell::from(short_timestamp(s.updated, ctx)),
            ]);
            if at == app.source_cursor {
                row.style(ctx.theme.cursor(focused))
            } else {
                row
            }
        });
    let header =
        Row::new(["", "NAME", "VER", "STATUS", "ROWS", "COLS", "UPDATED"]).style(ctx.theme.title());
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Min(12),
            Constraint::Length(4),
            Constraint::Length(9),
            Constraint::Length(7),
            Constraint::Length(4),
            Constraint::Length(14),
        ],
    )
    .header(header)
    .column_spacing(1)
    .style(Style::default())
    .block(block);
    frame.render_widget(table, area);
}

/// As [`short_time`], of a parsed time.
pub fn short_timestamp(time: Option<jiff::Timestamp>, ctx: &Ctx) -> String {
    match time {
        Some(t) => t
            .to_zoned_datetime(ctx.tz.clone())
            .strftime("%m-%d %H:%M:%S")
            .to_string(),
        None => "-".into(),
    }
}

/// "11-27 02:12:50": the date and time without the year, which fits the column.
pub fn short_time(rfc3339: Option<&str>, ctx: &Ctx) -> String {
    match rfc3339 {
        Some(t) => {
            let full = output::time(t, &ctx.tz);
            full.get(5..).map_or(full.clone(), str::to_string)
        }
        None => "-".into(),
    }
}
