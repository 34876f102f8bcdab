//! The dispatch: one `match` that hands each command to its handler in `commands`, after the
//! request's bounds are checked and, for a state-changing command, the caller is checked
//! against `server.admins` (a refusal is audited).

use super::auth::Peer;
use super::context::Shared;
use super::reply::Data;
use super::{commands, refusals};
use crate::audit::AuditRecord;
use crate::catalog::memo::Encoded;
use crate::protocol::{Command, ErrorBody, ErrorCode, cmd};

/// Answer one command (every command but `events`, which streams; see `stream`).
pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    command: Command,
) -> Result<Data, ErrorBody> {
    // Before any work, the refusal's audit included: a request that names too much is only
    // answered.
    let max_targets = shared.config().server.max_targets as usize;
    command
        .check_bounds(max_targets)
        .map_err(|message| ErrorBody::new(ErrorCode::BadArgs, message))?;
    allow(shared, peer, &command).await?;
    match command {
        Command::Status(r) => wire(commands::status::handle(shared, peer, r).await),
        Command::Groups(r) => wire(commands::groups::handle(shared, peer, r).await),
        Command::Ls(r) => kept(commands::ls::handle(shared, peer, r).await),
        Command::Show(r) => wire(commands::show::handle(shared, peer, r).await),
        Command::Use(r) => wire(commands::use_group::handle(shared, peer, r).await),
        Command::Prefs(r) => wire(commands::prefs::handle(shared, peer, r).await),
        Command::PrefsSet(r) => wire(commands::prefs_set::handle(shared, peer, r).await),
        Command::Set(r) => wire(commands::set::handle(shared, peer, r).await),
        Command::Rm(r) => wire(commands::rm::handle(shared, peer, r).await),
        Command::Reembed(r) => wire(commands::reembed::handle(shared, peer, r).await),
        Command::Jobs(r) => kept(commands::jobs::handle(shared, peer, r).await),
        Command::Retry(r) => wire(commands::retry::handle(shared, peer, r).await),
        Command::Cancel(r) => wire(commands::cancel::handle(shared, peer, r).await),
        Command::Fsck(r) => wire(commands::fsck::handle(shared, peer, r).await),
        Command::Search(r) => wire(commands::search::handle(shared, peer, r).await),
        Command::Audit(r) => wire(commands::audit::handle(shared, peer, r).await),
        Command::Events(_) => Err(ErrorBody::new(
            ErrorCode::Internal,
            "events is a stream and is answered by the connection itself",
        )),
    }
}

/// A handler's typed answer as the `data` of the response: encoded once, straight from the
/// reply type, never built as a JSON tree first.
fn wire<T: serde::Serialize>(answer: Result<T, ErrorBody>) -> Result<Data, ErrorBody> {
    serde_json::value::to_raw_value(&answer?)
        .map(Data::Owned)
        .map_err(|e| {
            ErrorBody::new(
                ErrorCode::Internal,
                format!("cannot encode the answer: {e}"),
            )
        })
}

/// An answer the catalog keeps encoded: its text, shared, not copied.
fn kept<T>(answer: Result<Encoded<T>, ErrorBody>) -> Result<Data, ErrorBody> {
    Ok(Data::Shared(answer?.text()))
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
    let _ = shared.catalog.audit(vec![record]).await;
    Err(ErrorBody::new(ErrorCode::PermissionDenied, message))
}
