//! `groups`: every group with its sources counted by status, the caller's current one marked.

use crate::protocol::cmd;
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, current_group, group_list};

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    _request: cmd::Groups,
) -> Reply<cmd::Groups> {
    let current = current_group(shared, peer).await?;
    let mut groups = group_list(shared).await?;
    for group in &mut groups {
        group.current = current.as_deref() == Some(group.name.as_str());
    }
    Ok(groups)
}
