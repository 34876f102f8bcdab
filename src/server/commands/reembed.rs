//! `reembed`: named sources of a group, or all of them, queued for embedding again. `queue` is
//! also what `prefs_set` with `reembed` runs.

use crate::protocol::{ErrorBody, ErrorCode, Queued, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, known_peer, need_group};

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Reembed,
) -> Reply<cmd::Reembed> {
    let cmd::Reembed {
        sources,
        group,
        all,
    } = request;
    let group = need_group(shared, peer, group).await?;
    if all != sources.is_empty() {
        return Err(ErrorBody::new(
            ErrorCode::BadArgs,
            "name the sources to re-embed, or all for every source of the group (not both)",
        ));
    }
    queue(shared, peer, group, sources, all).await
}

pub async fn queue(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    sources: Vec<String>,
    all: bool,
) -> Result<Vec<Queued>, ErrorBody> {
    let actor = known_peer(peer)?.actor();
    Ok(shared.catalog.reembed(group, sources, all, actor).await?)
}
