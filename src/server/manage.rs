//! The management commands: `use`, `prefs`, `prefs_set`, `rm`, `audit`.
//!
//! Arguments are validated here, with messages that say what to do; the catalog applies and
//! audits the change with the caller's identity from the socket.

use super::auth::Peer;
use super::handlers::{Shared, catalog_error, require_group, to_value};
use crate::catalog::{AuditFilter, PrefsChange};
use crate::protocol::{AUDIT_MAX, ErrorBody, ErrorCode, PrefsSaved, UseInfo};
use crate::template;
use serde_json::Value;

/// Audit records returned when no limit is given (the most is `protocol::AUDIT_MAX`).
const AUDIT_DEFAULT: u32 = 100;

fn bad_args(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadArgs, message)
}

pub(super) fn known_peer(peer: Option<Peer>) -> Result<Peer, ErrorBody> {
    peer.ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::Refused,
            "the caller's identity is unknown (no peer credentials on this socket)",
        )
    })
}

pub async fn use_group(
    shared: &Shared,
    peer: Option<Peer>,
    group: Option<String>,
    clear: bool,
) -> Result<Value, ErrorBody> {
    let peer = known_peer(peer)?;
    if clear && group.is_some() {
        return Err(bad_args("give a group or clear, not both"));
    }
    if let Some(group) = &group {
        require_group(shared, group).await?;
        // A folder seen a moment ago may not be recorded yet; record it now.
        let name = group.clone();
        shared
            .catalog
            .call(move |db| db.ensure_group(&name))
            .await
            .map_err(catalog_error)?;
    }
    if group.is_some() || clear {
        let set = group.clone();
        shared
            .catalog
            .call(move |db| db.set_current_group(peer.uid, set.as_deref()))
            .await
            .map_err(catalog_error)?;
    }
    let current = shared
        .catalog
        .call(move |db| db.current_group(peer.uid))
        .await
        .map_err(catalog_error)?;
    to_value(&UseInfo {
        group: current,
        uid: peer.uid,
    })
}

pub async fn prefs(shared: &Shared, group: String) -> Result<Value, ErrorBody> {
    let prefs = shared
        .catalog
        .call(move |db| db.prefs(&group))
        .await
        .map_err(catalog_error)?;
    to_value(&prefs)
}

/// `prefs_set` as it came on the wire.
pub struct PrefsRequest {
    pub columns: Option<Vec<String>>,
    pub context: Option<Vec<String>>,
    pub template: Option<String>,
    pub sheet: Option<String>,
    pub clear: bool,
}

fn clean_names(field: &str, names: Option<Vec<String>>) -> Result<Option<Vec<String>>, ErrorBody> {
    let Some(names) = names else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(bad_args(format!("{field}: column names must not be empty")));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(Some(out))
}

