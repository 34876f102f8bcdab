//! Who did something: the uid behind a drop (the file's owner) or a socket request (its peer
//! credentials), and the user name it resolves to. Nothing here trusts a name a client sends.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// How the action reached the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    /// A file dropped into a group folder; the actor is the file's owner.
    Drop,
    /// A command on the control socket; the actor is the peer process's uid.
    Socket,
    /// The daemon itself (start-up recovery, retries).
    Daemon,
}

/// Who did something, as every audit record carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub uid: Option<u32>,
    pub user: Option<String>,
    pub via: Via,
}

impl Actor {
    pub fn from_uid(uid: u32, via: Via) -> Self {
        Self {
            uid: Some(uid),
            user: user_name(uid),
            via,
        }
    }

    pub fn daemon() -> Self {
        let uid = nix::unistd::geteuid().as_raw();
        Self::from_uid(uid, Via::Daemon)
    }

    /// "alice", or "uid 1234" when the uid has no name.
    pub fn display_name(&self) -> Option<String> {
        match (&self.user, self.uid) {
            (Some(user), _) => Some(user.clone()),
            (None, Some(uid)) => Some(format!("uid {uid}")),
            (None, None) => None,
        }
    }
}

/// The user name of `uid`, cached: the passwd lookup may be slow (NSS, LDAP).
pub fn user_name(uid: u32) -> Option<String> {
    // Short critical sections only, no await inside: a std Mutex is right here.
    static CACHE: OnceLock<Mutex<HashMap<u32, Option<String>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(name) = cache.lock().ok().and_then(|c| c.get(&uid).cloned()) {
        return name;
    }
    let name = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .ok()
        .flatten()
        .map(|u| u.name);
    if let Ok(mut c) = cache.lock() {
        c.insert(uid, name.clone());
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_has_a_name_and_unknown_uids_do_not() {
        assert_eq!(user_name(0).as_deref(), Some("root"));
        let ghost = Actor::from_uid(4_000_000_001, Via::Drop);
        assert_eq!(ghost.user, None);
        assert_eq!(ghost.display_name().as_deref(), Some("uid 4000000001"));
    }
}
