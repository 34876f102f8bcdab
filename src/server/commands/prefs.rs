//! `prefs`: a group's saved embedding preferences (columns, context, template, sheet) and the
//! columns its sources have.

use crate::protocol::{ErrorBody, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, need_group, to_value};
use serde_json::Value;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Prefs,
) -> Result<Value, ErrorBody> {
    let group = need_group(shared, peer, request.group).await?;
    let prefs = shared.catalog.call(move |db| db.prefs(&group)).await?;
    to_value(&prefs)
}
