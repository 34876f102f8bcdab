//! `jobs`: the embedding jobs of a group (or of every group, or the ones named by id), by
//! state, paged with `before`.

use crate::protocol::{ErrorBody, JOBS_MAX, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Shared, bad_args, listing_group, to_value};
use serde_json::Value;

/// Jobs returned when no limit is given (the most is `protocol::JOBS_MAX`; `before` pages on).
const JOBS_DEFAULT: u32 = JOBS_MAX;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Jobs,
) -> Result<Value, ErrorBody> {
    let cmd::Jobs {
        group,
        all,
        state,
        ids,
        limit,
        before,
    } = request;
    let group = if ids.is_empty() {
        listing_group(shared, peer, group, all).await?
    } else {
        None
    };
    let limit = limit.unwrap_or(JOBS_DEFAULT);
    if limit == 0 || limit > JOBS_MAX {
        return Err(bad_args(format!(
            "limit must be between 1 and {JOBS_MAX}; page further with before (the id of the \
             first job of a page)"
        )));
    }
    let jobs = shared
        .catalog
        .call(move |db| db.jobs_page(group.as_deref(), state, &ids, limit, before))
        .await?;
    to_value(&jobs)
}
