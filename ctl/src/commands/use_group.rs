//! `ingestctl use [GROUP]` / `use --clear`: set, show or forget the caller's current group, the
//! group every command uses when `-g` is not given. The daemon keeps it, per uid, across runs
//! of `ingestctl` and restarts of the daemon.

use super::{Done, Failure, Options};
use crate::output;
use ingestd_proto::client::Client;
use ingestd_proto::protocol::{UseInfo, cmd};

pub fn run(
    client: &mut Client,
    options: &Options,
    name: Option<&str>,
    clear: bool,
) -> Result<Done, Failure> {
    let command = cmd::Use {
        group: chosen(name, options.group.as_deref(), clear)?,
        clear,
    };
    if options.json {
        return Ok(Done::text(output::json_text(
            client.call_text(&command)?,
            options.pretty,
        )));
    }
    let info: UseInfo = client.call(&command)?;
    Ok(Done::text(render(&info)))
}

/// The group to set: the argument, or `-g` (so `ingestctl -g sales use` works too).
fn chosen(name: Option<&str>, flag: Option<&str>, clear: bool) -> Result<Option<String>, Failure> {
    match (name, flag) {
        (Some(_), _) | (None, Some(_)) if clear => Err(Failure::Usage(
            "`use --clear` takes no group; it forgets the current one".into(),
        )),
        (Some(name), Some(flag)) if name != flag => Err(Failure::Usage(format!(
            "two groups given ({name} and -g {flag}); give one: `ingestctl use GROUP`"
        ))),
        (name, flag) => Ok(name.or(flag).map(str::to_string)),
    }
}

fn render(info: &UseInfo) -> String {
    match &info.group {
        Some(group) => format!("current group: {group}\n"),
        None => "no current group; set one with `ingestctl use GROUP`\n".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_comes_from_the_argument_or_the_flag() {
        // (argument, -g, --clear, the group sent)
        let ok = [
            (Some("sales"), None, false, Some("sales")),
            (None, Some("sales"), false, Some("sales")),
            (Some("sales"), Some("sales"), false, Some("sales")),
            (None, None, false, None),
            (None, None, true, None),
        ];
        for (name, flag, clear, want) in ok {
            let got = chosen(name, flag, clear).unwrap();
            assert_eq!(got.as_deref(), want, "{name:?} {flag:?} {clear}");
        }
        for (name, flag, clear) in [(Some("a"), Some("b"), false), (None, Some("a"), true)] {
            let err = chosen(name, flag, clear).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{err}");
        }
    }

    #[test]
    fn shows_the_group_or_how_to_set_one() {
        let set = UseInfo {
            group: Some("sales".into()),
            uid: 1000,
        };
        assert_eq!(render(&set), "current group: sales\n");
        let none = UseInfo {
            group: None,
            uid: 1000,
        };
        assert_eq!(
            render(&none),
            "no current group; set one with `ingestctl use GROUP`\n"
        );
    }
}
