//! `unstuck serve` under load, through real HTTP: heartbeats per second (one per request,
//! and 100 per request) over 64 keep-alive
//! connections, claim + complete per second at 16 workers, the latency from an enqueue to
//! the waiting long poll answering, and the Redis CPU 1000 idle long polls cost. Redis, the
//! server and this load generator share the machine's cores.
//!
//! `cargo bench --bench http` (add `-- --seconds 10` for longer runs). Under `cargo test`
//! it runs each scenario briefly, to show it works.

mod support;

/// As the `unstuck` binary does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use unstuck::server::Server;
use unstuck::settings::Settings;
use unstuck::{AttemptToken, LedgerConfig};

struct Bench {
    base: String,
    http: reqwest::Client,
    ledger: unstuck::Ledger,
    shutdown: CancellationToken,
}

async fn serve(url: &str, label: &str) -> Bench {
    let mut settings = Settings {
        ledger: LedgerConfig::new(url),
        ..Settings::default()
    };
    settings.ledger.namespace = support::namespace(label);
    settings.server.listen = "127.0.0.1:0".into();
    // The watchdog is not what is measured here.
    settings.server.watchdog = false;
    let ledger = unstuck::Ledger::connect(settings.ledger.clone())
        .await
        .unwrap();
    let server = Server::bind(settings.ledger, settings.server, settings.watchdog)
        .await
        .expect("server binds");
    let base = format!("http://{}", server.local_addr().unwrap());
    let shutdown = CancellationToken::new();
    tokio::spawn(server.run(shutdown.clone()));
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(2048)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let settings = unstuck::QueueSettings {
        capacity: Some(10_000_000),
        ..Default::default()
    };
    for queue in [support::QUEUE, "lat", "idle"] {
        ledger.set_queue(queue, &settings).await.unwrap();
    }
    Bench {
        base,
        http,
        ledger,
        shutdown,
    }
}

impl Bench {
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("the server answers")
    }
}

/// One keep-alive HTTP/1.1 connection that sends prepared POSTs and reads each reply: a
/// load generator light enough to leave the cores to the server and Redis (a full HTTP
/// client here costs more CPU than the server it measures).
struct RawConnection {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl RawConnection {
    async fn open(addr: &str) -> Self {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        Self {
            stream,
            buffer: Vec::with_capacity(4096),
        }
    }

