//! The daemon's long-lived async tasks, watched in one place: each runs under a name in one
//! [`JoinSet`], and the first one to end while the daemon runs is a critical error.
//!
//! Every supervised task (the socket server, the embedding queue, the heartbeat, reloads) is
//! meant to run until the stop. One that panics or returns early leaves a daemon that looks
//! alive to systemd but no longer does its job (a panicked server is a daemon without a
//! socket), so the daemon stops and exits non-zero, and `Restart=on-failure` brings it back.
//! This module only watches and reports; it never decides the order of a stop (that is
//! `daemon`'s) and never exits the process itself.
//!
//! Debug builds read `INGEST_TEST_TASK_DIR` (not an `INGESTD_` name, so no config override
//! can set it): a test creates `<name>.panic` or `<name>.end` there and the task of that name
//! panics or returns, which is how the e2e suite shows a failing task stops the daemon.
//! Release builds have no such code.

use std::collections::HashMap;
use std::future::Future;
use tokio::task::{Id, JoinError, JoinSet};

/// The variable naming the folder of the test hook (debug builds only).
pub const TASK_DIR_VAR: &str = "INGEST_TEST_TASK_DIR";

/// How a supervised task ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It returned while the daemon was still running.
    Early,
    /// It panicked, with the panic's message.
    Panicked(String),
    /// The runtime cancelled it (only at runtime shutdown).
    Cancelled,
}

/// A task that ended when it should not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub struct TaskFailure {
    pub task: &'static str,
    pub ended: Ended,
}

impl TaskFailure {
    /// One line for the log, stderr and systemd's `STATUS=`.
    pub fn reason(&self) -> String {
        match &self.ended {
            Ended::Early => format!("task {} ended while the daemon was running", self.task),
            Ended::Panicked(message) => format!("task {} panicked: {message}", self.task),
            Ended::Cancelled => format!("task {} was cancelled", self.task),
        }
    }
}

/// Named tasks in one set.
#[derive(Default)]
pub struct Supervisor {
    tasks: JoinSet<()>,
    names: HashMap<Id, &'static str>,
}

impl Supervisor {
    /// Run `task` under `name` until it ends or the supervisor is dropped (which aborts it).
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        #[cfg(debug_assertions)]
        let task = test_hook::wrap(name, task);
        let handle = self.tasks.spawn(task);
        self.names.insert(handle.id(), name);
    }

    /// Names of the tasks still running.
    pub fn running(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.names.values().copied().collect();
        names.sort_unstable();
        names
    }

    /// Wait for the next task to end and say how. Pending forever when none is left, so it can
    /// sit in a `select!` beside the shutdown signal.
    pub async fn next_ended(&mut self) -> TaskFailure {
        match self.tasks.join_next_with_id().await {
            Some(joined) => self.settle(joined),
            None => std::future::pending().await,
        }
    }

    /// Wait until every task but those in `keep` has ended (they were told to stop). Returns
    /// the ones that panicked meanwhile; returning is what they were asked to do.
    pub async fn join_all_but(&mut self, keep: &[&str]) -> Vec<TaskFailure> {
        let mut failures = Vec::new();
        while self.names.values().any(|name| !keep.contains(name)) {
            let Some(joined) = self.tasks.join_next_with_id().await else {
                break;
            };
            let failure = self.settle(joined);
            if failure.ended != Ended::Early {
                tracing::error!(task = failure.task, "{failure} while stopping");
                failures.push(failure);
            }
        }
        failures
    }

    fn settle(&mut self, joined: Result<(Id, ()), JoinError>) -> TaskFailure {
        let (id, ended) = match joined {
            Ok((id, ())) => (id, Ended::Early),
            Err(error) => {
                let id = error.id();
                let ended = if error.is_panic() {
                    Ended::Panicked(panic_message(error.into_panic()))
                } else {
                    Ended::Cancelled
                };
                (id, ended)
            }
        };
        let task = self.names.remove(&id).unwrap_or("unnamed");
        TaskFailure { task, ended }
    }
}

/// The text of a panic payload (`panic!("…")` gives a `&str` or a `String`).
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => match payload.downcast::<&'static str>() {
            Ok(text) => (*text).to_string(),
            Err(_) => "a panic without a message".to_string(),
        },
    }
}

#[cfg(debug_assertions)]
mod test_hook {
    use std::future::Future;
    use std::path::PathBuf;
    use std::pin::Pin;
    use std::time::Duration;

    type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

    /// `task`, or (with the hook's folder set) `task` raced against the test's order for it.
    pub fn wrap(name: &'static str, task: impl Future<Output = ()> + Send + 'static) -> Task {
        let Some(dir) = std::env::var_os(super::TASK_DIR_VAR).map(PathBuf::from) else {
            return Box::pin(task);
        };
        Box::pin(async move {
            let (panic, end) = (
                dir.join(format!("{name}.panic")),
                dir.join(format!("{name}.end")),
            );
            let ordered = async {
                loop {
                    if panic.exists() {
                        panic!("{name} was told to panic by {}", panic.display());
                    }
                    if end.exists() {
                        tracing::warn!(task = name, "told to end by {}", end.display());
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::select! {
                () = task => {}
                () = ordered => {}
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn the_first_task_to_end_is_named_with_how_it_ended() {
        let mut supervisor = Supervisor::default();
        let stop = CancellationToken::new();
        let waiting = stop.clone();
        supervisor.spawn("server", async move { waiting.cancelled().await });
        supervisor.spawn("queue", async { panic!("the queue broke") });
        let failure = supervisor.next_ended().await;
        assert_eq!(
            failure,
            TaskFailure {
                task: "queue",
                ended: Ended::Panicked("the queue broke".into())
            }
        );
        assert_eq!(failure.to_string(), "task queue panicked: the queue broke");
        assert_eq!(supervisor.running(), vec!["server"]);

        supervisor.spawn("heartbeat", async {});
        let failure = supervisor.next_ended().await;
        assert_eq!((failure.task, &failure.ended), ("heartbeat", &Ended::Early));
        assert_eq!(
            failure.to_string(),
            "task heartbeat ended while the daemon was running"
        );

        stop.cancel();
        assert_eq!(supervisor.join_all_but(&[]).await, vec![]);
        assert!(supervisor.running().is_empty());
    }

    #[tokio::test]
    async fn a_stop_waits_for_all_but_the_kept_tasks_and_reports_panics() {
        let mut supervisor = Supervisor::default();
        let (front, back) = (CancellationToken::new(), CancellationToken::new());
        let (f1, f2, b) = (front.clone(), front.clone(), back.clone());
        supervisor.spawn("server", async move { f1.cancelled().await });
        supervisor.spawn("reload", async move {
            f2.cancelled().await;
            panic!("{}", String::from("gave up"));
        });
        supervisor.spawn("queue", async move { b.cancelled().await });
        front.cancel();
        let failures = supervisor.join_all_but(&["queue"]).await;
        assert_eq!(
            failures,
            vec![TaskFailure {
                task: "reload",
                ended: Ended::Panicked("gave up".into())
            }]
        );
        assert_eq!(supervisor.running(), vec!["queue"]);
        back.cancel();
        assert_eq!(supervisor.join_all_but(&[]).await, vec![]);
    }

    #[tokio::test]
    async fn with_no_task_left_next_ended_never_resolves() {
        let mut supervisor = Supervisor::default();
        let waited = tokio::time::timeout(Duration::from_millis(50), supervisor.next_ended()).await;
        assert!(waited.is_err());
    }
}
