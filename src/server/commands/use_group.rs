//! `use`: the caller's current group, set, cleared or only read. The group is recorded in the
//! catalog if its folder was made a moment ago and the watcher has not recorded it yet.

use crate::protocol::{ErrorBody, UseInfo, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, bad_args, known_peer, require_group, to_value};
use serde_json::Value;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Use,
) -> Result<Value, ErrorBody> {
    let cmd::Use { group, clear } = request;
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
            .await?;
    }
    if group.is_some() || clear {
        let set = group.clone();
        shared
            .catalog
            .call(move |db| db.set_current_group(peer.uid, set.as_deref()))
            .await?;
    }
    let current = shared
        .catalog
        .call(move |db| db.current_group(peer.uid))
        .await?;
    to_value(&UseInfo {
        group: current,
        uid: peer.uid,
    })
}
