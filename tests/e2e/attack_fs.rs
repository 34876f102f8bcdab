//! Droppers as attackers: an unprivileged uid with a world-writable group folder (or drop
//! root) tries to make the daemon, running as root, read, write, move or delete something
//! outside the drop tree. Every test asserts what the attacker gets: a canary folder outside
//! the tree stays exactly as it was, and the daemon stays healthy and answers `status`.
//!
//! The attacker runs as uid/gid 65534 through `setpriv`; tests that need that skip with a
//! printed reason when not run as root.

use crate::helper::{Daemon, csv, wait_for};
use ingestd::protocol::Status;
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! root_only {
    () => {
        if !is_root() {
            crate::helper::skip(
                "needs root to run the daemon as root and the attacker as uid 65534",
            );
            return;
        }
    };
}

/// Run `script` with `sh` as uid/gid 65534 and no supplementary groups; panics if it fails.
fn as_attacker(script: &str) {
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--",
            "sh",
            "-c",
            script,
        ])
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "attacker script failed ({}): {script}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and folder under `dir` with its content (folders: empty) and mode.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .map(|e| {
            let content = if e.file_type().is_file() {
                std::fs::read(e.path()).unwrap()
            } else {
                Vec::new()
            };
            (e.path().to_path_buf(), (content, mode_of(e.path())))
        })
        .collect()
}

/// A daemon whose temporary folder the attacker can reach, a group folder `g` that anyone may
/// write (`1777`), and a canary folder outside the drop tree holding a root-only secret.
struct Scene {
    daemon: Daemon,
    canary: PathBuf,
    before: BTreeMap<PathBuf, (Vec<u8>, u32)>,
}

const SECRET: &[u8] = b"secret,value\nroot-only,42\n";

impl Scene {
    fn new(launch: impl FnOnce(&mut Daemon)) -> Self {
        let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
        set_mode(daemon.dir.path(), 0o755);
        std::fs::create_dir_all(&daemon.drop_root).unwrap();
        set_mode(&daemon.drop_root, 0o1777);
        set_mode(&daemon.group("g"), 0o1777);
        let canary = daemon.dir.path().join("canary");
        std::fs::create_dir(&canary).unwrap();
        set_mode(&canary, 0o755);
        for name in ["data.csv", "evil.sh", "keep.txt"] {
            std::fs::write(canary.join(name), SECRET).unwrap();
            set_mode(&canary.join(name), 0o600);
        }
        launch(&mut daemon);
        let before = snapshot(&canary);
        Self {
            daemon,
            canary,
            before,
        }
    }

    fn start() -> Self {
        Self::new(|d| d.spawn())
    }

    /// Nothing outside the drop tree was read into the catalog, written, moved or deleted;
    /// the daemon still answers.
    fn assert_untouched(&self) {
        assert_eq!(
            snapshot(&self.canary),
            self.before,
            "the canary folder outside the drop tree changed"
        );
        let stored = Daemon::files_under(&self.daemon.storage_root);
        for file in &stored {
            let content = std::fs::read(self.daemon.storage_root.join(file)).unwrap();
            assert_ne!(content, SECRET, "the secret was stored as {file}");
        }
        let status = self.daemon.answers_status().expect("status answers");
        assert_eq!(status.in_flight, 0, "nothing left half done");
    }

