//! The `hashing` provider: feature hashing of words and character trigrams into a fixed number
//! of dimensions, L2-normalised. Deterministic, instant and dependency-free, for hermetic tests
//! and as an explicit opt-in; never a silent fallback for a real model.
//!
//! Texts sharing words or word pieces get similar vectors, so search over it behaves sensibly
//! in tests, but it knows nothing of meaning.

use super::{EmbedError, Identity, Provider, normalize};
use std::hash::Hasher;

/// Dimensions, chosen to match MiniLM's so storage and search paths see the same shapes.
pub const DIMENSION: usize = 384;

pub struct Hashing {
    identity: Identity,
}

impl Default for Hashing {
    fn default() -> Self {
        Self {
            identity: Identity {
                provider: "hashing".into(),
                model: "fnv1a-words-trigrams".into(),
                dimension: DIMENSION,
                weights_hash: "none".into(),
            },
        }
    }
}

/// Add the feature `prefix` + `body` (hashed as one string, FNV-1a) to `vector`.
fn add(vector: &mut [f32], prefix: &[u8], body: &[u8], weight: f32) {
    let hash = |salt: u8| {
        let mut hasher = fnv::FnvHasher::default();
        hasher.write_u8(salt);
        hasher.write(prefix);
        hasher.write(body);
        hasher.finish()
    };
    let index = (hash(0) % DIMENSION as u64) as usize;
    // A second, independent bit decides the sign so collisions cancel out on average.
    let sign = if hash(1) & 1 == 0 { 1.0 } else { -1.0 };
    vector[index] += sign * weight;
}

/// The vector of one text: each lower-cased word (`w:word`) and each character trigram of
/// `<word>` (`c:<wo`, …). No allocation per feature: this runs for every row of every file.
pub fn embed_one(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMENSION];
    let lower = text.to_lowercase();
    // `<word>` and where each of its characters starts (and where the last ends).
    let mut padded: Vec<u8> = Vec::new();
    let mut starts: Vec<usize> = Vec::new();
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(&mut vector, b"w:", word.as_bytes(), 1.0);
        padded.clear();
        starts.clear();
        padded.push(b'<');
        starts.push(0);
        starts.extend(word.char_indices().map(|(i, _)| 1 + i));
        padded.extend_from_slice(word.as_bytes());
        starts.push(padded.len());
        padded.push(b'>');
        starts.push(padded.len());
        for i in 0..starts.len().saturating_sub(3) {
            add(&mut vector, b"c:", &padded[starts[i]..starts[i + 3]], 0.5);
        }
    }
    normalize(&mut vector);
    vector
}

impl Provider for Hashing {
    fn identity(&self) -> &Identity {
        &self.identity
    }

    fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(texts.iter().map(|t| embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embed::cosine;

    /// The first, plain version (a string per feature): the fast one must agree with it to
    /// the bit, or vectors already stored would stop matching new ones.
    fn reference(text: &str) -> Vec<f32> {
        let hash = |feature: &str, salt: u8| {
            let mut hasher = fnv::FnvHasher::default();
            hasher.write_u8(salt);
            hasher.write(feature.as_bytes());
            hasher.finish()
        };
        let mut vector = vec![0.0f32; DIMENSION];
        let mut add = |feature: &str, weight: f32| {
            let index = (hash(feature, 0) % DIMENSION as u64) as usize;
            let sign = if hash(feature, 1) & 1 == 0 { 1.0 } else { -1.0 };
            vector[index] += sign * weight;
        };
        for word in text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            add(&format!("w:{word}"), 1.0);
            let padded: Vec<char> = format!("<{word}>").chars().collect();
            for window in padded.windows(3) {
                let gram: String = window.iter().collect();
                add(&format!("c:{gram}"), 0.5);
            }
        }
        normalize(&mut vector);
        vector
    }

    #[test]
    fn the_fast_features_are_the_reference_features() {
        for text in [
            "",
            "a",
            "q1.csv | sales | region: north; amount: 1200",
            "Zürich café — naïve façade, 東京 2026-11-27 ÆØÅ",
            "x y z 1 22 333",
        ] {
            assert_eq!(embed_one(text), reference(text), "{text:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn the_fast_features_match_on_any_text(text in "\\PC{0,80}") {
            proptest::prop_assert_eq!(embed_one(&text), reference(&text));
        }
    }

    #[test]
    fn deterministic_unit_vectors() {
        let a = embed_one("North region sold 1200 widgets");
        assert_eq!(a, embed_one("North region sold 1200 widgets"));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(embed_one("").iter().all(|x| *x == 0.0));
    }

    #[test]
    fn shared_words_are_closer_than_unrelated_text() {
        let q = embed_one("widgets sold in the north");
        let near = embed_one("region: north, product: widgets, sold: 1200");
        let far = embed_one("payroll for march, team core");
        assert!(cosine(&q, &near) > cosine(&q, &far) + 0.2);
    }

    #[test]
    fn batches_keep_order() {
        let texts = vec!["a b".to_string(), "c d".to_string()];
        let out = Hashing::default().embed(&texts).unwrap();
        assert_eq!(out[0], embed_one("a b"));
        assert_eq!(out[1], embed_one("c d"));
    }
}
