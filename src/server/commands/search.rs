//! `search`: the nearest rows of a group to a text, the query embedded with the live provider
//! on a blocking thread.

use crate::embed::EmbedError;
use crate::protocol::{ErrorBody, ErrorCode, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, need_group};
use std::sync::Arc;

/// Search results when no `k` is given, and the most a request may ask for.
const K_DEFAULT: u32 = 10;
const K_MAX: u32 = 1000;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::Search,
) -> Reply<cmd::Search> {
    let cmd::Search { text, group, k } = request;
    let group = need_group(shared, peer, group).await?;
    let k = k.unwrap_or(K_DEFAULT);
    if k == 0 || k > K_MAX {
        return Err(bad_args(format!("k must be between 1 and {K_MAX}")));
    }
    if text.trim().is_empty() {
        return Err(bad_args("give the text to search for"));
    }
    let providers = Arc::clone(&shared.queue.providers);
    let catalog = shared.catalog.clone();
    let result = tokio::task::spawn_blocking(move || {
        let provider = providers.get()?;
        let query = provider.embed_query(&text)?;
        Ok::<_, EmbedError>(catalog.search_blocking(
            &group,
            provider.identity(),
            &query,
            k as usize,
        ))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| ErrorBody::new(ErrorCode::Refused, format!("cannot embed the query: {e}")))??;
    Ok(result)
}
