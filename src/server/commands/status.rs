//! `status`: the daemon at a glance — version, paths, provider, sources by status, the queue,
//! recent errors, the last reload, and whether the caller may change anything.

use crate::clock;
use crate::protocol::{JobState, QueueSummary, Status, StatusInfo, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, group_list};
use std::collections::BTreeMap;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    _request: cmd::Status,
) -> Reply<cmd::Status> {
    let config = shared.config();
    let refused = shared.limits.admins.check(&config, peer).await.err();
    drop(config);
    status(shared, refused).await
}

async fn status(shared: &Shared, read_only: Option<String>) -> Reply<cmd::Status> {
    let config = shared.config();
    let groups = group_list(shared).await?;
    let mut by_status: BTreeMap<Status, u64> = BTreeMap::new();
    for group in &groups {
        for (status, count) in &group.by_status {
            *by_status.entry(*status).or_default() += count;
        }
    }
    let counts = shared.catalog.queue_counts().await?;
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
        database: match config.catalog.backend {
            crate::config::Backend::Sqlite => config.paths.database.display().to_string(),
            crate::config::Backend::Postgres => config.catalog.url.clone(),
        },
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
        nodes: shared.catalog.nodes().await?,
        index_backlog: shared.catalog.index_backlog().await?,
    };
    Ok(info)
}
