//! `fsck`: the catalog checked against the storage root, and with `repair`, fixed; it needs to
//! know which jobs are really running, which only the daemon knows.

use crate::protocol::{ErrorBody, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, known_peer, to_value};
use serde_json::Value;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Fsck,
) -> Result<Value, ErrorBody> {
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
        .call(move |db| db.fsck(&storage_root, &running, running_at, repair, &actor))
        .await?;
    to_value(&report)
}
