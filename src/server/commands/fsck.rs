//! `fsck`: the catalog checked against the storage root, and with `repair`, fixed; it needs to
//! know which jobs are really running, which only the daemon knows.

use crate::protocol::cmd;
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, known_peer};

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Fsck) -> Reply<cmd::Fsck> {
    let cmd::Fsck { repair } = request;
    let actor = match peer {
        Some(peer) => peer.actor(),
        None if repair => known_peer(peer)?.actor(),
        None => <crate::identity::Actor as crate::identity::Resolve>::daemon(),
    };
    let storage_root = shared.config().paths.storage_root.clone();
    let running_at = crate::clock::now_ms();
    let running = shared.queue.processing();
    let report = shared
        .catalog
        .fsck(storage_root, running, running_at, repair, actor)
        .await?;
    Ok(report)
}