    fn notices(&self) -> String {
        self.daemon
            .status()
            .last_errors
            .iter()
            .map(|n| n.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_notice(&self, needle: &str) -> String {
        wait_for(&format!("a notice with {needle:?}"), || {
            let all = self.notices();
            all.contains(needle).then_some(all)
        })
    }
}

#[test]
fn a_rejected_folder_that_is_a_link_is_never_written_through() {
    root_only!();
    let scene = Scene::start();
    let g = scene.daemon.drop_root.join("g");
    as_attacker(&format!(
        "ln -s {canary} {g}/.rejected && printf 'echo owned\\n' > {g}/.evil.sh && \
         mv {g}/.evil.sh {g}/evil.sh",
        canary = scene.canary.display(),
        g = g.display()
    ));
    let notice = scene.wait_notice("evil.sh was rejected");
    assert!(notice.contains("symbolic link"), "{notice}");
    // Rejected once, left where the attacker put it, nothing written through the link.
    assert!(g.join("evil.sh").exists());
    scene.assert_untouched();
    assert_eq!(
        scene
            .daemon
            .count("SELECT count(*) FROM versions WHERE status = 'invalid'"),
        1
    );
}

#[test]
fn a_rejected_folder_owned_by_someone_else_is_refused() {
    root_only!();
    let scene = Scene::start();
    let g = scene.daemon.drop_root.join("g");
    as_attacker(&format!(
        "mkdir {g}/.rejected && printf 'x\\n' > {g}/.a.sh && mv {g}/.a.sh {g}/a.sh",
        g = g.display()
    ));
    let notice = scene.wait_notice("a.sh was rejected");
    assert!(notice.contains("belongs to uid 65534"), "{notice}");
    assert!(g.join("a.sh").exists());
    assert!(
        std::fs::read_dir(g.join(".rejected"))
            .unwrap()
            .next()
            .is_none()
    );
    scene.assert_untouched();
}

#[test]
fn a_rejected_file_and_its_reason_are_readable_by_the_group_folders_readers() {
    root_only!();
    let scene = Scene::start();
    let g = scene.daemon.drop_root.join("g");
    as_attacker(&format!(
        "printf 'x\\n' > {g}/.b.txt && mv {g}/.b.txt {g}/b.txt",
        g = g.display()
    ));
    scene.daemon.wait_settled("g", "b.txt");
    let kept = g.join(".rejected");
    let meta = std::fs::metadata(&kept).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);
    // The group folder is 1777: its readers are everyone, so r-x for all, w for none.
    assert_eq!(mode_of(&kept), 0o755);
    assert_eq!(mode_of(&kept.join("b.txt.error.txt")), 0o644);
    as_attacker(&format!(
        "grep -q 'not accepted' {k}/b.txt.error.txt && test -r {k}/b.txt && \
         ! touch {k}/planted 2>/dev/null",
        k = kept.display()
    ));
    scene.assert_untouched();
}

/// The attacker owns a group folder (the drop root is 1777), drops a CSV, and swaps the folder
/// for a link to the canary folder, which holds a root-only file of the same name, after the
/// file settled and before it is opened.
#[test]
fn a_group_folder_swapped_for_a_link_after_settling_is_not_followed() {
    root_only!();
    let pause = tempfile::tempdir().unwrap();
    let pause_dir = pause.path().to_path_buf();
    let scene = Scene::new(|d| {
        d.launch(|c| {
            c.env("INGEST_TEST_PAUSE_DIR", &pause_dir);
        });
        d.wait_ready();
    });
    let root = &scene.daemon.drop_root;
    let content = csv(1, 3);
    std::fs::write(pause.path().join("data.csv"), &content).unwrap();
    set_mode(pause.path(), 0o755);
    as_attacker(&format!(
        "mkdir {root}/evil && cp {src} {root}/evil/.data.csv && \
         mv {root}/evil/.data.csv {root}/evil/data.csv",
        root = root.display(),
        src = pause.path().join("data.csv").display()
    ));
    wait_for("the worker to pause before opening", || {
        pause
            .path()
            .join("evil.data.csv.paused")
            .exists()
            .then_some(())
    });
    as_attacker(&format!(
        "mv {root}/evil {root}/.evil-old && ln -s {canary} {root}/evil",
        root = root.display(),
        canary = scene.canary.display()
    ));
    std::fs::write(pause.path().join("evil.data.csv.go"), b"").unwrap();
    let notice = scene.wait_notice("evil/data.csv is not read");
    assert!(notice.contains("symbolic link"), "{notice}");
    scene.assert_untouched();
    assert_eq!(
        scene.daemon.count("SELECT count(*) FROM versions"),
        0,
        "nothing stored or rejected through the link"
    );
    // The attacker's own file is still in their moved-away folder, untouched.
    assert_eq!(
        std::fs::read(root.join(".evil-old/data.csv")).unwrap(),
        content
    );
}

/// The same swap without a pause, in a short bounded loop, at whatever moment it lands.
#[test]
fn group_folder_swaps_at_random_moments_never_reach_outside() {
    root_only!();
    let scene = Scene::start();
    let root = &scene.daemon.drop_root;
    as_attacker(&format!(
        "i=0; while [ $i -lt 25 ]; do i=$((i+1)); \
           mkdir {root}/evil && printf 'a,b\\n%s,2\\n' $i > {root}/evil/.data.csv && \
           mv {root}/evil/.data.csv {root}/evil/data.csv && sleep 0.1$((i % 3)) && \
           mv {root}/evil {root}/.old$i && ln -s {canary} {root}/evil && sleep 0.0$((i % 5)) && \
           rm {root}/evil || exit 1; \
         done",
        root = root.display(),
        canary = scene.canary.display()
    ));
    wait_for("the daemon to finish what it took", || {
        (scene.daemon.status().in_flight == 0).then_some(())
    });
    scene.assert_untouched();
    let secrets = scene
        .daemon
        .count("SELECT count(*) FROM versions WHERE size = 26");
    assert_eq!(secrets, 0, "no version has the secret's size");
}

/// A hard link to a file the dropper cannot read (possible where `fs.protected_hardlinks` is
/// off; made here by root to stand for such a host) is rejected unread and left in place.
#[test]
fn a_file_with_more_than_one_link_is_rejected_unread() {
    root_only!();
    let scene = Scene::start();
    let g = scene.daemon.drop_root.join("g");
    std::fs::hard_link(scene.canary.join("data.csv"), g.join("data.csv")).unwrap();
    let source = scene.daemon.wait_status("g", "data.csv", Status::Invalid);
    let reason = source.reason.unwrap_or_default();
    assert!(reason.contains("2 hard links"), "{reason}");
    assert!(g.join("data.csv").exists(), "the link is not moved");
    assert!(g.join(".rejected/data.csv.error.txt").exists());
    scene.assert_untouched();
    assert_eq!(
        scene
            .daemon
            .count("SELECT count(*) FROM versions WHERE version_no IS NOT NULL"),
        0
    );
}

/// Modes come from `ingest.storage_mode`, never from the umask, even a umask of 000: stored
/// copies, storage folders, and the folders the daemon creates at start.
#[test]
fn stored_copies_and_the_catalog_get_explicit_modes_whatever_the_umask() {
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    daemon.launch(|c| {
        use std::os::unix::process::CommandExt;
        // SAFETY: umask is async-signal-safe and touches no memory.
        unsafe {
            c.pre_exec(|| {
                nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                Ok(())
            });
        }
    });
    daemon.wait_ready();
    let dropped = daemon.drop_file("sales", "q.csv", &csv(2, 3));
    set_mode(&dropped, 0o600);
    daemon.wait_stored("sales", "q.csv");
    let store = &daemon.storage_root;
    // The folders it created at start: the roots and the state folder get the folder mode,
    // the socket's folder 0755 (who connects is the socket's own mode).
    assert_eq!(mode_of(store), 0o750, "the storage root");
    assert_eq!(mode_of(&daemon.drop_root), 0o750, "the drop root");
    assert_eq!(mode_of(&daemon.dir.path().join("state")), 0o750);
    assert_eq!(mode_of(daemon.socket.parent().unwrap()), 0o755);
    assert_eq!(mode_of(&store.join("sales/q_v1.csv")), 0o640);
    assert_eq!(mode_of(&store.join("sales")), 0o750);
    assert_eq!(mode_of(&store.join("sales/.tmp")), 0o750);
    let state = daemon.dir.path().join("state");
    for file in [
        "ingestd.sqlite",
        "ingestd.sqlite-wal",
        "ingestd.sqlite-shm",
        "audit.jsonl",
    ] {
        let path = state.join(file);
        wait_for(&format!("{file} to exist"), || path.exists().then_some(()));
        assert_eq!(mode_of(&path), 0o640, "{file}");
    }
}

/// Who holds a lock on byte `at` of `path` that a write lock would conflict with, as
/// `fcntl(F_GETLK)` sees it from this process.
fn lock_holder(path: &Path, at: i64) -> Option<i32> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: a zeroed flock is a valid value; fcntl writes only into it.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as _;
    lock.l_whence = libc::SEEK_SET as _;
    lock.l_start = at;
    lock.l_len = 1;
    // SAFETY: F_GETLK with a pointer to a live flock.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) };
    assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
    (i32::from(lock.l_type) != libc::F_UNLCK).then_some(lock.l_pid)
}

