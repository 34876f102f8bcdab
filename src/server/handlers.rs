//! One handler per protocol command, dispatched by a single `match`, and what they share:
//! the daemon state, the caller, and how a request's group is decided.
//!
//! A request's group is the one it names, else the caller's current group (`use`), else —
//! for listing commands — every group. State-changing commands are checked against
//! `server.admins` here, before any handler runs, and a refusal is audited.

use super::auth::{self, Peer};
use super::{jobs, manage, read, refusals, set};
use crate::audit::AuditRecord;
use crate::catalog::{Catalog, CatalogError};
use crate::config::{Config, LiveConfig};
use crate::events::Events;
use crate::inflight::InFlight;
use crate::notices::Notices;
use crate::protocol::{Command, ErrorBody, ErrorCode, cmd};
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
    pub(super) previews: super::jobs::Previews,
    /// Recent admin answers per caller, so no user lookup runs on the reactor.
    pub(super) admins: auth::AdminCache,
}

impl Shared {
    pub fn config(&self) -> Arc<Config> {
        self.config.get()
    }
}

/// Answer one command (every command but `events`, which streams; see `stream`).
pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    command: Command,
) -> Result<Value, ErrorBody> {
    // Before any work, the refusal's audit included: a request that names too much is only
    // answered.
    let max_targets = shared.config().server.max_targets as usize;
    command
        .check_bounds(max_targets)
        .map_err(|message| ErrorBody::new(ErrorCode::BadArgs, message))?;
    allow(shared, peer, &command).await?;
    match command {
        Command::Status(cmd::Status {}) => {
            let config = shared.config();
            let refused = shared.limits.admins.check(&config, peer).await.err();
            drop(config);
            read::status(shared, refused).await
        }
        Command::Groups(cmd::Groups {}) => {
            read::groups(shared, current_group(shared, peer).await?).await
        }
        Command::Ls(cmd::Ls { group, all }) => {
            read::ls(shared, listing_group(shared, peer, group, all).await?).await
        }
        Command::Show(cmd::Show {
            source,
            group,
            preview,
            prefs,
        }) => {
            if prefs.is_some() && preview.is_none() {
                return Err(ErrorBody::new(
                    ErrorCode::BadArgs,
                    "prefs only changes how a preview is rendered: give preview too",
                ));
            }
            let group = listing_group(shared, peer, group, false).await?;
            let mut detail = read::show(shared, source, group).await?;
            if let Some(rows) = preview {
                jobs::add_preview(shared, peer, &mut detail, rows, prefs).await?;
            }
            to_value(&detail)
        }
        Command::Use(cmd::Use { group, clear }) => {
            manage::use_group(shared, peer, group, clear).await
        }
        Command::Prefs(cmd::Prefs { group }) => {
            manage::prefs(shared, need_group(shared, peer, group).await?).await
        }
        Command::PrefsSet(cmd::PrefsSet {
            group,
            columns,
            context,
            template,
            sheet,
            clear,
            reembed,
        }) => {
            let group = need_group(shared, peer, group).await?;
            let change = manage::PrefsRequest {
                columns,
                context,
                template,
                sheet,
                clear,
            };
            let nothing = change.columns.is_none()
                && change.context.is_none()
                && change.template.is_none()
                && change.sheet.is_none()
                && !change.clear;
            let mut saved = if reembed && nothing {
                // Only a re-embed with the saved preferences.
                let wanted = group.clone();
                crate::protocol::PrefsSaved {
                    prefs: shared
                        .catalog
                        .call(move |db| db.prefs(&wanted))
                        .await
                        .map_err(catalog_error)?,
                    warnings: Vec::new(),
                    jobs: Vec::new(),
                }
            } else {
                manage::prefs_set(shared, peer, group.clone(), change).await?
            };
            if reembed {
                saved.jobs = jobs::reembed(shared, peer, group, Vec::new(), true).await?;
            }
            to_value(&saved)
        }
        Command::Set(request) => set::handle(shared, peer, request).await,
        Command::Rm(cmd::Rm {
            targets,
            group,
            force,
        }) => {
            manage::rm(
                shared,
                peer,
                need_group(shared, peer, group).await?,
                targets,
                force,
            )
            .await
        }
        Command::Reembed(cmd::Reembed {
            sources,
            group,
            all,
        }) => {
            let group = need_group(shared, peer, group).await?;
            if all != sources.is_empty() {
                return Err(ErrorBody::new(
                    ErrorCode::BadArgs,
                    "name the sources to re-embed, or all for every source of the group (not both)",
                ));
            }
            to_value(&jobs::reembed(shared, peer, group, sources, all).await?)
        }
        Command::Jobs(cmd::Jobs {
            group,
            all,
            state,
            ids,
            limit,
            before,
        }) => {
            let group = if ids.is_empty() {
                listing_group(shared, peer, group, all).await?
            } else {
                None
            };
            jobs::list(shared, group, state, ids, limit, before).await
        }
        Command::Retry(cmd::Retry {
            jobs: ids,
            failed,
            group,
        }) => {
            let group = if failed {
                Some(need_group(shared, peer, group).await?)
            } else {
                None
            };
            jobs::retry(shared, peer, ids, group).await
        }
        Command::Cancel(cmd::Cancel { jobs: ids }) => jobs::cancel(shared, peer, ids).await,
        Command::Fsck(cmd::Fsck { repair }) => jobs::fsck(shared, peer, repair).await,
        Command::Search(cmd::Search { text, group, k }) => {
            let group = need_group(shared, peer, group).await?;
            jobs::search(shared, group, text, k).await
        }
        Command::Audit(cmd::Audit {
            group,
            all,
            since,
            action,
            limit,
            before,
        }) => {
            let group = listing_group(shared, peer, group, all).await?;
            manage::audit(shared, group, since, action, limit, before).await
        }
        Command::Events(_) => Err(ErrorBody::new(
            ErrorCode::Internal,
            "events is a stream and is answered by the connection itself",
        )),
    }
}

