//! The default provider: all-MiniLM-L6-v2 (384-d) run in-process on the CPU, f32, by the
//! encoder in `bert`.
//!
//! It reads a local sentence-transformers BERT folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`) and never downloads anything; `fetch` fills that folder. Sentence
//! vectors follow sentence-transformers: mean of the token vectors under the attention mask,
//! then L2-normalised. The texts of a call are sorted by length and run in groups of
//! `GROUP`, each padded to its own longest text (the shipped tokenizer pads every input to
//! 128, which would waste most of the work on short rows), and texts are truncated at 256
//! tokens, the model's `max_seq_length`.

use super::fetch::{FETCH_COMMAND, MODEL_FILES, WEIGHTS_FILE, WEIGHTS_SHA256};
use super::{EmbedError, Identity, Provider, normalize};
use bert::{Bert, Config};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;
use std::path::Path;
use std::sync::OnceLock;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// Tokens per text; longer texts are cut (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
pub const DIMENSION: usize = 384;

pub struct MiniLm {
    model: Bert,
    tokenizer: Tokenizer,
    identity: Identity,
    pad: Pad,
    /// A private pool when a thread count was asked for, so embedding does not take every
    /// core from the rest of the daemon; its threads run at a lower priority
    /// ([`super::priority`]). `None` uses rayon's global pool. Tokenizing and the forward
    /// pass of `embed` both run inside it.
    pool: Option<rayon::ThreadPool>,
    /// One thread at the daemon's own priority for `embed_query`: a search's caller is
    /// waiting, and one text is a few milliseconds of work. Concurrent searches queue here,
    /// so searching never takes more than one core. Started by the first search, from the
    /// search's own thread: a thread inherits its creator's nice value, and the provider may
    /// be loaded on a job's lowered thread, whose priority cannot be raised back.
    queries: OnceLock<Result<rayon::ThreadPool, String>>,
}

fn permanent(what: impl std::fmt::Display) -> EmbedError {
    EmbedError::Permanent(what.to_string())
}

/// Texts per forward pass. The texts of one `embed` call are sorted by their number of tokens
/// and run in groups of this many: a group is padded only to its own longest text, and the
/// groups of a call run side by side on the provider's threads. On one thread a group of 8
/// makes as many rows per second as one of 32, so nothing is lost where there is no second
/// thread.
const GROUP: usize = 8;

/// The tokenizer's padding token: id and type id.
#[derive(Clone, Copy)]
struct Pad {
    id: u32,
    type_id: u32,
}

/// Token ids of some texts, padded on the right to the longest of them.
struct Batch {
    ids: Tensor,
    type_ids: Tensor,
    mask: Tensor,
}

impl Batch {
    fn of<'a>(
        encodings: impl ExactSizeIterator<Item = &'a Encoding> + Clone,
        pad: Pad,
    ) -> candle_core::Result<Self> {
        let rows = encodings.len();
        let len = encodings.clone().map(Encoding::len).max().unwrap_or(0);
        let padded = |field: fn(&Encoding) -> &[u32], padding: u32| {
            let mut values = Vec::with_capacity(rows * len);
            for e in encodings.clone() {
                let real = field(e);
                values.extend_from_slice(real);
                values.resize(values.len() + len - real.len(), padding);
            }
            Tensor::from_vec(values, (rows, len), &Device::Cpu)
        };
        Ok(Self {
            ids: padded(Encoding::get_ids, pad.id)?,
            type_ids: padded(Encoding::get_type_ids, pad.type_id)?,
            mask: padded(Encoding::get_attention_mask, 0)?,
        })
    }
}