/// SQLite's "dead man switch" byte in a -shm file: a connection holds a shared lock on it
/// while it is open; one that can lock it alone believes no other connection exists and
/// resets the shared WAL index.
const SQLITE_SHM_DMS: i64 = 128;

/// The daemon keeps SQLite's lock on the catalog's shared memory for as long as it runs, so
/// an outside reader (a backup, the searching application, `sqlite3`) never resets the WAL
/// index under it. Dropping that lock (any close of a descriptor of the -shm file drops it)
/// made a restarted daemon die of SIGBUS now and then while a reader opened the catalog.
#[test]
fn an_outside_reader_of_the_catalog_never_resets_the_daemons_shared_memory() {
    let mut daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\n");
    daemon.drop_file("g", "a.csv", &csv(2, 3));
    daemon.wait_stored("g", "a.csv");
    // A catalog that exists already: SQLite opens its shared memory at once.
    daemon.stop();
    daemon.spawn();
    let shm = daemon.dir.path().join("state/ingestd.sqlite-shm");
    assert_eq!(
        lock_holder(&shm, SQLITE_SHM_DMS),
        Some(daemon.pid() as i32),
        "the daemon holds its shared lock on the catalog's -shm file"
    );
    // Readers come and go while the daemon writes: it stays up and sees every change.
    for n in 0..20 {
        let name = format!("b{n}.csv");
        daemon.drop_file("g", &name, &csv(n + 1, 2));
        assert!(daemon.count("SELECT count(*) FROM versions") >= 1);
        daemon.wait_stored("g", &name);
    }
    assert_eq!(daemon.count("SELECT count(*) FROM sources"), 21);
    assert_eq!(lock_holder(&shm, SQLITE_SHM_DMS), Some(daemon.pid() as i32));
}

