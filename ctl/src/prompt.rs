//! Confirmation before destructive commands: asked only when stdin is a terminal; elsewhere
//! (scripts, cron, CI) the caller must say `--yes`, so nothing is deleted by a stray pipe.
//!
//! The decision is a pure function; asking takes its reader and writer as arguments, so both
//! are tested without a terminal.

use std::io::{self, BufRead, Write};

/// What to do before a destructive command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// `--yes` was given: go ahead.
    Proceed,
    /// A person is at the terminal: ask.
    Ask,
    /// Nobody can be asked and `--yes` was not given: refuse.
    Refuse,
}

pub fn decide(yes: bool, stdin_is_terminal: bool) -> Confirm {
    match (yes, stdin_is_terminal) {
        (true, _) => Confirm::Proceed,
        (false, true) => Confirm::Ask,
        (false, false) => Confirm::Refuse,
    }
}

/// Write `question` to `prompt` (stderr, so stdout stays clean) and read one answer line.
/// Only `y` or `yes` (any case) agree; anything else, or end of input, declines.
pub fn ask(question: &str, input: &mut dyn BufRead, prompt: &mut dyn Write) -> io::Result<bool> {
    prompt.write_all(question.as_bytes())?;
    prompt.flush()?;
    let mut answer = String::new();
    if input.read_line(&mut answer)? == 0 {
        // Ctrl-D: end the prompt's line so the shell's prompt does not follow it.
        let _ = writeln!(prompt);
        return Ok(false);
    }
    Ok(matches!(
        answer.trim().to_ascii_lowercase().as_str(),
        "y" | "yes"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_terminal_is_asked_and_yes_skips_the_question() {
        let cases = [
            (true, true, Confirm::Proceed),
            (true, false, Confirm::Proceed),
            (false, true, Confirm::Ask),
            (false, false, Confirm::Refuse),
        ];
        for (yes, tty, want) in cases {
            assert_eq!(decide(yes, tty), want, "--yes {yes}, tty {tty}");
        }
    }

    #[test]
    fn only_y_or_yes_agrees() {
        let cases = [
            ("y\n", true),
            ("Y\n", true),
            ("yes\n", true),
            (" YES \n", true),
            ("\n", false),
            ("n\n", false),
            ("no\n", false),
            ("yep\n", false),
            ("", false),
        ];
        for (answer, want) in cases {
            let mut prompt = Vec::new();
            let got = ask("Delete? [y/N] ", &mut answer.as_bytes(), &mut prompt).unwrap();
            assert_eq!(got, want, "{answer:?}");
            assert!(prompt.starts_with(b"Delete? [y/N] "));
        }
    }
}
