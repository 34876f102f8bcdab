//! The JSON of `POST /v1/embeddings`, and the checks that turn a server's answer into
//! exactly one vector per input, in input order, of the expected dimension.
//!
//! Servers differ in small ways (TEI's error is a bare string, some omit `index`, vLLM and
//! OpenAI may return items out of order), so parsing is lenient about shape and strict about
//! the numbers that end up stored.

use crate::embed::{EmbedError, normalize};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize)]
pub(super) struct Request<'a> {
    pub model: &'a str,
    pub input: &'a [String],
    /// Only sent when configured: servers without Matryoshka support reject the field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct Response {
    data: Vec<Item>,
}

#[derive(Debug, Deserialize)]
struct Item {
    /// Absent on a few minimal servers; then the list order is the input order.
    #[serde(default)]
    index: Option<usize>,
    embedding: Vec<f32>,
}

/// Parse a 2xx body into `expected_count` unit vectors in input order.
///
/// `expected_dimension` is `None` only while probing, when the first vector sets it.
pub(super) fn vectors(
    body: &[u8],
    expected_count: usize,
    expected_dimension: Option<usize>,
    origin: &str,
) -> Result<Vec<Vec<f32>>, EmbedError> {
    let response: Response = serde_json::from_slice(body).map_err(|e| {
        EmbedError::Permanent(format!(
            "{origin} did not answer with an embeddings list ({e}): {}",
            snippet(body)
        ))
    })?;
    if response.data.len() != expected_count {
        return Err(EmbedError::Permanent(format!(
            "{origin} returned {} embeddings for {expected_count} texts",
            response.data.len()
        )));
    }
    let dimension = match expected_dimension {
        Some(d) => d,
        None => response.data.first().map_or(0, |item| item.embedding.len()),
    };
    if dimension == 0 {
        return Err(EmbedError::Permanent(format!(
            "{origin} returned an empty embedding"
        )));
    }
    let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected_count];
    for (position, item) in response.data.into_iter().enumerate() {
        let index = item.index.unwrap_or(position);
        if item.embedding.len() != dimension {
            return Err(EmbedError::Permanent(format!(
                "{origin} returned a {}-dimensional embedding (index {index}) where {dimension} \
                 dimensions were expected; the model or its `dimensions` setting changed, or the \
                 server ignores `dimensions`",
                item.embedding.len()
            )));
        }
        if item.embedding.iter().any(|x| !x.is_finite()) {
            return Err(EmbedError::Permanent(format!(
                "{origin} returned an embedding with a non-finite value (index {index})"
            )));
        }
        let slot = slots.get_mut(index).ok_or_else(|| {
            EmbedError::Permanent(format!(
                "{origin} returned index {index} for a batch of {expected_count} texts"
            ))
        })?;
        if slot.is_some() {
            return Err(EmbedError::Permanent(format!(
                "{origin} returned index {index} twice"
            )));
        }
        let mut vector = item.embedding;
        // Not every server normalises (OpenAI does, TEI and Ollama depend on the model), and
        // search compares by dot product, so make every stored vector unit length here.
        normalize(&mut vector);
        *slot = Some(vector);
    }
    // Counts matched and no index repeated, so every slot is filled; the check stays cheap
    // insurance against a future edit of the loop above.
    slots
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            v.ok_or_else(|| EmbedError::Permanent(format!("{origin} returned no index {i}")))
        })
        .collect()
}

/// The human part of an error body: OpenAI, vLLM and Ollama send
/// `{"error": {"message": …}}`, TEI sends `{"error": "…"}`; anything else is shown raw.
pub(super) fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Envelope {
        error: ErrorField,
    }
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ErrorField {
        Text(String),
        Object { message: String },
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            error: ErrorField::Text(message) | ErrorField::Object { message },
        }) => message,
        Err(_) => snippet(body),
    }
}

/// At most a few hundred characters of a body, for an error message a person reads.
fn snippet(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".into();
    }
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN: &str = "server";

    fn perm(r: Result<Vec<Vec<f32>>, EmbedError>) -> String {
        match r {
            Err(EmbedError::Permanent(m)) => m,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    #[test]
    fn reorders_by_index_and_normalises() {
        let body = br#"{"data":[{"index":1,"embedding":[0,2]},{"index":0,"embedding":[3,4]}]}"#;
        let v = vectors(body, 2, Some(2), ORIGIN).unwrap();
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
    }

    #[test]
    fn missing_index_means_list_order() {
        let body = br#"{"data":[{"embedding":[1,0]},{"embedding":[0,1]}]}"#;
        assert_eq!(
            vectors(body, 2, None, ORIGIN).unwrap(),
            vec![vec![1.0, 0.0], vec![0.0, 1.0]]
        );
    }

    #[test]
    fn refuses_bad_shapes() {
        let cases: [(&[u8], usize, Option<usize>, &str); 7] = [
            (
                br#"{"data":[{"index":0,"embedding":[1]}]}"#,
                2,
                None,
                "1 embeddings for 2 texts",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1,2,3]}]}"#,
                1,
                Some(2),
                "3-dimensional",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1,2]},{"index":1,"embedding":[1]}]}"#,
                2,
                None,
                "1-dimensional",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}"#,
                2,
                None,
                "index 0 twice",
            ),
            (
                br#"{"data":[{"index":5,"embedding":[1]}]}"#,
                1,
                None,
                "index 5 for a batch of 1",
            ),
            (
                br#"{"data":[{"index":0,"embedding":[]}]}"#,
                1,
                None,
                "empty embedding",
            ),
            (
                b"<html>oops</html>",
                1,
                None,
                "did not answer with an embeddings list",
            ),
        ];
        for (body, count, dim, want) in cases {
            let msg = perm(vectors(body, count, dim, ORIGIN));
            assert!(msg.contains(want), "{msg:?} should contain {want:?}");
        }
    }

    #[test]
    fn error_messages_from_known_servers() {
        let cases: [(&[u8], &str); 4] = [
            (
                br#"{"error":{"message":"bad model","type":"x"}}"#,
                "bad model",
            ),
            (
                br#"{"error":"Input validation error","error_type":"Validation"}"#,
                "Input validation error",
            ),
            (b"plain text", "plain text"),
            (b"", "(empty body)"),
        ];
        for (body, want) in cases {
            assert_eq!(error_message(body), want);
        }
        assert!(error_message("x".repeat(1000).as_bytes()).ends_with('…'));
    }
}
