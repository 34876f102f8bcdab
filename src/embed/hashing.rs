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

fn hash(feature: &str, salt: u8) -> u64 {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write_u8(salt);
    hasher.write(feature.as_bytes());
    hasher.finish()
}

fn add(vector: &mut [f32], feature: &str, weight: f32) {
    let h = hash(feature, 0);
    let index = (h % DIMENSION as u64) as usize;
    // A second, independent bit decides the sign so collisions cancel out on average.
    let sign = if hash(feature, 1) & 1 == 0 { 1.0 } else { -1.0 };
    vector[index] += sign * weight;
}

/// The vector of one text.
pub fn embed_one(text: &str) -> Vec<f32> {
    let mut vector = vec![0.0f32; DIMENSION];
    let lower = text.to_lowercase();
    for word in lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        add(&mut vector, &format!("w:{word}"), 1.0);
        let padded: Vec<char> = format!("<{word}>").chars().collect();
        for window in padded.windows(3) {
            let gram: String = window.iter().collect();
            add(&mut vector, &format!("c:{gram}"), 0.5);
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
