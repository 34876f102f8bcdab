//! Embedding providers: turn a batch of row texts into vectors, and say exactly which model
//! made them, so vectors of different identities are never mixed or compared.
//!
//! Providers are blocking (embedding workers are threads) and classify their errors by what
//! to do next: a transient error (timeout, HTTP 429/5xx) is retried with backoff, a permanent
//! one fails the job at once with its reason.

pub mod backoff;
pub mod configured;
pub mod fetch;
pub mod hashing;
pub mod minilm;
pub mod openai;
pub mod priority;
pub mod render;

use std::time::Duration;

/// Who made a vector: recorded with every generation, compared before any search.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub provider: String,
    pub model: String,
    pub dimension: usize,
    /// A hash of the weights (or of the configuration for providers without weights).
    pub weights_hash: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmbedError {
    /// Worth another try: a timeout, a rate limit, a server error.
    #[error("{message}")]
    Transient {
        message: String,
        /// The server's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    /// Trying again will not help: bad input, wrong dimension, missing model.
    #[error("{0}")]
    Permanent(String),
}

/// An embedding provider.
pub trait Provider: Send + Sync {
    fn identity(&self) -> &Identity;

    /// One L2-normalised vector of `identity().dimension` floats per text, in order. At most
    /// `batch_size × max_in_flight()` texts per call.
    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError>;

    /// The vector of a search's text, for someone waiting on the answer: what `embed` gives
    /// for it, computed without the lower priority and the pauses of embedding jobs where the
    /// provider has them.
    fn embed_query(&self, text: &str) -> Result<Vec<f32>, EmbedError> {
        self.embed(&[text.to_string()])?
            .into_iter()
            .next()
            .ok_or_else(|| EmbedError::Permanent("the provider returned no vector".into()))
    }

    /// How many batches one call may carry, all in flight at once: more than 1 only for a
    /// provider that waits on something else (a server), where overlapping requests is what
    /// makes a job fast. A job hands it that many batches per call.
    fn max_in_flight(&self) -> usize {
        1
    }
}

/// Scale `v` to unit length (a zero vector stays zero).
pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        for x in v {
            *x /= norm;
        }
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
