//! `prefs_set`: a group's embedding preferences changed, checked with messages that say what
//! to do (a template that does not parse or names no column is refused; names no source has
//! are saved with a warning), and with `reembed`, every source of the group queued again.

use crate::catalog::PrefsChange;
use crate::protocol::{ErrorBody, PrefsSaved, cmd};
use crate::server::auth::Peer;
use crate::server::context::{Reply, Shared, bad_args, known_peer, need_group};
use crate::template;

pub async fn handle(
    shared: &Shared,
    peer: Option<Peer>,
    request: cmd::PrefsSet,
) -> Reply<cmd::PrefsSet> {
    let cmd::PrefsSet {
        group,
        columns,
        context,
        template,
        sheet,
        clear,
        reembed,
    } = request;
    let group = need_group(shared, peer, group).await?;
    let change = PrefsRequest {
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
            prefs: shared.catalog.prefs(wanted).await?,
            warnings: Vec::new(),
            jobs: Vec::new(),
        }
    } else {
        prefs_set(shared, peer, group.clone(), change).await?
    };
    if reembed {
        saved.jobs = super::reembed::queue(shared, peer, group, Vec::new(), true).await?;
    }
    Ok(saved)
}

/// `prefs_set` as it came on the wire.
pub struct PrefsRequest {
    pub columns: Option<Vec<String>>,
    pub context: Option<Vec<String>>,
    pub template: Option<String>,
    pub sheet: Option<String>,
    pub clear: bool,
}

fn clean_names(field: &str, names: Option<Vec<String>>) -> Result<Option<Vec<String>>, ErrorBody> {
    let Some(names) = names else {
        return Ok(None);
    };
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(bad_args(format!("{field}: column names must not be empty")));
        }
        if !out.contains(&name) {
            out.push(name);
        }
    }
    Ok(Some(out))
}

async fn prefs_set(
    shared: &Shared,
    peer: Option<Peer>,
    group: String,
    request: PrefsRequest,
) -> Result<PrefsSaved, ErrorBody> {
    let peer = known_peer(peer)?;
    let columns = clean_names("columns", request.columns)?;
    let context = clean_names("context", request.context)?;
    let template = match request.template {
        None => None,
        Some(text) if text.trim().is_empty() => Some(None),
        Some(text) => {
            let pieces = template::parse(&text)
                .map_err(|e| bad_args(format!("template is not valid: {e}")))?;
            if template::columns(&pieces).is_empty() {
                return Err(bad_args(
                    "template names no column; use placeholders like {region}",
                ));
            }
            Some(Some(text))
        }
    };
    let sheet = request
        .sheet
        .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()));
    if !request.clear
        && columns.is_none()
        && context.is_none()
        && template.is_none()
        && sheet.is_none()
    {
        return Err(bad_args(
            "nothing to change: give columns, context, template, sheet or clear",
        ));
    }
    let mut changed: Vec<String> = Vec::new();
    if request.clear {
        changed.push("cleared".into());
    }
    if let Some(c) = &columns {
        changed.push(format!("columns = [{}]", c.join(", ")));
    }
    if let Some(c) = &context {
        changed.push(format!("context = [{}]", c.join(", ")));
    }
    if let Some(t) = &template {
        changed.push(match t {
            Some(t) => format!("template = {t:?}"),
            None => "template removed".into(),
        });
    }
    if let Some(s) = &sheet {
        changed.push(match s {
            Some(s) => format!("sheet = {s:?}"),
            None => "sheet removed".into(),
        });
    }
    let change = PrefsChange {
        columns,
        context,
        template,
        sheet,
        clear: request.clear,
    };
    let actor = peer.actor();
    let detail = crate::server::refusals::bound_detail(changed.join("; "));
    let saved_group = group.clone();
    let prefs = shared
        .catalog
        .set_prefs(saved_group, change, actor, detail)
        .await?;
    // Names no source of the group has: saved anyway (sources differ), but said.
    let mut warnings = Vec::new();
    let mut named: Vec<&String> = prefs.columns.iter().chain(prefs.context.iter()).collect();
    let placeholders = prefs
        .template
        .as_deref()
        .and_then(|t| template::parse(t).ok())
        .map(|p| template::columns(&p))
        .unwrap_or_default();
    named.extend(placeholders.iter());
    let mut seen: Vec<&String> = Vec::new();
    for name in named {
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        if !prefs.known_columns.contains(name) {
            warnings.push(format!(
                "no source of group {group:?} has a column named {name:?}; saved anyway"
            ));
        }
    }
    Ok(PrefsSaved {
        prefs,
        warnings,
        jobs: Vec::new(),
    })
}
