//! One file per subcommand, dispatched by the single `match` in [`run`]. Each command sends its
//! protocol request and returns the whole text to print; errors carry their exit code.
//!
//! Commands must not print or exit themselves: `main` does both, so that broken pipes and exit
//! codes are handled in one place.

mod groups;
mod ls;
mod show;
mod status;

use crate::cli::{Cli, Commands};
use crate::socket::{self, NoSocket};
use ingestd::client::{Client, ClientError, EXIT_UNREACHABLE};
use ingestd::protocol::{Command, StatusInfo};
use jiff::tz::TimeZone;

/// Why a command failed, and so which exit code it ends with.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    #[error(transparent)]
    NoSocket(#[from] NoSocket),
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::NoSocket(_) => EXIT_UNREACHABLE,
            Failure::Client(error) => error.exit_code(),
        }
    }
}

/// What every command may need besides its own arguments.
pub struct Options {
    pub json: bool,
    pub group: Option<String>,
    /// Times are shown in this zone (the system's; tests use UTC).
    pub tz: TimeZone,
}

/// Connect, run the subcommand, return what to print.
pub fn run(cli: &Cli) -> Result<String, Failure> {
    let socket = socket::resolve(cli.socket.as_deref(), cli.config.as_deref())?;
    let mut client = Client::connect(&socket)?;
    let options = Options {
        json: cli.json,
        group: cli.group.clone(),
        tz: TimeZone::system(),
    };
    let text = match &cli.command {
        Commands::Status => status::run(&mut client, &options)?,
        Commands::Groups => groups::run(&mut client, &options)?,
        Commands::Ls => ls::run(&mut client, &options)?,
        Commands::Show { source } => show::run(&mut client, &options, source)?,
    };
    Ok(text)
}

/// The daemon's drop root, for guidance text; `None` if it cannot be had (the guidance then
/// says where to look instead of failing the command).
fn drop_root(client: &mut Client) -> Option<String> {
    client
        .call::<StatusInfo>(&Command::Status {})
        .ok()
        .map(|status| status.drop_root)
}

/// What to say when there is nothing to list: where files go and what happens next.
/// `group` is the group asked about, `None` for all groups.
fn no_files_guidance(group: Option<&str>, drop_root: Option<&str>) -> String {
    const FORMATS: &str = "CSV, XLS, XLSX or Parquet";
    let root = |sub: &str| match drop_root {
        Some(root) => format!("{}/", std::path::Path::new(root).join(sub).display()),
        None => format!("{sub}/ under ingestd's drop root (`ingestctl status` shows it)"),
    };
    match group {
        Some(group) => format!(
            "No files in group '{group}' yet.\n\
             Drop {FORMATS} files into {folder}\n\
             ingestd takes each file once it stops changing; then `ingestctl ls -g {group}` \
             lists it\nand `ingestctl show FILE -g {group}` explains any that were rejected.\n",
            folder = root(group),
        ),
        None => format!(
            "No files yet.\n\
             Make a folder per group, e.g. {folder}\n\
             and drop {FORMATS} files into it. ingestd takes each file once it stops \
             changing;\nthen `ingestctl ls` lists it and `ingestctl show FILE` explains any \
             that were rejected.\n",
            folder = root("sales"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guidance_names_the_group_folder_and_the_formats() {
        let text = no_files_guidance(Some("sales"), Some("/srv/drop"));
        assert!(
            text.starts_with("No files in group 'sales' yet.\n"),
            "{text}"
        );
        assert!(text.contains("/srv/drop/sales/"), "{text}");
        assert!(text.contains("CSV, XLS, XLSX or Parquet"), "{text}");
        assert!(text.contains("ingestctl show FILE -g sales"), "{text}");
    }

    #[test]
    fn guidance_without_a_group_says_to_make_one() {
        let text = no_files_guidance(None, Some("/srv/drop"));
        assert!(text.starts_with("No files yet.\n"), "{text}");
        assert!(text.contains("/srv/drop/sales/"), "{text}");
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
        let refused = Failure::from(ClientError::Daemon(ingestd::protocol::ErrorBody::new(
            ingestd::protocol::ErrorCode::NotFound,
            "no such source",
        )));
        assert_eq!(refused.exit_code(), 1);
        assert_eq!(refused.to_string(), "no such source");
    }
}