pub async fn prefs_set(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    request: PrefsRequest,
) -> Result<PrefsSaved, ErrorBody> {
    let peer = known_peer(peer)?;
    let columns = clean_names("columns", request.columns)?;
    let context = clean_names("context", request.context)?;
    let template = match request.template {
        None => None,
        Some(text) if text.trim().is_empty() => Some(None),
        Some(text) => {
            let pieces = template::parse(&text)
                .map_err(|e| bad_args(format!("template is not valid: {e}")))?;
            if template::columns(&pieces).is_empty() {
                return Err(bad_args(
                    "template names no column; use placeholders like {region}",
                ));
            }
            Some(Some(text))
        }
    };
    let sheet = request
        .sheet
        .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()));
    if !request.clear
        && columns.is_none()
        && context.is_none()
        && template.is_none()
        && sheet.is_none()
    {
        return Err(bad_args(
            "nothing to change: give columns, context, template, sheet or clear",
        ));
    }
    let mut changed: Vec<String> = Vec::new();
    if request.clear {
        changed.push("cleared".into());
    }
    if let Some(c) = &columns {
        changed.push(format!("columns = [{}]", c.join(", ")));
    }
    if let Some(c) = &context {
        changed.push(format!("context = [{}]", c.join(", ")));
    }
    if let Some(t) = &template {
        changed.push(match t {
            Some(t) => format!("template = {t:?}"),
            None => "template removed".into(),
        });
    }
    if let Some(s) = &sheet {
        changed.push(match s {
            Some(s) => format!("sheet = {s:?}"),
            None => "sheet removed".into(),
        });
    }
    let change = PrefsChange {
        columns,
        context,
        template,
        sheet,
        clear: request.clear,
    };
    let actor = peer.actor();
    let detail = super::refusals::bound_detail(changed.join("; "));
    let saved_group = group.clone();
    let prefs = shared
        .catalog
        .call(move |db| db.set_prefs(&saved_group, change, &actor, detail))
        .await
        .map_err(catalog_error)?;
    // Names no source of the group has: saved anyway (sources differ), but said.
    let mut warnings = Vec::new();
    let mut named: Vec<&String> = prefs.columns.iter().chain(prefs.context.iter()).collect();
    let placeholders = prefs
        .template
        .as_deref()
        .and_then(|t| template::parse(t).ok())
        .map(|p| template::columns(&p))
        .unwrap_or_default();
    named.extend(placeholders.iter());
    let mut seen: Vec<&String> = Vec::new();
    for name in named {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if !prefs.known_columns.contains(name) {
            warnings.push(format!(
                "no source of group {group:?} has a column named {name:?}; saved anyway"
            ));
        }
    }
    Ok(PrefsSaved {
        prefs,
        warnings,
        jobs: Vec::new(),
    })
}

pub async fn rm(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    targets: Vec<String>,
    force: bool,
) -> Result<Value, ErrorBody> {
    let peer = known_peer(peer)?;
    if targets.is_empty() {
        return Err(bad_args(
            "name at least one source to delete, like sales.csv or sales.csv@v2",
        ));
    }
    let actor = peer.actor();
    if force {
        // Cancel what is embedding the targets first, and wait for the workers to let go.
        let (wanted_group, wanted, who) = (group.clone(), targets.clone(), actor.clone());
        let stopping = shared
            .catalog
            .call(move |db| db.cancel_for_delete(&wanted_group, &wanted, &who))
            .await
            .map_err(catalog_error)?;
        let left = shared
            .queue
            .stop_jobs(&stopping, std::time::Duration::from_secs(60))
            .await;
        if !left.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::Refused,
                format!("jobs {left:?} were cancelled but have not stopped yet; try again"),
            ));
        }
    }
    let outcomes = shared
        .catalog
        .call(move |db| {
            Ok(targets
                .iter()
                .map(|target| db.delete(&group, target, &actor))
                .collect::<Vec<_>>())
        })
        .await
        .map_err(catalog_error)?;
    to_value(&outcomes)
}

pub async fn audit(
    shared: &Shared,
    group: Option<String>,
    since: Option<String>,
    action: Option<String>,
    limit: Option<u32>,
    before: Option<i64>,
) -> Result<Value, ErrorBody> {
    let since_ms = match since {
        None => None,
        Some(text) => Some(
            text.parse::<jiff::Timestamp>()
                .map_err(|e| {
                    bad_args(format!(
                        "since: {text:?} is not an RFC 3339 time like 2026-11-27T01:00:00Z ({e})"
                    ))
                })?
                .as_millisecond(),
        ),
    };
    let limit = limit.unwrap_or(AUDIT_DEFAULT);
    if limit == 0 || limit > AUDIT_MAX {
        return Err(bad_args(format!(
            "limit must be between 1 and {AUDIT_MAX}; page further with before (the id of \
             the last record of a page)"
        )));
    }
    let filter = AuditFilter {
        group,
        since_ms,
        action,
        limit,
        before,
    };
    let entries = shared
        .catalog
        .call(move |db| db.audit_entries(&filter))
        .await
        .map_err(catalog_error)?;
    to_value(&entries)
}
