//! `ingestctl fsck [--repair]`: is the catalog consistent with the storage folder, the vectors
//! and the running jobs? Read-only by default; exit 1 when something is wrong. `--repair`
//! fixes it without deleting any file (orphans move to the storage root's `lost+found/`).

use super::{Done, Failure, Options};
use crate::output;
use ingestd_proto::client::{Client, EXIT_FAILED};
use ingestd_proto::protocol::{FsckReport, cmd};

pub fn run(client: &mut Client, options: &Options, repair: bool) -> Result<Done, Failure> {
    let data = client.request(&cmd::Fsck { repair })?;
    let report: FsckReport = serde_json::from_value(data.clone()).map_err(|e| {
        Failure::Failed(format!(
            "ingestd answered fsck in a shape this client cannot read ({e})"
        ))
    })?;
    let code = if report.is_clean() || report.repaired {
        0
    } else {
        EXIT_FAILED
    };
    let text = if options.json {
        output::json(&data, options.pretty)
    } else {
        render(&report)
    };
    Ok(Done {
        text,
        notes: Vec::new(),
        code,
    })
}

fn render(r: &FsckReport) -> String {
    if r.is_clean() {
        return "clean: every stored file has its catalog row and every row its file; no \
                orphaned vectors; no stuck jobs\n"
            .into();
    }
    let mut text = String::new();
    let list = |text: &mut String, title: String, items: &[String]| {
        if !items.is_empty() {
            text.push_str(&format!("{title}:\n"));
            for item in items {
                text.push_str(&format!("  {item}\n"));
            }
        }
    };
    list(
        &mut text,
        format!(
            "{} stored files without a catalog row",
            r.orphan_files.len()
        ),
        &r.orphan_files,
    );
    list(
        &mut text,
        format!(
            "{} versions whose stored file is missing",
            r.missing_files.len()
        ),
        &r.missing_files,
    );
    let stuck: Vec<String> = r.stuck_jobs.iter().map(|j| format!("job {j}")).collect();
    list(
        &mut text,
        format!("{} jobs processing with no worker", r.stuck_jobs.len()),
        &stuck,
    );
    list(
        &mut text,
        format!(
            "{} files other nodes deleted, still to remove here",
            r.pending_deletes.len()
        ),
        &r.pending_deletes,
    );
    if r.orphan_vectors > 0 {
        text.push_str(&format!(
            "{} vectors of versions that no longer exist\n",
            r.orphan_vectors
        ));
    }
    if r.repaired {
        text.push_str(
            "repaired: rows without files and orphaned vectors removed, stuck jobs queued again\n",
        );
        list(&mut text, "moved to lost+found".into(), &r.moved);
    } else {
        text.push_str("run `ingestctl fsck --repair` to fix this (no file is deleted)\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_lists_each_problem_and_how_to_fix_it() {
        let clean = FsckReport::default();
        assert!(render(&clean).starts_with("clean"));
        let report = FsckReport {
            orphan_files: vec!["/s/g/x_v9.csv".into()],
            missing_files: vec!["g/a.csv v1 (/s/g/a_v1.csv)".into()],
            orphan_vectors: 12,
            stuck_jobs: vec![4],
            repaired: false,
            moved: Vec::new(),
            pending_deletes: Vec::new(),
        };
        let text = render(&report);
        for needle in [
            "1 stored files without a catalog row:\n  /s/g/x_v9.csv\n",
            "1 versions whose stored file is missing:\n  g/a.csv v1",
            "1 jobs processing with no worker:\n  job 4\n",
            "12 vectors of versions",
            "ingestctl fsck --repair",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
    }
}
