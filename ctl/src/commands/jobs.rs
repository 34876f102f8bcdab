//! The embedding queue from the command line: `reembed`, `jobs`, `retry`, `cancel`, and the
//! `--wait` that follows jobs to their end with a progress bar each.
//!
//! `--wait` asks the daemon for the jobs' state a few times a second (one small request; the
//! daemon answers from the catalog) and ends when every job is completed, failed or
//! cancelled. On a terminal each job gets a bar; elsewhere one line per job is printed as it
//! ends, so logs of scripted runs stay readable.

use super::{Done, Failure, Options, Text};
use crate::output;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use ingestd_proto::client::{Client, EXIT_FAILED};
use ingestd_proto::protocol::{
    Call, JOBS_MAX, JobInfo, JobState, Progress, QueuePosition, Queued, cmd,
};
use jiff::tz::TimeZone;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Duration;

/// How often `--wait` asks for the jobs' state.
const POLL: Duration = Duration::from_millis(200);

/// At most this many job ids per `jobs` request while following: the default of the daemon's
/// `server.max_targets`, so a `--wait` on more jobs than that asks in several requests instead
/// of being refused after the jobs were queued.
const POLL_IDS: usize = 1000;

/// The `jobs` requests that ask for the state of `ids`, none naming more than `POLL_IDS`.
fn poll_requests(ids: &[i64]) -> Vec<cmd::Jobs> {
    ids.chunks(POLL_IDS)
        .map(|chunk| cmd::Jobs {
            group: None,
            all: false,
            state: None,
            ids: chunk.to_vec(),
            limit: None,
            before: None,
        })
        .collect()
}

pub fn reembed(
    client: &mut Client,
    options: &Options,
    sources: &[String],
    all: bool,
    wait: bool,
) -> Result<Done, Failure> {
    let command = cmd::Reembed {
        sources: sources.to_vec(),
        group: options.group.clone(),
        all,
    };
    queued(client, options, &command, wait, "no source to re-embed")
}

pub fn retry(
    client: &mut Client,
    options: &Options,
    jobs: &[i64],
    failed: bool,
    wait: bool,
) -> Result<Done, Failure> {
    let command = cmd::Retry {
        jobs: jobs.to_vec(),
        failed,
        group: options.group.clone(),
    };
    queued(client, options, &command, wait, "no failed job to retry")
}

pub fn cancel(client: &mut Client, options: &Options, jobs: &[i64]) -> Result<Done, Failure> {
    let command = cmd::Cancel {
        jobs: jobs.to_vec(),
    };
    queued(client, options, &command, false, "nothing to cancel")
}

/// Send a command answered with one [`Queued`] per target; print them; wait if asked.
fn queued<R: Call<Reply = Vec<Queued>>>(
    client: &mut Client,
    options: &Options,
    command: &R,
    wait: bool,
    nothing: &str,
) -> Result<Done, Failure> {
    let data = client.request(command)?;
    // The answer is kept as it came for `--json`, and read as the command's reply.
    let outcomes: R::Reply = serde_json::from_value(data.clone()).map_err(|e| {
        Failure::Failed(format!(
            "ingestd answered in a shape this client cannot read ({e}); `ingestctl jobs` shows \
             the queue"
        ))
    })?;
    let mut code = if outcomes.iter().all(|o| o.ok) {
        0
    } else {
        EXIT_FAILED
    };
    let mut text = if options.json && !wait {
        output::json(&data, options.pretty)
    } else if outcomes.is_empty() {
        format!("{nothing}\n")
    } else {
        outcomes
            .iter()
            .map(|o| format!("{}{}\n", if o.ok { "" } else { "error: " }, o.message))
            .collect()
    };
    if wait {
        let ids: Vec<i64> = outcomes
            .iter()
            .filter(|o| o.ok)
            .filter_map(|o| o.job.as_ref().map(|j| j.id))
            .collect();
        let ended = follow(client, &ids, options)?;
        if ended.iter().any(|j| j.state != JobState::Completed) {
            code = EXIT_FAILED;
        }
        if options.json {
            text = output::json(
                &serde_json::to_value(&ended).unwrap_or_default(),
                options.pretty,
            );
        } else {
            for job in &ended {
                text.push_str(&ending_line(job));
            }
        }
    }
    Ok(Done {
        text,
        notes: Vec::new(),
        code,
    })
}

/// One line saying how a job ended.
fn ending_line(job: &JobInfo) -> String {
    let what = format!("job {} {} {}", job.id, job.source, job.version);
    match job.state {
        JobState::Completed => format!("{what}: completed, {} rows embedded\n", job.progress.done),
        state => format!(
            "{what}: {state}{}\n",
            job.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ),
    }
}

