//! `ingestctl prefs [-g GROUP]` and `ingestctl prefs set …`: a group's preferences (which
//! columns are embedded, the context fields, the text template, the sheet) and the columns its
//! sources have, to choose from. Names no source has are saved anyway, with a warning each:
//! sources of a group differ, and a column may arrive with the next file.

use super::{Done, Failure, Options};
use crate::cli::PrefsSetArgs;
use crate::output;
use ingestd_proto::client::{Client, ClientError};
use ingestd_proto::protocol::{PrefsInfo, PrefsSaved, cmd};
use jiff::tz::TimeZone;

pub fn show(client: &mut Client, options: &Options) -> Result<String, ClientError> {
    let command = cmd::Prefs {
        group: options.group.clone(),
    };
    if options.json {
        return Ok(output::json_text(
            client.call_text(&command)?,
            options.pretty,
        ));
    }
    let prefs: PrefsInfo = client.call(&command)?;
    Ok(render(&prefs, &options.tz))
}

pub fn set(client: &mut Client, options: &Options, args: &PrefsSetArgs) -> Result<Done, Failure> {
    let columns = PrefsSetArgs::names(&args.columns);
    let context = PrefsSetArgs::names(&args.context);
    let asked: Vec<String> = columns.iter().chain(&context).flatten().cloned().collect();
    let command = cmd::PrefsSet {
        group: options.group.clone(),
        columns,
        context,
        template: args.template.clone(),
        sheet: args.sheet.clone(),
        clear: args.clear,
        reembed: args.reembed,
    };
    let data = client.request(&command)?;
    let saved: PrefsSaved = serde_json::from_value(data.clone()).map_err(|e| {
        Failure::Failed(format!(
            "the daemon saved the preferences but sent an answer this client cannot read ({e}); \
             `ingestctl prefs` shows them"
        ))
    })?;
    let text = if options.json {
        output::json(&data, options.pretty)
    } else {
        let mut text = format!("Saved.\n{}", render(&saved.prefs, &options.tz));
        for queued in &saved.jobs {
            text.push_str(&format!("{}\n", queued.message));
        }
        text
    };
    Ok(Done {
        text,
        notes: warnings(&saved, &asked),
        code: 0,
    })
}

/// One stderr line per warning. The daemon may send a bare column name or a whole sentence;
/// a name is put in a sentence, a sentence is printed as it is.
fn warnings(saved: &PrefsSaved, asked: &[String]) -> Vec<String> {
    saved
        .warnings
        .iter()
        .map(|warning| {
            if asked.contains(warning) {
                format!(
                    "warning: no source of group '{}' has a column named '{warning}'",
                    saved.prefs.group
                )
            } else {
                format!("warning: {warning}")
            }
        })
        .collect()
}

fn render(p: &PrefsInfo, tz: &TimeZone) -> String {
    let mut text = format!("Preferences of group '{}'\n", p.group);
    let mut field = |label: &str, value: String| {
        text.push_str(&format!("  {label:<9}{value}\n"));
    };
    field(
        "columns",
        if p.columns.is_empty() {
            "all columns".to_string()
        } else {
            p.columns.join(", ")
        },
    );
    field(
        "context",
        if p.context.is_empty() {
            "none".to_string()
        } else {
            p.context.join(", ")
        },
    );
    field(
        "template",
        p.template
            .clone()
            .unwrap_or_else(|| "none (each row as `column: value` pairs)".to_string()),
    );
    field(
        "sheet",
        p.sheet
            .clone()
            .unwrap_or_else(|| "none (the first non-empty sheet)".to_string()),
    );
    let updated = match (&p.updated_at, &p.updated_by) {
        (None, _) => "never (the defaults)".to_string(),
        (Some(at), by) => format!(
            "{} by {}",
            output::time(at, tz),
            by.as_deref().unwrap_or("-")
        ),
    };
    field("updated", updated);
    text.push_str(&format!("\nKnown columns ({}):", p.known_columns.len()));
    if p.known_columns.is_empty() {
        text.push_str(" none yet (no accepted source)\n");
    } else {
        text.push_str(&format!(" {}\n", p.known_columns.join(", ")));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefs() -> PrefsInfo {
        PrefsInfo {
            group: "sales".into(),
            columns: vec!["region".into(), "amount".into()],
            context: vec!["date".into()],
            template: Some("{region}: {amount}".into()),
            sheet: Some("Q1".into()),
            updated_at: Some("2026-11-27T02:00:00Z".into()),
            updated_by: Some("alice".into()),
            known_columns: ["amount", "date", "id", "region"]
                .map(String::from)
                .to_vec(),
        }
    }

    #[test]
    fn saved_preferences_are_listed_field_by_field() {
        let text = render(&prefs(), &TimeZone::UTC);
        assert_eq!(
            text,
            "Preferences of group 'sales'\n\
             \x20 columns  region, amount\n\
             \x20 context  date\n\
             \x20 template {region}: {amount}\n\
             \x20 sheet    Q1\n\
             \x20 updated  2026-11-27 02:00:00 by alice\n\
             \n\
             Known columns (4): amount, date, id, region\n"
        );
    }

    #[test]
    fn defaults_say_what_they_mean() {
        let empty = PrefsInfo {
            group: "new".into(),
            ..PrefsInfo::default()
        };
        let text = render(&empty, &TimeZone::UTC);
        for line in [
            "  columns  all columns\n",
            "  context  none\n",
            "  template none (each row as `column: value` pairs)\n",
            "  sheet    none (the first non-empty sheet)\n",
            "  updated  never (the defaults)\n",
            "Known columns (0): none yet (no accepted source)\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
    }

    #[test]
    fn each_unknown_name_is_a_warning() {
        let asked = ["regoin", "dat", "amount"].map(String::from);
        let saved = PrefsSaved {
            prefs: prefs(),
            warnings: vec![
                "regoin".into(),
                "dat".into(),
                "no source of group \"sales\" has a column named \"x\"; saved anyway".into(),
            ],
            jobs: Vec::new(),
        };
        assert_eq!(
            warnings(&saved, &asked),
            [
                "warning: no source of group 'sales' has a column named 'regoin'",
                "warning: no source of group 'sales' has a column named 'dat'",
                "warning: no source of group \"sales\" has a column named \"x\"; saved anyway",
            ]
        );
    }
}
