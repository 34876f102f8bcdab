//! `rm`: sources or versions of a group deleted; with `force`, what is embedding them is
//! cancelled first and its workers are waited for.

use crate::protocol::{ErrorBody, ErrorCode, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer, need_group};

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Rm) -> Reply<cmd::Rm> {
    let cmd::Rm {
        targets,
        group,
        force,
    } = request;
    let group = need_group(shared, peer, group).await?;
    let peer = known_peer(peer)?;
    if targets.is_empty() {
        return Err(bad_args(
            "name at least one source to delete, like sales.csv or sales.csv@v2",
        ));
    }
    let actor = peer.actor();
    if force {
        // Cancel what is embedding the targets first, and wait for the workers to let go.
        let (wanted_group, wanted, who) = (group.clone(), targets.clone(), actor.clone());
        let stopping = shared
            .catalog
            .cancel_for_delete(wanted_group, wanted, who)
            .await?;
        let left = shared
            .queue
            .stop_jobs(&stopping, std::time::Duration::from_secs(60))
            .await;
        if !left.is_empty() {
            return Err(ErrorBody::new(
                ErrorCode::Refused,
                format!("jobs {left:?} were cancelled but have not stopped yet; try again"),
            ));
        }
    }
    let outcomes = shared.catalog.delete(group, targets, actor).await?;
    Ok(outcomes)
}