impl MiniLm {
    /// Load the model from `model_dir`. `threads` caps the threads one `embed` call uses.
    pub fn load(model_dir: &Path, threads: Option<usize>) -> Result<Self, EmbedError> {
        let missing: Vec<&str> = MODEL_FILES
            .into_iter()
            .filter(|f| !model_dir.join(f).is_file())
            .collect();
        if !missing.is_empty() {
            return Err(permanent(format_args!(
                "embedding model folder {} lacks {}; run `{FETCH_COMMAND}` to download \
                 all-MiniLM-L6-v2 there, or set embedding.model_dir to a folder holding it",
                model_dir.display(),
                missing.join(", ")
            )));
        }
        let read = |name: &str| {
            let path = model_dir.join(name);
            std::fs::read(&path)
                .map_err(|e| permanent(format_args!("{}: reading: {e}", path.display())))
        };

        let config: Config = serde_json::from_slice(&read("config.json")?)
            .map_err(|e| e.to_string())
            .and_then(|config: Config| config.check().map(|()| config).map_err(|e| e.to_string()))
            .map_err(|e| {
                permanent(format_args!(
                    "{}: not a BERT config this provider runs: {e}",
                    model_dir.join("config.json").display()
                ))
            })?;

        let tokenizer_path = model_dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| permanent(format_args!("{}: {e}", tokenizer_path.display())))?;
        // Each group of texts is padded here, to its own longest, with the shipped pad
        // token; the tokenizer's own padding (every text to 128) is turned off.
        let shipped = tokenizer.get_padding().cloned().unwrap_or_default();
        let pad = Pad {
            id: shipped.pad_id,
            type_id: shipped.pad_type_id,
        };
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| permanent(format_args!("{}: {e}", tokenizer_path.display())))?;

        // Read once: the same bytes give the identity hash and the weights, and no mmap can
        // see the file change under it.
        let weights = read(WEIGHTS_FILE)?;
        let weights_hash = crate::sha256::of_bytes(&weights);
        let weights_path = model_dir.join(WEIGHTS_FILE);
        // This provider's identity names all-MiniLM-L6-v2: other or damaged weights would make
        // vectors under that name. Checked here too, not only at start, because the folder can
        // change while the daemon runs and the model is built again after a reload.
        if weights_hash != WEIGHTS_SHA256 {
            return Err(permanent(format_args!(
                "{}: sha256 is {weights_hash}, not the pinned {WEIGHTS_SHA256} of \
                 all-MiniLM-L6-v2; run `{FETCH_COMMAND}` to replace it",
                weights_path.display()
            )));
        }
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| permanent(format_args!("{}: {e}", weights_path.display())))?;
        let model = Bert::load(vb, &config).map_err(|e| {
            permanent(format_args!(
                "{}: not a BERT model: {e}",
                weights_path.display()
            ))
        })?;
        if config.hidden_size != DIMENSION {
            return Err(permanent(format_args!(
                "{}: hidden size is {}, this provider expects {DIMENSION}",
                model_dir.join("config.json").display(),
                config.hidden_size
            )));
        }

        let pool = match threads {
            Some(n) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(n.max(1))
                    .thread_name(|i| format!("minilm-{i}"))
                    .start_handler(|_| super::priority::idle_this_thread())
                    .build()
                    .map_err(|e| permanent(format_args!("starting {n} embedding threads: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            model,
            tokenizer,
            identity: Identity {
                provider: "minilm".into(),
                model: "all-MiniLM-L6-v2".into(),
                dimension: DIMENSION,
                weights_hash,
            },
            pad,
            pool,
            queries: OnceLock::new(),
        })
    }

    /// Token ids of each text, cut at [`MAX_TOKENS`] and not padded.
    fn encode(&self, texts: &[String]) -> Result<Vec<Encoding>, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        self.tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| permanent(format_args!("tokenizing: {e}")))
    }

    /// All of `texts` as one batch, padded to the longest.
    #[cfg(test)]
    fn tokenize(&self, texts: &[String]) -> Result<Batch, EmbedError> {
        let encodings = self.encode(texts)?;
        Batch::of(encodings.iter(), self.pad)
            .map_err(|e| permanent(format_args!("building the token batch: {e}")))
    }

    /// Sentence vectors of `encodings`, run as one forward pass that calls `pause` before each
    /// layer.
    fn embed_group<'a>(
        &self,
        encodings: impl ExactSizeIterator<Item = &'a Encoding> + Clone,
        pause: fn(),
    ) -> candle_core::Result<Vec<Vec<f32>>> {
        let batch = Batch::of(encodings, self.pad)?;
        let hidden = self
            .model
            .forward(&batch.ids, &batch.type_ids, &batch.mask, pause)?;
        // Mean over real tokens only: padding must not pull vectors towards each other.
        let mask = batch.mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
        let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
        let mut pooled = sum.broadcast_div(&count)?.to_vec2::<f32>()?;
        pooled.iter_mut().for_each(|v| normalize(v));
        Ok(pooled)
    }

    fn embed_batch(&self, texts: &[String], pause: fn()) -> Result<Vec<Vec<f32>>, EmbedError> {
        let encodings = self.encode(texts)?;
        // Shortest first, so each group is padded only to the longest of similar texts.
        let mut order: Vec<usize> = (0..encodings.len()).collect();
        order.sort_by_key(|&i| encodings[i].len());
        let groups = order
            .par_chunks(GROUP)
            .map(|rows| {
                let vectors = self.embed_group(rows.iter().map(|&i| &encodings[i]), pause)?;
                if vectors.len() != rows.len() {
                    candle_core::bail!("{} vectors for {} texts", vectors.len(), rows.len());
                }
                Ok(vectors)
            })
            .collect::<candle_core::Result<Vec<_>>>()
            .map_err(|e| permanent(format_args!("running all-MiniLM-L6-v2: {e}")))?;
        let mut vectors = vec![Vec::new(); texts.len()];
        for (&i, vector) in order.iter().zip(groups.into_iter().flatten()) {
            vectors[i] = vector;
        }
        Ok(vectors)
    }
}

impl Provider for MiniLm {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    /// On the provider's pool, in groups of `GROUP` that wait for ingest between layers
    /// ([`super::priority::yield_to_ingest`]); the caller's batch size bounds memory.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let pause = super::priority::yield_to_ingest;
        match &self.pool {
            Some(pool) => pool.install(|| self.embed_batch(texts, pause)),
            None => self.embed_batch(texts, pause),
        }
    }

    /// On the `minilm-query` thread, at the daemon's own priority, without pauses.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        let queries = self
            .queries
            .get_or_init(|| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .thread_name(|_| "minilm-query".into())
                    .build()
                    .map_err(|e| format!("starting the search thread: {e}"))
            })
            .as_ref()
            .map_err(permanent)?;
        queries
            .install(|| self.embed_batch(&[text.to_string()], || {}))?
            .pop()
            .ok_or_else(|| EmbedError::Permanent("the provider returned no vector".into()))
    }
}

mod bert;
#[cfg(test)]
mod tests;
