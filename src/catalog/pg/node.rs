//! This daemon as a node of the cluster while it runs: its connections to the shared catalog,
//! the tries it runs, its heartbeat, and what it hears from the other nodes. It is the
//! PostgreSQL arm of `catalog::Catalog`; everything else of the daemon reaches it only through
//! that seam.
//!
//! - **Connections.** Calls run on blocking threads (never on the reactor), each with a
//!   connection taken from a small pool, at most [`MAX_CONNECTIONS`] open at once: a flood of
//!   requests waits for a connection instead of exhausting the server's. A connection that
//!   broke is dropped and the next call opens a new one.
//! - **Name.** A connection of its own holds an advisory lock on the node's name while it
//!   runs, so a second daemon started with the same `cluster.node` is refused.
//! - **Tries.** A claim records the try number of each job it starts on this node; begin,
//!   write and finish name the try by it (fencing, `generations`).
//! - **Heartbeat.** A thread renews the leases of this node's tries and its heartbeat every
//!   third of `cluster.lease_secs`, and takes over the jobs of nodes whose leases ran out.
//! - **Indexing.** A thread moves staged vectors into the HNSW index after their swap
//!   (`staging`), a batch at a time, sharing the work with the other nodes.
//! - **Listening.** A thread with a connection of its own hears every committed event (this
//!   node's own too, so followers see one stream in commit order), publishes it to the local
//!   hub, appends this node's own audit records to its `audit.jsonl`, wakes the scheduler on
//!   a nudge, and removes the files other nodes' deletes left to this node.

use super::PgError;
use super::notify::{Heard, Listener};
use super::queue::Member;
use super::{Target, deletes, staging};
use crate::embed::Identity;
use crate::events::Events;
use postgres::Client;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Most connections one node holds open for calls (the listener has one more, and so has
/// the node's name: [`hold_name`]).
pub const MAX_CONNECTIONS: usize = 8;

/// The session advisory lock key that holds node `name`: the first 8 bytes of a SHA-256 of
/// the name. PostgreSQL's own `hashtext` is 32 bits: among 300,000 names of one pattern it
/// gave three pairs the same value (`node-35394` and `node-42840`), and two such nodes would
/// refuse each other as the same node.
pub(super) fn name_key(name: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("ingestd node name\0{name}"));
    i64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// How long a start waits for its node name to be let go: a node stopped or killed a moment
/// ago leaves its session for the few milliseconds the server takes to notice.
const NAME_WAIT: Duration = Duration::from_secs(5);

/// Settings the daemon changes at start and on reload.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_attempts: u32,
    /// `ingest.retain_versions` (0: keep all).
    pub keep: u32,
    /// `catalog.ef_search`.
    pub ef_search: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            keep: 0,
            ef_search: super::search::DEFAULT_EF_SEARCH,
        }
    }
}

/// The pool: idle connections and how many are open.
struct Pool {
    idle: Vec<Client>,
    open: usize,
}

/// This daemon as a node of the cluster.
pub struct Node {
    target: Target,
    pool: Mutex<Pool>,
    freed: Condvar,
    pub member: Member,
    pub storage_root: PathBuf,
    pub settings: Mutex<Settings>,
    /// Job → the try number its claim on this node gave it.
    tries: Mutex<HashMap<i64, i64>>,
    identities: Mutex<HashMap<Identity, i32>>,
    pub events: Events,
    pub wake: Arc<Notify>,
    /// `audit.jsonl`: the records this node writes, appended as their commit is heard.
    audit_log: Mutex<crate::audit::AuditLog>,
    /// The connection that holds this node's name while it runs.
    name: Mutex<Option<Client>>,
    /// A large index backlog `status` counted, and when: a count walks every staged row, and
    /// a client calling `status` in a loop gets the same count for [`BACKLOG_FRESH`].
    backlog: Mutex<Option<(Instant, u64)>>,
}

/// How long a large count of the index backlog is shown again instead of counted again.
const BACKLOG_FRESH: Duration = Duration::from_secs(2);

/// A backlog below this is counted afresh every time (a few milliseconds at most), so a small
/// one, and its end, shows at once.
const BACKLOG_LARGE: u64 = 10_000;

