//! Tests against the real model. They need the fetched folder and skip (with a message) when
//! it is absent, so a machine without it still passes; CI fetches it first.

use super::*;
use crate::embed::cosine;
use crate::embed::fetch::{WEIGHTS_SHA256, model_present};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Instant;

/// `MINILM_TEST_MODEL_DIR`, else the default folder that `ingestd model fetch` fills.
fn model_dir() -> PathBuf {
    std::env::var_os("MINILM_TEST_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("data/models/all-MiniLM-L6-v2")
        })
}

/// The model, loaded once for all tests; `None` (after a skip message) when not fetched.
fn model() -> Option<&'static MiniLm> {
    static MODEL: OnceLock<Option<MiniLm>> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let dir = model_dir();
            if !model_present(&dir) {
                crate::testing::skip(&format!(
                    "no MiniLM model in {} (run `{FETCH_COMMAND}` or set MINILM_TEST_MODEL_DIR)",
                    dir.display()
                ));
                return None;
            }
            Some(MiniLm::load(&dir, None).expect("loading the model"))
        })
        .as_ref()
}

/// The largest difference between two vectors' values.
fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
}

fn strings(texts: &[&str]) -> Vec<String> {
    texts.iter().map(|t| t.to_string()).collect()
}

#[test]
fn identity_names_the_weights() {
    let Some(m) = model() else { return };
    let id = m.identity();
    assert_eq!(
        (id.provider.as_str(), id.model.as_str(), id.dimension),
        ("minilm", "all-MiniLM-L6-v2", 384)
    );
    // Wherever the folder came from (the default, or MINILM_TEST_MODEL_DIR), a loaded model
    // is the pinned one.
    assert_eq!(id.weights_hash, WEIGHTS_SHA256);
}

#[test]
fn tampered_weights_are_refused_with_both_hashes() {
    if model().is_none() {
        return;
    }
    let tampered = tempfile::tempdir().unwrap();
    for file in MODEL_FILES {
        std::fs::copy(model_dir().join(file), tampered.path().join(file)).unwrap();
    }
    // One byte of one weight: still a valid safetensors file that would load and embed.
    let weights = tampered.path().join(WEIGHTS_FILE);
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, &bytes).unwrap();
    let error = MiniLm::load(tampered.path(), None).err().expect("refused");
    let text = error.to_string();
    assert!(
        matches!(error, EmbedError::Permanent(_)) && text.contains(WEIGHTS_SHA256),
        "{text}"
    );
    assert!(text.contains(FETCH_COMMAND), "{text}");
    assert!(crate::embed::configured::unpinned_weights(tampered.path()).is_some());
}

#[test]
fn known_pair_has_the_reference_similarity() {
    let Some(m) = model() else { return };
    let v = m
        .embed(&strings(&[
            "A man is eating food.",
            "A man is eating a piece of bread.",
        ]))
        .unwrap();
    let cos = cosine(&v[0], &v[1]);
    println!("cos = {cos}");
    assert!((cos - 0.755).abs() < 0.01, "cos = {cos}");
}

/// Vectors that sentence-transformers on PyTorch made for a few texts (the file says which
/// versions): two sentences, table rows with non-ASCII text, an empty text and one cut at 256
/// tokens.
const REFERENCE: &str = include_str!("../../../tests/data/minilm_reference.json");

#[test]
fn vectors_match_sentence_transformers() {
    let Some(m) = model() else { return };
    #[derive(serde::Deserialize)]
    struct Row {
        text: String,
        vector: Vec<f32>,
    }
    #[derive(serde::Deserialize)]
    struct Reference {
        rows: Vec<Row>,
    }
    let reference: Reference = serde_json::from_str(REFERENCE).unwrap();
    let texts: Vec<String> = reference.rows.iter().map(|r| r.text.clone()).collect();
    // One call of fewer than GROUP texts: one forward pass, the short texts padded beside
    // the long one.
    assert!(reference.rows.len() <= GROUP);
    let ours = m.embed(&texts).unwrap();
    assert_eq!(ours.len(), reference.rows.len());
    for (row, ours) in reference.rows.iter().zip(&ours) {
        let diff = max_diff(&row.vector, ours);
        let cos = cosine(&row.vector, ours);
        assert!(
            diff < 1e-5 && cos > 0.999_99,
            "{:?}: max diff {diff}, cosine {cos}",
            row.text
        );
    }
}

#[test]
fn vectors_are_unit_length_and_in_order() {
    let Some(m) = model() else { return };
    let texts = strings(&[
        "north widgets 1200",
        "",
        "payroll for march",
        "north widgets 1200",
    ]);
    let v = m.embed(&texts).unwrap();
    assert_eq!(v.len(), 4);
    for x in &v {
        assert_eq!(x.len(), DIMENSION);
        let norm: f32 = x.iter().map(|a| a * a).sum();
        assert!((norm - 1.0).abs() < 1e-4, "norm² = {norm}");
    }
    // Same text at two positions: same vector; different texts: different vectors.
    assert!(v[0].iter().zip(&v[3]).all(|(a, b)| (a - b).abs() < 1e-5));
    assert!(cosine(&v[0], &v[2]) < 0.9);
    assert!(m.embed(&[]).unwrap().is_empty());
}

