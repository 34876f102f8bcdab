//! The groups pane: every group with its counts by status, the current one marked with `*`,
//! the one on view in bold. With no groups it says how to make one.

use super::{Ctx, block};
use crate::ui::app::{App, Pane};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn draw(frame: &mut Frame, app: &App, ctx: &Ctx, area: Rect) {
    let focused = app.focus == Pane::Groups;
    let title = format!(" Groups ({}) ", app.groups.len());
    let block = block(title, focused, ctx.theme);
    if app.groups.is_empty() {
        let root = app
            .status
            .as_ref()
            .map_or("the drop root", |s| s.drop_root.as_str());
        let text = format!(
            "No groups yet.\n\nA group is a folder in the drop root:\n{root}/\n\nMake one, e.g.\nmkdir {root}/sales\nthen drop files into it."
        );
        frame.render_widget(
            Paragraph::new(text).wrap(Wrap { trim: false }).block(block),
            area,
        );
        return;
    }
    let inner_height = area.height.saturating_sub(2) as usize;
    // Each group takes two lines: its name, then its counts.
    let per_page = (inner_height / 2).max(1);
    let offset = app.group_cursor.saturating_sub(per_page - 1);
    let width = area.width.saturating_sub(2) as usize;
    let mut lines = Vec::new();
    for (i, group) in app.groups.iter().enumerate().skip(offset).take(per_page) {
        let mark = if group.current { "*" } else { " " };
        let mut style = Style::default();
        if app.viewing.as_ref() == Some(&group.name) {
            style = style.add_modifier(Modifier::BOLD);
        }
        if i == app.group_cursor {
            style = style.patch(ctx.theme.cursor(focused));
        }
        let name = format!("{mark}{} ({})", group.name, group.sources);
        lines.push(Line::from(Span::styled(format!("{name:<width$}"), style)));
        let counts: Vec<String> = group
            .by_status
            .iter()
            .map(|(status, n)| format!("{n} {status}"))
            .collect();
        let counts = if counts.is_empty() {
            "empty".to_string()
        } else {
            counts.join(", ")
        };
        lines.push(Line::from(Span::styled(
            format!("  {counts}"),
            ctx.theme.dim(),
        )));
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}
