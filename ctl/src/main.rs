//! `ingestctl`, the command-line client of ingestd: parse the arguments, run one command over
//! the control socket, print its output, exit with a documented code (see `--help`).
//!
//! Kept thin: commands live in `commands/`, printing helpers in `output`.

mod cli;
mod commands;
mod output;
mod prompt;
mod since;
mod socket;
mod ui;
mod upload;

use clap::Parser;
use std::io::{self, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let mut stdout = io::stdout();
    // Nothing useful is left to do if stderr is gone, so its write errors are ignored.
    match commands::run(&cli, &mut stdout) {
        Ok(done) => {
            for note in &done.notes {
                let _ = writeln!(io::stderr(), "{}", output::escape_text(note));
            }
            // Field printers escape what they print; this is the net under them. `--json`
            // prints exact strings (serde_json escapes control characters itself).
            let text = if cli.json {
                std::borrow::Cow::Borrowed(done.text.as_str())
            } else {
                output::escape_text(&done.text)
            };
            match output::emit(&mut stdout, &text) {
                Ok(_) => ExitCode::from(done.code),
                Err(e) => {
                    let _ = writeln!(io::stderr(), "error: cannot write the output: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(failure) => {
            let message = failure.to_string();
            let _ = writeln!(io::stderr(), "error: {}", output::escape_text(&message));
            ExitCode::from(failure.exit_code())
        }
    }
}
