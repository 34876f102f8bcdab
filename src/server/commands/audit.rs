//! `audit`: the audit trail of a group (or of every group), filtered by time and action,
//! newest first, paged with `before`.

use crate::catalog::AuditFilter;
use crate::protocol::cmd::Scoped;
use crate::protocol::{AUDIT_MAX, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, in_scope};

/// Audit records returned when no limit is given (the most is `protocol::AUDIT_MAX`).
const AUDIT_DEFAULT: u32 = 100;

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Audit) -> Reply<cmd::Audit> {
    let scope = request.scope();
    let cmd::Audit {
        since,
        action,
        limit,
        before,
        ..
    } = request;
    let group = in_scope(shared, peer, scope?).await?;
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
    let entries = shared.catalog.audit_entries(filter).await?;
    Ok(entries)
}
