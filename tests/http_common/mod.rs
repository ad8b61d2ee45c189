//! Helpers shared by the HTTP tests: a real `unstuck serve` (the library's `Server`) on
//! port 0 in front of the test binary's redis-server, with a namespace of its own, and a
//! real HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use unstuck::server::Server;
use unstuck::settings::Settings;
use unstuck::watchdog::WatchdogConfig;
use unstuck::*;

use crate::support;

/// Tokens of every scope, as `[server] tokens` takes them.
pub const ADMIN: &str = "adm1n-secret-0001";
pub const ORCHESTRATOR: &str = "0rch-secret-0001";
pub const WORKER: &str = "w0rker-secret-0001";
pub const READ: &str = "r3ad-secret-00001";

/// A server under test.
pub struct TestServer {
    pub base: String,
    pub addr: SocketAddr,
    pub ledger: Ledger,
    pub http: reqwest::Client,
    /// The token requests carry by default (`None`: no Authorization header).
    pub token: Option<String>,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<unstuck::Result<()>>,
}

/// Settings for a test server: the test Redis, a fresh namespace, port 0, short watchdog
/// timings, and `tweak` for the rest.
pub fn settings(name: &str, tweak: impl FnOnce(&mut Settings)) -> Settings {
    let mut s = Settings {
        ledger: LedgerConfig::new(support::redis().url()),
        ..Settings::default()
    };
    s.ledger.namespace = support::namespace(name);
    s.server.listen = "127.0.0.1:0".into();
    s.server.sample_interval = Duration::from_millis(200);
    s.watchdog = WatchdogConfig {
        lease_ttl: Duration::from_millis(600),
        max_poll_interval: Duration::from_millis(20),
        reconcile_interval: Duration::from_millis(100),
        ..WatchdogConfig::default()
    };
    tweak(&mut s);
    s
}

/// Starts a server with `settings`.
pub async fn start_with(settings: Settings) -> TestServer {
    let ledger = Ledger::connect(settings.ledger.clone())
        .await
        .expect("test ledger");
    let server = Server::bind(settings.ledger, settings.server, settings.watchdog)
        .await
        .expect("the server binds");
    let addr = server.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(server.run(shutdown.clone()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(40))
        .build()
        .unwrap();
    TestServer {
        base: format!("http://{addr}"),
        addr,
        ledger,
        http,
        token: None,
        shutdown,
        task,
    }
}

/// A server with no tokens (every route open, loopback only).
pub async fn start(name: &str) -> TestServer {
    start_with(settings(name, |_| {})).await
}

/// A server with a token of every scope; requests carry the admin token by default.
pub async fn start_with_tokens(name: &str) -> TestServer {
    let mut server = start_with(settings(name, |s| {
        s.server.tokens = vec![
            format!("admin:{ADMIN}"),
            format!("orchestrator:{ORCHESTRATOR}"),
            format!("worker:{WORKER}"),
            format!("read:{READ}"),
        ];
    }))
    .await;
    server.token = Some(ADMIN.into());
    server
}

/// A reply: its status, headers and body (JSON when it parses, else the text as a string).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The problem type's slug (`/problems/<slug>`), asserting the content type.
    pub fn problem(&self) -> &str {
        let content_type = self
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert_eq!(content_type, "application/problem+json", "{self:?}");
        self.body["type"]
            .as_str()
            .and_then(|t| t.strip_prefix("/problems/"))
            .unwrap_or_else(|| panic!("no problem type: {self:?}"))
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method path` with an optional JSON body and the default token.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.call_as(self.token.as_deref(), method, path, body)
            .await
    }

    /// Sends with `token` (or none).
    pub async fn call_as(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut request = self.http.request(method, self.url(path));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        reply(request.send().await.expect("the server answers")).await
    }

    /// Sends raw bytes with a content type, for malformed requests.
    pub async fn raw(&self, method: Method, path: &str, content_type: &str, body: &[u8]) -> Reply {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("content-type", content_type)
            .body(body.to_vec());
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        reply(request.send().await.expect("the server answers")).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, None).await
    }

    /// The `/metrics` text ("" when the scrape is not text).
    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .body
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Enqueues `id` into `queue`, asserting it was created.
    pub async fn enqueue(&self, queue: &str, id: &str, extra: Value) -> Reply {
        let mut body = json!({ "id": id, "payload": { "id": id } });
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let r = self
            .post(&format!("/v1/queues/{queue}/executions"), body)
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r
    }

    /// Claims one execution of `queue` as `worker`, returning its token.
    pub async fn claim(&self, queue: &str, worker: &str) -> String {
        let r = self
            .post(
                &format!("/v1/queues/{queue}/claims"),
                json!({ "worker_id": worker }),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        r.body["claims"][0]["token"]
            .as_str()
            .expect("a token")
            .to_owned()
    }

    /// Stops the server and waits for it.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the server stops")
            .expect("the server task does not panic")
            .expect("the server stops cleanly");
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply {
        status,
        headers,
        body,
    }
}

/// Every key of `ledger`'s namespace with its `DUMP`, to show a refused request wrote
/// nothing.
pub async fn snapshot(ledger: &Ledger) -> Vec<(String, Vec<u8>)> {
    let mut conn = redis::Client::open(ledger.config().server_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let pattern = format!("{{{}:*", ledger.config().namespace);
    let mut keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(&mut conn)
        .await
        .unwrap();
    // The watchdog's own bookkeeping moves on its own; executions and queues must not.
    keys.retain(|k| {
        !k.contains(":watchdogs}")
            && !k.ends_with(":lease")
            && !k.ends_with(":watch")
            && !k.ends_with(":epoch")
            && !k.contains(":watch:stale")
    });
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let dump: Vec<u8> = redis::cmd("DUMP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        out.push((key, dump));
    }
    out
}

/// `token` with its last character changed: a token that was never issued (always
/// different from `token`, whatever its last character).
pub fn other_nonce(token: &str) -> String {
    let (head, last) = token.split_at(token.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

/// The value of the first sample of `metric` whose labels contain every one of `labels`.
pub fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| l.starts_with(metric) && !l.starts_with('#'))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
