//! The provider `[embedding]` asks for: checked at start-up, built once on first use, shared by
//! every embedding worker and by `search`, and rebuilt when a reload changes its settings.
//!
//! Building can be slow (MiniLM reads 90 MB of weights; an OpenAI-compatible server is asked
//! for its dimension), so it happens on a worker thread, not at start-up; but what can be
//! known without building — a missing model folder — is checked before the daemon is ready,
//! so a server never starts and then fails every job for a missing file.

use super::openai::{OpenAi, OpenAiSettings, Secret};
use super::{EmbedError, Provider, fetch, hashing::Hashing, minilm::MiniLm};
use crate::config::{self, Embedding};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Check what can be checked before the first job: the model folder of `minilm`, fetched
/// now when `auto_fetch` is on. Blocking (a fetch downloads the model).
pub fn preflight(
    embedding: &Embedding,
    config_file: Option<&std::path::Path>,
) -> Result<(), String> {
    if embedding.provider != config::Provider::Minilm {
        return Ok(());
    }
    // The folder may come from the config, an override or a test's environment: whoever
    // filled it, its weights must be the pinned ones, or the vectors would be labelled
    // all-MiniLM-L6-v2 while another (or a damaged) model made them.
    let altered = if fetch::model_present(&embedding.model_dir) {
        match unpinned_weights(&embedding.model_dir) {
            None => return Ok(()),
            problem => problem,
        }
    } else {
        None
    };
    if embedding.auto_fetch {
        tracing::info!(
            model_dir = %embedding.model_dir.display(),
            problem = altered.as_deref().unwrap_or("missing"),
            "the embedding model is missing or altered; fetching it (embedding.auto_fetch = true)"
        );
        return fetch::fetch_model(&embedding.model_dir)
            .map(|report| {
                tracing::info!(sha256 = %report.weights_sha256, "embedding model installed");
            })
            .map_err(|e| {
                format!(
                    "the embedding model is missing from {} and fetching it failed: {e}",
                    embedding.model_dir.display()
                )
            });
    }
    let command = match config_file {
        Some(file) => format!("ingestd model fetch --config {}", file.display()),
        None => fetch::FETCH_COMMAND.to_string(),
    };
    if let Some(problem) = altered {
        return Err(format!(
            "{problem}; replace it with the pinned all-MiniLM-L6-v2 with `{command}`, or set \
             embedding.auto_fetch = true"
        ));
    }
    Err(format!(
        "the embedding model is missing from {} (embedding.model_dir); download it with \
         `{command}`, or set embedding.auto_fetch = true, or choose another embedding.provider",
        embedding.model_dir.display()
    ))
}

/// Why the weights in `model_dir` are not the pinned all-MiniLM-L6-v2, or `None` if they are.
/// Blocking: reads the 90 MB file once.
pub fn unpinned_weights(model_dir: &std::path::Path) -> Option<String> {
    let path = model_dir.join(fetch::WEIGHTS_FILE);
    match crate::sha256::of_file(&path) {
        Ok(hash) if hash == fetch::WEIGHTS_SHA256 => None,
        Ok(hash) => Some(format!(
            "{}: sha256 is {hash}, not the pinned {} of all-MiniLM-L6-v2",
            path.display(),
            fetch::WEIGHTS_SHA256
        )),
        Err(error) => Some(format!("{}: cannot read it: {error}", path.display())),
    }
}

/// Build the provider `embedding` names.
pub fn build(embedding: &Embedding) -> Result<Arc<dyn Provider>, EmbedError> {
    Ok(match embedding.provider {
        config::Provider::Hashing => Arc::new(Hashing::default()),
        // A pool of every core but one, at a lower priority: embedding never takes the core
        // that ingest and the control socket need (see `priority`).
        config::Provider::Minilm => Arc::new(MiniLm::load(
            &embedding.model_dir,
            Some(super::priority::compute_threads()),
        )?),
        config::Provider::Openai => {
            let o = &embedding.openai;
            let api_key = match &o.api_key_file {
                Some(file) => Some(Secret::from_file(file)?),
                None if o.api_key_env.is_empty() => None,
                // No key is fine: local servers (Ollama, TEI, vLLM) take none.
                None => Secret::from_env(&o.api_key_env).ok(),
            };
            Arc::new(OpenAi::new(OpenAiSettings {
                base_url: o.base_url.clone(),
                model: o.model.clone(),
                api_key,
                dimensions: (o.dimensions > 0).then_some(o.dimensions as usize),
                timeout: Duration::from_secs(o.timeout_secs),
                batch_size: embedding.batch_size as usize,
                max_in_flight: o.max_in_flight.max(1) as usize,
            })?)
        }
    })
}

