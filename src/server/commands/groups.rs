//! `groups`: every group with its sources counted by status, the caller's current one marked.

use crate::protocol::{ErrorBody, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, current_group, group_list, to_value};
use serde_json::Value;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    _request: cmd::Groups,
) -> Result<Value, ErrorBody> {
    let current = current_group(shared, peer).await?;
    let mut groups = group_list(shared).await?;
    for group in &mut groups {
        group.current = current.as_deref() == Some(group.name.as_str());
    }
    to_value(&groups)
}