/// Refuse (and audit the refusal of) a state-changing command from a non-admin. Refusals
/// of one uid are coalesced (`refusals`): the first of a window is audited with a bounded
/// detail, the rest are counted into one summary.
async fn allow(shared: &Shared, peer: Option<Peer>, command: &Command) -> Result<(), ErrorBody> {
    // A command without an audit action only reads: open to anyone who can connect.
    let Some(action) = command.audit_action() else {
        return Ok(());
    };
    let config = shared.config();
    let checked = shared.limits.admins.check(&config, peer).await;
    drop(config);
    let Err(message) = checked else {
        return Ok(());
    };
    let actor = peer
        .map(|p| p.actor())
        .unwrap_or_else(|| crate::identity::Actor {
            uid: None,
            user: None,
            via: crate::identity::Via::Socket,
        });
    if !shared
        .limits
        .refusals
        .note(&actor, action, std::time::Instant::now())
    {
        return Err(ErrorBody::new(ErrorCode::PermissionDenied, message));
    }
    let detail = match command {
        Command::Rm(cmd::Rm { targets, .. }) => {
            refusals::bound_list(&format!("{message}; wanted to delete "), targets)
        }
        _ => refusals::bound_detail(message.clone()),
    };
    let mut record = AuditRecord::new(actor, action, "refused").detail(detail);
    if let Command::Rm(cmd::Rm { group: Some(g), .. })
    | Command::PrefsSet(cmd::PrefsSet { group: Some(g), .. })
    | Command::Set(cmd::Set { group: Some(g), .. })
    | Command::Reembed(cmd::Reembed { group: Some(g), .. }) = command
    {
        record.group = Some(g.clone());
    }
    let _ = shared.catalog.call(move |db| db.audit(vec![record])).await;
    Err(ErrorBody::new(ErrorCode::PermissionDenied, message))
}

pub fn catalog_error(error: CatalogError) -> ErrorBody {
    match error {
        CatalogError::NotFound(message) => ErrorBody::new(ErrorCode::NotFound, message),
        CatalogError::Ambiguous(message) => ErrorBody::new(ErrorCode::Ambiguous, message),
        other => ErrorBody::new(ErrorCode::Internal, other.to_string()),
    }
}

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
    shared
        .catalog
        .call(move |db| db.current_group(peer.uid))
        .await
        .map_err(catalog_error)
}

/// The group a listing command works on: the named one (which must exist), else the
/// caller's current group, else `None` (every group). `all` means every group.
pub async fn listing_group(
    shared: &Shared,
    peer: Option<Peer>,
    group: Option<String>,
    all: bool,
) -> Result<Option<String>, ErrorBody> {
    if all {
        if group.is_some() {
            return Err(ErrorBody::new(
                ErrorCode::BadArgs,
                "give a group or all, not both",
            ));
        }
        return Ok(None);
    }
    if let Some(group) = group {
        require_group(shared, &group).await?;
        return Ok(Some(group));
    }
    current_group(shared, peer).await
}

/// The group a command needs one of: the named one, else the current group.
pub async fn need_group(
    shared: &Shared,
    peer: Option<Peer>,
    group: Option<String>,
) -> Result<String, ErrorBody> {
    match listing_group(shared, peer, group, false).await? {
        Some(group) => Ok(group),
        None => Err(ErrorBody::new(
            ErrorCode::BadArgs,
            "no group given and no current group; name one with \"group\" (ingestctl -g GROUP) \
             or set one with the use command (ingestctl use GROUP)",
        )),
    }
}

pub async fn require_group(shared: &Shared, group: &str) -> Result<(), ErrorBody> {
    let groups = shared
        .catalog
        .call(|db| db.list_groups())
        .await
        .map_err(catalog_error)?;
    if groups.iter().any(|g| g.name == group) {
        return Ok(());
    }
    // A folder made a moment ago is a group even before the watcher has recorded it.
    let folder = shared.config().paths.drop_root.join(group);
    if crate::watch::names::valid_group_name(group)
        && tokio::fs::metadata(&folder).await.is_ok_and(|m| m.is_dir())
    {
        return Ok(());
    }
    let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
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
