//! `show`: one source with its versions, jobs and embeddings, the in-flight overlay included;
//! with `preview`, the texts its first rows render to under the group's preferences (or a
//! draft of them, tried and not saved), each preview a parse worker counted against its
//! caller's and the daemon's limits (`Previews`).

use crate::catalog::CatalogError;
use crate::embed::render::Renderer;
use crate::ingest::isolate::slots::ParseSlots;
use crate::protocol::cmd::Scope;
use crate::protocol::{ErrorBody, ErrorCode, PrefsDraft, SourceDetail, cmd};
use crate::server::auth::Peer;
use crate::server::context::{
    Reply, Shared, SocketLimits, bad_args, in_scope, overlay, require_group,
};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Mutex, OnceLock};

/// Rows a preview may render.
const PREVIEW_MAX: u32 = 1000;

pub async fn handle(shared: &Shared, peer: Option<Peer>, request: cmd::Show) -> Reply<cmd::Show> {
    let cmd::Show {
        source,
        group,
        preview,
        prefs,
    } = request;
    if prefs.is_some() && preview.is_none() {
        return Err(ErrorBody::new(
            ErrorCode::BadArgs,
            "prefs only changes how a preview is rendered: give preview too",
        ));
    }
    let group = in_scope(shared, peer, Scope::named_or_current(group)).await?;
    let mut detail = show(shared, source, group).await?;
    if let Some(rows) = preview {
        add_preview(shared, peer, &mut detail, rows, prefs).await?;
    }
    Ok(detail)
}

async fn show(
    shared: &Shared,
    source: String,
    group: Option<String>,
) -> Result<crate::protocol::SourceDetail, ErrorBody> {
    if let Some(group) = &group {
        require_group(shared, group).await?;
    }
    let wanted_group = group.clone();
    let name = source.clone();
    let mut detail = match shared.catalog.show_source(wanted_group, name).await {
        Ok(detail) => detail,
        Err(CatalogError::NotFound(message)) => {
            // Seen but not yet stored: show that rather than "not found".
            let mut flying = Vec::new();
            overlay(&mut flying, &shared.in_flight, group.as_deref());
            match flying.into_iter().find(|s| s.name == source) {
                Some(summary) => crate::protocol::SourceDetail {
                    summary,
                    versions: Vec::new(),
                    jobs: Vec::new(),
                    embeddings: None,
                    preview: None,
                },
                None => return Err(ErrorBody::new(ErrorCode::NotFound, message)),
            }
        }
        Err(other) => return Err(other.into()),
    };
    let mut one = vec![detail.summary.clone()];
    overlay(
        &mut one,
        &shared.in_flight,
        Some(&detail.summary.group.clone()),
    );
    if let Some(summary) = one.into_iter().find(|s| s.name == detail.summary.name) {
        detail.summary = summary;
    }
    Ok(detail)
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

impl SocketLimits {
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
async fn add_preview(
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
    let mut version = shared.catalog.newest_version(group, source).await?;
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
