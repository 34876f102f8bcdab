//! Who did something, as audit records and events carry it: the uid behind a drop (the file's
//! owner) or a socket request (its peer credentials), the user name it resolved to, and how it
//! reached the daemon.
//!
//! Only the shapes live here. Resolving a uid to a name is the daemon's job (its
//! `identity` module), done from the kernel's word: nothing here trusts a name a client sends.

use serde::{Deserialize, Serialize};

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
    /// "alice", or "uid 1234" when the uid has no name.
    pub fn display_name(&self) -> Option<String> {
        match (&self.user, self.uid) {
            (Some(user), _) => Some(user.clone()),
            (None, Some(uid)) => Some(format!("uid {uid}")),
            (None, None) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_without_a_name_is_shown_as_the_uid() {
        let ghost = Actor {
            uid: Some(4_000_000_001),
            user: None,
            via: Via::Drop,
        };
        assert_eq!(ghost.display_name().as_deref(), Some("uid 4000000001"));
        let named = Actor {
            user: Some("alice".into()),
            ..ghost.clone()
        };
        assert_eq!(named.display_name().as_deref(), Some("alice"));
        let nobody = Actor {
            uid: None,
            user: None,
            via: Via::Socket,
        };
        assert_eq!(nobody.display_name(), None);
    }
}
