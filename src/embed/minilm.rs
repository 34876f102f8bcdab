//! The default provider: all-MiniLM-L6-v2 (384-d) run in-process on candle, CPU, f32.
//!
//! It reads a local sentence-transformers BERT folder (`config.json`, `tokenizer.json`,
//! `model.safetensors`) and never downloads anything; `fetch` fills that folder. Sentence
//! vectors follow sentence-transformers: mean of the token vectors under the attention mask,
//! then L2-normalised. Each batch is padded to its own longest text (the shipped tokenizer
//! pads every input to 128, which would waste most of the work on short rows) and texts are
//! truncated at 256 tokens, the model's `max_seq_length`.

use super::fetch::{FETCH_COMMAND, MODEL_FILES, WEIGHTS_FILE, WEIGHTS_SHA256};
use super::{EmbedError, Identity, Provider, normalize};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config, DTYPE};
use std::path::Path;
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

/// Tokens per text; longer texts are cut (sentence-transformers' `max_seq_length`).
pub const MAX_TOKENS: usize = 256;
pub const DIMENSION: usize = 384;

pub struct MiniLm {
    model: BertModel,
    tokenizer: Tokenizer,
    identity: Identity,
    /// A private pool when a thread count was asked for, so embedding does not take every
    /// core from the rest of the daemon; its threads run at a lower priority
    /// ([`super::priority`]). `None` uses rayon's global pool. Tokenizing and the forward
    /// pass both run inside it.
    pool: Option<rayon::ThreadPool>,
}

fn permanent(what: impl std::fmt::Display) -> EmbedError {
    EmbedError::Permanent(what.to_string())
}

/// Token ids of one batch, padded to its longest text.
struct Batch {
    ids: Tensor,
    type_ids: Tensor,
    mask: Tensor,
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

        let config: Config = serde_json::from_slice(&read("config.json")?).map_err(|e| {
            permanent(format_args!(
                "{}: not a BERT config: {e}",
                model_dir.join("config.json").display()
            ))
        })?;

        let tokenizer_path = model_dir.join("tokenizer.json");
        let mut tokenizer = Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| permanent(format_args!("{}: {e}", tokenizer_path.display())))?;
        // Keep the shipped pad token and id; only the fixed length goes.
        let padding = PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..tokenizer.get_padding().cloned().unwrap_or_default()
        };
        tokenizer.with_padding(Some(padding));
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
        let vb = VarBuilder::from_buffered_safetensors(weights, DTYPE, &Device::Cpu)
            .map_err(|e| permanent(format_args!("{}: {e}", weights_path.display())))?;
        let model = BertModel::load(vb, &config).map_err(|e| {
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
                    .start_handler(|_| super::priority::lower_this_thread())
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
            pool,
        })
    }

    fn tokenize(&self, texts: &[String]) -> Result<Batch, EmbedError> {
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings = self
            .tokenizer
            .encode_batch(inputs, true)
            .map_err(|e| permanent(format_args!("tokenizing: {e}")))?;
        let len = encodings.first().map_or(0, |e| e.len());
        let flat = |field: fn(&tokenizers::Encoding) -> &[u32]| {
            let values: Vec<u32> = encodings.iter().flat_map(|e| field(e).to_vec()).collect();
            Tensor::from_vec(values, (encodings.len(), len), &Device::Cpu)
        };
        let tensors = (|| {
            Ok::<_, candle_core::Error>(Batch {
                ids: flat(|e| e.get_ids())?,
                type_ids: flat(|e| e.get_type_ids())?,
                mask: flat(|e| e.get_attention_mask())?,
            })
        })();
        tensors.map_err(|e| permanent(format_args!("building the token batch: {e}")))
    }

    fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let batch = self.tokenize(texts)?;
        let pooled = (|| {
            let hidden = self
                .model
                .forward(&batch.ids, &batch.type_ids, Some(&batch.mask))?;
            // Mean over real tokens only: padding must not pull vectors towards each other.
            let mask = batch.mask.to_dtype(DType::F32)?.unsqueeze(2)?;
            let sum = hidden.broadcast_mul(&mask)?.sum(1)?;
            let count = mask.sum(1)?.clamp(1e-9f32, f32::MAX)?;
            sum.broadcast_div(&count)?.to_vec2::<f32>()
        })()
        .map_err(|e| permanent(format_args!("running all-MiniLM-L6-v2: {e}")))?;
        Ok(pooled
            .into_iter()
            .map(|mut v| {
                normalize(&mut v);
                v
            })
            .collect())
    }
}

impl Provider for MiniLm {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The whole slice is one forward pass: the caller's batch size bounds memory.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        match &self.pool {
            Some(pool) => pool.install(|| self.embed_batch(texts)),
            None => self.embed_batch(texts),
        }
    }
}

#[cfg(test)]
mod tests;
