//! An OpenAI-compatible embeddings server on loopback that the test steers: how long each
//! request takes, which requests fail and how, which are held until the test lets them go,
//! and what it saw (texts in order, when each request arrived, the most requests in flight at
//! once). Vectors are the `hashing` provider's, so search results are predictable.

use ingestd::embed::hashing;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the server does; change it while it runs.
#[derive(Default)]
pub struct Behaviour {
    /// Milliseconds each request takes.
    pub delay_ms: AtomicU64,
    /// The next N requests answer 503.
    pub fail_next: AtomicU32,
    /// Requests with a text containing this answer 500, always.
    pub fail_marker: Mutex<Option<String>>,
    /// Every request answers 500.
    pub down: AtomicBool,
    /// The request with this number (1 for the first the server saw) answers 503; 0: none.
    pub fail_request: AtomicU64,
    /// Earlier requests of each group of four take longer: request n waits an extra
    /// `stagger_ms × (3 − (n − 1) mod 4)`, so answers to requests sent together come back in
    /// reverse order.
    pub stagger_ms: AtomicU64,
    /// Requests with a text containing one of these wait (before anything else) until the
    /// test removes that marker: a job stays processing exactly as long as the test needs.
    pub hold: Mutex<Vec<String>>,
    /// Failed answers (503) carry `Retry-After: N` seconds; 0: no header.
    pub retry_after_secs: AtomicU64,
}

#[derive(Default)]
pub struct Seen {
    /// Every text embedded, in the order requests arrived.
    pub texts: Mutex<Vec<String>>,
    pub requests: AtomicU64,
    in_flight: AtomicU64,
    pub max_in_flight: AtomicU64,
    /// Request numbers in the order their answers were sent.
    pub answered: Mutex<Vec<u64>>,
    /// Every request as it arrived: when, and its texts.
    pub arrivals: Mutex<Vec<(Instant, Vec<String>)>>,
    /// Requests waiting on a hold marker now.
    pub held: AtomicU64,
}

pub struct FakeOpenAi {
    pub base_url: String,
    pub behaviour: Arc<Behaviour>,
    pub seen: Arc<Seen>,
}

impl FakeOpenAi {
    pub fn start() -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("bind the fake server");
        let port = server.server_addr().to_ip().expect("an IP address").port();
        let behaviour = Arc::new(Behaviour::default());
        let seen = Arc::new(Seen::default());
        let (b, s) = (Arc::clone(&behaviour), Arc::clone(&seen));
        // The thread and the server live until the test process ends.
        std::thread::spawn(move || {
            for request in server.incoming_requests() {
                let (b, s) = (Arc::clone(&b), Arc::clone(&s));
                std::thread::spawn(move || answer(request, &b, &s));
            }
        });
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            behaviour,
            seen,
        }
    }

    /// The `[embedding]` keys that point a daemon here.
    pub fn embedding_toml(&self, extra: &str) -> String {
        self.embedding_toml_with(extra, "")
    }

    /// As [`Self::embedding_toml`], with `openai` added to `[embedding.openai]`.
    pub fn embedding_toml_with(&self, extra: &str, openai: &str) -> String {
        format!(
            "provider = \"openai\"\nbatch_size = 8\n{extra}\n[embedding.openai]\n\
             base_url = \"{}\"\nmodel = \"fake-model\"\napi_key_env = \"\"\ndimensions = {}\n\
             timeout_secs = 10\n{openai}\n",
            self.base_url,
            hashing::DIMENSION
        )
    }

    pub fn max_in_flight(&self) -> u64 {
        self.seen.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn texts(&self) -> Vec<String> {
        self.seen.texts.lock().unwrap().clone()
    }

    /// Hold every request with a text containing `marker` until [`Self::release`].
    pub fn hold(&self, marker: &str) {
        self.behaviour.hold.lock().unwrap().push(marker.to_string());
    }

    /// Let the requests held by `marker` go, and every later one.
    pub fn release(&self, marker: &str) {
        self.behaviour.hold.lock().unwrap().retain(|m| m != marker);
    }

    /// Requests waiting on a hold marker now.
    pub fn held(&self) -> u64 {
        self.seen.held.load(Ordering::SeqCst)
    }

    /// Every request as it arrived: when, and its texts.
    pub fn arrivals(&self) -> Vec<(Instant, Vec<String>)> {
        self.seen.arrivals.lock().unwrap().clone()
    }
}

/// Wait while one of the hold markers is in `input`.
fn wait_while_held(input: &[String], b: &Behaviour, s: &Seen) {
    let held = |b: &Behaviour| {
        b.hold
            .lock()
            .unwrap()
            .iter()
            .any(|m| input.iter().any(|t| t.contains(m.as_str())))
    };
    if !held(b) {
        return;
    }
    s.held.fetch_add(1, Ordering::SeqCst);
    while held(b) {
        std::thread::sleep(Duration::from_millis(5));
    }
    s.held.fetch_sub(1, Ordering::SeqCst);
}

fn answer(mut request: tiny_http::Request, b: &Behaviour, s: &Seen) {
    let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    s.max_in_flight.fetch_max(now, Ordering::SeqCst);
    let number = s.requests.fetch_add(1, Ordering::SeqCst) + 1;
    let mut body = String::new();
    let _ = request.as_reader().read_to_string(&mut body);
    let input: Vec<String> = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("input").cloned())
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or_default();
    s.texts.lock().unwrap().extend(input.iter().cloned());
    s.arrivals
        .lock()
        .unwrap()
        .push((Instant::now(), input.clone()));
    wait_while_held(&input, b, s);
    let stagger = b.stagger_ms.load(Ordering::SeqCst) * (3 - (number - 1) % 4);
    std::thread::sleep(Duration::from_millis(
        b.delay_ms.load(Ordering::SeqCst) + stagger,
    ));
    let marked = b
        .fail_marker
        .lock()
        .unwrap()
        .as_ref()
        .is_some_and(|m| input.iter().any(|t| t.contains(m.as_str())));
    let failing = b
        .fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    let doomed = b.fail_request.load(Ordering::SeqCst) == number;
    let (status, text) = if b.down.load(Ordering::SeqCst) || marked {
        (
            500,
            r#"{"error":{"message":"the model crashed"}}"#.to_string(),
        )
    } else if failing || doomed {
        (
            503,
            r#"{"error":{"message":"overloaded, try later"}}"#.to_string(),
        )
    } else {
        let data: Vec<serde_json::Value> = input
            .iter()
            .enumerate()
            .map(|(i, t)| {
                serde_json::json!({"object": "embedding", "index": i,
                                   "embedding": hashing::embed_one(t)})
            })
            .collect();
        (
            200,
            serde_json::json!({"object": "list", "data": data, "model": "fake-model"}).to_string(),
        )
    };
    s.in_flight.fetch_sub(1, Ordering::SeqCst);
    s.answered.lock().unwrap().push(number);
    let header = tiny_http::Header::from_bytes("Content-Type", "application/json").unwrap();
    let mut response = tiny_http::Response::from_string(text)
        .with_status_code(status)
        .with_header(header);
    let retry_after = b.retry_after_secs.load(Ordering::SeqCst);
    if status == 503 && retry_after > 0 {
        response.add_header(
            tiny_http::Header::from_bytes("Retry-After", retry_after.to_string()).unwrap(),
        );
    }
    let _ = request.respond(response);
}
