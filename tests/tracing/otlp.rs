//! A local OTLP/HTTP receiver: accepts `POST /v1/traces` (http/json), keeps the spans.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One span as received.
#[derive(Debug, Clone)]
pub struct Span {
    pub service: String,
    pub name: String,
    /// 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i64,
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: HashMap<String, String>,
    /// `(trace id, span id)` of each link.
    pub links: Vec<(String, String)>,
}

impl Span {
    pub fn attr(&self, key: &str) -> &str {
        self.attributes.get(key).map(String::as_str).unwrap_or("")
    }
}

pub struct Receiver {
    /// The base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    /// Requests that were not `POST /v1/traces` with JSON, by their first line.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::on("127.0.0.1:0").await.expect("a port")
    }

    pub async fn on(addr: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let spans = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let (keep, bad) = (spans.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (keep, bad) = (keep.clone(), bad.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, keep, bad).await;
                });
            }
        });
        Ok(Self {
            url,
            spans,
            refused,
        })
    }

    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Waits until `ready` holds for the spans received, then returns them.
    pub async fn wait_for(&self, what: &str, ready: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if ready(&spans) {
                return spans;
            }
            if tokio::time::Instant::now() > deadline {
                let names: Vec<_> = spans.iter().map(|s| (&s.service, &s.name)).collect();
                panic!("no {what} within 30s; received: {names:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Serves one connection's requests (keep-alive) until it closes.
async fn serve(
    stream: tokio::net::TcpStream,
    spans: Arc<Mutex<Vec<Span>>>,
    refused: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut first = String::new();
        if stream.read_line(&mut first).await? == 0 {
            return Ok(());
        }
        let (mut length, mut json) = (0usize, false);
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).await?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "content-type" => json = value.contains("application/json"),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        if first.starts_with("POST /v1/traces ") && json {
            let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            spans.lock().unwrap().extend(parse(&request));
        } else {
            refused.lock().unwrap().push(first.trim_end().to_owned());
        }
        let reply =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        stream.get_mut().write_all(reply.as_bytes()).await?;
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The spans of an ExportTraceServiceRequest in OTLP JSON.
fn parse(request: &Value) -> Vec<Span> {
    let list = |v: &Value, key: &str| v[key].as_array().cloned().unwrap_or_default();
    let mut out = Vec::new();
    for rs in list(request, "resourceSpans") {
        let service = list(&rs["resource"], "attributes")
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| text(&a["value"]["stringValue"]))
            .unwrap_or_default();
        for ss in list(&rs, "scopeSpans") {
            for s in list(&ss, "spans") {
                let attributes = list(&s, "attributes")
                    .iter()
                    .map(|a| {
                        let value = a["value"]
                            .as_object()
                            .and_then(|o| o.values().next())
                            .map(text)
                            .unwrap_or_default();
                        (text(&a["key"]), value)
                    })
                    .collect();
                let links = list(&s, "links")
                    .iter()
                    .map(|l| (text(&l["traceId"]), text(&l["spanId"])))
                    .collect();
                out.push(Span {
                    service: service.clone(),
                    name: text(&s["name"]),
                    kind: s["kind"].as_i64().unwrap_or(-1),
                    trace_id: text(&s["traceId"]),
                    span_id: text(&s["spanId"]),
                    parent_span_id: text(&s["parentSpanId"]),
                    attributes,
                    links,
                });
            }
        }
    }
    out
}