#[test]
fn a_configured_storage_mode_is_applied() {
    let daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\nstorage_mode = \"0600\"\n");
    daemon.drop_file("g", "a.csv", &csv(3, 2));
    daemon.wait_stored("g", "a.csv");
    assert_eq!(mode_of(&daemon.storage_root.join("g/a_v1.csv")), 0o600);
    assert_eq!(mode_of(&daemon.storage_root.join("g")), 0o700);
}

/// A name that is not UTF-8 is rejected, kept under a printable name, its bytes recorded.
#[test]
fn a_name_that_is_not_utf8_is_rejected_under_a_safe_name() {
    use std::os::unix::ffi::OsStrExt;
    let daemon = Daemon::start();
    let g = daemon.group("g");
    let raw = std::ffi::OsStr::from_bytes(b"r\xe9sum\xe9.csv");
    std::fs::write(g.join(raw), csv(4, 2)).unwrap();
    let kept = g.join(".rejected").join("r\\xe9sum\\xe9.csv");
    wait_for("the odd name to be moved to .rejected", || {
        (!g.join(raw).exists() && kept.exists()).then_some(())
    });
    let why = std::fs::read_to_string(g.join(".rejected/r\\xe9sum\\xe9.csv.error.txt")).unwrap();
    assert!(why.contains("not valid UTF-8"), "{why}");
    assert!(why.contains("r\\xe9sum\\xe9.csv"), "{why}");
    let source = daemon.wait_status("g", "r\\xe9sum\\xe9.csv", Status::Invalid);
    assert!(source.reason.unwrap().contains("not valid UTF-8"));
    let status = daemon.status();
    assert!(
        status
            .last_errors
            .iter()
            .all(|n| !n.message.contains("sub-folder")),
        "{:?}",
        status.last_errors
    );
}

