//! `prefs`: a group's saved embedding preferences (columns, context, template, sheet) and the
//! columns its sources have.

use crate::protocol::cmd;
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, need_group};

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Prefs) -> Reply<cmd::Prefs> {
    let group = need_group(shared, peer, request.group).await?;
    let prefs = shared.catalog.prefs(group).await?;
    Ok(prefs)
}
