//! Who did something, resolved by the daemon: the uid behind a drop (the file's owner) or a
//! socket request (its peer credentials), and the user name it resolves to. Nothing here
//! trusts a name a client sends.
//!
//! The shapes ([`Actor`], [`Via`]) are the protocol's (`ingestd_proto::identity`); this module
//! adds what only the daemon does with them: looking names up.

pub use ingestd_proto::identity::{Actor, Via};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The daemon's ways of making an [`Actor`]: from the kernel's uid, looked up in the user
/// database. A trait because `Actor` is the protocol crate's type; bring it into scope with
/// `use crate::identity::Resolve` to write `Actor::from_uid(..)` and `Actor::daemon()`.
pub trait Resolve {
    /// The actor behind `uid`, with its user name if it has one.
    fn from_uid(uid: u32, via: Via) -> Self;
    /// The daemon's own user.
    fn daemon() -> Self;
}

impl Resolve for Actor {
    fn from_uid(uid: u32, via: Via) -> Self {
        Actor {
            uid: Some(uid),
            user: user_name(uid),
            via,
        }
    }

    fn daemon() -> Self {
        let uid = nix::unistd::geteuid().as_raw();
        Self::from_uid(uid, Via::Daemon)
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
