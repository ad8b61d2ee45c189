//! The fault suite's rig: a redis-server of the test's own (so it can be killed, paused,
//! filled or wiped), live load on it — producers enqueueing, workers claiming, beating and
//! completing, a few of them hanging — and watchdog replicas; then the audit every case
//! ends with: nothing lost, no execution terminal twice, no slot leaked, every attempt
//! started by a claim, the indexes consistent; and a row of the fault table.
#![allow(dead_code)]

mod audit;
pub mod proxy;

pub use audit::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use unstuck::testkit::{RedisProcess, RedisProcessOptions};
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

/// The queues the load uses (they fall in different partitions).
pub const QUEUES: [&str; 3] = ["alpha", "beta", "gamma"];

/// Every how many executions one hangs: its worker claims it, beats once, then says
/// nothing, so the watchdog has real work during every fault.
const HANG_EVERY: u64 = 25;

/// A redis-server for one case: persistence as given, a slow log of every script over
/// 1 ms.
pub fn redis(extra: &[&str]) -> RedisProcess {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "--slowlog-log-slower-than",
            "1000",
            "--slowlog-max-len",
            "1024",
        ]
        .map(String::from),
    );
    RedisProcess::start(RedisProcessOptions {
        extra_args: args,
        ..RedisProcessOptions::default()
    })
    .expect("a redis-server for the fault case")
}

/// The ledger of a case: short timings so faults show within seconds, an event stream long
/// enough to audit every transition, Redis replies that may wait out a short outage.
pub async fn ledger(redis: &RedisProcess, name: &str) -> Ledger {
    ledger_at(redis.url(), &unstuck::testkit::namespace(name)).await
}

/// The same ledger settings for the namespace `namespace` through any address (a second
/// view of a case's namespace through a proxy in front of its Redis).
pub async fn ledger_at(url: &str, namespace: &str) -> Ledger {
    ledger_with(LedgerConfig::new(url), namespace).await
}

/// The same ledger settings on a Redis Cluster (its nodes' URLs as seeds).
pub async fn cluster_ledger(urls: Vec<String>, namespace: &str) -> Ledger {
    let config = LedgerConfig {
        cluster_urls: urls,
        ..LedgerConfig::default()
    };
    ledger_with(config, namespace).await
}

async fn ledger_with(mut config: LedgerConfig, namespace: &str) -> Ledger {
    config.namespace = namespace.to_owned();
    config.events_max_len = 1_000_000;
    config.response_timeout = Duration::from_secs(2);
    config.connection_timeout = Duration::from_secs(1);
    config.defaults.heartbeat_timeout = Some(Duration::from_secs(1));
    config.defaults.stuck_threshold = Some(Duration::from_millis(300));
    config.defaults.start_grace = Some(Duration::from_secs(2));
    config.defaults.max_attempts = Some(4);
    config.defaults.backoff_base = Some(Duration::ZERO);
    Ledger::connect(config).await.expect("the case's ledger")
}

/// A watchdog config for replicas under load: short leases and polls.
pub fn replica_config(id: &str) -> WatchdogConfig {
    WatchdogConfig {
        replica_id: Some(id.into()),
        lease_ttl: Duration::from_secs(1),
        max_poll_interval: Duration::from_millis(50),
        reconcile_interval: Duration::from_millis(200),
        systemic_grace: Some(Duration::from_secs(2)),
        systemic_absence: Some(Duration::from_millis(1500)),
        ..WatchdogConfig::default()
    }
}

/// Replicas running until stopped.
pub struct Replicas {
    pub replicas: Vec<Watchdog>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<Result<Vec<u16>>>>,
}

impl Replicas {
    pub fn start(ledger: &Ledger, ids: &[&str]) -> Self {
        let stop = CancellationToken::new();
        let mut replicas = Vec::new();
        let mut tasks = Vec::new();
        for id in ids {
            let wd = Watchdog::new(ledger.clone(), replica_config(id)).expect("config");
            let (run, token) = (wd.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                run.run(token).await.map(|()| Vec::new())
            }));
            replicas.push(wd);
        }
        Self {
            replicas,
            stop,
            tasks,
        }
    }

    pub async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// What the load did.
#[derive(Debug, Default)]
pub struct Counters {
    pub enqueued: AtomicU64,
    pub completed: AtomicU64,
    pub errors: AtomicU64,
    /// Of the errors, calls whose outcome was unknown (sent, no reply).
    pub unknown_outcomes: AtomicU64,
    /// Of the errors, ones that were not transient (a refusal: retrying would not help).
    pub refusals: AtomicU64,
    /// The first few error messages, to show they are typed and readable.
    pub samples: Mutex<Vec<String>>,
    /// Every completion Redis acknowledged: (queue, id, attempt).
    pub completions: Mutex<Vec<(String, String, u32)>>,
}