/// The shared, lazily built provider.
pub struct Providers {
    settings: Mutex<Embedding>,
    /// The provider and the batch size it was built with.
    built: Mutex<Option<(Arc<dyn Provider>, usize)>>,
    /// Serialises building, so three workers starting together build one model, not three.
    building: Mutex<()>,
}

impl Providers {
    pub fn new(embedding: Embedding) -> Self {
        Self {
            settings: Mutex::new(embedding),
            built: Mutex::new(None),
            building: Mutex::new(()),
        }
    }

    fn settings(&self) -> Embedding {
        self.settings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn built(&self) -> Option<(Arc<dyn Provider>, usize)> {
        self.built
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|(p, b)| (Arc::clone(p), *b))
    }

    /// The provider, built on first use. Blocking.
    pub fn get(&self) -> Result<Arc<dyn Provider>, EmbedError> {
        self.get_with_batch().map(|(p, _)| p)
    }

    /// The provider and the batch size it was built for. Blocking.
    pub fn get_with_batch(&self) -> Result<(Arc<dyn Provider>, usize), EmbedError> {
        if let Some(p) = self.built() {
            return Ok(p);
        }
        let _one = self.building.lock().unwrap_or_else(|p| p.into_inner());
        // Another worker may have built it while this one waited.
        if let Some(p) = self.built() {
            return Ok(p);
        }
        let settings = self.settings();
        let provider = build(&settings)?;
        let batch = settings.batch_size.max(1) as usize;
        tracing::info!(identity = ?provider.identity(), "embedding provider ready");
        // Settings changed by a reload while this was built: keep it for this caller only.
        // (The settings lock is not held with `built`: `reconfigure` takes them in the other
        // order.)
        if self.settings() == settings {
            *self.built.lock().unwrap_or_else(|p| p.into_inner()) =
                Some((Arc::clone(&provider), batch));
        }
        Ok((provider, batch))
    }

    /// New settings (a reload): the next use builds a new provider if they differ. Jobs
    /// already running finish with the provider they started with.
    pub fn reconfigure(&self, embedding: &Embedding) -> bool {
        let mut settings = self.settings.lock().unwrap_or_else(|p| p.into_inner());
        if *settings == *embedding {
            return false;
        }
        *settings = embedding.clone();
        *self.built.lock().unwrap_or_else(|p| p.into_inner()) = None;
        true
    }

    /// `provider model` for `status`, from the settings (without building anything).
    pub fn describe(&self) -> String {
        let s = self.settings();
        match s.provider {
            config::Provider::Minilm => format!("minilm ({})", s.model_dir.display()),
            config::Provider::Openai => {
                format!("openai {} at {}", s.openai.model, s.openai.base_url)
            }
            config::Provider::Hashing => "hashing (feature hashing; for tests)".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_fetch_command_unless_auto_fetch() {
        let dir = tempfile::tempdir().unwrap();
        let embedding = Embedding {
            model_dir: dir.path().join("none"),
            auto_fetch: false,
            ..Embedding::default()
        };
        let err = preflight(&embedding, Some(std::path::Path::new("/etc/x.toml"))).unwrap_err();
        assert!(
            err.contains("ingestd model fetch --config /etc/x.toml") && err.contains("none"),
            "{err}"
        );
        let hashing = Embedding {
            provider: config::Provider::Hashing,
            ..embedding
        };
        assert_eq!(preflight(&hashing, None), Ok(()));
    }

    #[test]
    fn built_once_and_rebuilt_after_a_change() {
        let embedding = Embedding {
            provider: config::Provider::Hashing,
            ..Embedding::default()
        };
        let providers = Providers::new(embedding.clone());
        let a = providers.get().unwrap();
        let b = providers.get().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!providers.reconfigure(&embedding));
        let changed = Embedding {
            batch_size: 7,
            ..embedding
        };
        assert!(providers.reconfigure(&changed));
        let (c, batch) = providers.get_with_batch().unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
        assert_eq!(batch, 7, "the batch size the new provider was built with");
    }
}
