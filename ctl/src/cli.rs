//! The command line of `ingestctl`: flags and subcommands, nothing else.
//!
//! One subcommand ↔ one protocol command ↔ one file in `commands/`. Parsing must not touch the
//! socket or the config; usage errors exit with 2 through clap.

use clap::{Parser, Subcommand};
use ingestd::config::{CONFIG_ENV, SOCKET_ENV};
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the daemon refused the request or the operation failed
  2  usage error
  3  the daemon could not be reached (no socket, not running, no permission, no answer)

With --json the daemon's answer is printed as pretty-printed JSON, as the daemon sent it.";

/// Talk to ingestd: list, inspect and follow the files dropped into its folders.
#[derive(Debug, Parser)]
#[command(name = "ingestctl", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// Print the daemon's answer as JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    /// The daemon's control socket [default: the socket in ingestd's config]
    #[arg(long, global = true, value_name = "PATH", env = SOCKET_ENV)]
    pub socket: Option<PathBuf>,

    /// ingestd's config file, read only to find the socket when --socket is not given
    /// [default: /etc/ingestd/ingestd.toml]
    #[arg(long, global = true, value_name = "PATH", env = CONFIG_ENV)]
    pub config: Option<PathBuf>,

    /// The document group (a folder under the drop root)
    #[arg(short, long, global = true, value_name = "GROUP")]
    pub group: Option<String>,

    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Daemon version, uptime, folders, queue and recent errors
    Status,
    /// Groups with their counts of sources by status
    Groups,
    /// Sources of a group (-g), or of every group: version, status, rows, columns
    Ls,
    /// One source: columns, skipped columns, versions and rejected attempts with reasons
    Show {
        /// The source's file name, e.g. sales.csv
        source: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("ingestctl").chain(args.iter().copied()))
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let before = parse(&["--json", "-g", "sales", "--socket", "/s.sock", "ls"]).unwrap();
        let after = parse(&["ls", "--group", "sales", "--json", "--socket", "/s.sock"]).unwrap();
        for cli in [before, after] {
            assert!(cli.json);
            assert_eq!(cli.group.as_deref(), Some("sales"));
            assert_eq!(cli.socket, Some(PathBuf::from("/s.sock")));
            assert!(matches!(cli.command, Commands::Ls));
        }
    }

    #[test]
    fn show_takes_a_source_and_a_group() {
        let cli = parse(&["show", "sales.csv", "-g", "q1", "--config", "/c.toml"]).unwrap();
        assert!(matches!(&cli.command, Commands::Show { source } if source == "sales.csv"));
        assert_eq!(cli.group.as_deref(), Some("q1"));
        assert_eq!(cli.config, Some(PathBuf::from("/c.toml")));
    }

    #[test]
    fn usage_errors_are_clap_errors() {
        let cases: &[(&[&str], ErrorKind)] = &[
            (&[], ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand),
            (&["show"], ErrorKind::MissingRequiredArgument),
            (&["frobnicate"], ErrorKind::InvalidSubcommand),
            (&["ls", "--nope"], ErrorKind::UnknownArgument),
            (&["ls", "-g"], ErrorKind::InvalidValue),
            (&["status", "extra"], ErrorKind::UnknownArgument),
        ];
        for (args, kind) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), *kind, "{args:?}: {err}");
        }
    }
}
