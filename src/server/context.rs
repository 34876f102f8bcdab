//! What every command handler shares: the daemon state (`Shared`, `SocketLimits`), the caller
//! (`known_peer`), which group a request works on (`in_scope`, `need_group`,
//! `require_group`), the in-flight overlay over catalog listings, and how catalog errors
//! become error bodies (`From<CatalogError> for ErrorBody`).
//!
//! A request's group is the one it names, else the caller's current group (`use`), else —
//! for listing commands — every group.

use super::auth::{self, Peer};
use crate::catalog::memo::Encoded;
use crate::catalog::{Catalog, CatalogError};
use crate::config::Config;
use crate::events::Events;
use crate::notices::Notices;
use crate::protocol::cmd::{self, Scope};
use crate::protocol::{ErrorBody, ErrorCode, GroupInfo, SourceSummary, Status};
use crate::service::live::LiveConfig;
use crate::watch::inflight::{InFlight, Phase};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// What every handler may read.
pub struct Shared {
    /// Replaced whole on reload; take a snapshot with `config()`, never hold it across an await.
    pub config: LiveConfig,
    pub catalog: Catalog,
    pub in_flight: InFlight,
    pub notices: Notices,
    pub events: Events,
    pub queue: Arc<crate::queue::Queue>,
    pub started_ms: i64,
    pub started: Instant,
    /// What the socket's limits count across connections.
    pub limits: SocketLimits,
}

/// Counters the socket's limits keep across connections (see `docs/operations.md`,
/// Security model).
#[derive(Debug, Default)]
pub struct SocketLimits {
    /// Refused requests, coalesced per uid.
    pub(super) refusals: super::refusals::Refusals,
    /// Previews running per uid, and the global queue they wait in.
    pub(super) previews: super::commands::show::Previews,
    /// Recent admin answers per caller, so no user lookup runs on the reactor.
    pub(super) admins: auth::AdminCache,
}

impl Shared {
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }
}

impl From<CatalogError> for ErrorBody {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NotFound(message) => ErrorBody::new(ErrorCode::NotFound, message),
            CatalogError::Ambiguous(message) => ErrorBody::new(ErrorCode::Ambiguous, message),
            other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
        }
    }
}

pub fn bad_args(message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::BadArgs, message)
}

/// What the handler of request `C` answers: the reply type the protocol ties to `C`
/// (`Call::Reply`), so a handler cannot answer a shape its clients do not expect.
pub type Reply<C> = Result<<C as crate::protocol::Call>::Reply, ErrorBody>;

/// [`Reply`] already encoded: for answers the catalog keeps with their JSON text.
pub type EncodedReply<C> = Result<Encoded<<C as crate::protocol::Call>::Reply>, ErrorBody>;

pub fn to_value<T: serde::Serialize>(value: &T) -> Result<Value, ErrorBody> {
    serde_json::to_value(value).map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
}

/// The caller's current group, if set and the caller is known.
pub async fn current_group(
    shared: &Shared,
    peer: Option<Peer>,
) -> Result<Option<String>, ErrorBody> {
    let Some(peer) = peer else {
        return Ok(None);
    };
    Ok(shared.catalog.current_group(peer.uid).await?)
}

/// The group a listing request covers: the named one (which must exist), else the caller's
/// current group, else `None` (every group).
pub async fn in_scope(
    shared: &Shared,
    peer: Option<Peer>,
    scope: Scope,
) -> Result<Option<String>, ErrorBody> {
    match scope {
        Scope::All => Ok(None),
        Scope::Group(group) => {
            require_group(shared, &group).await?;
            Ok(Some(group))
        }
        Scope::Current => current_group(shared, peer).await,
    }
}

/// The group a command needs one of: the named one, else the current group.
pub async fn need_group(
    shared: &Shared,
    peer: Option<Peer>,
    group: Option<String>,
) -> Result<String, ErrorBody> {
    match in_scope(shared, peer, Scope::named_or_current(group)).await? {
        Some(group) => Ok(group),
        None => Err(ErrorBody::new(
            ErrorCode::BadArgs,
            "no group given and no current group; name one with \"group\" (ingestctl -g GROUP) \
             or set one with the use command (ingestctl use GROUP)",
        )),
    }
}

