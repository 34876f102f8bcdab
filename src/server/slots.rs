//! Who may hold a connection: a count of connections and `events` followers per uid, with
//! slots kept back for administrators.
//!
//! A socket user who is not an admin may hold at most `max_connections_per_uid` connections
//! (of which `max_followers_per_uid` may follow events), and all of them together at most
//! `max_connections - admin_connections`; root, the daemon's own user and `server.admins`
//! may use every slot. So a flood of idle connections by one user, or by many, never locks
//! an administrator out. Over the limit a connection is refused at once with the reason,
//! never queued: a queue is a slot by another name.
//!
//! This module only counts; it never reads or writes a socket.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The limits in force when a connection arrives (from `[server]`; live on reload).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
    pub admin_connections: usize,
    pub per_uid: usize,
    pub followers_per_uid: usize,
}

impl Limits {
    pub fn of(server: &crate::config::Server) -> Self {
        Self {
            max_connections: server.max_connections as usize,
            admin_connections: server.admin_connections as usize,
            per_uid: server.max_connections_per_uid as usize,
            followers_per_uid: server.max_followers_per_uid as usize,
        }
    }
}

/// Why a connection or a follower was not admitted, in words for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error(
        "the daemon is serving {0} connections, its limit for users who are not admins \
         (server.max_connections - server.admin_connections); try again shortly"
    )]
    Full(usize),
    #[error("the daemon is serving its limit of {0} connections (server.max_connections)")]
    FullForAdmins(usize),
    #[error(
        "uid {uid} already holds {held} connections (server.max_connections_per_uid); \
         close some and try again"
    )]
    PerUid { uid: u32, held: usize },
    #[error(
        "uid {uid} already follows events on {held} connections \
         (server.max_followers_per_uid); stop one and try again"
    )]
    Followers { uid: u32, held: usize },
}

/// The key of a caller without peer credentials: all such callers share one allowance.
const UNKNOWN: u32 = u32::MAX;

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// (connections, followers) per uid; entries at zero are removed.
    per_uid: HashMap<u32, (usize, usize)>,
}

/// The connection table, shared by the accept loop and every connection.
#[derive(Debug, Default)]
pub struct Slots {
    /// Short sections with no await: a std lock.
    counts: Mutex<Counts>,
}

/// One admitted connection; dropping it frees its slot (and its follower place).
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    uid: u32,
    privileged: bool,
    following: bool,
}

impl Slots {
    /// Admit a connection of `uid` (`None`: unknown caller) or say why not.
    pub fn admit(
        self: &Arc<Self>,
        uid: Option<u32>,
        privileged: bool,
        limits: &Limits,
    ) -> Result<Slot, Denied> {
        let key = uid.unwrap_or(UNKNOWN);
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if privileged {
            if counts.total >= limits.max_connections {
                return Err(Denied::FullForAdmins(counts.total));
            }
        } else {
            let open = limits
                .max_connections
                .saturating_sub(limits.admin_connections);
            if counts.total >= open {
                return Err(Denied::Full(counts.total));
            }
            let held = counts.per_uid.get(&key).map_or(0, |c| c.0);
            if held >= limits.per_uid {
                return Err(Denied::PerUid { uid: key, held });
            }
        }
        counts.total += 1;
        counts.per_uid.entry(key).or_default().0 += 1;
        Ok(Slot {
            slots: Arc::clone(self),
            uid: key,
            privileged,
            following: false,
        })
    }

    /// Connections held now (all callers).
    #[cfg(test)]
    pub fn total(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }
}

impl Slot {
    /// Count this connection as an `events` follower, or say why it may not follow.
    pub fn follow(&mut self, limits: &Limits) -> Result<(), Denied> {
        if self.following {
            return Ok(());
        }
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        let entry = counts.per_uid.entry(self.uid).or_default();
        if !self.privileged && entry.1 >= limits.followers_per_uid {
            return Err(Denied::Followers {
                uid: self.uid,
                held: entry.1,
            });
        }
        entry.1 += 1;
        self.following = true;
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = self.slots.counts.lock().unwrap_or_else(|e| e.into_inner());
        counts.total = counts.total.saturating_sub(1);
        if let Some(entry) = counts.per_uid.get_mut(&self.uid) {
            entry.0 = entry.0.saturating_sub(1);
            if self.following {
                entry.1 = entry.1.saturating_sub(1);
            }
            if entry.0 == 0 {
                counts.per_uid.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_connections: 10,
        admin_connections: 3,
        per_uid: 4,
        followers_per_uid: 2,
    };

    #[test]
    fn one_uid_is_capped_and_its_slots_come_back_when_dropped() {
        let slots = Arc::new(Slots::default());
        let held: Vec<Slot> = (0..4)
            .map(|_| slots.admit(Some(1000), false, &LIMITS).unwrap())
            .collect();
        assert_eq!(
            slots.admit(Some(1000), false, &LIMITS).unwrap_err(),
            Denied::PerUid { uid: 1000, held: 4 }
        );
        // Another user is not affected.
        let other = slots.admit(Some(1001), false, &LIMITS).unwrap();
        drop(held);
        assert_eq!(slots.total(), 1);
        assert!(slots.admit(Some(1000), false, &LIMITS).is_ok());
        drop(other);
    }

    #[test]
    fn a_flood_by_many_users_leaves_the_admin_slots_free() {
        let slots = Arc::new(Slots::default());
        let mut held = Vec::new();
        for uid in 0..7u32 {
            held.push(slots.admit(Some(2000 + uid), false, &LIMITS).unwrap());
        }
        assert_eq!(
            slots.admit(Some(3000), false, &LIMITS).unwrap_err(),
            Denied::Full(7)
        );
        assert_eq!(
            slots.admit(None, false, &LIMITS).unwrap_err(),
            Denied::Full(7)
        );
        for _ in 0..3 {
            held.push(slots.admit(Some(0), true, &LIMITS).unwrap());
        }
        assert_eq!(
            slots.admit(Some(0), true, &LIMITS).unwrap_err(),
            Denied::FullForAdmins(10)
        );
    }

    #[test]
    fn followers_are_counted_per_uid_and_freed_with_their_connection() {
        let slots = Arc::new(Slots::default());
        let mut first = slots.admit(Some(7), false, &LIMITS).unwrap();
        let mut second = slots.admit(Some(7), false, &LIMITS).unwrap();
        let mut third = slots.admit(Some(7), false, &LIMITS).unwrap();
        first.follow(&LIMITS).unwrap();
        second.follow(&LIMITS).unwrap();
        assert_eq!(
            third.follow(&LIMITS).unwrap_err(),
            Denied::Followers { uid: 7, held: 2 }
        );
        drop(first);
        third.follow(&LIMITS).unwrap();
        // Admins follow without a cap.
        let mut admin = slots.admit(Some(0), true, &LIMITS).unwrap();
        let mut again = slots.admit(Some(0), true, &LIMITS).unwrap();
        let mut thrice = slots.admit(Some(0), true, &LIMITS).unwrap();
        for slot in [&mut admin, &mut again, &mut thrice] {
            slot.follow(&LIMITS).unwrap();
        }
    }
}