#[test]
fn batching_does_not_change_vectors() {
    let Some(m) = model() else { return };
    // Very different lengths, so most rows carry padding in the batch.
    let texts = strings(&[
        "short",
        "A man is eating a piece of bread while the north region sold 1200 widgets in March.",
        "region: south, product: gadget, units: 7",
    ]);
    let together = m.embed(&texts).unwrap();
    for (text, batched) in texts.iter().zip(&together) {
        let alone = &m.embed(std::slice::from_ref(text)).unwrap()[0];
        let diff = max_diff(alone, batched);
        assert!(diff < 1e-5, "{text:?}: max diff {diff}");
    }
}

/// More texts than one group, of shuffled lengths: each vector comes back in its text's place
/// and equals the text embedded alone; every group pauses before each of the six layers.
#[test]
fn a_call_of_several_groups_keeps_the_order() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let Some(m) = model() else { return };
    let texts: Vec<String> = (0..3 * GROUP - 3)
        .map(|i| {
            let words = (i * 7) % 23 + 1;
            format!("row {i}: {}", "widget ".repeat(words))
        })
        .collect();
    static PAUSES: AtomicUsize = AtomicUsize::new(0);
    let together = m
        .embed_batch(&texts, || {
            PAUSES.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap();
    assert_eq!(PAUSES.load(Ordering::SeqCst), 3 * 6);
    assert_eq!(together.len(), texts.len());
    for (text, batched) in texts.iter().zip(&together) {
        let alone = m.embed_query(text).unwrap();
        let diff = max_diff(&alone, batched);
        assert!(diff < 1e-5, "{text:?}: max diff {diff}");
    }
}

#[test]
fn pads_to_the_longest_and_truncates_long_texts() {
    let Some(m) = model() else { return };
    let batch = m
        .tokenize(&strings(&["one two", "one two three four"]))
        .unwrap();
    // [CLS] + 4 words + [SEP], not the shipped fixed 128.
    assert_eq!(batch.ids.dims(), &[2, 6]);
    let long = vec!["word ".repeat(1000)];
    assert_eq!(m.tokenize(&long).unwrap().ids.dims(), &[1, MAX_TOKENS]);
    assert_eq!(m.embed(&long).unwrap()[0].len(), DIMENSION);
}

#[test]
fn a_config_this_encoder_cannot_run_is_refused_naming_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let config = r#"{"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
        "num_attention_heads": 12, "intermediate_size": 1536, "hidden_act": "relu",
        "max_position_embeddings": 512, "type_vocab_size": 2, "layer_norm_eps": 1e-12}"#;
    std::fs::write(tmp.path().join("config.json"), config).unwrap();
    // The config is read first: the other files only need to exist.
    std::fs::write(tmp.path().join("tokenizer.json"), "").unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), "").unwrap();
    let Err(err) = MiniLm::load(tmp.path(), None) else {
        panic!("loaded a relu config")
    };
    let text = err.to_string();
    assert!(text.contains("config.json"), "{text}");
    assert!(text.contains("relu"), "{text}");
}

#[test]
fn missing_model_names_the_folder_and_the_fetch_command() {
    let tmp = tempfile::tempdir().unwrap();
    let Err(err) = MiniLm::load(tmp.path(), None) else {
        panic!("loaded from an empty folder")
    };
    let text = err.to_string();
    assert!(matches!(err, EmbedError::Permanent(_)));
    assert!(text.contains(&tmp.path().display().to_string()), "{text}");
    assert!(text.contains("ingestd model fetch"), "{text}");
}

/// ~20-word rows like the ones rendered from a spreadsheet.
fn bench_rows(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            format!(
                "source: sales_{y}.xlsx, group: finance, region: {r}, product: widget model {i}, \
                 units sold: {u}, unit price: {p} euros, month: {m}, status: shipped",
                y = 2020 + i % 5,
                r = ["north", "south", "east", "west"][i % 4],
                u = i * 37 % 1000,
                p = i % 90 + 10,
                m = ["January", "February", "March", "April"][i % 4],
            )
        })
        .collect()
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Throughput figures; run with `cargo test --release --lib minilm -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: run in release with --ignored --nocapture"]
fn throughput() {
    if model().is_none() {
        return;
    }
    let rows = bench_rows(512);
    let words = rows[0].split_whitespace().count();
    let tokens = model().map(|m| m.tokenize(&rows[..1]).unwrap().ids.dims()[1]);
    println!("rows of {words} words, {tokens:?} tokens");
    for threads in [1, 2] {
        let m = MiniLm::load(&model_dir(), Some(threads)).unwrap();
        for (batch, n) in [(1, 128), (32, 512)] {
            m.embed(&rows[..batch]).unwrap(); // warm-up
            let start = Instant::now();
            for chunk in rows[..n].chunks(batch) {
                m.embed(chunk).unwrap();
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "threads {threads}, batch {batch:>2}: {:>7.1} rows/s ({n} rows in {secs:.2} s)",
                n as f64 / secs
            );
        }
    }
    println!("peak RSS of the test process: {:?} KiB", peak_rss_kib());
}