/// A name whose versioned copy would not fit in 255 bytes is rejected, not stuck.
#[test]
fn a_name_too_long_for_its_versioned_copy_is_rejected() {
    let daemon = Daemon::start();
    let name = format!("{}.csv", "n".repeat(246));
    // Written in place: a hidden temporary name would itself be too long.
    let dropped = daemon.group("g").join(&name);
    std::fs::write(&dropped, csv(5, 2)).unwrap();
    let source = daemon.wait_status("g", &name, Status::Invalid);
    let reason = source.reason.unwrap();
    assert!(reason.contains("250 bytes long"), "{reason}");
    assert!(!dropped.exists(), "moved out of the drop folder");
    let kept = Daemon::files_under(&daemon.drop_root.join("g/.rejected"));
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert!(kept.iter().all(|k| k.len() <= 255));
}

/// A writer that pauses longer than the settle window with the file open is waited for, and
/// the whole file becomes the version.
#[test]
fn a_writer_that_pauses_with_the_file_open_is_not_cut_off() {
    use std::io::Write;
    let daemon = Daemon::start();
    // The group folder's watch must be in place to see the writer at work (a file written
    // before it is found by the folder's scan, with no writer seen).
    daemon.drop_file("g", "first.csv", &csv(13, 2));
    daemon.wait_stored("g", "first.csv");
    let g = daemon.drop_root.join("g");
    let mut writer = std::fs::File::create(g.join("slow.csv")).unwrap();
    writer.write_all(b"id,name\n").unwrap();
    writer.flush().unwrap();
    // A file dropped after the pause began settles after the slow one's window has ended.
    daemon.drop_file("g", "later.csv", &csv(6, 2));
    daemon.wait_stored("g", "later.csv");
    assert!(g.join("slow.csv").exists(), "not taken while open");
    assert!(
        daemon
            .ls(Some("g"))
            .iter()
            .all(|s| s.name != "slow.csv" || !s.status.is_stored()),
        "no header-only version stored"
    );
    writer.write_all(b"1,a\n2,b\n").unwrap();
    drop(writer);
    let source = daemon.wait_stored("g", "slow.csv");
    assert_eq!(source.rows, Some(2));
    assert_eq!(source.version.as_deref(), Some("v1"));
    // Removed right after the version is marked ready (which `ls` shows first).
    wait_for("the original to be removed", || {
        (!g.join("slow.csv").exists()).then_some(())
    });
}

/// A header row and no data rows is a valid file of 0 rows (docs/formats.md).
#[test]
fn a_header_only_file_is_accepted_with_0_rows() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "empty.csv", b"a,b,c\n");
    let source = daemon.wait_stored("g", "empty.csv");
    assert_eq!(source.rows, Some(0));
    assert_eq!(source.columns, vec!["a", "b", "c"]);
}

/// Storage trouble (here: the group's storage folder is a file) leaves the drop pending with
/// the reason, and it is stored once the cause is gone: no touch, no restart.
#[test]
fn a_file_skipped_for_storage_trouble_is_pending_and_retried() {
    let daemon = Daemon::start();
    std::fs::create_dir_all(&daemon.storage_root).unwrap();
    std::fs::write(daemon.storage_root.join("g"), b"in the way").unwrap();
    daemon.drop_file("g", "a.csv", &csv(7, 3));
    let pending = wait_for("a.csv to be pending with a reason", || {
        daemon
            .ls(Some("g"))
            .into_iter()
            .find(|s| s.name == "a.csv" && s.status == Status::Pending && s.reason.is_some())
    });
    let reason = pending.reason.unwrap();
    assert!(reason.contains("storage folder unavailable"), "{reason}");
    let shown = daemon.ctl(&["ls", "-g", "g"]);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("pending"));
    std::fs::remove_file(daemon.storage_root.join("g")).unwrap();
    let source = daemon.wait_stored("g", "a.csv");
    assert_eq!(source.version.as_deref(), Some("v1"));
}

