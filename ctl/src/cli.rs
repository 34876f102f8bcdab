//! The command line of `ingestctl`: flags and subcommands, nothing else.
//!
//! One subcommand ↔ one protocol command ↔ one file in `commands/`. Parsing must not touch the
//! socket or the config; usage errors exit with 2 through clap.

use crate::since::Since;
use crate::socket::{CONFIG_ENV, SOCKET_ENV};
use clap::{ArgGroup, Args, Parser, Subcommand};
use ingestd_proto::protocol::JobState;
use std::path::PathBuf;

const AFTER_HELP: &str = "\
Exit codes:
  0  success
  1  the daemon refused the request or the operation failed (for rm and add: any item failed)
  2  usage error
  3  the daemon could not be reached (no socket, not running, no permission, no answer)

Without -g, commands use the current group set with `ingestctl use GROUP`.
With --json the daemon's answer is printed as pretty-printed JSON, as the daemon sent it
(`events --json`: one compact object per line).";

/// Talk to ingestd: add, list, inspect, delete and follow the files dropped into its folders.
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

    /// The document group (a folder under the drop root) [default: the current group, see `use`]
    #[arg(short, long, global = true, value_name = "GROUP")]
    pub group: Option<String>,

    #[command(subcommand)]
    pub command: Commands,
}

