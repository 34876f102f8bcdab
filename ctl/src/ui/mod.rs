//! `ingestctl ui`: a full-screen terminal client of the control socket (ratatui + crossterm).
//!
//! This file owns the terminal and the loop: it enters the alternate screen and raw mode,
//! makes sure they are left again (on quit, on error, on a panic through ratatui's hook, and
//! on SIGTERM/SIGHUP), starts the threads of `net` and the key reader, and redraws when
//! something happened: a key, an event, an answer, a resize, and a timer only while jobs run
//! or while the preferences editor waits for edits to rest before asking for their preview.
//! State lives in `app`, key handling in `keys`, drawing in `view`. It never prints outside
//! the alternate screen while it runs.

pub mod app;
pub mod debounce;
pub mod keys;
pub mod net;
pub mod proto;
pub mod reply;
pub mod view;
pub mod wire;

#[cfg(test)]
mod bench;
#[cfg(test)]
mod tests;

use app::{App, Request};
use debounce::{Debounce, PREVIEW_DELAY};
use net::Msg;
use ratatui::DefaultTerminal;
use ratatui::crossterm::event::{self, Event as TermEvent, KeyEventKind};
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// How often the screen is redrawn while jobs run and no event comes.
const TICK: Duration = Duration::from_secs(1);

/// Most messages handled before a redraw, so a flood of events cannot starve the screen.
const BATCH: usize = 4096;

/// Run the UI on this terminal until the person quits or a signal asks to stop.
pub fn run(socket: PathBuf, group: Option<String>) -> std::io::Result<()> {
    // One unbounded channel into the loop. Its producers are bounded elsewhere: the daemon
    // drops an events follower that falls 4096 behind (we then reconnect and reload), the
    // workers send one answer per request, and the key reader is a person typing.
    let (tx, rx) = mpsc::channel::<Msg>();
    let (reads, writes) = start_workers(&socket, &tx);
    spawn_signals(tx.clone())?;
    let mut terminal = ratatui::init();
    spawn_keys(tx);
    let ctx = view::Ctx {
        theme: view::Theme::from_env(),
        tz: crate::output::local_zone(),
        socket: socket.display().to_string(),
    };
    let result = event_loop(&mut terminal, App::new(group), &rx, &reads, &writes, &ctx);
    ratatui::restore();
    result
}

fn start_workers(socket: &std::path::Path, tx: &Sender<Msg>) -> (Sender<Request>, Sender<Request>) {
    let (reads_tx, reads_rx) = mpsc::channel();
    let (writes_tx, writes_rx) = mpsc::channel();
    let (s, t) = (socket.to_path_buf(), tx.clone());
    std::thread::spawn(move || net::follow_events(s, t));
    let (s, t) = (socket.to_path_buf(), tx.clone());
    std::thread::spawn(move || net::perform(s, reads_rx, t, false));
    let (s, t) = (socket.to_path_buf(), tx.clone());
    std::thread::spawn(move || net::perform(s, writes_rx, t, true));
    (reads_tx, writes_tx)
}

/// SIGTERM (a service manager, `kill`), SIGHUP (the SSH session went away) and SIGINT (only
/// from `kill -INT`; raw mode turns Ctrl-C into a key) end the UI through the loop, so the
/// terminal is restored before the process exits.
fn spawn_signals(tx: Sender<Msg>) -> std::io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGHUP, SIGINT])?;
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(Msg::Signal);
        }
    });
    Ok(())
}

fn spawn_keys(tx: Sender<Msg>) {
    std::thread::spawn(move || {
        loop {
            let msg = match event::read() {
                Ok(TermEvent::Key(key)) if key.kind != KeyEventKind::Release => Msg::Key(key),
                Ok(TermEvent::Resize(..)) => Msg::Resize,
                Ok(_) => continue,
                // The terminal is gone (hung up): leave as on a signal.
                Err(_) => Msg::Signal,
            };
            let gone = matches!(msg, Msg::Signal);
            if tx.send(msg).is_err() || gone {
                return;
            }
        }
    });
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    mut app: App,
    rx: &Receiver<Msg>,
    reads: &Sender<Request>,
    writes: &Sender<Request>,
    ctx: &view::Ctx,
) -> std::io::Result<()> {
    terminal.draw(|frame| view::draw(frame, &app, ctx))?;
    let mut preview = Debounce::new(PREVIEW_DELAY);
    loop {
        let tick = app.jobs_running().then_some(TICK);
        let wait = match (tick, preview.wait(Instant::now())) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let first = match wait {
            Some(wait) => match rx.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => Msg::Tick,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            },
            None => match rx.recv() {
                Ok(msg) => msg,
                Err(_) => return Ok(()),
            },
        };
        let mut requests = Vec::new();
        let mut next = Some(first);
        let mut handled = 0;
        while let Some(msg) = next {
            let (state, more) = handle(app, msg);
            app = state;
            requests.extend(more);
            handled += 1;
            next = if handled < BATCH && !app.quit {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if app.quit {
            return Ok(());
        }
        let now = Instant::now();
        preview.observe(app.preview_edits(), now);
        if preview.fire(now) {
            requests.extend(app.ask_preview());
        }
        for request in net::coalesce(requests) {
            let worker = if net::is_read(&request) {
                reads
            } else {
                writes
            };
            // A worker is gone only when the UI is ending.
            let _ = worker.send(request);
        }
        terminal.draw(|frame| view::draw(frame, &app, ctx))?;
    }
}

/// One message: the new state and the requests it calls for.
pub fn handle(mut app: App, msg: Msg) -> (App, Vec<Request>) {
    let requests = match msg {
        Msg::Key(key) => return keys::on_key(app, key),
        Msg::Resize | Msg::Tick => Vec::new(),
        Msg::Connected => app.on_connected(),
        Msg::Down(why) => {
            app.on_disconnected(why);
            Vec::new()
        }
        Msg::Event(event) => app.on_event(&event),
        Msg::Reply { command, result } => app.on_reply(&command, result),
        Msg::Added(Ok(text)) => {
            app.info(text);
            Vec::new()
        }
        Msg::Added(Err(text)) => {
            app.error(text);
            Vec::new()
        }
        Msg::Signal => {
            app.quit = true;
            Vec::new()
        }
    };
    (app, requests)
}
