//! Who may change state: the caller's identity from the socket, checked against
//! `server.admins` (user names and `@group` names).
//!
//! Only the kernel's word counts (SO_PEERCRED): nothing a client sends names the caller.
//! Read-only commands are open to anyone who can connect to the socket.
//!
//! User and group lookups may block (NSS: sssd, LDAP), so the server never makes them on
//! the async reactor: it asks [`AdminCache`], which answers root, the daemon's own user and
//! an empty `admins` list without a lookup, remembers other answers per caller for a short
//! while, and makes a missing one on the blocking pool.

use crate::config::Config;
use crate::identity::{Actor, Resolve, Via};
use nix::unistd::{Gid, Group, Uid, User};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// How long a looked-up answer is trusted: a user added to or removed from a group is seen
/// within this time even without a reload.
const CACHE_TTL: Duration = Duration::from_secs(30);

/// At most this many callers are remembered, so a flood of uids cannot grow the cache.
const CACHE_MAX: usize = 4096;

/// The caller of a connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub uid: u32,
    pub gid: u32,
}

impl Peer {
    pub fn actor(&self) -> Actor {
        Actor::from_uid(self.uid, Via::Socket)
    }
}

/// May `peer` run state-changing commands? `Err` says why not, in words for the caller.
pub fn check_admin(admins: &[String], peer: Option<Peer>) -> Result<(), String> {
    if admins.is_empty() {
        return Ok(());
    }
    let Some(peer) = peer else {
        return Err("permission denied: the caller's identity is unknown".into());
    };
    // The daemon's own user and root may always manage it.
    if peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw() {
        return Ok(());
    }
    let user = User::from_uid(Uid::from_raw(peer.uid)).ok().flatten();
    let name = user.as_ref().map(|u| u.name.clone());
    if let Some(name) = &name
        && admins.iter().any(|a| a == name)
    {
        return Ok(());
    }
    let wanted_groups: Vec<&str> = admins.iter().filter_map(|a| a.strip_prefix('@')).collect();
    if !wanted_groups.is_empty() {
        let mut gids = vec![Gid::from_raw(peer.gid)];
        if let Some(user) = &user
            && let Ok(cname) = std::ffi::CString::new(user.name.clone())
            && let Ok(more) = nix::unistd::getgrouplist(&cname, user.gid)
        {
            gids.extend(more);
        }
        for gid in gids {
            if let Ok(Some(group)) = Group::from_gid(gid)
                && wanted_groups.contains(&group.name.as_str())
            {
                return Ok(());
            }
        }
    }
    let who = name.unwrap_or_else(|| format!("uid {}", peer.uid));
    Err(format!(
        "permission denied: {who} is not in server.admins ({}); ask an administrator",
        admins.join(", ")
    ))
}

/// Does `peer` get the connection slots kept for administrators? Root, the daemon's own user
/// and, when `server.admins` is set, its members. With no admins configured everyone may
/// change state, but only root and the daemon's user get the reserved slots. The daemon asks
/// through [`AdminCache::privileged`], which answers the same without blocking; this plain
/// form states the rule for the tests.
#[cfg(test)]
pub fn is_privileged(admins: &[String], peer: Option<Peer>) -> bool {
    let Some(who) = peer else {
        return false;
    };
    if who.uid == 0 || who.uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    !admins.is_empty() && check_admin(admins, peer).is_ok()
}

/// Is this caller one who never needs a lookup to be an admin (root, the daemon's own user)?
fn always_admin(peer: Peer) -> bool {
    peer.uid == 0 || peer.uid == nix::unistd::geteuid().as_raw()
}

/// The admin answers of recent callers, valid for one configuration: a reload (a new
/// `Config`) empties it.
#[derive(Debug, Default)]
pub struct AdminCache {
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// The configuration the answers were made for. A `Weak` keeps the allocation, so a new
    /// configuration can never be mistaken for this one.
    config: Weak<Config>,
    answers: HashMap<Peer, (Instant, Result<(), String>)>,
}

impl AdminCache {
    /// [`check_admin`] under `config`, without blocking the caller's thread.
    pub async fn check(&self, config: &Arc<Config>, peer: Option<Peer>) -> Result<(), String> {
        self.check_using(config, peer, Instant::now(), |admins, peer| {
            check_admin(&admins, Some(peer))
        })
        .await
    }

    /// Does `peer` get the connection slots kept for administrators? Root, the daemon's own
    /// user and, when `server.admins` is set, its members; without blocking the caller's thread.
    pub async fn privileged(&self, config: &Arc<Config>, peer: Option<Peer>) -> bool {
        let Some(who) = peer else {
            return false;
        };
        if always_admin(who) {
            return true;
        }
        !config.server.admins.is_empty() && self.check(config, peer).await.is_ok()
    }

    /// The lookup is a parameter so tests can count the lookups made.
    async fn check_using<F>(
        &self,
        config: &Arc<Config>,
        peer: Option<Peer>,
        now: Instant,
        lookup: F,
    ) -> Result<(), String>
    where
        F: FnOnce(Vec<String>, Peer) -> Result<(), String> + Send + 'static,
    {
        let admins = &config.server.admins;
        let Some(who) = peer else {
            // No lookup: an unknown caller is refused or, with no admins, allowed.
            return check_admin(admins, None);
        };
        if admins.is_empty() || always_admin(who) {
            return Ok(());
        }
        if let Some(answer) = self.cached(config, who, now) {
            return answer;
        }
        let owned = admins.clone();
        let answer = tokio::task::spawn_blocking(move || lookup(owned, who))
            .await
            .unwrap_or_else(|e| {
                Err(format!(
                    "permission denied: the caller could not be looked up: {e}"
                ))
            });
        self.store(config, who, now, answer.clone());
        answer
    }

