//! Handlers of the embedding commands: `reembed`, `jobs`, `retry`, `cancel`, `search`, the
//! preview of `show`, and `fsck`, which needs to know which jobs are really running.
//!
//! The catalog decides what each request does to the queue; this module adds what only the
//! running daemon can do: stop a processing worker (`cancel`), embed a query with the live
//! provider (`search`), and render rows with the group's preferences (`show --preview`).

use super::auth::Peer;
use super::handlers::{Shared, catalog_error, to_value};
use super::manage::known_peer;
use crate::embed::EmbedError;
use crate::embed::render::Renderer;
use crate::protocol::{ErrorBody, ErrorCode, JobState, Queued, SourceDetail};
use serde_json::Value;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Jobs returned when no limit is given, and the most a request may ask for.
const JOBS_DEFAULT: u32 = 1000;
const JOBS_MAX: u32 = 100_000;
/// Search results when no `k` is given, and the most a request may ask for.
const K_DEFAULT: u32 = 10;
const K_MAX: u32 = 1000;
/// Rows a preview may render.
const PREVIEW_MAX: u32 = 1000;
/// How long `cancel` waits for a processing job's worker to let go before answering.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

fn bad_args(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadArgs, message)
}

pub async fn reembed(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    sources: Vec<String>,
    all: bool,
) -> Result<Vec<Queued>, ErrorBody> {
    let actor = known_peer(peer)?.actor();
    shared
        .catalog
        .call(move |db| db.reembed(&group, &sources, all, &actor))
        .await
        .map_err(catalog_error)
}

pub async fn list(
    shared: &Shared,
    group: Option<String>,
    state: Option<JobState>,
    ids: Vec<i64>,
    limit: Option<u32>,
) -> Result<Value, ErrorBody> {
    let limit = limit.unwrap_or(JOBS_DEFAULT);
    if limit == 0 || limit > JOBS_MAX {
        return Err(bad_args(format!("limit must be between 1 and {JOBS_MAX}")));
    }
    let jobs = shared
        .catalog
        .call(move |db| db.list_jobs(group.as_deref(), state, &ids, limit))
        .await
        .map_err(catalog_error)?;
    to_value(&jobs)
}

pub async fn retry(
    shared: &Shared,
    peer: Option<Peer>,
    ids: Vec<i64>,
    failed_in: Option<String>,
) -> Result<Value, ErrorBody> {
    if failed_in.is_none() && ids.is_empty() {
        return Err(bad_args(
            "name the jobs to retry, or failed for every failed job of the group",
        ));
    }
    if failed_in.is_some() && !ids.is_empty() {
        return Err(bad_args("name jobs or ask for every failed job, not both"));
    }
    let actor = known_peer(peer)?.actor();
    let running = shared.queue.processing();
    let outcomes = shared
        .catalog
        .call(move |db| db.retry(&ids, failed_in.as_deref(), &running, &actor))
        .await
        .map_err(catalog_error)?;
    to_value(&outcomes)
}

pub async fn cancel(
    shared: &Shared,
    peer: Option<Peer>,
    ids: Vec<i64>,
) -> Result<Value, ErrorBody> {
    if ids.is_empty() {
        return Err(bad_args("name the jobs to cancel"));
    }
    let actor = known_peer(peer)?.actor();
    let (mut outcomes, processing) = shared
        .catalog
        .call(move |db| db.cancel(&ids, &actor))
        .await
        .map_err(catalog_error)?;
    // Answer once the workers have let go, so a script may delete or retry right after.
    let left = shared.queue.stop_jobs(&processing, CANCEL_WAIT).await;
    for outcome in &mut outcomes {
        if left.iter().any(|id| id.to_string() == outcome.target) {
            outcome
                .message
                .push_str("; its worker is still finishing the current batch and will discard it");
        }
    }
    to_value(&outcomes)
}

pub async fn search(
    shared: &Shared,
    group: String,
    text: String,
    k: Option<u32>,
) -> Result<Value, ErrorBody> {
    let k = k.unwrap_or(K_DEFAULT);
    if k == 0 || k > K_MAX {
        return Err(bad_args(format!("k must be between 1 and {K_MAX}")));
    }
    if text.trim().is_empty() {
        return Err(bad_args("give the text to search for"));
    }
    let providers = Arc::clone(&shared.queue.providers);
    let database = shared.catalog.path().to_path_buf();
    let result = tokio::task::spawn_blocking(move || {
        let provider = providers.get()?;
        let query = provider
            .embed(std::slice::from_ref(&text))?
            .into_iter()
            .next()
            .ok_or_else(|| EmbedError::Permanent("the provider returned no vector".into()))?;
        Ok::<_, EmbedError>(crate::catalog::search::search(
            &database,
            &group,
            provider.identity(),
            &query,
            k as usize,
        ))
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|e| ErrorBody::new(ErrorCode::Refused, format!("cannot embed the query: {e}")))?
    .map_err(catalog_error)?;
    to_value(&result)
}

/// Fill `detail.preview` with the texts the first `rows` rows of the newest version render
/// to under the group's preferences.
pub async fn add_preview(
    shared: &Shared,
    detail: &mut SourceDetail,
    rows: u32,
) -> Result<(), ErrorBody> {
    if rows == 0 || rows > PREVIEW_MAX {
        return Err(bad_args(format!(
            "preview must be between 1 and {PREVIEW_MAX} rows"
        )));
    }
    let (group, source) = (detail.summary.group.clone(), detail.summary.name.clone());
    let version = shared
        .catalog
        .call(move |db| db.newest_version(&group, &source))
        .await
        .map_err(catalog_error)?;
    let config = shared.config();
    let texts = tokio::task::spawn_blocking(move || {
        let mut texts = Vec::new();
        let mut renderer: Option<Renderer> = None;
        crate::queue::rows::stream(&version, &config, &mut |event| match event {
            crate::queue::rows::RowEvent::Columns(columns) => {
                renderer = Some(Renderer::new(&version.source, &version.prefs, columns));
                ControlFlow::Continue(())
            }
            crate::queue::rows::RowEvent::Row(cells) => {
                let renderer = renderer.get_or_insert_with(|| {
                    Renderer::new(&version.source, &version.prefs, &version.columns)
                });
                texts.push(renderer.render(cells));
                if texts.len() >= rows as usize {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            }
        })
        .map(|_| texts)
    })
    .await
    .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?
    .map_err(|error| {
        ErrorBody::new(
            ErrorCode::Refused,
            format!("cannot read the stored version for a preview: {error}"),
        )
    })?;
    detail.preview = Some(texts);
    Ok(())
}

pub async fn fsck(shared: &Shared, peer: Option<Peer>, repair: bool) -> Result<Value, ErrorBody> {
    let actor = match peer {
        Some(peer) => peer.actor(),
        None if repair => known_peer(peer)?.actor(),
        None => crate::identity::Actor::daemon(),
    };
    let storage_root = shared.config().paths.storage_root.clone();
    let running_at = crate::clock::now_ms();
    let running = shared.queue.processing();
    let report = shared
        .catalog
        .call(move |db| db.fsck(&storage_root, &running, running_at, repair, &actor))
        .await
        .map_err(catalog_error)?;
    to_value(&report)
}
