//! `retry`: named jobs, or every failed job of a group, queued again; a job still processing
//! is left alone and said so.

use crate::protocol::cmd;
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer, need_group};

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Retry) -> Reply<cmd::Retry> {
    let cmd::Retry {
        jobs: ids,
        failed,
        group,
    } = request;
    let failed_in = if failed {
        Some(need_group(shared, peer, group).await?)
    } else {
        None
    };
    if failed_in.is_none() && ids.is_empty() {
        return Err(bad_args(
            "name the jobs to retry, or failed for every failed job of the group",
        ));
    }
    if failed_in.is_some() && !ids.is_empty() {
        return Err(bad_args("name jobs or ask for every failed job, not both"));
    }
    let actor = known_peer(peer)?.actor();
    let running = shared.queue.processing();
    let outcomes = shared.catalog.retry(ids, failed_in, running, actor).await?;
    Ok(outcomes)
}
