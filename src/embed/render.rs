//! Rows to text: what exactly is embedded for one row, decided by the group's preferences.
//!
//! Without a template, a row reads `q1.csv | sales | region: north | amount: 1200; date: …`:
//! the source and group, the chosen context columns, then the selected columns (all columns
//! when none are selected) as `column: value` pairs. With a template, the template alone
//! decides, `{column}` placeholders filled in. Empty values are skipped, long values cut, and
//! a column a source lacks renders empty. Pure: the same inputs always give the same text.

use crate::protocol::PrefsInfo;
use crate::template::{self, Piece};

/// Longest value taken from one cell, in characters.
pub const MAX_VALUE_CHARS: usize = 500;

/// How one source's rows are rendered.
#[derive(Debug, Clone)]
pub struct Renderer {
    source: String,
    group: String,
    /// Indexes into the header of the context columns, by name (None: the source lacks it).
    context: Vec<(String, Option<usize>)>,
    /// Indexes of the selected columns.
    selected: Vec<(String, Option<usize>)>,
    template: Option<Vec<(Piece, Option<usize>)>>,
}

fn index_of(header: &[String], name: &str) -> Option<usize> {
    header.iter().position(|h| h == name)
}

fn cut(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    if value.chars().count() <= MAX_VALUE_CHARS {
        return Some(value.to_string());
    }
    let mut cut: String = value.chars().take(MAX_VALUE_CHARS).collect();
    cut.push('…');
    Some(cut)
}

impl Renderer {
    /// A renderer for a source with `header` (its column names) under `prefs`.
    pub fn new(source: &str, prefs: &PrefsInfo, header: &[String]) -> Self {
        let named = |names: &[String]| {
            names
                .iter()
                .map(|n| (n.clone(), index_of(header, n)))
                .collect::<Vec<_>>()
        };
        let selected = if prefs.columns.is_empty() {
            named(header)
        } else {
            named(&prefs.columns)
        };
        // A template that does not parse was refused when saved; treat one as absent.
        let template = prefs
            .template
            .as_deref()
            .and_then(|t| template::parse(t).ok())
            .map(|pieces| {
                pieces
                    .into_iter()
                    .map(|p| {
                        let index = match &p {
                            Piece::Column(name) => index_of(header, name),
                            Piece::Text(_) => None,
                        };
                        (p, index)
                    })
                    .collect()
            });
        Self {
            source: source.to_string(),
            group: prefs.group.clone(),
            context: named(&prefs.context),
            selected,
            template,
        }
    }

    /// The text of one row (`cells` in header order; missing trailing cells are empty).
    pub fn render(&self, cells: &[String]) -> String {
        let cell = |index: Option<usize>| index.and_then(|i| cells.get(i)).and_then(|v| cut(v));
        if let Some(pieces) = &self.template {
            let mut text = String::new();
            for (piece, index) in pieces {
                match piece {
                    Piece::Text(t) => text.push_str(t),
                    Piece::Column(_) => text.push_str(&cell(*index).unwrap_or_default()),
                }
            }
            return text.trim().to_string();
        }
        let mut parts = vec![self.source.clone(), self.group.clone()];
        for (name, index) in &self.context {
            if let Some(value) = cell(*index) {
                parts.push(format!("{name}: {value}"));
            }
        }
        let pairs: Vec<String> = self
            .selected
            .iter()
            .filter_map(|(name, index)| cell(*index).map(|v| format!("{name}: {v}")))
            .collect();
        if !pairs.is_empty() {
            parts.push(pairs.join("; "));
        }
        parts.join(" | ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn prefs(columns: &[&str], context: &[&str], template: Option<&str>) -> PrefsInfo {
        PrefsInfo {
            group: "sales".into(),
            columns: s(columns),
            context: s(context),
            template: template.map(str::to_string),
            ..PrefsInfo::default()
        }
    }

    #[test]
    fn rendering_rules() {
        let header = s(&["region", "amount", "date", "note"]);
        let row = s(&["north", "1200", "", "  x  "]);
        let cases = [
            (
                prefs(&[], &[], None),
                "q1.csv | sales | region: north; amount: 1200; note: x",
            ),
            (
                prefs(&["amount", "missing"], &["region"], None),
                "q1.csv | sales | region: north | amount: 1200",
            ),
            (
                prefs(
                    &[],
                    &[],
                    Some("{region} sold {amount} on {date} ({missing})"),
                ),
                "north sold 1200 on  ()",
            ),
            (prefs(&["date"], &[], None), "q1.csv | sales"),
        ];
        for (prefs, want) in cases {
            let renderer = Renderer::new("q1.csv", &prefs, &header);
            assert_eq!(renderer.render(&row), want, "{prefs:?}");
        }
    }

    #[test]
    fn long_values_are_cut_and_short_rows_are_fine() {
        let header = s(&["a", "b"]);
        let renderer = Renderer::new("f.csv", &prefs(&[], &[], None), &header);
        let long = "x".repeat(MAX_VALUE_CHARS + 10);
        let text = renderer.render(&[long]);
        assert!(text.ends_with('…'));
        assert_eq!(text.chars().filter(|c| *c == 'x').count(), MAX_VALUE_CHARS);
        assert_eq!(renderer.render(&[]), "f.csv | sales");
    }
}
