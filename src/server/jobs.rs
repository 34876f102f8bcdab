//! Handlers of the embedding commands: `reembed`, `jobs`, `retry`, `cancel`, `search`, the
//! preview of `show`, and `fsck`, which needs to know which jobs are really running.
//!
//! The catalog decides what each request does to the queue; this module adds what only the
//! running daemon can do: stop a processing worker (`cancel`), embed a query with the live
//! provider (`search`), and render rows with the group's preferences, or with a draft of
//! them that is tried and not saved (`show` with `preview` and `prefs`), each preview a parse
//! worker counted against its caller's and the daemon's limits.

use super::auth::Peer;
use super::handlers::{Shared, catalog_error, to_value};
use super::manage::known_peer;
use crate::embed::EmbedError;
use crate::embed::render::Renderer;
use crate::ingest::isolate::slots::ParseSlots;
use crate::protocol::{ErrorBody, ErrorCode, JOBS_MAX, JobState, PrefsDraft, Queued, SourceDetail};
use serde_json::Value;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Jobs returned when no limit is given (the most is `protocol::JOBS_MAX`; `before` pages on).
const JOBS_DEFAULT: u32 = JOBS_MAX;
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
    before: Option<i64>,
) -> Result<Value, ErrorBody> {
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

/// The parse workers previews run: per uid (refused beyond `server.previews_per_uid` for
/// users who are not admins) and in all (one of the `ingest.workers` places ingest holds
/// too; a preview waits its turn for one, it is not refused).
#[derive(Debug, Default)]
pub struct Previews {
    /// Short sections with no await: a std lock.
    per_uid: Mutex<HashMap<u32, usize>>,
    /// The daemon's places, shared with ingest; in a program that shares none (tests of the
    /// handlers), made from `ingest.workers` at the first preview.
    global: OnceLock<ParseSlots>,
}

impl super::handlers::SocketLimits {
    /// Limits whose previews take their parse-worker places from `slots`, the places ingest
    /// takes too.
    pub fn sharing(slots: ParseSlots) -> Self {
        let limits = Self::default();
        let _ = limits.previews.global.set(slots);
        limits
    }
}

/// A running preview of one uid; dropping it frees its place.
struct PreviewTurn<'a> {
    previews: &'a Previews,
    uid: u32,
}

impl Previews {
    fn start(&self, uid: u32, cap: usize) -> Result<PreviewTurn<'_>, ErrorBody> {
        let mut per_uid = self.per_uid.lock().unwrap_or_else(|e| e.into_inner());
        let running = per_uid.entry(uid).or_default();
        if *running >= cap {
            let message = if cap == 0 {
                "previews are for administrators only here (server.previews_per_uid = 0)"
                    .to_string()
            } else {
                format!(
                    "uid {uid} already has {running} previews running, the most one user may \
                     (server.previews_per_uid); wait for them to finish"
                )
            };
            return Err(ErrorBody::new(ErrorCode::Refused, message));
        }
        *running += 1;
        Ok(PreviewTurn {
            previews: self,
            uid,
        })
    }

    fn global(&self, workers: usize) -> &ParseSlots {
        self.global.get_or_init(|| ParseSlots::new(workers))
    }

    #[cfg(test)]
    fn running(&self, uid: u32) -> usize {
        let per_uid = self.per_uid.lock().unwrap_or_else(|e| e.into_inner());
        per_uid.get(&uid).copied().unwrap_or(0)
    }
}

impl Drop for PreviewTurn<'_> {
    fn drop(&mut self) {
        let mut per_uid = self
            .previews
            .per_uid
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(running) = per_uid.get_mut(&self.uid) {
            *running = running.saturating_sub(1);
            if *running == 0 {
                per_uid.remove(&self.uid);
            }
        }
    }
}

/// Fill `detail.preview` with the texts the first `rows` rows of the newest version render
/// to under the group's preferences, or under `draft` in their place (tried, not saved).
pub async fn add_preview(
    shared: &Shared,
    peer: Option<Peer>,
    detail: &mut SourceDetail,
    rows: u32,
    draft: Option<PrefsDraft>,
) -> Result<(), ErrorBody> {
    if rows == 0 || rows > PREVIEW_MAX {
        return Err(bad_args(format!(
            "preview must be between 1 and {PREVIEW_MAX} rows"
        )));
    }
    // A template being typed is often half done: say what is wrong with it, as `prefs_set`
    // would, before a parse worker is taken.
    let template = draft
        .as_ref()
        .and_then(|d| d.template.clone())
        .filter(|t| !t.is_empty());
    if let Some(template) = &template {
        crate::template::parse(template).map_err(|e| bad_args(format!("template: {e}")))?;
    }
    let config = shared.config();
    let previews = &shared.limits.previews;
    let uid = peer.map_or(u32::MAX, |p| p.uid);
    let _turn = if shared.limits.admins.privileged(&config, peer).await {
        None
    } else {
        Some(previews.start(uid, config.server.previews_per_uid as usize)?)
    };
    // Wait for a parse-worker place, in line with ingest; the wait is not a refusal.
    let slots = previews.global(config.ingest.workers);
    drop(config);
    let _place = match slots.try_take() {
        Some(place) => place,
        None => {
            tracing::info!(
                uid,
                "a preview waits for a parse worker: every place (ingest.workers) is taken"
            );
            slots.take().await
        }
    };
    let (group, source) = (detail.summary.group.clone(), detail.summary.name.clone());
    let mut version = shared
        .catalog
        .call(move |db| db.newest_version(&group, &source))
        .await
        .map_err(catalog_error)?;
    if let Some(draft) = draft {
        version.prefs.columns = draft.columns;
        version.prefs.context = draft.context;
        version.prefs.template = template;
    }
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
        None => <crate::identity::Actor as crate::identity::Resolve>::daemon(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_are_capped_per_uid_and_freed_when_done() {
        let previews = Previews::default();
        let first = previews.start(1000, 2).unwrap();
        let second = previews.start(1000, 2).unwrap();
        let refused = previews.start(1000, 2).err().unwrap();
        assert_eq!(refused.code, ErrorCode::Refused);
        assert!(
            refused.message.contains("server.previews_per_uid"),
            "{refused:?}"
        );
        // Another user has their own allowance.
        drop(previews.start(1001, 2).unwrap());
        drop(first);
        assert_eq!(previews.running(1000), 1);
        drop(second);
        assert_eq!(previews.running(1000), 0);
        assert!(previews.start(7, 0).is_err(), "0: administrators only");
    }
}
