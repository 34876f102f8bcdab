//! `ingestctl groups`: every group with its count of sources by status and last activity; `*`
//! marks the caller's current group (`ingestctl use`).

use super::{Options, drop_root, no_files_guidance, status::by_status};
use crate::output;
use ingestd_proto::client::{Client, ClientError};
use ingestd_proto::protocol::{GroupInfo, cmd};
use jiff::tz::TimeZone;

pub fn run(client: &mut Client, options: &Options) -> Result<String, ClientError> {
    if options.json {
        return Ok(output::json_text(
            client.call_text(&cmd::Groups {})?,
            options.pretty,
        ));
    }
    let groups: Vec<GroupInfo> = client.call(&cmd::Groups {})?;
    if groups.is_empty() {
        let root = drop_root(client);
        return Ok(no_files_guidance(None, root.as_deref()));
    }
    Ok(render(&groups, &options.tz))
}

fn render(groups: &[GroupInfo], tz: &TimeZone) -> String {
    let rows: Vec<_> = groups
        .iter()
        .map(|g| {
            vec![
                if g.current { "*" } else { "" }.to_string(),
                g.name.clone(),
                g.sources.to_string(),
                by_status(&g.by_status),
                output::maybe_time(g.last_activity.as_deref(), tz),
            ]
        })
        .collect();
    output::table(
        &["", "GROUP", "SOURCES", "BY STATUS", "LAST ACTIVITY"],
        &rows,
        &[2],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingestd_proto::protocol::Status;
    use std::collections::BTreeMap;

    #[test]
    fn groups_show_counts_by_status() {
        let groups = [
            GroupInfo {
                name: "sales".into(),
                current: true,
                sources: 3,
                by_status: BTreeMap::from([(Status::Embedded, 2), (Status::Invalid, 1)]),
                last_activity: Some("2026-11-27T01:56:24Z".into()),
            },
            GroupInfo {
                name: "empty".into(),
                current: false,
                sources: 0,
                by_status: BTreeMap::new(),
                last_activity: None,
            },
        ];
        let text = render(&groups, &TimeZone::UTC);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("   GROUP"), "{text}");
        assert!(
            lines[1].starts_with("*  sales"),
            "the current group is marked: {text}"
        );
        assert!(lines[1].contains("embedded 2, invalid 1"), "{text}");
        assert!(lines[1].ends_with("2026-11-27 01:56:24"), "{text}");
        assert!(lines[2].starts_with("   empty"), "{text}");
        assert!(lines[2].ends_with('-'), "{text}");
    }
}