pub(in crate::catalog) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Node {
    /// Connect (checking the server and its schema), and start the heartbeat and listener
    /// threads, which end when the node is dropped.
    pub fn start(
        target: Target,
        member: Member,
        storage_root: PathBuf,
        events: Events,
        wake: Arc<Notify>,
        audit_log: &std::path::Path,
    ) -> Result<Arc<Self>, PgError> {
        let mut client = target.connect()?;
        super::ensure_vector(&mut client, &target)?;
        super::schema::migrate(&mut client)?;
        let name = hold_name(&target, &member.name)?;
        let node = Arc::new(Self {
            target,
            pool: Mutex::new(Pool {
                idle: vec![client],
                open: 1,
            }),
            freed: Condvar::new(),
            member,
            storage_root,
            settings: Mutex::new(Settings::default()),
            tries: Mutex::new(HashMap::new()),
            identities: Mutex::new(HashMap::new()),
            events,
            wake,
            audit_log: Mutex::new(crate::audit::AuditLog::new(audit_log)),
            name: Mutex::new(Some(name)),
            backlog: Mutex::new(None),
        });
        let listener = {
            let target = node.target.clone();
            Listener::new(&node.member.name, Box::new(move || target.connect()))?.hear_own()
        };
        spawn("catalog-listen", Arc::downgrade(&node), move |weak| {
            listen(weak, listener)
        })?;
        spawn("catalog-heartbeat", Arc::downgrade(&node), heartbeat)?;
        spawn("catalog-index", Arc::downgrade(&node), index_staged)?;
        Ok(node)
    }

    /// Run `f` with a pooled connection, on the calling (blocking) thread.
    pub fn with<R>(&self, f: impl FnOnce(&mut Client) -> Result<R, PgError>) -> Result<R, PgError> {
        let client = {
            let mut pool = lock(&self.pool);
            loop {
                if let Some(client) = pool.idle.pop() {
                    break client;
                }
                if pool.open < MAX_CONNECTIONS {
                    pool.open += 1;
                    drop(pool);
                    match self.target.connect() {
                        Ok(client) => break client,
                        Err(e) => {
                            lock(&self.pool).open -= 1;
                            self.freed.notify_one();
                            return Err(e);
                        }
                    }
                }
                pool = self.freed.wait(pool).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Given back however `f` ends: a call that panics must not shrink the pool for good.
        let mut lent = Lent {
            node: self,
            client: Some(client),
        };
        f(lent.client.as_mut().expect("lent"))
    }

    /// Remember the try a claim started on this node.
    pub fn started(&self, job: i64, try_id: i64) {
        lock(&self.tries).insert(job, try_id);
    }

    /// The try of `job` this node runs: try `try_id` as the worker names it, else the one
    /// this node's last claim of the job started, if any.
    pub fn try_of(&self, job: i64, try_id: Option<i64>) -> Option<super::generations::Try<'_>> {
        let try_id = match try_id {
            Some(id) => id,
            None => *lock(&self.tries).get(&job)?,
        };
        Some(super::generations::Try {
            job,
            node: &self.member.name,
            try_id,
        })
    }

    /// Forget try `try_id` of `job`, which ended; a later try of the job this node claimed
    /// meanwhile stays, and its lease is still renewed.
    pub fn ended(&self, job: i64, try_id: i64) {
        let mut tries = lock(&self.tries);
        if tries.get(&job) == Some(&try_id) {
            tries.remove(&job);
        }
    }

    /// The index backlog counted less than [`BACKLOG_FRESH`] ago, if any.
    pub fn recent_backlog(&self) -> Option<u64> {
        lock(&self.backlog)
            .filter(|(at, _)| at.elapsed() < BACKLOG_FRESH)
            .map(|(_, n)| n)
    }

    /// Remember a count of the index backlog, if it was costly.
    pub fn saw_backlog(&self, backlog: u64) {
        *lock(&self.backlog) = (backlog >= BACKLOG_LARGE).then(|| (Instant::now(), backlog));
    }

    /// Append audit record `id`, which this node wrote and which has committed, to its
    /// `audit.jsonl`, in the order the commits were heard.
    fn append_audit(&self, id: i64) {
        match self.with(|c| super::manage::audit_record(c, id)) {
            Ok(Some(entry)) => lock(&self.audit_log).append_entries(&[entry]),
            // Gone since it was heard: nothing to copy.
            Ok(None) => {}
            Err(error) => tracing::warn!(
                %error,
                id,
                "cannot read back an audit record for audit.jsonl; the catalog keeps it"
            ),
        }
    }

    /// The id of `identity` in the catalog, recorded once.
    pub fn identity_id(&self, client: &mut Client, identity: &Identity) -> Result<i32, PgError> {
        if let Some(id) = lock(&self.identities).get(identity) {
            return Ok(*id);
        }
        let id = super::generations::identity_id(client, identity)?;
        lock(&self.identities).insert(identity.clone(), id);
        Ok(id)
    }
}

/// A pooled connection in use, returned to the pool (or counted out, if it broke) on drop.
struct Lent<'a> {
    node: &'a Node,
    client: Option<Client>,
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        let mut pool = lock(&self.node.pool);
        match self.client.take() {
            Some(client) if !client.is_closed() && !std::thread::panicking() => {
                pool.idle.push(client)
            }
            // A connection dropped while unwinding may be in the middle of a transaction.
            _ => pool.open -= 1,
        }
        drop(pool);
        self.node.freed.notify_one();
    }
}

