//! The read-only commands: `status`, `groups`, `ls`, `show`.
//!
//! They read the catalog through its thread and overlay what is in flight (files still
//! settling or being validated), so `ls` shows a drop the moment it is seen.

use super::handlers::{Shared, catalog_error, require_group, to_value};
use crate::catalog::CatalogError;
use crate::clock;
use crate::inflight::{InFlight, Phase};
use crate::protocol::{
    ErrorBody, ErrorCode, GroupInfo, JobState, QueueSummary, SourceSummary, Status, StatusInfo,
};
use serde_json::Value;
use std::collections::BTreeMap;

/// Sources of `group` (all groups if `None`) with in-flight files laid over them.
async fn sources(shared: &Shared, group: Option<String>) -> Result<Vec<SourceSummary>, ErrorBody> {
    let wanted = group.clone();
    let mut list = shared
        .catalog
        .call(move |db| db.list_sources(wanted.as_deref()))
        .await
        .map_err(catalog_error)?;
    overlay(&mut list, &shared.in_flight, group.as_deref());
    Ok(list)
}

/// Mark sources whose file is in flight, and add those the catalog has not seen yet.
fn overlay(list: &mut Vec<SourceSummary>, in_flight: &InFlight, group: Option<&str>) {
    let flying = in_flight.snapshot();
    if flying.is_empty() {
        return;
    }
    let mut added = false;
    for ((g, name), phase) in flying {
        if group.is_some_and(|wanted| wanted != g) {
            continue;
        }
        let status = match phase {
            Phase::Pending => Status::Pending,
            Phase::Validating => Status::Validating,
        };
        // A file waiting to be tried again says why.
        let reason = in_flight.reason(&g, &name);
        match list.iter_mut().find(|s| s.group == g && s.name == name) {
            Some(source) => {
                source.status = status;
                source.reason = reason;
            }
            None => {
                added = true;
                list.push(SourceSummary {
                    group: g,
                    name,
                    version: None,
                    status,
                    rows: None,
                    columns: Vec::new(),
                    skipped_columns: Vec::new(),
                    reason,
                    format: None,
                    size: None,
                    sha256: None,
                    added_at: None,
                    added_by: None,
                    added_by_uid: None,
                    updated_at: None,
                });
            }
        }
    }
    if added {
        list.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    }
}

async fn group_list(shared: &Shared) -> Result<Vec<GroupInfo>, ErrorBody> {
    let (mut groups, statuses) = shared
        .catalog
        .call(|db| Ok((db.list_groups()?, db.source_statuses()?)))
        .await
        .map_err(catalog_error)?;
    // Recount with the in-flight overlay so counts agree with `ls`.
    let mut shown: BTreeMap<(String, String), Status> = statuses
        .into_iter()
        .map(|(group, name, status)| ((group, name), status))
        .collect();
    for (key, phase) in shared.in_flight.snapshot() {
        shown.insert(
            key,
            match phase {
                Phase::Pending => Status::Pending,
                Phase::Validating => Status::Validating,
            },
        );
    }
    for group in &mut groups {
        group.sources = 0;
        group.by_status.clear();
    }
    for ((group, _), status) in shown {
        if let Some(group) = groups.iter_mut().find(|g| g.name == group) {
            group.sources += 1;
            *group.by_status.entry(status).or_default() += 1;
        }
    }
    Ok(groups)
}

pub async fn status(shared: &Shared, read_only: Option<String>) -> Result<Value, ErrorBody> {
    let config = shared.config();
    let groups = group_list(shared).await?;
    let mut by_status: BTreeMap<Status, u64> = BTreeMap::new();
    for group in &groups {
        for (status, count) in &group.by_status {
            *by_status.entry(*status).or_default() += count;
        }
    }
    let counts = shared
        .catalog
        .call(|db| db.queue_counts())
        .await
        .map_err(catalog_error)?;
    let count = |state| counts.get(&state).copied().unwrap_or(0);
    let queue = QueueSummary {
        queued: count(JobState::Queued),
        processing: count(JobState::Processing),
        failed: count(JobState::Failed),
        concurrency: shared.queue.concurrency() as u32,
    };
    let info = StatusInfo {
        daemon_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: crate::protocol::PROTOCOL_VERSION,
        pid: std::process::id(),
        started_at: clock::rfc3339(shared.started_ms),
        uptime_secs: shared.started.elapsed().as_secs(),
        drop_root: config.paths.drop_root.display().to_string(),
        storage_root: config.paths.storage_root.display().to_string(),
        database: config.paths.database.display().to_string(),
        socket: config.paths.socket.display().to_string(),
        provider: shared.queue.providers.describe(),
        groups: groups.len() as u64,
        sources: groups.iter().map(|g| g.sources).sum(),
        by_status,
        in_flight: shared.in_flight.len() as u64,
        queue,
        last_errors: shared.notices.recent(),
        reload: shared.config.last_reload(),
        parse_worker_sandbox: crate::ingest::isolate::sandbox::report(),
        read_only,
    };
    to_value(&info)
}

pub async fn groups(shared: &Shared, current: Option<String>) -> Result<Value, ErrorBody> {
    let mut groups = group_list(shared).await?;
    for group in &mut groups {
        group.current = current.as_deref() == Some(group.name.as_str());
    }
    to_value(&groups)
}

pub async fn ls(shared: &Shared, group: Option<String>) -> Result<Value, ErrorBody> {
    to_value(&sources(shared, group).await?)
}

pub async fn show(
    shared: &Shared,
    source: String,
    group: Option<String>,
) -> Result<crate::protocol::SourceDetail, ErrorBody> {
    if let Some(group) = &group {
        require_group(shared, group).await?;
    }
    let wanted_group = group.clone();
    let name = source.clone();
    let mut detail = match shared
        .catalog
        .call(move |db| db.show_source(wanted_group.as_deref(), &name))
        .await
    {
        Ok(detail) => detail,
        Err(CatalogError::NotFound(message)) => {
            // Seen but not yet stored: show that rather than "not found".
            let mut flying = Vec::new();
            overlay(&mut flying, &shared.in_flight, group.as_deref());
            match flying.into_iter().find(|s| s.name == source) {
                Some(summary) => crate::protocol::SourceDetail {
                    summary,
                    versions: Vec::new(),
                    jobs: Vec::new(),
                    embeddings: None,
                    preview: None,
                },
                None => return Err(ErrorBody::new(ErrorCode::NotFound, message)),
            }
        }
        Err(other) => return Err(catalog_error(other)),
    };
    let mut one = vec![detail.summary.clone()];
    overlay(
        &mut one,
        &shared.in_flight,
        Some(&detail.summary.group.clone()),
    );
    if let Some(summary) = one.into_iter().find(|s| s.name == detail.summary.name) {
        detail.summary = summary;
    }
    Ok(detail)
}
