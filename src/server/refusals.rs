//! Refused requests, coalesced per uid, so a user who is refused 10,000 times adds a few
//! audit records, not 10,000.
//!
//! The first refusal of a uid in a window is audited at once, in full (its detail bounded by
//! [`bound_detail`]); the ones after it in the same window are only counted, and when the
//! window has passed one summary record says how many there were and of which actions. A
//! flush task writes the summaries; a stop writes what is left. The table holds one entry per
//! uid that was refused in the last window, so it is as small as the set of real users.
//!
//! This module decides and counts; the handler writes the records.

use crate::audit::AuditRecord;
use crate::identity::Actor;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long refusals of one uid are gathered into one summary.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Longest audit detail written for a request (a few targets and a count of the rest).
pub const MAX_DETAIL_BYTES: usize = 4096;

#[derive(Debug)]
struct Window {
    started: Instant,
    actor: Actor,
    /// Refusals counted (not audited) since `started`, by action.
    counted: BTreeMap<&'static str, u64>,
}

/// The refusal windows of every uid refused lately.
#[derive(Debug, Default)]
pub struct Refusals {
    /// Short sections with no await: a std lock.
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    windows: HashMap<Option<u32>, Window>,
    /// Summaries of windows replaced before the flush saw them.
    finished: Vec<AuditRecord>,
}

impl Refusals {
    /// Note a refusal of `actor`'s `action` at `now`: `true` if it opens a window and so is
    /// audited in full now, `false` if it is only counted for the summary.
    pub fn note(&self, actor: &Actor, action: &'static str, now: Instant) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(window) = inner.windows.get_mut(&actor.uid)
            && now.duration_since(window.started) < WINDOW
        {
            *window.counted.entry(action).or_default() += 1;
            return false;
        }
        let fresh = Window {
            started: now,
            actor: actor.clone(),
            counted: BTreeMap::new(),
        };
        // An ended window the flush has not seen yet keeps its count for the next flush.
        if let Some(ended) = inner.windows.insert(actor.uid, fresh)
            && let Some(record) = summary(&ended)
        {
            inner.finished.push(record);
        }
        true
    }

    /// Summaries of the windows that ended by `now` (all of them with `everything`, at a
    /// stop); those windows are forgotten.
    pub fn due(&self, now: Instant, everything: bool) -> Vec<AuditRecord> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut records = std::mem::take(&mut inner.finished);
        inner.windows.retain(|_, window| {
            if !everything && now.duration_since(window.started) < WINDOW {
                return true;
            }
            if let Some(record) = summary(window) {
                records.push(record);
            }
            false
        });
        records
    }
}

fn summary(window: &Window) -> Option<AuditRecord> {
    let total: u64 = window.counted.values().sum();
    if total == 0 {
        return None;
    }
    let actions: Vec<String> = window
        .counted
        .iter()
        .map(|(action, n)| format!("{action} ×{n}"))
        .collect();
    let action = if window.counted.len() == 1 {
        window.counted.keys().next().copied().unwrap_or("command")
    } else {
        "command"
    };
    Some(
        AuditRecord::new(window.actor.clone(), action, "refused").detail(format!(
            "{total} more refused request{} in {} s after the one audited before ({}); \
             not audited one by one",
            if total == 1 { "" } else { "s" },
            WINDOW.as_secs(),
            actions.join(", ")
        )),
    )
}

/// `items` joined by ", " up to about `MAX_DETAIL_BYTES` with `prefix`, then "and N more".
pub fn bound_list(prefix: &str, items: &[String]) -> String {
    let mut text = prefix.to_string();
    for (i, item) in items.iter().enumerate() {
        let separator = if i == 0 { "" } else { ", " };
        // Keep room for the tail that counts the rest.
        if text.len() + separator.len() + item.len() > MAX_DETAIL_BYTES - 40 {
            text.push_str(&format!(" … and {} more", items.len() - i));
            return bound_detail(text);
        }
        text.push_str(separator);
        text.push_str(item);
    }
    bound_detail(text)
}

/// `text` cut to at most `MAX_DETAIL_BYTES` at a character boundary, with a mark when cut.
pub fn bound_detail(text: String) -> String {
    if text.len() <= MAX_DETAIL_BYTES {
        return text;
    }
    let mark = " … (cut)";
    let mut end = MAX_DETAIL_BYTES - mark.len();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{mark}", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Via;

    fn actor(uid: u32) -> Actor {
        Actor {
            uid: Some(uid),
            user: None,
            via: Via::Socket,
        }
    }

    #[test]
    fn ten_thousand_refusals_in_a_window_are_one_record_and_one_summary() {
        let refusals = Refusals::default();
        let start = Instant::now();
        let mut audited = 0;
        for i in 0..10_000u64 {
            let at = start + Duration::from_millis(i);
            if refusals.note(&actor(65534), "delete", at) {
                audited += 1;
            }
        }
        assert_eq!(audited, 1);
        // Another uid has its own window.
        assert!(refusals.note(&actor(1000), "prefs", start));
        assert!(
            refusals
                .due(start + Duration::from_secs(30), false)
                .is_empty()
        );
        let summaries = refusals.due(start + WINDOW, false);
        assert_eq!(summaries.len(), 1, "only the uid with counted refusals");
        let detail = summaries[0].detail.as_deref().unwrap();
        assert!(detail.starts_with("9999 more refused requests"), "{detail}");
        assert_eq!(summaries[0].action, "delete");
        assert_eq!(summaries[0].actor.uid, Some(65534));
        // The window is over: the next refusal is audited again.
        assert!(refusals.note(&actor(65534), "cancel", start + WINDOW));
        // A window that ends before the flush sees it keeps its count.
        assert!(!refusals.note(&actor(65534), "cancel", start + WINDOW));
        assert!(refusals.note(&actor(65534), "cancel", start + WINDOW * 2));
        let kept = refusals.due(start + WINDOW * 2, false);
        assert_eq!(kept.len(), 1);
        assert!(
            kept[0]
                .detail
                .as_deref()
                .unwrap()
                .starts_with("1 more refused request ")
        );
    }

    #[test]
    fn a_stop_flushes_open_windows_with_mixed_actions() {
        let refusals = Refusals::default();
        let now = Instant::now();
        assert!(refusals.note(&actor(5), "delete", now));
        assert!(!refusals.note(&actor(5), "retry", now));
        assert!(!refusals.note(&actor(5), "retry", now));
        assert!(!refusals.note(&actor(5), "cancel", now));
        let records = refusals.due(now, true);
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].action, "command", "several actions");
        assert!(
            records[0]
                .detail
                .as_deref()
                .unwrap()
                .contains("cancel ×1, retry ×2"),
            "{:?}",
            records[0].detail
        );
        assert!(refusals.due(now, true).is_empty());
    }

    #[test]
    fn details_are_bounded_and_say_how_many_were_left_out() {
        let targets: Vec<String> = (0..1000).map(|i| format!("{i:0>1000}")).collect();
        let detail = bound_list("wanted to delete ", &targets);
        assert!(detail.len() <= MAX_DETAIL_BYTES, "{}", detail.len());
        assert!(
            detail.ends_with("and 996 more"),
            "{}",
            &detail[detail.len() - 40..]
        );
        let short = bound_list("wanted to delete ", &["a.csv".into(), "b.csv".into()]);
        assert_eq!(short, "wanted to delete a.csv, b.csv");
        let long = bound_detail("é".repeat(5000));
        assert!(long.len() <= MAX_DETAIL_BYTES && long.ends_with("(cut)"));
    }
}
