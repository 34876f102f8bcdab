//! The OpenAI-compatible HTTP provider: `POST {base_url}/v1/embeddings`, as served by OpenAI,
//! Ollama, vLLM, TEI and other compatible servers.
//!
//! One [`Provider::embed`] call is one HTTP request per `batch_size` texts, up to
//! `max_in_flight` of them at once, each on a thread of its own (the agent's connection pool is
//! shared), answered into the caller's order whatever order they come back in. A job waits on
//! the server, not the CPU, so overlapping requests is what makes it fast. This module classifies what went
//! wrong (timeouts, 408, 429 and 5xx are [`EmbedError::Transient`], carrying the server's
//! `Retry-After`; other 4xx and malformed answers are [`EmbedError::Permanent`]) but never
//! retries or sleeps: the job queue owns retries, with [`crate::embed::backoff`].
//!
//! The API key is a [`Secret`]: it goes into the `Authorization: Bearer` header and nowhere
//! else, never into a log line, an error message or `Debug` output.
//!
//! # Knowing the identity up front
//! Every vector is stored with its [`Identity`], which includes the dimension, and
//! [`Provider::identity`] must answer before any row is embedded. With `dimensions`
//! configured, that is the dimension (and every answer is checked against it). Without it,
//! [`OpenAi::new`] asks the server once: [`OpenAi::probe`] embeds one short text and takes
//! the length of the vector. So constructing a provider without `dimensions` needs the
//! server up, and fails with the probe's (usually transient) error otherwise.

mod secret;
#[cfg(test)]
mod tests;
mod wire;

pub use secret::Secret;

use super::{EmbedError, Identity, Provider};
use std::time::{Duration, SystemTime};

/// Everything the provider needs, already resolved from the config (the key already read
/// from its environment variable or file).
#[derive(Debug, Clone)]
pub struct OpenAiSettings {
    /// Where the server lives, e.g. `http://127.0.0.1:11434`. A trailing `/` or `/v1` is
    /// accepted, since OpenAI's own clients are configured with the `/v1` included.
    pub base_url: String,
    /// Passed through as `model`.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when present (local servers usually need none).
    pub api_key: Option<Secret>,
    /// Passed through as `dimensions` (for models that can shorten their vectors); also the
    /// dimension every answer is checked against.
    pub dimensions: Option<usize>,
    /// For the whole request: connect, send, wait, read.
    pub timeout: Duration,
    /// The most texts one request may carry.
    pub batch_size: usize,
    /// Requests one [`Provider::embed`] call may have in flight at once (at least 1); a call
    /// carries at most `batch_size × max_in_flight` texts.
    pub max_in_flight: usize,
}

/// The text [`OpenAi::probe`] embeds: short, so the probe is cheap on any model.
const PROBE_TEXT: &str = "dimension probe";

/// The largest response body read. A batch of 2048 vectors of 3072 floats as JSON is well
/// under this; anything larger is a misbehaving server, not a reason to exhaust memory.
const MAX_RESPONSE_BYTES: u64 = 256 * 1024 * 1024;

pub struct OpenAi {
    settings: OpenAiSettings,
    /// `{base_url}/v1/embeddings`, computed once.
    endpoint: String,
    agent: ureq::Agent,
    identity: Identity,
}