/// The drop root removed and made again while running: noticed, watched again, rescanned.
#[test]
fn the_watcher_heals_when_the_drop_root_is_removed_and_recreated() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(8, 2));
    daemon.wait_stored("g", "a.csv");
    std::fs::remove_dir_all(&daemon.drop_root).unwrap();
    let notices = || -> String {
        daemon
            .status()
            .last_errors
            .iter()
            .map(|n| n.message.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    wait_for("the lost root to be reported", || {
        notices()
            .contains("was removed, moved or replaced")
            .then_some(())
    });
    daemon.drop_file("g", "b.csv", &csv(9, 2));
    daemon.wait_stored("g", "b.csv");
    assert!(notices().contains("is watched again"));
    // And a file dropped after the heal is seen by the new watch, not only by the rescan.
    daemon.drop_file("g", "c.csv", &csv(10, 2));
    daemon.wait_stored("g", "c.csv");
}

/// A group folder removed and made again: reported (never as "directly in the drop root"),
/// and its files are ingested again.
#[test]
fn a_removed_group_folder_is_reported_and_watched_again() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(11, 2));
    daemon.wait_stored("g", "a.csv");
    std::fs::remove_dir_all(daemon.drop_root.join("g")).unwrap();
    let notices = || -> Vec<String> {
        daemon
            .status()
            .last_errors
            .into_iter()
            .map(|n| n.message)
            .collect()
    };
    wait_for("the removal to be reported", || {
        notices()
            .iter()
            .any(|n| n.contains("was removed or moved away"))
            .then_some(())
    });
    daemon.drop_file("g", "b.csv", &csv(12, 2));
    daemon.wait_stored("g", "b.csv");
    let all = notices();
    assert!(all.iter().any(|n| n.contains("is back")), "{all:?}");
    assert!(
        all.iter().all(|n| !n.contains("directly in the drop root")),
        "{all:?}"
    );
}

/// An audit.jsonl that cannot be written is shown in `status`, and so is its recovery; the
/// catalog keeps every record meanwhile.
#[test]
fn audit_log_write_failures_show_in_status() {
    let daemon = Daemon::start();
    daemon.drop_file("g", "a.csv", &csv(14, 2));
    daemon.wait_stored("g", "a.csv");
    // A folder where the file was: nothing can be appended there.
    std::fs::remove_file(&daemon.audit_log).unwrap();
    std::fs::create_dir(&daemon.audit_log).unwrap();
    daemon.drop_file("g", "b.csv", &csv(15, 2));
    daemon.wait_stored("g", "b.csv");
    let notices = || -> Vec<String> {
        daemon
            .status()
            .last_errors
            .into_iter()
            .map(|n| n.message)
            .collect()
    };
    wait_for("the audit failure in status", || {
        notices()
            .iter()
            .any(|n| n.contains("cannot append to the audit log"))
            .then_some(())
    });
    std::fs::remove_dir(&daemon.audit_log).unwrap();
    daemon.drop_file("g", "c.csv", &csv(16, 2));
    daemon.wait_stored("g", "c.csv");
    wait_for("the recovery in status", || {
        notices()
            .iter()
            .any(|n| n.contains("is written again"))
            .then_some(())
    });
    assert!(
        daemon.count("SELECT count(*) FROM audit WHERE source = 'b.csv'") >= 1,
        "the catalog kept the record"
    );
}