    /// Sends `request` (a whole HTTP request) and returns the reply's status.
    async fn send(&mut self, request: &[u8]) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        self.stream.write_all(request).await.unwrap();
        self.buffer.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                let head = std::str::from_utf8(&self.buffer[..end]).unwrap();
                let status: u16 = head[9..12].parse().unwrap();
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse().ok())?
                    })
                    .unwrap_or(0);
                while self.buffer.len() < end + 4 + length {
                    let n = self.stream.read(&mut chunk).await.unwrap();
                    assert!(n > 0, "connection closed");
                    self.buffer.extend_from_slice(&chunk[..n]);
                }
                return status;
            }
            let n = self.stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "connection closed");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn post_request(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Heartbeats through HTTP: `connections` keep-alive connections, each beating tokens
/// round robin, one request in flight per connection; `batch` beats per request (1: the
/// single route, `POST /v1/attempts/heartbeat`; more: `POST /v1/attempts/heartbeats`).
/// Returns beats per second.
async fn heartbeats(
    b: &Bench,
    tokens: &[AttemptToken],
    connections: usize,
    batch: usize,
    seconds: f64,
) -> f64 {
    let requests: Arc<Vec<Vec<u8>>> = Arc::new(match batch {
        1 => tokens
            .iter()
            .map(|t| {
                post_request(
                    "/v1/attempts/heartbeat",
                    &json!({"token": t.to_string()}).to_string(),
                )
            })
            .collect(),
        _ => tokens
            .chunks(batch)
            .map(|chunk| {
                let beats: Vec<Value> = chunk
                    .iter()
                    .map(|t| json!({"token": t.to_string()}))
                    .collect();
                post_request(
                    "/v1/attempts/heartbeats",
                    &json!({ "heartbeats": beats }).to_string(),
                )
            })
            .collect(),
    });
    let per_request = batch.min(tokens.len()) as u64;
    let addr = b.base.trim_start_matches("http://").to_owned();
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let began = Instant::now();
    let tasks: Vec<_> = (0..connections)
        .map(|c| {
            let (requests, done, addr) = (requests.clone(), done.clone(), addr.clone());
            tokio::spawn(async move {
                let mut conn = RawConnection::open(&addr).await;
                let mut i = c;
                while Instant::now() < until {
                    let status = conn.send(&requests[i % requests.len()]).await;
                    assert_eq!(status, 200);
                    i += connections;
                    done.fetch_add(per_request, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
}

/// Claim + complete through HTTP at `workers`, on a pre-filled queue.
async fn claim_complete(b: &Bench, workers: usize, seconds: f64) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let began = Instant::now();
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let (done, http, base) = (done.clone(), b.http.clone(), b.base.clone());
            tokio::spawn(async move {
                let claim_url = format!("{base}/v1/queues/{}/claims", support::QUEUE);
                let complete_url = format!("{base}/v1/attempts/complete");
                while Instant::now() < until {
                    let r = http
                        .post(&claim_url)
                        .json(&json!({"worker_id": format!("w{w}")}))
                        .send()
                        .await
                        .unwrap();
                    if r.status() == reqwest::StatusCode::NO_CONTENT {
                        break;
                    }
                    let body: Value = r.json().await.unwrap();
                    let token = body["claims"][0]["token"].as_str().unwrap().to_owned();
                    let r = http
                        .post(&complete_url)
                        .json(&json!({"token": token}))
                        .send()
                        .await
                        .unwrap();
                    assert!(r.status().is_success());
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / began.elapsed().as_secs_f64()
}

/// Milliseconds from an HTTP enqueue to the waiting long poll's answer, `samples` times.
async fn poll_latency(b: &Bench, samples: usize) -> Vec<f64> {
    let mut lags = Vec::with_capacity(samples);
    for i in 0..samples {
        let waiter = {
            let (http, url) = (b.http.clone(), format!("{}/v1/queues/lat/claims", b.base));
            tokio::spawn(async move {
                let r = http
                    .post(url)
                    .json(&json!({"worker_id": "lat", "wait_ms": 10_000}))
                    .send()
                    .await
                    .unwrap();
                let at = Instant::now();
                (r.status(), at)
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await; // the poll is waiting now
        let sent = Instant::now();
        let r = b
            .post("/v1/queues/lat/executions", &json!({"id": format!("l{i}")}))
            .await;
        assert!(r.status().is_success());
        let (status, answered) = waiter.await.unwrap();
        assert_eq!(status, reqwest::StatusCode::OK);
        lags.push(answered.duration_since(sent).as_secs_f64() * 1000.0);
    }
    lags.sort_by(f64::total_cmp);
    lags
}

/// Redis CPU (share of one core) while `waiters` long polls wait on an empty queue.
async fn idle_polls(
    b: &Bench,
    admin: &mut redis::aio::MultiplexedConnection,
    waiters: usize,
    seconds: f64,
) -> f64 {
    let tasks: Vec<_> = (0..waiters)
        .map(|i| {
            let (http, url) = (b.http.clone(), format!("{}/v1/queues/idle/claims", b.base));
            tokio::spawn(async move {
                http.post(url)
                    .json(&json!({"worker_id": format!("i{i}"), "wait_ms": 30_000}))
                    .send()
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await; // every poll claimed once and waits
    let before = support::redis_cpu(admin).await;
    let began = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    let share =
        (support::redis_cpu(admin).await - before).as_secs_f64() / began.elapsed().as_secs_f64();
    let waiting = tasks.iter().filter(|t| !t.is_finished()).count();
    assert_eq!(waiting, waiters, "every poll still waits");
    for t in tasks {
        t.abort();
    }
    share
}

fn pct(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; under `cargo test` each scenario runs briefly.
    let quick = !args.iter().any(|a| a == "--bench");
    let seconds: f64 = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if quick { 0.3 } else { 5.0 });
    let redis = support::start_redis();
    let mut admin = support::admin(redis.url()).await;
    println!(
        "unstuck serve HTTP bench: nproc {}, {seconds}s per scenario",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let b = serve(redis.url(), "http_beat").await;
    let running = if quick { 200 } else { 10_000 };
    let tokens = support::running_executions(&b.ledger, running).await;
    support::wait_for_quiet(Duration::from_secs(20)).await;
    for batch in [1, 100] {
        let cpu = support::redis_cpu(&mut admin).await;
        let rate = heartbeats(&b, &tokens, 64, batch, seconds).await;
        let redis_share = (support::redis_cpu(&mut admin).await - cpu).as_secs_f64() / seconds;
        println!(
            "heartbeats/s through HTTP, 64 keep-alive connections, {running} running, {batch} per request: {rate:.0} (Redis {:.0}% of a core)",
            redis_share * 100.0
        );
    }
    b.shutdown.cancel();

    let b = serve(redis.url(), "http_drain").await;
    let backlog = if quick { 500 } else { 200_000 };
    support::enqueue_many(&b.ledger, backlog, 64).await;
    support::wait_for_quiet(Duration::from_secs(20)).await;
    let rate = claim_complete(&b, 16, seconds).await;
    println!("claim + complete/s through HTTP, 16 workers: {rate:.0}");
    b.shutdown.cancel();

    let b = serve(redis.url(), "http_poll").await;
    let samples = if quick { 10 } else { 300 };
    let lags = poll_latency(&b, samples).await;
    println!(
        "enqueue -> waiting long poll answered, {samples} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(&lags, 0.5),
        pct(&lags, 0.99),
        lags[lags.len() - 1]
    );
    let waiters = if quick { 50 } else { 1000 };
    let share = idle_polls(&b, &mut admin, waiters, seconds.max(1.0) * 2.0).await;
    println!(
        "Redis CPU with {waiters} idle long polls: {:.2}% of a core",
        share * 100.0
    );
    b.shutdown.cancel();
}