impl std::fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `settings` prints its key as `***`; the agent has nothing worth showing.
        f.debug_struct("OpenAi")
            .field("settings", &self.settings)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl OpenAi {
    /// A provider for `settings`. Without `settings.dimensions` this makes one request to
    /// learn the dimension (see the module docs); with it, no request is made here.
    pub fn new(settings: OpenAiSettings) -> Result<Self, EmbedError> {
        let base_url = normalize_base_url(&settings.base_url)?;
        if settings.model.trim().is_empty() {
            return Err(EmbedError::Permanent(
                "embedding.openai.model is empty; name the model the server should use".into(),
            ));
        }
        if settings.batch_size == 0 {
            return Err(EmbedError::Permanent(
                "the embedding batch size must be at least 1".into(),
            ));
        }
        if settings.max_in_flight == 0 {
            return Err(EmbedError::Permanent(
                "embedding.openai.max_in_flight must be at least 1".into(),
            ));
        }
        if settings.dimensions == Some(0) {
            return Err(EmbedError::Permanent(
                "embedding dimensions must be at least 1 when set".into(),
            ));
        }
        if settings.timeout.is_zero() {
            return Err(EmbedError::Permanent(
                "the embedding request timeout must be longer than zero".into(),
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.timeout))
            // Status codes are classified here, with the body's message, not by the client.
            .http_status_as_error(false)
            // A redirected POST would silently turn into a GET; report it instead.
            .max_redirects(0)
            .user_agent(concat!("ingestd/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let identity = Identity {
            provider: "openai".into(),
            model: settings.model.clone(),
            dimension: settings.dimensions.unwrap_or(0),
            weights_hash: format!("server:{base_url}#{}", settings.model),
        };
        let mut provider = Self {
            endpoint: format!("{base_url}/v1/embeddings"),
            settings,
            agent,
            identity,
        };
        if provider.settings.dimensions.is_none() {
            provider.identity.dimension = provider.probe()?;
        }
        Ok(provider)
    }

    /// Embed one short text and return the dimension of the answer. Also a cheap way for
    /// start-up checks to see that the server, the model and the key all work.
    pub fn probe(&self) -> Result<usize, EmbedError> {
        let vectors = self.request(&[PROBE_TEXT.to_owned()], self.settings.dimensions)?;
        Ok(vectors.first().map_or(0, Vec::len))
    }

    pub fn batch_size(&self) -> usize {
        self.settings.batch_size
    }

    /// One request; `expected_dimension` is `None` only while probing.
    fn request(
        &self,
        texts: &[String],
        expected_dimension: Option<usize>,
    ) -> Result<Vec<Vec<f32>>, EmbedError> {
        let body = serde_json::to_vec(&wire::Request {
            model: &self.settings.model,
            input: texts,
            dimensions: self.settings.dimensions,
        })
        .map_err(|e| EmbedError::Permanent(format!("cannot encode the embedding request: {e}")))?;

        let mut request = self
            .agent
            .post(&self.endpoint)
            .header("Content-Type", "application/json");
        if let Some(key) = &self.settings.api_key {
            request = request.header("Authorization", format!("Bearer {}", key.expose()));
        }
        tracing::debug!(endpoint = %self.endpoint, texts = texts.len(), "embedding request");
        let mut response = request
            .send(&body[..])
            .map_err(|e| self.transport_error(e))?;

        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| super::backoff::parse_retry_after(v, SystemTime::now()));
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;

        let origin = format!("embedding server {}", self.endpoint);
        match status {
            200..=299 => wire::vectors(&body, texts.len(), expected_dimension, &origin),
            408 | 429 | 500..=599 => Err(EmbedError::Transient {
                message: format!("{origin} answered {status}: {}", wire::error_message(&body)),
                retry_after,
            }),
            300..=399 => Err(EmbedError::Permanent(format!(
                "{origin} redirects ({status}) to {}; set embedding.openai.base_url to the \
                 final address",
                location.as_deref().unwrap_or("an unnamed location")
            ))),
            _ => Err(EmbedError::Permanent(format!(
                "{origin} refused the request ({status}{}): {}",
                hint(status),
                wire::error_message(&body)
            ))),
        }
    }

    /// Classify a failure below HTTP: whatever could clear up by itself (a timeout, a
    /// refused or reset connection while the server restarts) is transient; a URL or TLS
    /// configuration problem is not.
    fn transport_error(&self, error: ureq::Error) -> EmbedError {
        let endpoint = &self.endpoint;
        match error {
            ureq::Error::Timeout(_) => EmbedError::Transient {
                message: format!(
                    "embedding server {endpoint} did not answer within {:?}",
                    self.settings.timeout
                ),
                retry_after: None,
            },
            ureq::Error::Io(_)
            | ureq::Error::ConnectionFailed
            | ureq::Error::HostNotFound
            | ureq::Error::Protocol(_)
            | ureq::Error::BodyStalled
            | ureq::Error::ConnectProxyFailed(_) => EmbedError::Transient {
                message: format!("cannot reach embedding server {endpoint}: {error}"),
                retry_after: None,
            },
            ureq::Error::BodyExceedsLimit(limit) => EmbedError::Permanent(format!(
                "embedding server {endpoint} sent more than {limit} bytes; lower the batch size"
            )),
            other => EmbedError::Permanent(format!(
                "cannot send the embedding request to {endpoint}: {other}"
            )),
        }
    }
}

/// What to check for the status codes people actually meet.
fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => "; check the API key",
        404 => "; check base_url and that the server has this model",
        413 => "; lower the batch size",
        _ => "",
    }
}

/// Trim a trailing `/` and `/v1`, so `http://h:1`, `http://h:1/` and `http://h:1/v1` are the
/// same server (and the same identity).
fn normalize_base_url(raw: &str) -> Result<String, EmbedError> {
    let mut url = raw.trim().trim_end_matches('/');
    if let Some(stripped) = url.strip_suffix("/v1") {
        url = stripped.trim_end_matches('/');
    }
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.ends_with("://") {
        return Err(EmbedError::Permanent(format!(
            "embedding.openai.base_url {raw:?} is not an http:// or https:// URL"
        )));
    }
    Ok(url.to_owned())
}

impl Provider for OpenAi {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            // Servers reject an empty `input`; nothing to ask for.
            return Ok(Vec::new());
        }
        let (batch, in_flight) = (self.settings.batch_size, self.settings.max_in_flight);
        if texts.len() > batch * in_flight {
            return Err(EmbedError::Permanent(format!(
                "{} texts in one embedding call, more than the batch size {batch} × \
                 {in_flight} requests in flight; split the batch",
                texts.len(),
            )));
        }
        let dimension = Some(self.identity.dimension);
        if texts.len() <= batch {
            return self.request(texts, dimension);
        }
        // One thread per request: a blocking client, and a handful of requests per call.
        // Threads inherit the caller's scheduling priority, so they yield as it does.
        let answers: Vec<Result<Vec<Vec<f32>>, EmbedError>> = std::thread::scope(|scope| {
            let requests: Vec<_> = texts
                .chunks(batch)
                .map(|chunk| scope.spawn(move || self.request(chunk, dimension)))
                .collect();
            requests
                .into_iter()
                .map(|request| {
                    request.join().unwrap_or_else(|_| {
                        Err(EmbedError::Permanent(
                            "an embedding request thread panicked".into(),
                        ))
                    })
                })
                .collect()
        });
        // In the caller's order; the first failure (by position) decides.
        let mut vectors = Vec::with_capacity(texts.len());
        for answer in answers {
            vectors.extend(answer?);
        }
        Ok(vectors)
    }

    fn max_in_flight(&self) -> usize {
        self.settings.max_in_flight
    }
}
