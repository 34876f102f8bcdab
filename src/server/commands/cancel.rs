//! `cancel`: named jobs cancelled; the answer waits for their processing workers to let go, so
//! a script may delete or retry right after.

use crate::protocol::cmd;
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer};
use std::time::Duration;

/// How long `cancel` waits for a processing job's worker to let go before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Cancel,
) -> Reply<cmd::Cancel> {
    let cmd::Cancel { jobs: ids } = request;
    if ids.is_empty() {
        return Err(bad_args("name the jobs to cancel"));
    }
    let actor = known_peer(peer)?.actor();
    let (mut outcomes, processing) = shared.catalog.cancel(ids, actor).await?;
    // Answer once the workers have let go, so a script may delete or retry right after.
    let left = shared.queue.stop_jobs(&processing, CANCEL_WAIT).await;
    for outcome in &mut outcomes {
        if left.iter().any(|id| id.to_string() == outcome.target) {
            outcome
                .message
                .push_str("; its worker is still finishing the current batch and will discard it");
        }
    }
    Ok(outcomes)
}
