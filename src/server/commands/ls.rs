//! `ls`: the sources of a group (or of every group), with the files in flight (settling or
//! validating) laid over the catalog's answer, so a drop shows the moment it is seen.

use crate::protocol::{ErrorBody, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, listing_group, sources, to_value};
use serde_json::Value;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Ls,
) -> Result<Value, ErrorBody> {
    let cmd::Ls { group, all } = request;
    let group = listing_group(shared, peer, group, all).await?;
    to_value(&sources(shared, group).await?)
}
