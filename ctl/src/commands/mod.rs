//! One file per subcommand, dispatched by the single `match` in [`run`]. Each command sends its
//! protocol request and returns a [`Done`]: the whole text to print, notes for stderr and the
//! exit code; errors carry their exit code.
//!
//! Commands must not print or exit themselves: `main` does both, so that broken pipes and exit
//! codes are handled in one place. The exceptions are the two that talk to a person while they
//! run: `events` streams its lines (through the writer `main` hands it) and `rm` asks for
//! confirmation on the terminal.

mod add;
mod audit;
mod events;
mod fsck;
mod groups;
mod jobs;
mod ls;
mod prefs;
mod rm;
mod search;
mod set;
mod show;
mod status;
mod use_group;

pub(crate) use rm::question as rm_question;

use crate::cli::{Cli, Commands, PrefsAction};
use crate::output;
use crate::socket::{self, NoSocket};
use ingestd_proto::client::{Client, ClientError, EXIT_FAILED, EXIT_UNREACHABLE};
use ingestd_proto::protocol::{UseInfo, cmd};
use jiff::tz::TimeZone;
use std::io::{IsTerminal, Write};

/// Exit code for a usage error (DESIGN §4); clap uses it too.
pub const EXIT_USAGE: u8 = 2;

/// What the daemon says when a command needs a group and has none; said the same way here.
pub const NO_GROUP: &str =
    "no group given and no current group; use -g GROUP or `ingestctl use GROUP`";

/// Why a command failed, and so which exit code it ends with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    NoSocket(#[from] NoSocket),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The command line cannot be acted on (exit 2), found after parsing: no group, a bad
    /// `--since`, `rm` off a terminal without `--yes`.
    #[error("{0}")]
    Usage(String),
    /// Something done here, not by the daemon, failed (exit 1): a file to add is missing.
    #[error("{0}")]
    Failed(String),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NoSocket(_) => EXIT_UNREACHABLE,
            Failure::Client(error) => error.exit_code(),
            Failure::Usage(_) => EXIT_USAGE,
            Failure::Failed(_) => EXIT_FAILED,
        }
    }
}

/// What a command leaves for `main` to print and exit with.
#[derive(Debug, Default, PartialEq)]
pub struct Done {
    /// For stdout.
    pub text: String,
    /// Whole lines for stderr (warnings), printed before `text`.
    pub notes: Vec<String>,
    /// 0, or 1 when some item of a partly successful command failed (`rm`, `add --wait`).
    pub code: u8,
}

impl Done {
    pub fn text(text: String) -> Self {
        Done {
            text,
            ..Done::default()
        }
    }
}

/// A string of the daemon's answer as a view of it holds it (`Client::call_view`): borrowed
/// from the answer's text unless it held escapes.
#[derive(serde::Deserialize)]
pub struct Text<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

impl std::ops::Deref for Text<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text<'_> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What every command may need besides its own arguments.
pub struct Options {
    pub json: bool,
    /// `--json` output is for a person at a terminal: pretty-printed. Otherwise it is for a
    /// script, one line (see `output::json`).
    pub pretty: bool,
    pub group: Option<String>,
    /// Times are shown in this zone (the system's; tests use UTC).
    pub tz: TimeZone,
}

/// Connect, run the subcommand, return what to print. `out` is stdout, for `events`, which
/// prints as events come.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<Done, Failure> {
    // Refused before anything else: whatever the daemon says, nobody can confirm.
    if let Commands::Rm { yes, .. } = &cli.command {
        rm::check_can_confirm(*yes, std::io::stdin().is_terminal())?;
    }
    let socket = socket::resolve(cli.socket.as_deref(), cli.config.as_deref())?;
    if let Commands::Ui = &cli.command {
        // The UI connects by itself, and keeps trying while the daemon is away.
        return run_ui(socket, cli.group.clone());
    }
    let mut client = Client::connect(&socket)?;
    let options = Options {
        json: cli.json,
        pretty: std::io::stdout().is_terminal(),
        group: cli.group.clone(),
        tz: output::local_zone(),
    };
    let c = &mut client;
    let done = match &cli.command {
        Commands::Status => Done::text(status::run(c, &options)?),
        Commands::Groups => Done::text(groups::run(c, &options)?),
        Commands::Use { name, clear } => use_group::run(c, &options, name.as_deref(), *clear)?,
        Commands::Ls { all } => Done::text(ls::run(c, &options, *all)?),
        Commands::Show { source, preview } => Done::text(show::run(c, &options, source, *preview)?),
        Commands::Add { files, wait } => add::run(c, &options, files, *wait)?,
        Commands::Rm {
            targets,
            yes,
            force,
        } => rm::run(c, &options, targets, *yes, *force)?,
        Commands::Reembed { sources, all, wait } => {
            jobs::reembed(c, &options, sources, *all, *wait)?
        }
        Commands::Jobs {
            all,
            state,
            ids,
            before,
        } => Done::text(jobs::list(c, &options, *all, *state, ids, *before)?),
        Commands::Retry { jobs, failed, wait } => jobs::retry(c, &options, jobs, *failed, *wait)?,
        Commands::Cancel { jobs } => jobs::cancel(c, &options, jobs)?,
        Commands::Search { text, k } => search::run(c, &options, text, *k)?,
        Commands::Fsck { repair } => fsck::run(c, &options, *repair)?,
        Commands::Prefs { action: None } => Done::text(prefs::show(c, &options)?),
        Commands::Prefs {
            action: Some(PrefsAction::Set(args)),
        } => prefs::set(c, &options, args)?,
        Commands::Set(args) => set::run(c, &options, args)?,
        Commands::Audit(args) => Done::text(audit::run(c, &options, args)?),
        Commands::Events { all } => events::run(c, &options, *all, out)?,
        Commands::Ui => unreachable!("answered before connecting"),
    };
    Ok(done)
}

