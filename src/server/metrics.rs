//! Prometheus metrics: what the watchdog did (actions by reason, detection lag, false
//! alarms, holds), what the queues hold (sampled every `sample_interval`, never a scan
//! per scrape), and the HTTP requests served.
//!
//! Watchdog figures are counted from the event streams: an action by the replica that
//! took it (events name their replica), a false alarm (a `revived` event), a snooze (a
//! `snoozed` event), a wait begun or resumed (`awaiting`, `resumed`) or a queue pause or
//! resume by whichever replica holds its partition — so summing over `serve` processes
//! counts each once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::events::Event;
use crate::ledger::{Ledger, State as ExecState};
use crate::watchdog::{Health, HealthCode, Watchdog};

pub(super) type Labels = Vec<(&'static str, String)>;

fn histogram() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The registry and every metric in it.
pub(crate) struct Metrics {
    registry: Registry,
    actions: Family<Labels, Counter>,
    lag: Histogram,
    false_alarms: Counter,
    /// Snoozes (`snoozed` events): attempts that ended waiting for a given time.
    snoozes: Counter,
    holds: Counter,
    pruned: Counter,
    /// Waits begun (`awaiting`) and resumed (`resumed`), by event.
    waits: Family<Labels, Counter>,
    executions: Family<Labels, Gauge>,
    depth: Family<Labels, Gauge>,
    slots: Family<Labels, Gauge>,
    capacity: Family<Labels, Gauge>,
    /// 1 while a queue is paused, else 0 (sampled with the counts).
    paused: Family<Labels, Gauge>,
    /// Queue pauses and resumes (`change`: paused | resumed), from the event streams.
    pause_changes: Family<Labels, Counter>,
    held: Gauge,
    /// The health verdict at the last scrape: 1 healthy, 0 degraded.
    healthy: Gauge,
    /// Each reason of the verdict (`reason`: its code): 1 while it holds, else 0.
    degraded: Family<Labels, Gauge>,
    /// Workers per remediation tier (`open`: circuit open), from the registry.
    pub(super) tiers: Family<Labels, Gauge>,
    /// Worker remediation events by reason (tier changes, actions, hooks), counted from
    /// the workers' stream at each sample; the stream id counted up to.
    pub(super) worker_events: Family<Labels, Counter>,
    pub(super) worker_cursor: std::sync::Mutex<Option<String>>,
    /// Resource leases: units held by resource (sampled), acquisitions and releases by
    /// resource and how (`metrics_resources.rs`).
    pub(super) resources: super::metrics_resources::ResourceMetrics,
    requests: Family<RequestLabels, Counter>,
    /// Tokens and cost by queue and model, following the queues' totals in Redis.
    usage: super::metrics_usage::UsageMetrics,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// Route patterns as `&'static str`, interned once each, so counting a request
    /// allocates nothing (the set of patterns is the router's, fixed and small).
    routes: std::sync::RwLock<std::collections::HashMap<String, &'static str>>,
}

type RouteLabels = [(&'static str, &'static str); 2];
type RequestLabels = [(&'static str, &'static str); 3];

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("unstuck");
        let actions = Family::<Labels, Counter>::default();
        registry.register(
            "watchdog_actions",
            "Watchdog actions by the state they led to and their reason",
            actions.clone(),
        );
        let lag = histogram();
        registry.register(
            "detection_lag_seconds",
            "From the instant the triggering timer fired to the watchdog's action",
            lag.clone(),
        );
        let false_alarms = Counter::default();
        registry.register(
            "false_alarms",
            "Stuck verdicts withdrawn by a late heartbeat of the current attempt",
            false_alarms.clone(),
        );
        let snoozes = Counter::default();
        registry.register(
            "snoozes",
            "Attempts that snoozed: back in the queue until a given time, no attempt counted",
            snoozes.clone(),
        );
        let holds = Counter::default();
        registry.register(
            "systemic_holds",
            "Systemic holds begun (staleness rules paused instead of mass-failing)",
            holds.clone(),
        );
        let pruned = Counter::default();
        registry.register(
            "pruned_executions",
            "Finished executions removed by retention",
            pruned.clone(),
        );
        let waits = Family::<Labels, Counter>::default();
        registry.register(
            "waits",
            "Executions that began waiting (event=\"awaiting\") or were resumed \
             (event=\"resumed\"); expired waits are watchdog actions (reason=\"wait_expired\")",
            waits.clone(),
        );
        let executions = Family::<Labels, Gauge>::default();
        registry.register(
            "executions",
            "Executions by queue and state (active: dispatched, running or stuck; awaiting: \
             waiting for a resume)",
            executions.clone(),
        );
        let depth = Family::<Labels, Gauge>::default();
        registry.register(
            "queue_depth",
            "Executions waiting in the queue",
            depth.clone(),
        );
        let slots = Family::<Labels, Gauge>::default();
        registry.register("slots_in_use", "Capacity slots held", slots.clone());
        let capacity = Family::<Labels, Gauge>::default();
        registry.register("queue_capacity", "Capacity slots in all", capacity.clone());
        let paused = Family::<Labels, Gauge>::default();
        registry.register(
            "queue_paused",
            "1 while the queue is paused (its claims take nothing), else 0",
            paused.clone(),
        );
        let pause_changes = Family::<Labels, Counter>::default();
        registry.register(
            "queue_pause_changes",
            "Queue pauses and resumes by queue (change: paused, resumed)",
            pause_changes.clone(),
        );
        let held = Gauge::default();
        registry.register(
            "partitions_held",
            "Partitions whose watchdog lease this process holds",
            held.clone(),
        );
        let healthy = Gauge::default();
        registry.register(
            "healthy",
            "The health verdict of GET /v1/watchdog and unstuck status: 1 healthy, 0 degraded",
            healthy.clone(),
        );
        let degraded = Family::<Labels, Gauge>::default();
        registry.register(
            "health_degraded",
            "1 for each reason the verdict is degraded (reason: its code), 0 for the others",
            degraded.clone(),
        );
        let tiers = Family::<Labels, Gauge>::default();
        registry.register(
            "workers_in_tier",
            "Registered workers per remediation tier; tier=\"open\": circuit open, unstuck no longer acts on them",
            tiers.clone(),
        );
        let worker_events = Family::<Labels, Counter>::default();
        registry.register(
            "worker_remediation_events",
            "Worker remediation events by reason: tier_1..3, action_succeeded/failed, \
             hook_succeeded/failed, circuit_opened, circuit_reset, recovered",
            worker_events.clone(),
        );
        let resources = super::metrics_resources::ResourceMetrics::register(&mut registry);
        let usage = super::metrics_usage::UsageMetrics::new(&mut registry);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let latency =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route and method",
            latency.clone(),
        );
        Self {
            registry,
            actions,
            lag,
            false_alarms,
            snoozes,
            holds,
            pruned,
            waits,
            executions,
            depth,
            slots,
            capacity,
            paused,
            pause_changes,
            held,
            healthy,
            degraded,
            tiers,
            worker_events,
            worker_cursor: std::sync::Mutex::new(None),
            resources,
            requests,
            usage,
            latency,
            routes: Default::default(),
        }
    }

    fn route(&self, pattern: &str) -> &'static str {
        if let Some(r) = self
            .routes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(pattern)
        {
            return r;
        }
        let mut routes = self
            .routes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes
            .entry(pattern.to_owned())
            .or_insert_with(|| Box::leak(pattern.to_owned().into_boxed_str()))
    }

    /// Sets the health gauges to `health`: every code is exported, 0 unless it holds.
    pub(crate) fn record_health(&self, health: &Health) {
        self.healthy.set(i64::from(health.is_healthy()));
        for code in HealthCode::ALL {
            self.degraded
                .get_or_create(&vec![("reason", code.as_str().to_owned())])
                .set(i64::from(health.has(code)));
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Counts one event, if it is this process's to count.
    fn observe(&self, e: &Event, replica: Option<&Watchdog>) {
        let Some(replica) = replica else { return };
        if e.reason.starts_with("resource_") {
            if replica.held_partitions().contains_key(&e.partition) {
                self.resources.observe(e);
            }
            return;
        }
        if e.reason == "revived" || e.reason == "snoozed" {
            if replica.held_partitions().contains_key(&e.partition) {
                let counter = if e.reason == "revived" {
                    &self.false_alarms
                } else {
                    &self.snoozes
                };
                counter.inc();
            }
            return;
        }
        // Operators' (not the watchdog's) events, also counted by the partition's holder.
        let change = match e.reason.as_str() {
            "queue_paused" => Some("paused"),
            "queue_resumed" => Some("resumed"),
            _ => None,
        };
        if let Some(change) = change {
            if replica.held_partitions().contains_key(&e.partition) {
                self.pause_changes
                    .get_or_create(&vec![
                        ("queue", e.queue.clone()),
                        ("change", change.to_owned()),
                    ])
                    .inc();
            }
            return;
        }
        if e.reason == "awaiting" || e.reason == "resumed" {
            if replica.held_partitions().contains_key(&e.partition) {
                self.waits
                    .get_or_create(&vec![("event", e.reason.clone())])
                    .inc();
            }
            return;
        }
        if e.replica.as_deref() != Some(replica.replica_id()) {
            return;
        }
        if e.reason == "systemic_hold" {
            self.holds.inc();
            return;
        }
        if e.reason == "pruned" {
            // lua/prune.lua writes "removed <n> finished executions ...".
            let n = e
                .detail
                .strip_prefix("removed ")
                .and_then(|rest| rest.split(' ').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
            self.pruned.inc_by(n);
            return;
        }
        let to = e.to.map_or("none", ExecState::as_str);
        self.actions
            .get_or_create(&vec![("to", to.to_owned()), ("reason", e.reason.clone())])
            .inc();
        if let Some(due) = e.timer_due_at {
            let lag = (e.at - due).to_std().unwrap_or(Duration::ZERO);
            self.lag.observe(lag.as_secs_f64());
        }
    }

    /// Samples the queues' counts once.
    async fn sample(&self, ledger: &Ledger, replica: Option<&Watchdog>) {
        self.held
            .set(replica.map_or(0, |r| r.held_partitions().len() as i64));
        self.sample_workers(ledger).await;
        self.resources.sample(ledger).await;
        let Ok(queues) = ledger.queue_overviews().await else {
            return;
        };
        let awaiting = ledger.awaiting_counts().await.unwrap_or_default();
        let names: Vec<String> = queues.iter().map(|q| q.name.clone()).collect();
        self.usage.sample(ledger, &names).await;
        for q in queues {
            let queue = vec![("queue", q.name.clone())];
            self.depth.get_or_create(&queue).set(q.depth as i64);
            self.slots.get_or_create(&queue).set(q.active as i64);
            self.capacity.get_or_create(&queue).set(q.capacity as i64);
            self.paused.get_or_create(&queue).set(i64::from(q.paused));
            let waiting = awaiting.get(&q.name).copied().unwrap_or(0);
            let mut by_state = vec![
                ("queued", q.depth),
                ("active", q.active),
                ("awaiting", waiting),
            ];
            by_state.extend(q.finished.iter().map(|(s, n)| (s.as_str(), *n)));
            for (state, n) in by_state {
                self.executions
                    .get_or_create(&vec![
                        ("queue", q.name.clone()),
                        ("state", state.to_owned()),
                    ])
                    .set(n as i64);
            }
        }
    }
}

/// Counts events and samples queues until `stop` fires.
pub(crate) async fn run(
    metrics: Arc<Metrics>,
    ledger: Ledger,
    replica: Option<Watchdog>,
    every: Duration,
    stop: CancellationToken,
) {
    let sampler = {
        let (metrics, ledger, replica, stop) = (
            metrics.clone(),
            ledger.clone(),
            replica.clone(),
            stop.clone(),
        );
        tokio::spawn(async move {
            while !stop.is_cancelled() {
                metrics.sample(&ledger, replica.as_ref()).await;
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    };
    let observed = ledger
        .watch_events(Vec::new(), &stop, |e| metrics.observe(e, replica.as_ref()))
        .await;
    if let Err(error) = observed {
        tracing::error!(%error, "the /metrics event counters stopped");
    }
    let _ = sampler.await;
}

/// Middleware counting every request by route, method and status, with its latency.
pub(crate) async fn track(
    State(metrics): State<Arc<Metrics>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| metrics.route(p.as_str()));
    let method = method_name(request.method());
    let began = Instant::now();
    let response = next.run(request).await;
    let status = status_name(response.status());
    metrics
        .latency
        .get_or_create(&[("route", route), ("method", method)])
        .observe(began.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&[("route", route), ("method", method), ("status", status)])
        .inc();
    response
}

fn method_name(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// The status code as a label (the codes this API answers with, and a class for others).
fn status_name(s: axum::http::StatusCode) -> &'static str {
    match s.as_u16() {
        200 => "200",
        201 => "201",
        204 => "204",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        413 => "413",
        422 => "422",
        500 => "500",
        503 => "503",
        504 => "504",
        c if c < 300 => "2xx",
        c if c < 500 => "4xx",
        _ => "5xx",
    }
}
