//! `ingestctl rm SOURCE[@vN]… [-g GROUP] [--yes]`: delete whole sources or single versions of
//! one group. Asks first on a terminal; refuses off a terminal unless `--yes`. The daemon
//! answers per target, so a partial success prints every line and exits 1.

use super::{Done, Failure, NO_GROUP, Options, group_or_current};
use crate::output;
use crate::prompt::{self, Confirm};
use ingestd_proto::client::{Client, EXIT_FAILED};
use ingestd_proto::protocol::{RmOutcome, cmd};
use std::io::{self, IsTerminal};

/// Fail early, before connecting, when no one can confirm and `--yes` was not given.
pub fn check_can_confirm(yes: bool, stdin_is_terminal: bool) -> Result<(), Failure> {
    match prompt::decide(yes, stdin_is_terminal) {
        Confirm::Refuse => Err(Failure::Usage(
            "rm deletes stored files and cannot be undone, and stdin is not a terminal to ask \
             on; pass --yes to delete without asking"
                .into(),
        )),
        Confirm::Proceed | Confirm::Ask => Ok(()),
    }
}

pub fn run(
    client: &mut Client,
    options: &Options,
    targets: &[String],
    yes: bool,
    force: bool,
) -> Result<Done, Failure> {
    let mut group = options.group.clone();
    if prompt::decide(yes, io::stdin().is_terminal()) == Confirm::Ask {
        // The question names the group, so the group asked about is the one sent.
        let Some(current) = group_or_current(client, options)? else {
            return Err(Failure::Failed(NO_GROUP.into()));
        };
        let agreed = prompt::ask(
            &question(targets, &current),
            &mut io::stdin().lock(),
            &mut io::stderr(),
        )
        .map_err(|e| Failure::Failed(format!("cannot read the answer: {e}")))?;
        if !agreed {
            return Err(Failure::Failed("cancelled; nothing was deleted".into()));
        }
        group = Some(current);
    }
    let command = cmd::Rm {
        targets: targets.to_vec(),
        group,
        force,
    };
    let data = client.request(&command)?;
    let outcomes: Vec<RmOutcome> = serde_json::from_value(data.clone()).map_err(|e| {
        Failure::Failed(format!(
            "ingestd answered rm in a shape this client cannot read ({e}); `ingestctl ls` shows \
             what is left"
        ))
    })?;
    let code = if outcomes.iter().all(|o| o.ok) {
        0
    } else {
        EXIT_FAILED
    };
    let text = if options.json {
        output::json(&data, options.pretty)
    } else {
        render(&outcomes)
    };
    Ok(Done {
        text,
        notes: Vec::new(),
        code,
    })
}

/// "Delete sales.csv (all versions) and q2.csv@v1 from group 'sales'? [y/N] "
pub(crate) fn question(targets: &[String], group: &str) -> String {
    let described: Vec<String> = targets
        .iter()
        .map(|t| {
            if t.contains('@') {
                t.clone()
            } else {
                format!("{t} (all versions)")
            }
        })
        .collect();
    let list = match described.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    };
    format!("Delete {list} from group '{group}'? [y/N] ")
}

/// One line per target: "ok      sales.csv: removed v1, v2" / "failed  x.csv: no source …".
fn render(outcomes: &[RmOutcome]) -> String {
    outcomes
        .iter()
        .map(|o| {
            let status = if o.ok { "ok" } else { "failed" };
            format!("{status:<6}  {}: {}\n", o.target, o.message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn off_a_terminal_rm_needs_yes() {
        assert!(check_can_confirm(true, false).is_ok());
        assert!(check_can_confirm(false, true).is_ok());
        let err = check_can_confirm(false, false).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("pass --yes"), "{err}");
    }

    #[test]
    fn the_question_names_every_target_and_the_group() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["sales.csv"],
                "Delete sales.csv (all versions) from group 'sales'? [y/N] ",
            ),
            (
                &["sales.csv", "q2.csv@v1"],
                "Delete sales.csv (all versions) and q2.csv@v1 from group 'sales'? [y/N] ",
            ),
            (
                &["a.csv", "b.csv@v2", "c.xlsx"],
                "Delete a.csv (all versions), b.csv@v2 and c.xlsx (all versions) from group \
                 'sales'? [y/N] ",
            ),
        ];
        for (targets, want) in cases {
            assert_eq!(question(&strings(targets), "sales"), *want);
        }
    }

    #[test]
    fn each_target_gets_a_line() {
        let outcomes = [
            RmOutcome {
                target: "sales.csv".into(),
                ok: true,
                message: "removed sales.csv (v1, v2)".into(),
                removed: strings(&["v1", "v2"]),
                job: None,
            },
            RmOutcome {
                target: "q2.csv@v9".into(),
                ok: false,
                message: "q2.csv has no version v9; it has v1".into(),
                removed: Vec::new(),
                job: None,
            },
        ];
        assert_eq!(
            render(&outcomes),
            "ok      sales.csv: removed sales.csv (v1, v2)\n\
             failed  q2.csv@v9: q2.csv has no version v9; it has v1\n"
        );
    }
}