impl Counters {
    fn error(&self, e: &Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if e.is_unknown_outcome() {
            self.unknown_outcomes.fetch_add(1, Ordering::Relaxed);
        }
        if !e.is_transient() && !matches!(e, Error::InvalidTransition { .. }) {
            self.refusals.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.samples.lock().unwrap();
        if s.len() < 8 {
            s.push(e.to_string());
        }
    }
}

/// Producers and workers on [`QUEUES`] until stopped.
pub struct Load {
    pub counters: Arc<Counters>,
    /// Every enqueue Redis acknowledged, by (queue, id).
    pub acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    stop_producing: CancellationToken,
    stop_working: CancellationToken,
    producers: Vec<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    pub started: Instant,
}

impl Load {
    /// `producers` tasks enqueue about `rate` executions a second in all; `workers` tasks
    /// claim and finish them.
    pub fn start(ledger: &Ledger, producers: usize, rate: u64, workers: usize) -> Self {
        let counters = Arc::new(Counters::default());
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop_producing = CancellationToken::new();
        let stop_working = CancellationToken::new();
        let pause = Duration::from_micros(1_000_000 * producers as u64 / rate.max(1));
        let producers = (0..producers)
            .map(|p| {
                let (l, c, a, stop) = (
                    ledger.clone(),
                    counters.clone(),
                    acknowledged.clone(),
                    stop_producing.clone(),
                );
                tokio::spawn(produce(l, c, a, stop, p, pause))
            })
            .collect();
        let workers = (0..workers)
            .map(|w| {
                let (l, c, stop) = (ledger.clone(), counters.clone(), stop_working.clone());
                tokio::spawn(work(l, c, stop, w))
            })
            .collect();
        Self {
            counters,
            acknowledged,
            stop_producing,
            stop_working,
            producers,
            workers,
            started: Instant::now(),
        }
    }

    /// Stops producing, lets the workers and the watchdog finish what was enqueued (until
    /// every acknowledged execution is terminal, or `settle` has passed), then stops the
    /// workers. Returns how long the load ran.
    pub async fn finish(
        mut self,
        ledger: &Ledger,
        settle: Duration,
    ) -> (Arc<Counters>, Vec<(String, String)>) {
        self.stop_producing.cancel();
        for p in self.producers.drain(..) {
            let _ = p.await;
        }
        let ids = self.acknowledged.lock().unwrap().clone();
        let deadline = Instant::now() + settle;
        while Instant::now() < deadline {
            if open_count(ledger).await == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.stop_working.cancel();
        for w in self.workers.drain(..) {
            let _ = w.await;
        }
        (self.counters, ids)
    }
}

/// Executions not yet terminal, over [`QUEUES`] (0 when Redis cannot say).
pub async fn open_count(ledger: &Ledger) -> u64 {
    let mut open = 0;
    for q in QUEUES {
        match ledger.queue_overview(q).await {
            Ok(o) => open += o.depth + o.active,
            Err(_) => return u64::MAX,
        }
    }
    open
}

async fn produce(
    l: Ledger,
    c: Arc<Counters>,
    acknowledged: Arc<Mutex<Vec<(String, String)>>>,
    stop: CancellationToken,
    p: usize,
    pause: Duration,
) {
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let queue = QUEUES[(n as usize + p) % QUEUES.len()];
        let id = format!("p{p}-{n}");
        let hang = n.is_multiple_of(HANG_EVERY);
        // Retry the same id until Redis acknowledges it: idempotent, so an unknown outcome
        // converges (invariant: at most one execution per id).
        loop {
            let opts = EnqueueOptions::new().id(id.as_str());
            match l.enqueue(queue, &json!({"hang": hang}), opts).await {
                Ok(_) => {
                    c.enqueued.fetch_add(1, Ordering::Relaxed);
                    acknowledged
                        .lock()
                        .unwrap()
                        .push((queue.to_owned(), id.clone()));
                    break;
                }
                Err(e) => {
                    c.error(&e);
                    if stop.is_cancelled() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        tokio::time::sleep(pause).await;
    }
}

async fn work(l: Ledger, c: Arc<Counters>, stop: CancellationToken, w: usize) {
    let worker = format!("fault-worker-{w}");
    let mut turn = 0usize;
    while !stop.is_cancelled() {
        turn += 1;
        let queue = QUEUES[(turn + w) % QUEUES.len()];
        let batch = match l
            .claim_wait(queue, &worker, 1, Duration::from_millis(200))
            .await
        {
            Ok(b) => b,
            Err(e) => {
                c.error(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        for claim in batch.claims {
            let hang = claim.payload.get("hang") == Some(&json!(true)) && claim.attempt() == 1;
            if let Err(e) = l
                .heartbeat(&claim.token, Heartbeat::new().progress("working"))
                .await
            {
                c.error(&e);
                continue;
            }
            if hang {
                continue; // never heard of again: the watchdog's to find
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
            match l.complete(&claim.token, None).await {
                Ok(_) => {
                    c.completed.fetch_add(1, Ordering::Relaxed);
                    c.completions.lock().unwrap().push((
                        claim.queue().to_owned(),
                        claim.id().to_owned(),
                        claim.attempt(),
                    ));
                }
                Err(e) => c.error(&e),
            }
        }
    }
}