/// `ingestctl ui`: only on a terminal, which it hands back as it found it.
fn run_ui(socket: std::path::PathBuf, group: Option<String>) -> Result<Done, Failure> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(Failure::Usage(
            "ingestctl ui needs a terminal; for scripts use the other commands, e.g. \
             `ingestctl ls` or `ingestctl events`"
                .into(),
        ));
    }
    crate::ui::run(socket, group)
        .map(|()| Done::default())
        .map_err(|e| Failure::Failed(format!("the terminal failed: {e}")))
}

/// The group a command works on: `-g`, else the caller's current group (asked of the daemon),
/// else `None`.
fn group_or_current(client: &mut Client, options: &Options) -> Result<Option<String>, ClientError> {
    if let Some(group) = &options.group {
        return Ok(Some(group.clone()));
    }
    let current: UseInfo = client.call(&cmd::Use {
        group: None,
        clear: false,
    })?;
    Ok(current.group)
}

/// The daemon's drop root, for guidance text; `None` if it cannot be had (the guidance then
/// says where to look instead of failing the command).
fn drop_root(client: &mut Client) -> Option<String> {
    client
        .call(&cmd::Status {})
        .ok()
        .map(|status| status.drop_root)
}

/// The formats ingestd reads, for every text that lists them.
pub const FORMATS: &str = "CSV, TSV, XLS, XLSX or Parquet";

/// What to say when there is nothing to list: where files go and what happens next.
/// `group` is the group asked about, `None` for all groups.
fn no_files_guidance(group: Option<&str>, drop_root: Option<&str>) -> String {
    let root = |sub: &str| match drop_root {
        Some(root) => format!("{}/", std::path::Path::new(root).join(sub).display()),
        None => format!("{sub}/ under ingestd's drop root (`ingestctl status` shows it)"),
    };
    match group {
        Some(group) => format!(
            "No files in group '{group}' yet.\n\
             Add {FORMATS} files with `ingestctl add FILE… -g {group}`,\n\
             or drop them into {folder}\n\
             ingestd takes each file once it stops changing; then `ingestctl ls -g {group}` \
             lists it\nand `ingestctl show FILE -g {group}` explains any that were rejected.\n",
            folder = root(group),
        ),
        None => format!(
            "No files yet.\n\
             Make a folder per group, e.g. {folder}\n\
             and drop {FORMATS} files into it,\n\
             or add them with `ingestctl add FILE… -g sales`.\n\
             ingestd takes each file once it stops changing; then `ingestctl ls` lists it\n\
             and `ingestctl show FILE` explains any that were rejected.\n",
            folder = root("sales"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_names_the_group_folder_the_formats_and_add() {
        let text = no_files_guidance(Some("sales"), Some("/srv/drop"));
        assert!(
            text.starts_with("No files in group 'sales' yet.\n"),
            "{text}"
        );
        assert!(text.contains("/srv/drop/sales/"), "{text}");
        assert!(text.contains("CSV, TSV, XLS, XLSX or Parquet"), "{text}");
        assert!(text.contains("`ingestctl add FILE… -g sales`"), "{text}");
        assert!(text.contains("ingestctl show FILE -g sales"), "{text}");
    }

    #[test]
    fn guidance_without_a_group_says_to_make_one() {
        let text = no_files_guidance(None, Some("/srv/drop"));
        assert!(text.starts_with("No files yet.\n"), "{text}");
        assert!(text.contains("/srv/drop/sales/"), "{text}");
        assert!(text.contains("CSV, TSV, XLS, XLSX or Parquet"), "{text}");
    }

    #[test]
    fn guidance_without_a_drop_root_says_where_to_find_it() {
        let text = no_files_guidance(Some("q1"), None);
        assert!(text.contains("q1/ under ingestd's drop root"), "{text}");
        assert!(text.contains("ingestctl status"), "{text}");
    }

    #[test]
    fn failures_map_to_exit_codes() {
        let unreachable = Failure::from(ClientError::Closed {
            socket: "/s".into(),
        });
        assert_eq!(unreachable.exit_code(), 3);
        let refused = Failure::from(ClientError::Daemon(
            ingestd_proto::protocol::ErrorBody::new(
                ingestd_proto::protocol::ErrorCode::NotFound,
                "no such source",
            ),
        ));
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(refused.to_string(), "no such source");
        let lagged = Failure::from(ClientError::Daemon(
            ingestd_proto::protocol::ErrorBody::new(
                ingestd_proto::protocol::ErrorCode::Lagged,
                "you fell behind",
            ),
        ));
        assert_eq!(lagged.exit_code(), 1);
        assert_eq!(Failure::Usage(NO_GROUP.into()).exit_code(), 2);
        assert_eq!(Failure::Failed("x".into()).exit_code(), 1);
    }
}