/// Poll `ids` until every job has ended; bars on a terminal. Returns the jobs as they ended.
fn follow(client: &mut Client, ids: &[i64], options: &Options) -> Result<Vec<JobInfo>, Failure> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let tty = std::io::stderr().is_terminal() && !options.json;
    let bars = MultiProgress::with_draw_target(if tty {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    });
    let style = ProgressStyle::with_template("{prefix:.bold} [{bar:30}] {pos}/{len} rows {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let mut shown: BTreeMap<i64, ProgressBar> = BTreeMap::new();
    loop {
        let mut jobs: Vec<JobInfo> = Vec::with_capacity(ids.len());
        for request in poll_requests(ids) {
            jobs.extend(client.call(&request)?);
        }
        for job in &jobs {
            let bar = shown.entry(job.id).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new(job.progress.total));
                bar.set_style(style.clone());
                bar.set_prefix(format!("job {} {} {}", job.id, job.source, job.version));
                bar
            });
            bar.set_length(job.progress.total.max(job.progress.done));
            bar.set_position(job.progress.done);
            bar.set_message(match (job.state, job.position) {
                (JobState::Queued, Some(p)) => format!("queued, #{} in line", p.overall),
                (state, _) => state.to_string(),
            });
            if job.state.is_final() && !bar.is_finished() {
                bar.finish();
            }
        }
        // A job that vanished (deleted with its source) has ended too.
        if jobs.iter().all(|j| j.state.is_final()) {
            return Ok(jobs);
        }
        std::thread::sleep(POLL);
    }
}

pub fn list(
    client: &mut Client,
    options: &Options,
    all: bool,
    state: Option<JobState>,
    ids: &[i64],
    before: Option<i64>,
) -> Result<String, Failure> {
    // Named jobs are all shown: asked for in requests the daemon accepts, each answered
    // whole. Otherwise one page, the newest, and how to ask for the one before it.
    let commands = if ids.is_empty() {
        vec![cmd::Jobs {
            group: options.group.clone(),
            all,
            state,
            ids: Vec::new(),
            limit: None,
            before,
        }]
    } else {
        poll_requests(ids)
    };
    if options.json {
        if let [command] = commands.as_slice() {
            return Ok(output::json_text(
                client.call_text(command)?,
                options.pretty,
            ));
        }
        let mut data = Vec::new();
        for command in &commands {
            match client.request(command)? {
                serde_json::Value::Array(items) => data.extend(items),
                other => data.push(other),
            }
        }
        return Ok(output::json(
            &serde_json::Value::Array(data),
            options.pretty,
        ));
    }
    // Each answer is kept while its rows, which borrow from it, are shown.
    let mut answers = vec![Vec::new(); commands.len()];
    let mut jobs: Vec<Row<'_>> = Vec::new();
    for (command, answer) in commands.iter().zip(answers.iter_mut()) {
        jobs.extend(client.call_view::<_, Vec<Row<'_>>>(command, answer)?);
    }
    if jobs.is_empty() {
        return Ok(match state {
            Some(state) => format!("No {state} jobs.\n"),
            None => "No embedding jobs yet: every accepted version gets one.\n".into(),
        });
    }
    let mut text = render(&jobs, &options.tz);
    if ids.is_empty() {
        text.push_str(&more(&jobs));
    }
    Ok(text)
}

/// One job as `jobs` prints it: the fields of a [`JobInfo`] its table shows, read from the
/// answer's text without copying strings (see `ls`).
#[derive(serde::Deserialize)]
struct Row<'a> {
    id: i64,
    #[serde(borrow)]
    group: Text<'a>,
    #[serde(borrow)]
    source: Text<'a>,
    #[serde(borrow)]
    version: Text<'a>,
    state: JobState,
    attempt: u32,
    max_attempts: u32,
    progress: Progress,
    position: Option<QueuePosition>,
    #[serde(borrow)]
    error: Option<Text<'a>>,
    #[serde(borrow)]
    queued_at: Text<'a>,
}

