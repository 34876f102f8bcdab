//! An OpenAI-compatible embeddings server on loopback with a fixed latency per request: the
//! yardstick for the HTTP provider, and a stand-in for a model of known speed. Vectors are
//! the `hashing` provider's.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Stub {
    pub base_url: String,
    /// Texts embedded so far.
    pub texts: Arc<AtomicU64>,
}

impl Stub {
    /// Answer every request after `latency`, many at once (a thread per request).
    pub fn start(latency: Duration) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let texts = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&texts);
        std::thread::spawn(move || {
            for mut request in server.incoming_requests() {
                let counted = Arc::clone(&counted);
                std::thread::spawn(move || {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let input: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| serde_json::from_value(v["input"].clone()).ok())
                        .unwrap_or_default();
                    counted.fetch_add(input.len() as u64, Ordering::SeqCst);
                    std::thread::sleep(latency);
                    let data: Vec<serde_json::Value> = input
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            serde_json::json!({"index": i,
                                "embedding": ingestd::embed::hashing::embed_one(t)})
                        })
                        .collect();
                    let _ = request.respond(tiny_http::Response::from_string(
                        serde_json::json!({"object": "list", "data": data}).to_string(),
                    ));
                });
            }
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            texts,
        }
    }

    /// The `[embedding]` keys (after `provider`) that point a daemon here.
    pub fn embedding_toml(&self, batch_size: usize, max_in_flight: usize) -> String {
        format!(
            "batch_size = {batch_size}\n[embedding.openai]\nbase_url = \"{}\"\n\
             model = \"stub\"\napi_key_env = \"\"\ndimensions = {}\nmax_in_flight = {max_in_flight}\n",
            self.base_url,
            ingestd::embed::hashing::DIMENSION
        )
    }

    pub fn texts(&self) -> u64 {
        self.texts.load(Ordering::SeqCst)
    }
}