pub async fn require_group(shared: &Shared, group: &str) -> Result<(), ErrorBody> {
    let names = shared.catalog.group_names().await?;
    if names.iter().any(|name| name == group) {
        return Ok(());
    }
    // A folder made a moment ago is a group even before the watcher has recorded it.
    let folder = shared.config().paths.drop_root.join(group);
    if crate::watch::names::valid_group_name(group)
        && tokio::fs::metadata(&folder).await.is_ok_and(|m| m.is_dir())
    {
        return Ok(());
    }
    let known = if names.is_empty() {
        "there are no groups yet".to_string()
    } else {
        format!("groups: {}", names.join(", "))
    };
    Err(ErrorBody::new(
        ErrorCode::NotFound,
        format!(
            "no group named {group:?} ({known}); a group is a folder in the drop root: create {}",
            shared.config().paths.drop_root.join(group).display()
        ),
    ))
}

pub fn known_peer(peer: Option<Peer>) -> Result<Peer, ErrorBody> {
    peer.ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::Refused,
            "the caller's identity is unknown (no peer credentials on this socket)",
        )
    })
}

/// Sources of `group` (all groups if `None`) with in-flight files laid over them, encoded.
/// While no file of that scope is in flight, this is the catalog's kept listing and its JSON
/// text as they are (`catalog::memo`): nothing is read or encoded again, and the text is
/// copied once, into the answer.
pub async fn sources(shared: &Shared, group: Option<String>) -> EncodedReply<cmd::Ls> {
    let listing = shared.catalog.list_sources(group.clone()).await?;
    let in_scope = |(g, _): &(String, String)| group.as_ref().is_none_or(|wanted| wanted == g);
    let encoded = if shared.in_flight.snapshot().keys().any(in_scope) {
        let mut list = listing.value.clone();
        overlay(&mut list, &shared.in_flight, group.as_deref());
        Encoded::new(&list)
    } else {
        listing.encoded()
    };
    encoded.map_err(encoding_failed)
}

/// An answer that could not be encoded (never expected: every reply type serializes).
pub fn encoding_failed(error: serde_json::Error) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Internal,
        format!("cannot encode the answer: {error}"),
    )
}

/// Mark sources whose file is in flight, and add those the catalog has not seen yet.
pub fn overlay(list: &mut Vec<SourceSummary>, in_flight: &InFlight, group: Option<&str>) {
    let flying = in_flight.snapshot();
    if flying.is_empty() {
        return;
    }
    let mut added = false;
    for ((g, name), phase) in flying {
        if group.is_some_and(|wanted| wanted != g) {
            continue;
        }
        let status = match phase {
            Phase::Pending => Status::Pending,
            Phase::Validating => Status::Validating,
        };
        // A file waiting to be tried again says why.
        let reason = in_flight.reason(&g, &name);
        match list.iter_mut().find(|s| s.group == g && s.name == name) {
            Some(source) => {
                source.status = status;
                source.reason = reason;
            }
            None => {
                added = true;
                list.push(SourceSummary {
                    group: g,
                    name,
                    version: None,
                    status,
                    rows: None,
                    columns: Vec::new(),
                    skipped_columns: Vec::new(),
                    reason,
                    format: None,
                    size: None,
                    sha256: None,
                    added_at: None,
                    added_by: None,
                    added_by_uid: None,
                    updated_at: None,
                });
            }
        }
    }
    if added {
        list.sort_by(|a, b| (&a.group, &a.name).cmp(&(&b.group, &b.name)));
    }
}

/// Every group with its sources counted by status, the in-flight overlay included.
pub async fn group_list(shared: &Shared) -> Result<Vec<GroupInfo>, ErrorBody> {
    // The catalog counts; only the files in flight are laid over its counts, as `ls` lays
    // them over its list: a file being validated counts as validating, in place of its
    // source's stored status if it has one.
    let flying = shared.in_flight.snapshot();
    let keys: Vec<(String, String)> = flying.keys().cloned().collect();
    let (mut groups, stored) = shared.catalog.group_counts(keys).await?;
    let at: std::collections::HashMap<String, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.name.clone(), i))
        .collect();
    for (((group, _), phase), stored) in flying.into_iter().zip(stored) {
        let Some(&i) = at.get(&group) else {
            continue;
        };
        let group = &mut groups[i];
        match stored {
            Some(status) => {
                if let Some(count) = group.by_status.get_mut(&status) {
                    *count -= 1;
                    if *count == 0 {
                        group.by_status.remove(&status);
                    }
                }
            }
            None => group.sources += 1,
        }
        let shown = match phase {
            Phase::Pending => Status::Pending,
            Phase::Validating => Status::Validating,
        };
        *group.by_status.entry(shown).or_default() += 1;
    }
    Ok(groups)
}
