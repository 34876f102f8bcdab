//! The config in force while the daemon runs ([`LiveConfig`]): one `Arc<Config>` behind a
//! `tokio::sync::watch` channel, replaced whole by a reload and read by every part that may
//! see a changed value. It never reads files or validates anything: `config` loads a config,
//! `reload` decides what of a new one is put in force.

use crate::config::Config;

/// The config in force while the daemon runs, shared by every part that reads a value that
/// may change on reload (ingest limits, the settle window, admins, embedding settings).
///
/// Reload replaces the whole `Config` at once, so a reader sees either the old or the new
/// config, never a mix. Readers take a snapshot per unit of work (`get`) and never hold it
/// across a wait; a part that must react to a change (the watcher's settle window, the
/// embedding queue) takes a `subscribe` receiver.
#[derive(Debug, Clone)]
pub struct LiveConfig {
    current: std::sync::Arc<tokio::sync::watch::Sender<std::sync::Arc<Config>>>,
    /// The outcome of the last reload, for `status`. Short sections only: a std lock.
    last_reload: std::sync::Arc<std::sync::RwLock<Option<crate::protocol::ReloadInfo>>>,
}

impl LiveConfig {
    pub fn new(config: std::sync::Arc<Config>) -> Self {
        Self {
            current: std::sync::Arc::new(tokio::sync::watch::Sender::new(config)),
            last_reload: Default::default(),
        }
    }

    /// The config in force now.
    pub fn get(&self) -> std::sync::Arc<Config> {
        std::sync::Arc::clone(&self.current.borrow())
    }

    /// Put `config` in force for every reader at once.
    pub fn set(&self, config: std::sync::Arc<Config>) {
        self.current.send_replace(config);
    }

    /// A receiver that wakes when the config is replaced.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<std::sync::Arc<Config>> {
        self.current.subscribe()
    }

    pub fn last_reload(&self) -> Option<crate::protocol::ReloadInfo> {
        self.last_reload
            .read()
            .map(|r| r.clone())
            .unwrap_or_else(|poisoned| poisoned.into_inner().clone())
    }

    pub fn set_last_reload(&self, info: crate::protocol::ReloadInfo) {
        if let Ok(mut slot) = self.last_reload.write() {
            *slot = Some(info);
        }
    }
}

impl From<std::sync::Arc<Config>> for LiveConfig {
    fn from(config: std::sync::Arc<Config>) -> Self {
        Self::new(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_config_replaces_the_whole_config_at_once() {
        let live = LiveConfig::new(std::sync::Arc::new(Config::default()));
        let mut watching = live.subscribe();
        let mut next = Config::default();
        next.ingest.settle_ms = 42;
        live.set(std::sync::Arc::new(next));
        assert!(watching.has_changed().unwrap());
        assert_eq!(watching.borrow_and_update().ingest.settle_ms, 42);
        assert_eq!(live.get().ingest.settle_ms, 42);
    }
}