/// Versions of `group/name` in the catalog and their sha256, oldest first.
fn stored_shas(daemon: &Daemon, group: &str, name: &str) -> Vec<String> {
    let db = daemon.db();
    let mut stmt = db
        .prepare(
            "SELECT v.sha256 FROM versions v JOIN sources s ON s.id = v.source_id
               JOIN groups g ON g.id = s.group_id
              WHERE g.name = ?1 AND s.name = ?2 AND v.version_no IS NOT NULL
              ORDER BY v.version_no",
        )
        .unwrap();
    stmt.query_map([group, name], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Wait until the worker holds at `<base>.paused`, then forget that marker (so the next hold
/// there is seen) and let it go on.
fn release(pause: &Path, base: &str) {
    let paused = pause.join(format!("{base}.paused"));
    wait_for(&format!("the worker to hold at {base}"), || {
        paused.exists().then_some(())
    });
    std::fs::remove_file(&paused).unwrap();
    std::fs::write(pause.join(format!("{base}.go")), b"").unwrap();
}

/// A writer that moves a new file onto a drop's name just as the daemon removes the stored
/// original (after the check that it is unchanged, before the removal: a debug-build hook
/// holds the worker there) loses nothing: the newcomer is never unlinked, it is put back
/// under its name and becomes the next version.
#[test]
fn a_file_moved_onto_the_name_while_the_original_is_removed_is_kept() {
    let pause = tempfile::tempdir().unwrap();
    let pause_dir = pause.path().to_path_buf();
    let mut daemon = Daemon::configure("[ingest]\nsettle_ms = 150\n");
    daemon.launch(|c| {
        c.env("INGEST_TEST_PAUSE_DIR", &pause_dir);
    });
    daemon.wait_ready();
    let (first, second) = (csv(2, 3), csv(5, 3));
    let dropped = daemon.drop_file("g", "data.csv", &first);
    release(pause.path(), "g.data.csv");
    // Stored, and held between the identity check and the removal.
    wait_for("the worker to hold before removing the original", || {
        pause
            .path()
            .join("g.data.csv.remove.paused")
            .exists()
            .then_some(())
    });
    assert_eq!(
        stored_shas(&daemon, "g", "data.csv"),
        [crate::helper::sha256_hex(&first)]
    );
    // The writer's new file arrives under the same name, replacing the original.
    let incoming = daemon.group("g").join(".data.csv.incoming");
    std::fs::write(&incoming, &second).unwrap();
    std::fs::rename(&incoming, &dropped).unwrap();
    release(pause.path(), "g.data.csv.remove");
    // Put back, then taken as the next version (and only then removed).
    release(pause.path(), "g.data.csv");
    wait_for("the newcomer to be stored as v2", || {
        (stored_shas(&daemon, "g", "data.csv").len() == 2).then_some(())
    });
    assert_eq!(
        stored_shas(&daemon, "g", "data.csv"),
        [
            crate::helper::sha256_hex(&first),
            crate::helper::sha256_hex(&second)
        ]
    );
    release(pause.path(), "g.data.csv.remove");
    wait_for("the second original to be removed", || {
        (!dropped.exists()).then_some(())
    });
    let left = Daemon::files_under(&daemon.group("g"));
    assert!(left.is_empty(), "nothing set aside is left: {left:?}");
    assert!(daemon.answers_status().is_some());
}

/// A removal a crash interrupted leaves the original under an aside name: at the next start
/// it is removed only if the catalog holds exactly its content as a version of its name,
/// and otherwise given its name back (and then taken like any drop).
#[test]
fn start_up_recovery_removes_only_aside_files_whose_content_is_stored() {
    let mut daemon = Daemon::start_with("[ingest]\nsettle_ms = 150\n");
    let stored = csv(2, 3);
    daemon.drop_file("g", "data.csv", &stored);
    daemon.wait_stored("g", "data.csv");
    daemon.stop();
    let group = daemon.group("g");
    // As a crash between the rename aside and the unlink would leave them.
    let proven = group.join(".ingestd-rm-0000abcd.data.csv");
    std::fs::write(&proven, &stored).unwrap();
    let changed = csv(7, 3);
    std::fs::write(group.join(".ingestd-rm-0000abce.data.csv"), &changed).unwrap();
    let never = csv(3, 2);
    std::fs::write(group.join(".ingestd-rm-0000abcf.other.csv"), &never).unwrap();
    daemon.spawn();
    assert!(!proven.exists(), "stored content set aside is removed");
    // The others are back under their names and are taken as drops.
    daemon.wait_stored("g", "other.csv");
    assert_eq!(
        stored_shas(&daemon, "g", "other.csv"),
        [crate::helper::sha256_hex(&never)]
    );
    wait_for("the changed file to be stored as v2", || {
        (stored_shas(&daemon, "g", "data.csv").len() == 2).then_some(())
    });
    assert_eq!(
        stored_shas(&daemon, "g", "data.csv")[1],
        crate::helper::sha256_hex(&changed)
    );
    wait_for("the drop folder to empty", || {
        Daemon::files_under(&group).is_empty().then_some(())
    });
}