impl Drop for Node {
    /// A `postgres::Client` closes its connection by blocking on a runtime of its own, which
    /// panics on a tokio worker, and the last handle on the node may well be dropped on one
    /// (at shutdown): the idle connections are closed on a thread of their own instead.
    fn drop(&mut self) {
        let mut idle = std::mem::take(&mut lock(&self.pool).idle);
        idle.extend(lock(&self.name).take());
        if !idle.is_empty() {
            let _ = std::thread::Builder::new()
                .name("catalog-close".into())
                .spawn(move || drop(idle));
        }
    }
}

/// Hold `name` for this node, on a connection of its own, for as long as the node runs: two
/// daemons running as one node would each take the other's processing jobs for their own
/// and renew leases they do not hold. A second daemon with the name is refused at start.
fn hold_name(target: &Target, name: &str) -> Result<Client, PgError> {
    let mut client = target.connect()?;
    // A node that loses power leaves its session behind until the server notices: these make
    // it notice within a minute over TCP (over a Unix socket a dead peer is seen at once).
    client.batch_execute(
        "SET tcp_keepalives_idle = 15; SET tcp_keepalives_interval = 5; \
         SET tcp_keepalives_count = 3",
    )?;
    let deadline = Instant::now() + NAME_WAIT;
    loop {
        let held: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&name_key(name)])?
            .get(0);
        if held {
            return Ok(client);
        }
        if Instant::now() >= deadline {
            let age: Option<i64> = client
                .query_opt(
                    &format!(
                        "SELECT ({} - heartbeat_at) / 1000 FROM nodes WHERE name = $1",
                        super::NOW_MS
                    ),
                    &[&name],
                )?
                .map(|r| r.get(0));
            let seen = age.map_or(String::new(), |a| format!(" (last heartbeat {a} s ago)"));
            return Err(PgError::Invalid(format!(
                "another ingestd is running as node {name:?} of this cluster{seen}: set a \
                 cluster.node of its own for this daemon, or stop the other one first"
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Start a thread that runs `body` with a weak handle on the node.
fn spawn(
    name: &str,
    node: Weak<Node>,
    body: impl FnOnce(Weak<Node>) + Send + 'static,
) -> Result<(), PgError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(node))
        .map(|_| ())
        .map_err(|e| PgError::Invalid(format!("cannot start a thread: {e}")))
}

/// Renew this node's leases and heartbeat every third of the lease, until the node is gone.
fn heartbeat(weak: Weak<Node>) {
    loop {
        let every = {
            let Some(node) = weak.upgrade() else { return };
            let running: Vec<i64> = lock(&node.tries).keys().copied().collect();
            match node.with(|c| super::queue::renew(c, &node.member, &running)) {
                Ok(lost) if !lost.is_empty() => tracing::warn!(
                    jobs = ?lost,
                    "jobs this node runs were taken over or cancelled elsewhere; their workers \
                     stop at their next write"
                ),
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot renew this node's leases"),
            }
            // A dead node's leases run out with nobody's call to notice: every beat looks, and
            // a job taken over wakes the scheduler (and, through the nudge, every node's).
            match node.with(super::queue::take_over_expired) {
                Ok(taken) if !taken.is_empty() => {
                    super::queue::log_taken_over(&taken);
                    node.wake.notify_one();
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "cannot take over expired leases"),
            }
            (node.member.lease / 3).max(Duration::from_millis(100))
        };
        std::thread::sleep(every);
    }
}

/// Move staged vectors into their HNSW index while any wait, until the node is gone; look
/// again every second when none do (or the database cannot be reached: said once per outage).
fn index_staged(weak: Weak<Node>) {
    let mut failing = false;
    loop {
        let moved = {
            let Some(node) = weak.upgrade() else { return };
            match node.with(|c| staging::index_some(c, staging::BATCH)) {
                Ok(moved) => {
                    failing = false;
                    moved
                }
                Err(error) => {
                    if !std::mem::replace(&mut failing, true) {
                        tracing::warn!(%error, "cannot move staged vectors into the search index");
                    }
                    0
                }
            }
        };
        if moved == 0 {
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Hear what every node commits, until the node is gone.
fn listen(weak: Weak<Node>, mut listener: Listener) {
    loop {
        let heard = listener.recv(Duration::from_secs(1));
        let Some(node) = weak.upgrade() else { return };
        match heard {
            Ok(Some(Heard::Event(remote))) => {
                let own = remote.audit.filter(|_| remote.node == node.member.name);
                node.events.publish(remote.event);
                if let Some(id) = own {
                    node.append_audit(id);
                }
            }
            Ok(Some(Heard::Nudge)) => node.wake.notify_one(),
            Ok(Some(Heard::Deletes)) => {
                let done =
                    node.with(|c| deletes::carry_out(c, &node.member.name, &node.storage_root));
                if let Err(error) = done {
                    tracing::warn!(%error, "cannot remove files other nodes deleted");
                }
            }
            Ok(Some(Heard::Reconnected)) => {
                tracing::warn!(
                    "listening to the cluster again: events sent while the connection was down \
                     were missed"
                );
                // A job may have become startable meanwhile, and deletes may wait.
                node.wake.notify_one();
                let _ = node.with(|c| deletes::carry_out(c, &node.member.name, &node.storage_root));
            }
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot listen to the cluster"),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::catalog::Catalog;
    use crate::catalog::pg::{Target, queue::Member};
    use crate::testing::TestDb;
    use std::time::Duration;

    #[test]
    fn two_names_with_the_same_32_bit_hash_are_two_nodes() {
        let Some(db) = TestDb::create() else { return };
        // hashtext('node-35394') = hashtext('node-42840') = 1738451856: the names the lock
        // was once keyed by.
        let mut client = db.client();
        let hashes: Vec<i32> = ["node-35394", "node-42840"]
            .iter()
            .map(|name| {
                client
                    .query_one("SELECT hashtext($1)", &[name])
                    .unwrap()
                    .get(0)
            })
            .collect();
        assert_eq!(hashes[0], hashes[1], "the names still collide in hashtext");
        let dir = tempfile::tempdir().unwrap();
        let join = |name: &str| {
            let target = Target::new("catalog.url", &db.url(), "".as_ref()).unwrap();
            let member = Member {
                name: name.into(),
                lease: Duration::from_secs(30),
                shared_storage: false,
            };
            Catalog::open_postgres(
                target,
                member,
                dir.path().to_path_buf(),
                crate::events::Events::default(),
                &dir.path().join(format!("{name}.jsonl")),
            )
        };
        let (_a, _) = join("node-35394").unwrap();
        let started = std::time::Instant::now();
        let b = join("node-42840");
        assert!(b.is_ok(), "{:?}", b.err().map(|e| e.to_string()));
        assert!(
            started.elapsed() < super::NAME_WAIT,
            "the second node did not wait for the first one's name"
        );
    }
}
