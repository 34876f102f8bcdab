//! `use`: the caller's current group, set, cleared or only read. The group is recorded in the
//! catalog if its folder was made a moment ago and the watcher has not recorded it yet.

use crate::protocol::{UseInfo, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer, require_group};

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Use) -> Reply<cmd::Use> {
    let cmd::Use { group, clear } = request;
    let peer = known_peer(peer)?;
    if clear && group.is_some() {
        return Err(bad_args("give a group or clear, not both"));
    }
    if let Some(group) = &group {
        require_group(shared, group).await?;
        // A folder seen a moment ago may not be recorded yet; record it now.
        let name = group.clone();
        shared.catalog.ensure_group(name).await?;
    }
    if group.is_some() || clear {
        let set = group.clone();
        shared.catalog.set_current_group(peer.uid, set).await?;
    }
    let current = shared.catalog.current_group(peer.uid).await?;
    Ok(UseInfo {
        group: current,
        uid: peer.uid,
    })
}