    fn cached(&self, config: &Arc<Config>, who: Peer, now: Instant) -> Option<Result<(), String>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if !Weak::ptr_eq(&inner.config, &Arc::downgrade(config)) {
            return None;
        }
        let (at, answer) = inner.answers.get(&who)?;
        (now.saturating_duration_since(*at) < CACHE_TTL).then(|| answer.clone())
    }

    fn store(&self, config: &Arc<Config>, who: Peer, now: Instant, answer: Result<(), String>) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let current = Arc::downgrade(config);
        if !Weak::ptr_eq(&inner.config, &current) {
            // A reload since the last answer: nothing remembered still holds.
            inner.config = current;
            inner.answers.clear();
        }
        if inner.answers.len() >= CACHE_MAX && !inner.answers.contains_key(&who) {
            inner
                .answers
                .retain(|_, (at, _)| now.saturating_duration_since(*at) < CACHE_TTL);
            if inner.answers.len() >= CACHE_MAX {
                // Still full of fresh answers: start over rather than grow.
                inner.answers.clear();
            }
        }
        inner.answers.insert(who, (now, answer));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().unwrap().answers.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn config_with(admins: &[&str]) -> Arc<Config> {
        let mut config = Config::default();
        config.server.admins = admins.iter().map(|a| a.to_string()).collect();
        Arc::new(config)
    }

    /// A lookup that counts its calls and says yes only to uid 1000.
    fn counting(
        calls: &Arc<AtomicUsize>,
    ) -> impl FnOnce(Vec<String>, Peer) -> Result<(), String> + Send + 'static {
        let calls = Arc::clone(calls);
        move |_, peer| {
            calls.fetch_add(1, Ordering::SeqCst);
            if peer.uid == 1000 {
                Ok(())
            } else {
                Err("permission denied".into())
            }
        }
    }

    fn user(uid: u32) -> Option<Peer> {
        Some(Peer { uid, gid: uid })
    }

    #[tokio::test]
    async fn root_own_user_and_no_admins_need_no_lookup() {
        let cache = AdminCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let admins = config_with(&["alice"]);
        let own = nix::unistd::geteuid().as_raw();
        for peer in [user(0), user(own)] {
            assert_eq!(
                cache
                    .check_using(&admins, peer, now, counting(&calls))
                    .await,
                Ok(())
            );
        }
        let open = config_with(&[]);
        assert_eq!(
            cache
                .check_using(&open, user(4242), now, counting(&calls))
                .await,
            Ok(())
        );
        assert!(
            cache
                .check_using(&admins, None, now, counting(&calls))
                .await
                .is_err()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert!(!cache.privileged(&open, user(4242)).await);
        assert!(cache.privileged(&open, user(0)).await);
    }

    #[tokio::test]
    async fn answers_are_remembered_until_the_ttl_or_a_reload() {
        let cache = AdminCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let config = config_with(&["alice"]);
        for _ in 0..3 {
            assert!(
                cache
                    .check_using(&config, user(4242), now, counting(&calls))
                    .await
                    .is_err()
            );
            assert_eq!(
                cache
                    .check_using(&config, user(1000), now, counting(&calls))
                    .await,
                Ok(())
            );
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one lookup per caller");
        let later = now + CACHE_TTL;
        assert!(
            cache
                .check_using(&config, user(4242), later, counting(&calls))
                .await
                .is_err()
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "an old answer is looked up again"
        );
        let reloaded = config_with(&["alice"]);
        assert!(
            cache
                .check_using(&reloaded, user(4242), later, counting(&calls))
                .await
                .is_err()
        );
        assert_eq!(
            calls.load(Ordering::SeqCst),
            4,
            "a reload forgets every answer"
        );
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn the_cache_stays_bounded() {
        let cache = AdminCache::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let now = Instant::now();
        let config = config_with(&["alice"]);
        for uid in 10_000..10_000 + CACHE_MAX as u32 + 100 {
            let _ = cache
                .check_using(&config, user(uid), now, counting(&calls))
                .await;
            assert!(cache.len() <= CACHE_MAX);
        }
    }

    #[test]
    fn empty_admins_allow_everyone() {
        assert_eq!(check_admin(&[], None), Ok(()));
    }

    #[test]
    fn root_and_listed_users_and_groups_are_admins() {
        let root = Peer { uid: 0, gid: 0 };
        assert_eq!(check_admin(&["nobody-here".into()], Some(root)), Ok(()));
        // `nogroup`/`nobody` exist on Debian; uid 65534 is nobody.
        let nobody = Peer {
            uid: 65534,
            gid: 65534,
        };
        assert_eq!(check_admin(&["nobody".into()], Some(nobody)), Ok(()));
        let group = Group::from_gid(Gid::from_raw(65534)).unwrap().unwrap().name;
        assert_eq!(check_admin(&[format!("@{group}")], Some(nobody)), Ok(()));
        let refused = check_admin(&["alice".into(), "@admins".into()], Some(nobody)).unwrap_err();
        assert!(
            refused.contains("nobody is not in server.admins"),
            "{refused}"
        );
        assert!(check_admin(&["alice".into()], None).is_err());
    }

    #[test]
    fn reserved_slots_go_to_root_and_listed_admins_only() {
        let nobody = Some(Peer {
            uid: 65534,
            gid: 65534,
        });
        assert!(is_privileged(&[], Some(Peer { uid: 0, gid: 0 })));
        assert!(
            !is_privileged(&[], nobody),
            "no admins: nobody is not reserved for"
        );
        assert!(is_privileged(&["nobody".into()], nobody));
        assert!(!is_privileged(&["root".into()], nobody));
        assert!(!is_privileged(&["root".into()], None));
    }
}
