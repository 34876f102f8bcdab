//! `ls`: the sources of a group (or of every group), with the files in flight (settling or
//! validating) laid over the catalog's answer, so a drop shows the moment it is seen. The
//! answer comes encoded: the catalog keeps a listing and its JSON while nothing changes.

use crate::protocol::cmd;
use crate::protocol::cmd::Scoped;
use crate::server::auth::Peer;
use crate::server::context::{EncodedReply, Shared, in_scope, sources};

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Ls,
) -> EncodedReply<cmd::Ls> {
    let group = in_scope(shared, peer, request.scope()?).await?;
    sources(shared, group).await
}
