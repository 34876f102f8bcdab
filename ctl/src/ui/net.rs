//! The UI's threads that talk to the daemon: one follows `events` (and reconnects, every
//! second, whenever the daemon is gone), two perform requests: reads, which a newer read of
//! the same kind makes stale and which are collapsed, and writes, which never are. Each
//! answer goes back to the UI loop as a [`Msg`] on one channel.
//!
//! Requests and answers go over [`Wire`], which reads answers straight into typed replies;
//! the event stream, small lines one at a time, over the protocol's client.
//!
//! Nothing here decides what to ask or how to show an answer; that is the state's job.

use super::app::Request;
use super::proto::{Client, ClientError, Command, Event, Following, cmd};
use super::reply::{Failure, Reply};
use super::wire::{CallError, Wire};
use crate::upload;
use ratatui::crossterm::event::KeyEvent;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

/// How long to wait before connecting again to a daemon that is not there.
pub const RECONNECT: Duration = Duration::from_secs(1);

/// How long a read may wait for its answer, as the protocol's client waits.
const READ_TIMEOUT: Duration = super::proto::DEFAULT_TIMEOUT;

/// How long a state-changing request may take: `rm --force` waits up to 60 s for a job.
const WRITE_TIMEOUT: Duration = Duration::from_secs(90);

/// Everything the UI loop reacts to.
#[derive(Debug)]
pub enum Msg {
    Key(KeyEvent),
    Resize,
    /// The redraw timer while jobs run.
    Tick,
    /// The event stream is (again) following the daemon.
    Connected,
    /// The daemon cannot be reached; why.
    Down(String),
    Event(Box<Event>),
    Reply {
        command: Command,
        result: Result<Reply, Failure>,
    },
    /// A local file was copied into a drop folder (or why not).
    Added(Result<String, String>),
    /// SIGTERM, SIGHUP or SIGINT: restore the terminal and leave.
    Signal,
}

/// Follow every group's events until the UI is gone, reconnecting when the daemon goes away.
pub fn follow_events(socket: PathBuf, tx: Sender<Msg>) {
    loop {
        let why = match stream(&socket, &tx) {
            Ok(Stop::UiGone) => return,
            Ok(Stop::Ended) => "ingestd closed the connection (stopping or restarting?)".into(),
            Err(e) => e.to_string(),
        };
        if tx.send(Msg::Down(why)).is_err() {
            return;
        }
        std::thread::sleep(RECONNECT);
    }
}

enum Stop {
    UiGone,
    Ended,
}

fn stream(socket: &Path, tx: &Sender<Msg>) -> Result<Stop, ClientError> {
    let mut client = Client::connect(socket)?;
    let _: Following = client.call(&cmd::Events {
        group: None,
        all: true,
    })?;
    // A follower waits for events as long as it likes (the daemon never idles it out).
    client.set_timeout(None)?;
    if tx.send(Msg::Connected).is_err() {
        return Ok(Stop::UiGone);
    }
    while let Some(data) = client.next_data()? {
        // An event this release cannot read is skipped: the next one refetches the same view.
        let Ok(event) = serde_json::from_value::<Event>(data) else {
            continue;
        };
        if tx.send(Msg::Event(Box::new(event))).is_err() {
            return Ok(Stop::UiGone);
        }
    }
    Ok(Stop::Ended)
}

/// Which requests a newer one makes stale: the same read of the same kind.
fn coalesce_key(request: &Request) -> Option<&'static str> {
    match request {
        Request::Call(Command::Status(cmd::Status {})) => Some("status"),
        Request::Call(Command::Groups(cmd::Groups {})) => Some("groups"),
        Request::Call(Command::Ls(_)) => Some("ls"),
        Request::Call(Command::Show(cmd::Show { preview: None, .. })) => Some("show"),
        Request::Call(Command::Show(cmd::Show {
            preview: Some(_), ..
        })) => Some("preview"),
        Request::Call(Command::Jobs(_)) => Some("jobs"),
        _ => None,
    }
}

/// Keep the newest of each supersedable kind, where it came; keep every other request.
pub fn coalesce(batch: Vec<Request>) -> Vec<Request> {
    let mut out: Vec<Request> = Vec::with_capacity(batch.len());
    for request in batch {
        if let Some(key) = coalesce_key(&request) {
            out.retain(|r| coalesce_key(r) != Some(key));
        }
        out.push(request);
    }
    out
}

/// Whether the request goes to the read worker.
pub fn is_read(request: &Request) -> bool {
    coalesce_key(request).is_some()
}

/// Perform requests until the UI is gone. Reads that piled up while one ran are collapsed.
pub fn perform(socket: PathBuf, rx: Receiver<Request>, tx: Sender<Msg>, writes: bool) {
    let mut wire: Option<Wire> = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        for request in coalesce(batch) {
            let msg = match request {
                Request::Call(command) => {
                    let result = call(&socket, &mut wire, &command, writes);
                    Msg::Reply { command, result }
                }
                Request::Add { group, files } => {
                    Msg::Added(add(&socket, &mut wire, &group, &files))
                }
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
}

fn call(
    socket: &Path,
    wire: &mut Option<Wire>,
    command: &Command,
    writes: bool,
) -> Result<Reply, Failure> {
    let timeout = if writes { WRITE_TIMEOUT } else { READ_TIMEOUT };
    // One fresh connection after a transport error: the daemon may have restarted.
    for attempt in 0..2 {
        if wire.is_none() {
            *wire = Some(Wire::connect(socket, timeout).map_err(Failure::Refused)?);
        }
        let Some(connected) = wire.as_mut() else {
            continue;
        };
        match connected.call(command) {
            Ok(reply) => return Ok(reply),
            Err(CallError::Answered(failure)) => return Err(failure),
            // A write is never sent twice: the first may have been done.
            Err(CallError::Transport(e)) if writes || attempt == 1 => {
                *wire = None;
                return Err(Failure::Refused(e));
            }
            Err(CallError::Transport(_)) => *wire = None,
        }
    }
    Err(Failure::Refused("cannot reach ingestd".into()))
}

/// Copy `files` into `group`'s drop folder, as `ingestctl add` does.
fn add(
    socket: &Path,
    wire: &mut Option<Wire>,
    group: &str,
    files: &[PathBuf],
) -> Result<String, String> {
    let uploads = upload::check(files).map_err(|problems| problems.join("; "))?;
    let status = call(socket, wire, &Command::Status(cmd::Status {}), false);
    let Reply::Status(status) = status.map_err(|f| f.message().to_string())? else {
        return Err("the daemon did not answer `status` with its status".into());
    };
    let folder = upload::group_folder(Path::new(&status.drop_root), group)?;
    let mut names = Vec::new();
    for upload in uploads {
        upload::place(&upload, &folder)?;
        names.push(upload.name);
    }
    Ok(format!(
        "added {} to group '{group}'; it appears here once ingestd has taken it",
        names.join(", ")
    ))
}