#[derive(Debug, Subcommand)]
pub enum Commands {
    /// Daemon version, uptime, folders, queue and recent errors
    Status,
    /// Groups with their counts of sources by status; `*` marks the current group
    Groups,
    /// Set, show or clear your current group, the default of -g
    Use {
        /// The group to make current; without it, show the current group
        #[arg(value_name = "GROUP", conflicts_with = "clear")]
        name: Option<String>,
        /// Forget the current group
        #[arg(long)]
        clear: bool,
    },
    /// Sources of a group (-g, else the current group, else every group)
    Ls {
        /// List every group, even when a current group is set
        #[arg(long, conflicts_with = "group")]
        all: bool,
    },
    /// One source: columns, skipped columns, versions, rejected attempts, jobs and embeddings
    Show {
        /// The source's file name, e.g. sales.csv
        source: String,
        /// Also print the texts the first N rows render to (what is embedded for them)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
        preview: Option<u32>,
    },
    /// Copy local CSV, TSV, XLS, XLSX or Parquet files into a group's drop folder
    Add {
        /// Files to add; each becomes the source of the same name in the group
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Wait for ingestd's verdict on every file and report it
        #[arg(long)]
        wait: bool,
    },
    /// Delete sources (all their versions) or single versions (SOURCE@vN) from a group
    Rm {
        /// `sales.csv` for the whole source, `sales.csv@v2` for one version
        #[arg(required = true, value_name = "SOURCE[@vN]")]
        targets: Vec<String>,
        /// Do not ask for confirmation (required when stdin is not a terminal)
        #[arg(short, long)]
        yes: bool,
        /// Cancel a processing embedding job of the source first (otherwise the delete is
        /// refused while it runs)
        #[arg(long)]
        force: bool,
    },
    /// Queue re-embeds of sources (their newest version), or of every source of the group
    Reembed {
        /// Sources to re-embed, e.g. sales.csv
        #[arg(
            value_name = "SOURCE",
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        sources: Vec<String>,
        /// Every source of the group (also the way to switch a group to a new model)
        #[arg(long)]
        all: bool,
        /// Wait for the jobs to end, with a progress bar per job on a terminal; exit 1 if any
        /// failed or was cancelled
        #[arg(long)]
        wait: bool,
    },
    /// Embedding jobs: state, queue position, attempt, progress, error
    Jobs {
        /// Every group, even when a current group is set
        #[arg(long, conflicts_with = "group")]
        all: bool,
        /// Only jobs in this state
        #[arg(long, value_name = "STATE", value_parser = parse_state)]
        state: Option<JobState>,
        /// Only these jobs
        #[arg(value_name = "JOB")]
        ids: Vec<i64>,
        /// Only jobs older than the job with this id: the next page, as the previous page
        /// began
        #[arg(long, value_name = "ID", conflicts_with = "ids")]
        before: Option<i64>,
    },
    /// Queue failed or cancelled jobs again
    Retry {
        /// Job ids
        #[arg(
            value_name = "JOB",
            required_unless_present = "failed",
            conflicts_with = "failed"
        )]
        jobs: Vec<i64>,
        /// Every failed job of the group
        #[arg(long)]
        failed: bool,
        /// Wait for the jobs to end (as `reembed --wait`)
        #[arg(long)]
        wait: bool,
    },
    /// Cancel queued or processing jobs; the previous embeddings stay active
    Cancel {
        /// Job ids
        #[arg(value_name = "JOB", required = true)]
        jobs: Vec<i64>,
    },
    /// Check the catalog against stored files, vectors and running jobs (exit 1 if not clean)
    Fsck {
        /// Fix what is found: orphaned files move to lost+found/, rows without files and
        /// orphaned vectors are removed, stuck jobs are queued again
        #[arg(long)]
        repair: bool,
    },
    /// The rows of a group whose active embeddings are nearest to TEXT
    Search {
        /// What to look for (several words are joined with spaces)
        #[arg(value_name = "TEXT", required = true)]
        text: Vec<String>,
        /// How many rows
        #[arg(short, value_name = "N", default_value_t = 10,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        k: u32,
    },
    /// Show a group's preferences (which columns are embedded, and how); `prefs set` changes them
    Prefs {
        #[command(subcommand)]
        action: Option<PrefsAction>,
    },
    /// Set how a source's files are read when detection gets them wrong (header row, encoding,
    /// sheet, delimiter); applies to its newest version at once and to every later version
    Set(SetArgs),
    /// The audit trail, newest first
    Audit(AuditArgs),
    /// Follow live events (files seen, accepted, rejected, deleted, …) until interrupted
    Events {
        /// Follow every group, even when a current group is set
        #[arg(long, conflicts_with = "group")]
        all: bool,
    },
    /// Full-screen terminal page: groups, sources, detail, queue, actions, live (? for keys)
    Ui,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("option")
        .required(true)
        .multiple(true)
        .args(["header_row", "no_header", "encoding", "sheet", "delimiter", "clear"])
))]
pub struct SetArgs {
    /// The source's file name, e.g. sales.csv
    pub source: String,
    /// The header is on this line (CSV, TSV) or sheet row (workbooks), as `show` counts them
    #[arg(long, value_name = "N", conflicts_with_all = ["no_header", "clear"],
          value_parser = clap::value_parser!(u64).range(1..))]
    pub header_row: Option<u64>,
    /// There is no header row: every row is data, columns are column_1, column_2, …
    #[arg(long, conflicts_with = "clear")]
    pub no_header: bool,
    /// Read the text in this encoding (CSV, TSV), e.g. Shift_JIS, windows-1250, UTF-16LE
    #[arg(long, value_name = "NAME", conflicts_with = "clear")]
    pub encoding: Option<String>,
    /// Read this sheet (workbooks)
    #[arg(long, value_name = "NAME", conflicts_with = "clear")]
    pub sheet: Option<String>,
    /// Fields are separated by this character (CSV, TSV); \t or tab for a tab
    #[arg(long, value_name = "C", conflicts_with = "clear")]
    pub delimiter: Option<String>,
    /// Remove every read option of the source: its files are detected again
    #[arg(long)]
    pub clear: bool,
}

#[derive(Debug, Subcommand)]
pub enum PrefsAction {
    /// Save preferences; options not given keep their value
    Set(PrefsSetArgs),
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["columns", "context", "template", "sheet", "clear", "reembed"])
))]
pub struct PrefsSetArgs {
    /// Columns whose values are embedded, comma-separated; '' selects every column
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "A,B,…")]
    pub columns: Option<Vec<String>>,
    /// Columns added to every row's text as context, comma-separated; '' for none
    #[arg(long, value_delimiter = ',', num_args = 1, value_name = "X,Y,…")]
    pub context: Option<Vec<String>>,
    /// Text template with {column} placeholders; '' removes it
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Sheet to read from spreadsheets; '' goes back to the first non-empty sheet
    #[arg(long, value_name = "NAME")]
    pub sheet: Option<String>,
    /// Reset every preference first (then apply the other options, if any)
    #[arg(long)]
    pub clear: bool,
    /// Queue a re-embed of every source of the group with the saved preferences
    #[arg(long)]
    pub reembed: bool,
}

fn parse_state(text: &str) -> Result<JobState, String> {
    JobState::parse(text).ok_or_else(|| {
        let names: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
        format!("unknown job state {text:?}; states: {}", names.join(", "))
    })
}

