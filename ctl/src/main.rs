//! `ingestctl`, the command-line client of ingestd: parse the arguments, run one command over
//! the control socket, print its output, exit with a documented code (see `--help`).
//!
//! Kept thin: commands live in `commands/`, printing helpers in `output`.

mod cli;
mod commands;
mod output;
mod socket;

use clap::Parser;
use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    match commands::run(&cli) {
        Ok(text) => output::emit(&text),
        Err(failure) => {
            // Nothing useful is left to do if stderr is gone too.
            let _ = writeln!(std::io::stderr(), "error: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}
