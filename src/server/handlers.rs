//! One handler per protocol command, dispatched by a single `match`.
//!
//! Handlers read the catalog through its thread and overlay what is in flight (files still
//! settling or being validated), so `ls` shows a drop the moment it is seen.

use crate::catalog::{Catalog, CatalogError};
use crate::clock;
use crate::config::Config;
use crate::inflight::{InFlight, Phase};
use crate::notices::Notices;
use crate::protocol::{
    Command, ErrorBody, ErrorCode, GroupInfo, QueueSummary, SourceSummary, Status, StatusInfo,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

/// What every handler may read.
pub struct Shared {
    /// Replaced whole on reload; short reads only, never held across an await.
    pub config: RwLock<Arc<Config>>,
    pub catalog: Catalog,
    pub in_flight: InFlight,
    pub notices: Notices,
    pub started_ms: i64,
    pub started: Instant,
}

impl Shared {
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| Arc::clone(&c))
            .unwrap_or_else(|poisoned| Arc::clone(&poisoned.into_inner()))
    }
}

/// Answer one command. `peer` is the caller's uid from the socket, when the OS tells it.
pub async fn handle(
    shared: &Shared,
    _peer: Option<u32>,
    command: Command,
) -> Result<Value, ErrorBody> {
    match command {
        Command::Status {} => status(shared).await,
        Command::Groups {} => groups(shared).await,
        Command::Ls { group } => ls(shared, group).await,
        Command::Show { source, group } => show(shared, source, group).await,
    }
}

fn catalog_error(error: CatalogError) -> ErrorBody {
    match error {
        CatalogError::NotFound(message) => ErrorBody::new(ErrorCode::NotFound, message),
        CatalogError::Ambiguous(message) => ErrorBody::new(ErrorCode::Ambiguous, message),
        other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ErrorBody> {
    serde_json::to_value(value).map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
}

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
        match list.iter_mut().find(|s| s.group == g && s.name == name) {
            Some(source) => {
                source.status = status;
                source.reason = None;
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
                    reason: None,
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
    let mut groups = shared
        .catalog
        .call(|db| db.list_groups())
        .await
        .map_err(catalog_error)?;
    // Recount with the in-flight overlay so counts agree with `ls`.
    let list = sources(shared, None).await?;
    for group in &mut groups {
        group.sources = 0;
        group.by_status.clear();
    }
    for source in &list {
        if let Some(group) = groups.iter_mut().find(|g| g.name == source.group) {
            group.sources += 1;
            *group.by_status.entry(source.status).or_default() += 1;
        }
    }
    Ok(groups)
}

async fn status(shared: &Shared) -> Result<Value, ErrorBody> {
    let config = shared.config();
    let groups = group_list(shared).await?;
    let mut by_status: BTreeMap<Status, u64> = BTreeMap::new();
    for group in &groups {
        for (status, count) in &group.by_status {
            *by_status.entry(*status).or_default() += count;
        }
    }
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
        provider: config.embedding.provider.as_str().to_string(),
        groups: groups.len() as u64,
        sources: groups.iter().map(|g| g.sources).sum(),
        by_status,
        in_flight: shared.in_flight.len() as u64,
        queue: QueueSummary::default(),
        last_errors: shared.notices.recent(),
    };
    to_value(&info)
}

async fn groups(shared: &Shared) -> Result<Value, ErrorBody> {
    to_value(&group_list(shared).await?)
}

async fn require_group(shared: &Shared, group: &str) -> Result<(), ErrorBody> {
    let groups = shared
        .catalog
        .call(|db| db.list_groups())
        .await
        .map_err(catalog_error)?;
    if groups.iter().any(|g| g.name == group) {
        return Ok(());
    }
    // A folder made a moment ago is a group even before the watcher has recorded it.
    let folder = shared.config().paths.drop_root.join(group);
    if crate::watch::names::valid_group_name(group)
        && tokio::fs::metadata(&folder).await.is_ok_and(|m| m.is_dir())
    {
        return Ok(());
    }
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let known = if names.is_empty() {
        "there are no groups yet".to_string()
    } else {
        format!("groups: {}", names.join(", "))
    };
    Err(ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "no group named {group:?} ({known}); a group is a folder in the drop root: create {}",
            shared.config().paths.drop_root.join(group).display()
        ),
    ))
}

async fn ls(shared: &Shared, group: Option<String>) -> Result<Value, ErrorBody> {
    if let Some(group) = &group {
        require_group(shared, group).await?;
    }
    to_value(&sources(shared, group).await?)
}

async fn show(shared: &Shared, source: String, group: Option<String>) -> Result<Value, ErrorBody> {
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
    to_value(&detail)
}