impl PrefsSetArgs {
    /// A comma-separated list as the protocol wants it: names trimmed, empty ones dropped,
    /// so `--columns ''` is the empty list.
    pub fn names(list: &Option<Vec<String>>) -> Option<Vec<String>> {
        list.as_ref().map(|names| {
            names
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect()
        })
    }
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Every group, even when a current group is set
    #[arg(long, conflicts_with = "group")]
    pub all: bool,
    /// Only records since then: a duration ago (30m, 1h, 2d, 1w) or an RFC 3339 time
    #[arg(long, value_name = "WHEN", value_parser = Since::parse)]
    pub since: Option<Since>,
    /// Only records of this action (e.g. add, delete, prefs)
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// At most this many records (1 to 1000; default 100)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub limit: Option<u32>,
    /// Only records older than the record with this id: the next page, as the previous page
    /// ended with (`--json` gives each record's id)
    #[arg(long, value_name = "ID")]
    pub before: Option<i64>,
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
            assert!(matches!(cli.command, Commands::Ls { all: false }));
        }
    }

    #[test]
    fn show_takes_a_source_and_a_group() {
        let cli = parse(&["show", "sales.csv", "-g", "q1", "--config", "/c.toml"]).unwrap();
        assert!(
            matches!(&cli.command, Commands::Show { source, preview: None } if source == "sales.csv")
        );
        assert_eq!(cli.group.as_deref(), Some("q1"));
        assert_eq!(cli.config, Some(PathBuf::from("/c.toml")));
    }

    #[test]
    fn use_sets_shows_or_clears() {
        let set = parse(&["use", "sales"]).unwrap();
        assert!(
            matches!(&set.command, Commands::Use { name: Some(n), clear: false } if n == "sales")
        );
        let show = parse(&["use"]).unwrap();
        assert!(matches!(
            show.command,
            Commands::Use {
                name: None,
                clear: false
            }
        ));
        let clear = parse(&["use", "--clear"]).unwrap();
        assert!(matches!(
            clear.command,
            Commands::Use {
                name: None,
                clear: true
            }
        ));
    }

    #[test]
    fn listing_commands_take_all() {
        assert!(matches!(
            parse(&["ls", "--all"]).unwrap().command,
            Commands::Ls { all: true }
        ));
        assert!(matches!(
            parse(&["events", "--all", "--json"]).unwrap().command,
            Commands::Events { all: true }
        ));
    }

    #[test]
    fn add_takes_files_and_wait() {
        let cli = parse(&["add", "a.csv", "dir/b.xlsx", "-g", "sales", "--wait"]).unwrap();
        let Commands::Add { files, wait } = cli.command else {
            panic!("not add");
        };
        assert_eq!(files, [PathBuf::from("a.csv"), PathBuf::from("dir/b.xlsx")]);
        assert!(wait);
        assert_eq!(cli.group.as_deref(), Some("sales"));
    }

    #[test]
    fn rm_takes_targets_and_yes() {
        let cli = parse(&["rm", "sales.csv", "q2.csv@v1", "--yes"]).unwrap();
        let Commands::Rm { targets, yes, .. } = cli.command else {
            panic!("not rm");
        };
        assert_eq!(targets, ["sales.csv", "q2.csv@v1"]);
        assert!(yes);
        assert!(matches!(
            parse(&["rm", "a.csv", "-y"]).unwrap().command,
            Commands::Rm { yes: true, .. }
        ));
    }

    #[test]
    fn job_commands_parse() {
        let cli = parse(&["reembed", "a.csv", "b.csv", "--wait", "-g", "s"]).unwrap();
        assert!(matches!(&cli.command,
            Commands::Reembed { sources, all: false, wait: true } if sources == &["a.csv", "b.csv"]));
        assert!(matches!(
            parse(&["reembed", "--all"]).unwrap().command,
            Commands::Reembed { all: true, .. }
        ));
        assert!(matches!(
            parse(&["jobs", "--state", "failed", "4", "5"]).unwrap().command,
            Commands::Jobs { state: Some(JobState::Failed), ids, .. } if ids == [4, 5]
        ));
        assert!(matches!(
            parse(&["retry", "--failed"]).unwrap().command,
            Commands::Retry { failed: true, .. }
        ));
        assert!(matches!(
            parse(&["cancel", "7"]).unwrap().command,
            Commands::Cancel { jobs } if jobs == [7]
        ));
        assert!(matches!(
            parse(&["search", "north", "region", "-k", "3"]).unwrap().command,
            Commands::Search { text, k: 3 } if text == ["north", "region"]
        ));
        assert!(matches!(
            parse(&["rm", "a.csv", "--force", "--yes"]).unwrap().command,
            Commands::Rm { force: true, .. }
        ));
        assert!(matches!(
            parse(&["show", "a.csv", "--preview", "5"]).unwrap().command,
            Commands::Show {
                preview: Some(5),
                ..
            }
        ));
        assert!(parse(&["prefs", "set", "--reembed"]).is_ok());
    }

    #[test]
    fn prefs_shows_and_sets() {
        assert!(matches!(
            parse(&["prefs", "-g", "s"]).unwrap().command,
            Commands::Prefs { action: None }
        ));
        let cli = parse(&[
            "prefs",
            "set",
            "--columns",
            "region, amount",
            "--context",
            "date",
            "--template",
            "",
            "--sheet",
            "Q1",
        ])
        .unwrap();
        let Commands::Prefs {
            action: Some(PrefsAction::Set(args)),
        } = cli.command
        else {
            panic!("not prefs set");
        };
        assert_eq!(
            PrefsSetArgs::names(&args.columns),
            Some(vec!["region".into(), "amount".into()])
        );
        assert_eq!(
            PrefsSetArgs::names(&args.context),
            Some(vec!["date".into()])
        );
        assert_eq!(args.template.as_deref(), Some(""));
        assert_eq!(args.sheet.as_deref(), Some("Q1"));
        assert!(!args.clear);

        let empty = parse(&["prefs", "set", "--columns", ""]).unwrap();
        let Commands::Prefs {
            action: Some(PrefsAction::Set(args)),
        } = empty.command
        else {
            panic!("not prefs set");
        };
        assert_eq!(PrefsSetArgs::names(&args.columns), Some(vec![]));
        assert_eq!(PrefsSetArgs::names(&args.context), None);
        assert!(parse(&["prefs", "set", "--clear"]).is_ok());
    }

    #[test]
    fn audit_takes_filters() {
        let cli = parse(&[
            "audit", "--since", "1h", "--action", "delete", "--limit", "5",
        ])
        .unwrap();
        let Commands::Audit(args) = cli.command else {
            panic!("not audit");
        };
        assert!(matches!(args.since, Some(Since::Ago(_))));
        assert_eq!(args.action.as_deref(), Some("delete"));
        assert_eq!(args.limit, Some(5));
        assert!(!args.all);
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
            (&["ls", "--all", "-g", "sales"], ErrorKind::ArgumentConflict),
            (&["use", "sales", "--clear"], ErrorKind::ArgumentConflict),
            (&["use", "a", "b"], ErrorKind::UnknownArgument),
            (&["add"], ErrorKind::MissingRequiredArgument),
            (&["rm"], ErrorKind::MissingRequiredArgument),
            (&["prefs", "set"], ErrorKind::MissingRequiredArgument),
            (&["reembed"], ErrorKind::MissingRequiredArgument),
            (&["reembed", "a.csv", "--all"], ErrorKind::ArgumentConflict),
            (&["retry"], ErrorKind::MissingRequiredArgument),
            (&["retry", "3", "--failed"], ErrorKind::ArgumentConflict),
            (&["retry", "x"], ErrorKind::ValueValidation),
            (&["cancel"], ErrorKind::MissingRequiredArgument),
            (&["jobs", "--state", "done"], ErrorKind::ValueValidation),
            (&["search"], ErrorKind::MissingRequiredArgument),
            (&["search", "x", "-k", "0"], ErrorKind::ValueValidation),
            (
                &["show", "a.csv", "--preview", "0"],
                ErrorKind::ValueValidation,
            ),
            (
                &["audit", "--since", "yesterday-ish"],
                ErrorKind::ValueValidation,
            ),
            (&["audit", "--limit", "0"], ErrorKind::ValueValidation),
            (
                &["audit", "--all", "-g", "sales"],
                ErrorKind::ArgumentConflict,
            ),
            (
                &["events", "--all", "-g", "sales"],
                ErrorKind::ArgumentConflict,
            ),
        ];
        for (args, kind) in cases {
            let err = parse(args).unwrap_err();
            assert_eq!(err.kind(), *kind, "{args:?}: {err}");
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }
}
