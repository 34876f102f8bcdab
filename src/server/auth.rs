//! Who may change state: the caller's identity from the socket, checked against
//! `server.admins` (user names and `@group` names).
//!
//! Only the kernel's word counts (SO_PEERCRED): nothing a client sends names the caller.
//! Read-only commands are open to anyone who can connect to the socket.

use crate::identity::{Actor, Via};
use nix::unistd::{Gid, Group, Uid, User};

/// The caller of a connection, as the kernel reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
/// change state, but only root and the daemon's user get the reserved slots.
pub fn is_privileged(admins: &[String], peer: Option<Peer>) -> bool {
    let Some(who) = peer else {
        return false;
    };
    if who.uid == 0 || who.uid == nix::unistd::geteuid().as_raw() {
        return true;
    }
    !admins.is_empty() && check_admin(admins, peer).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
