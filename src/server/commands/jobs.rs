//! `jobs`: the embedding jobs of a group (or of every group, or the ones named by id), by
//! state, paged with `before`. The answer comes encoded: the catalog keeps a page and its
//! JSON while nothing changes.

use crate::protocol::cmd::Scoped;
use crate::protocol::{JOBS_MAX, cmd};
use crate::server::auth::Peer;
use crate::server::context::{EncodedReply, Shared, bad_args, encoding_failed, in_scope};

/// Jobs returned when no limit is given (the most is `protocol::JOBS_MAX`; `before` pages on).
const JOBS_DEFAULT: u32 = JOBS_MAX;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Jobs,
) -> EncodedReply<cmd::Jobs> {
    let scope = request.scope();
    let cmd::Jobs {
        state,
        ids,
        limit,
        before,
        ..
    } = request;
    let group = if ids.is_empty() {
        in_scope(shared, peer, scope?).await?
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
    let page = shared
        .catalog
        .jobs_page(group, state, ids, limit, before)
        .await?;
    page.encoded().map_err(encoding_failed)
}