/// A full page may have older jobs before it: say how to get them.
fn more(jobs: &[Row<'_>]) -> String {
    match jobs.first() {
        Some(first) if jobs.len() as u32 >= JOBS_MAX => format!(
            "(showing the newest {}; older jobs: ingestctl jobs --before {} with the same \
             options)\n",
            jobs.len(),
            first.id
        ),
        _ => String::new(),
    }
}

/// The table; its cells are made as it asks for them, as in `ls`.
fn render(jobs: &[Row<'_>], tz: &TimeZone) -> String {
    let mut times = output::Times::new(tz);
    let queued: Vec<String> = jobs.iter().map(|j| times.show(&j.queued_at)).collect();
    let rows = jobs.iter().zip(&queued).map(|(j, queued)| {
        [
            Cow::Owned(j.id.to_string()),
            Cow::Borrowed(&*j.group),
            Cow::Owned(format!("{} {}", &*j.source, &*j.version)),
            Cow::Borrowed(j.state.as_str()),
            match j.position {
                Some(p) => Cow::Owned(format!("{} ({} in group)", p.overall, p.group)),
                None => Cow::Borrowed("-"),
            },
            Cow::Owned(format!("{}/{}", j.attempt, j.max_attempts)),
            Cow::Owned(format!("{}/{}", j.progress.done, j.progress.total)),
            Cow::Borrowed(queued.as_str()),
            match j.error.as_deref() {
                Some(error) => Cow::Owned(output::truncated(error, 60)),
                None => Cow::Borrowed(""),
            },
        ]
    });
    output::table(
        &[
            "JOB", "GROUP", "SOURCE", "STATE", "POSITION", "ATTEMPT", "ROWS", "QUEUED", "ERROR",
        ],
        rows,
        &[0],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn following_many_jobs_asks_in_requests_the_daemon_accepts() {
        let ids: Vec<i64> = (1..=2_500).collect();
        let requests = poll_requests(&ids);
        assert_eq!(requests.len(), 3);
        let mut asked = Vec::new();
        for request in &requests {
            // The daemon's own bound, at its default of 1,000 targets.
            let command = ingestd_proto::protocol::Command::from(request.clone());
            assert_eq!(command.check_bounds(1000), Ok(()));
            asked.extend_from_slice(&request.ids);
        }
        assert_eq!(asked, ids, "every id once, in order");
        assert_eq!(poll_requests(&ids[..1000]).len(), 1);
        assert!(poll_requests(&[]).is_empty());
    }

    /// `jobs` as `jobs` reads them from the daemon's answer: encoded, then decoded as rows.
    fn rendered(jobs: &[JobInfo], tz: &TimeZone) -> String {
        let text = serde_json::to_string(jobs).unwrap();
        let rows: Vec<Row<'_>> = serde_json::from_str(&text).unwrap();
        render(&rows, tz)
    }

    pub fn job(id: i64, state: JobState) -> JobInfo {
        JobInfo {
            id,
            group: "sales".into(),
            source: "q1.csv".into(),
            version: "v2".into(),
            state,
            reason: "new_version".into(),
            attempt: 1,
            max_attempts: 3,
            progress: Progress {
                done: 40,
                total: 100,
            },
            position: None,
            error: None,
            requested_by: Some("alice".into()),
            queued_at: "2026-11-27T01:56:24Z".into(),
            started_at: None,
            finished_at: None,
            not_before: None,
        }
    }

    #[test]
    fn the_table_shows_position_attempt_and_progress() {
        let mut queued = job(7, JobState::Queued);
        queued.position = Some(QueuePosition {
            group: 1,
            overall: 3,
        });
        let mut failed = job(8, JobState::Failed);
        failed.error = Some("gave up after 3 attempts: HTTP 503".into());
        let text = rendered(&[queued, failed], &TimeZone::UTC);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("JOB"), "{text}");
        assert!(lines[1].contains("3 (1 in group)"), "{text}");
        assert!(lines[1].contains("40/100"), "{text}");
        assert!(lines[1].contains("1/3"), "{text}");
        assert!(lines[2].contains("failed"), "{text}");
        assert!(lines[2].contains("HTTP 503"), "{text}");
    }

    #[test]
    fn a_full_page_says_how_to_get_the_one_before() {
        let page: Vec<JobInfo> = (41..41 + i64::from(JOBS_MAX))
            .map(|id| job(id, JobState::Completed))
            .collect();
        let text = serde_json::to_string(&page).unwrap();
        let page: Vec<Row<'_>> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            more(&page),
            "(showing the newest 1000; older jobs: ingestctl jobs --before 41 with the same \
             options)\n"
        );
        assert_eq!(more(&page[1..]), "", "not a full page: nothing before it");
    }

    #[test]
    fn endings_say_rows_or_the_error() {
        assert_eq!(
            ending_line(&job(7, JobState::Completed)),
            "job 7 q1.csv v2: completed, 40 rows embedded\n"
        );
        let mut failed = job(8, JobState::Failed);
        failed.error = Some("model missing".into());
        assert_eq!(
            ending_line(&failed),
            "job 8 q1.csv v2: failed: model missing\n"
        );
    }
}
