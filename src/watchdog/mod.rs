//! Watchdog replicas: fenced partition leases, timer rounds, worker reconciliation,
//! retention of finished executions, worker remediation tiers.
//!
//! Any number of replicas share the partitions: each holds at most its fair share of
//! partition leases (owner + epoch), and every write it makes is a script that refuses to
//! act unless that lease is still current, so a paused or partitioned replica can do no
//! harm once its lease is gone. A replica sleeps until the earliest timer of its
//! partitions (bounded by `max_poll_interval`), so detection is prompt and an idle
//! watchdog costs a few tiny scripts per second.
//!
//! # Map
//! The rules themselves are described for operators in docs/watchdog.md.
//!
//! | module | what it holds |
//! |---|---|
//! | `lease` | partition leases: acquire, renew, release, no more than a fair share |
//! | `round` | one judgement pass over a partition's due timers (`lua/round.lua`) |
//! | `systemic` | the namespace-wide half of the systemic hold (invariant 10) |
//! | `reconcile` | executions of workers that are gone, or that a live worker no longer lists |
//! | `tiers` | worker remediation: one tier per judgement, the circuit breaker |
//! | `tier_config` | which workers are judged bad, cooldowns, the breaker's limits |
//! | `tier_action` | terminate (tier 2) and kill (tier 3) when no hook is configured |
//! | `terminate` | terminate first: a deadline on running work waits for the hook |
//! | `hook_loop` | feeding the hooks' outbox from the event streams, and delivering |
//! | `resources` | the sweep freeing resource units whose holder attempt is over |
//! | `retention` | pruning finished executions past their time to live |
//! | `status` | who holds each partition, live replicas, holds, totals |
//! | `health` | the one health verdict (healthy, or degraded with every reason) |
//! | `activity` | actions per minute and detection lag, for charts |
//! | `config` | [`WatchdogConfig`] |

mod activity;
mod config;
mod health;
mod hook_loop;
mod lease;
mod reconcile;
mod resources;
mod retention;
mod round;
mod status;
mod systemic;
mod terminate;
mod tier_action;
mod tier_config;
mod tiers;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use activity::{
    LAG_BUCKETS_MS, LagBucket, LagSummary, MAX_ACTIVITY_WINDOW, MinuteActivity, WatchdogActivity,
    activity,
};
pub use config::WatchdogConfig;
pub use health::{Health, HealthCode, HealthReason, Verdict};
pub use hook_loop::HookReport;
pub use lease::LeaseChanges;
pub use retention::PruneReport;
pub use round::RoundReport;
pub use status::{PartitionStatus, ReplicaStatus, WatchdogStatus, WatchdogTotals, health, status};
pub use systemic::{NamespaceHold, NamespaceWindow};
pub use tier_config::TierConfig;
pub use tiers::TierReport;

use crate::error::{Error, Result};
use crate::ledger::Ledger;

/// One watchdog replica. Cheap to clone; clones share the lease table and totals.
#[derive(Clone)]
pub struct Watchdog {
    pub(crate) ledger: Ledger,
    pub(crate) config: WatchdogConfig,
    pub(crate) replica_id: String,
    /// Partitions held now → the epoch they are held under.
    pub(crate) held: Arc<Mutex<BTreeMap<u16, String>>>,
    pub(crate) systemic_absence: Duration,
    pub(crate) systemic_grace: Duration,
    /// What this replica publishes and last read of the namespace-wide systemic rule.
    pub(crate) namespace: Arc<Mutex<systemic::NamespaceState>>,
    reports: broadcast::Sender<RoundReport>,
    totals: Arc<Mutex<RoundReport>>,
    /// The namespace's marker as first seen (`lua/replica_beat.lua`).
    pub(crate) marker: Arc<Mutex<Option<String>>>,
    /// Set once the marker turned out gone or changed: Redis lost the data.
    pub(crate) lost_data: Arc<std::sync::atomic::AtomicBool>,
    /// The epoch of the workers lease while this replica holds it (`tiers.rs`).
    pub(crate) workers_epoch: Arc<Mutex<Option<String>>>,
    /// Partition → (lease epoch, how far its hook feed read), `hook_loop.rs`.
    pub(crate) hook_cursors: Arc<Mutex<std::collections::HashMap<u16, (String, String)>>>,
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("replica_id", &self.replica_id)
            .field("held", &self.held_partitions())
            .finish()
    }
}

impl Watchdog {
    /// A replica over `ledger`'s namespace. Nothing is leased until [`run`](Self::run) or
    /// [`rebalance`](Self::rebalance).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the bad key.
    pub fn new(ledger: Ledger, config: WatchdogConfig) -> Result<Self> {
        config.validate()?;
        let replica_id = config.replica_id.clone().unwrap_or_else(|| {
            let reg = crate::WorkerRegistration::for_this_process("", Vec::new());
            format!("wd-{}", reg.worker_id)
        });
        let default_timeout = ledger
            .config()
            .defaults
            .heartbeat_timeout
            .unwrap_or(Duration::from_secs(30));
        let (reports, _) = broadcast::channel(1024);
        Ok(Self {
            systemic_absence: config.systemic_absence.unwrap_or(default_timeout),
            systemic_grace: config.systemic_grace.unwrap_or(default_timeout),
            namespace: Arc::default(),
            ledger,
            config,
            replica_id,
            held: Arc::default(),
            reports,
            totals: Arc::default(),
            marker: Arc::default(),
            lost_data: Arc::default(),
            workers_epoch: Arc::default(),
            hook_cursors: Arc::default(),
        })
    }

    /// This replica's id (unique per start): events of its actions name it.
    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// Reports of every round and reconciliation that acted, as they happen.
    pub fn subscribe(&self) -> broadcast::Receiver<RoundReport> {
        self.reports.subscribe()
    }

    /// Everything this replica did since it started, summed over partitions.
    pub fn totals(&self) -> RoundReport {
        self.totals
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record(&self, report: &RoundReport) {
        if report.acted() || report.fixed > 0 || report.pruned > 0 {
            self.totals
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .add(report);
        }
        if report.pruned > 0 {
            tracing::debug!(replica = %self.replica_id, partition = report.partition,
                pruned = report.pruned, "finished executions pruned");
            let _ = self.reports.send(report.clone());
        }
        if !report.acted() {
            return;
        }
        tracing::info!(
            replica = %self.replica_id,
            partition = report.partition,
            timed_out = report.timed_out,
            stuck = report.stuck,
            retried = report.retried,
            dead = report.dead,
            cancelled = report.cancelled,
            orphaned = report.orphaned,
            hold_started = report.hold_started,
            "watchdog acted"
        );
        let _ = self.reports.send(report.clone());
    }

    /// Reconciles every held partition each `reconcile_interval` until `stop` fires.
    async fn reconcile_loop(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let started = Instant::now();
            let held: Vec<u16> = self.held_partitions().into_keys().collect();
            if !held.is_empty() {
                match self.registry_view().await {
                    Ok(Some(view)) => {
                        let view = Arc::new(view);
                        for p in held {
                            let wd = self.clone();
                            let view = view.clone();
                            let pass =
                                tokio::spawn(async move { wd.reconcile_with(p, &view).await });
                            match pass.await {
                                Ok(Ok(Some(report))) => self.record(&report),
                                Ok(Ok(None)) | Ok(Err(Error::LeaseLost { .. })) => {}
                                Ok(Err(error)) => {
                                    tracing::warn!(partition = p, %error, "reconciliation failed")
                                }
                                Err(panic) => {
                                    tracing::error!(partition = p, %panic, "reconciliation panicked")
                                }
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(%error, "reconciliation skipped"),
                }
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(started + self.config.reconcile_interval) => {}
            }
        }
    }

    /// Runs the replica until `shutdown` fires, then hands its leases back.
    ///
    /// Each partition's round runs in a task of its own: an error or even a panic in one
    /// is logged and costs that partition one poll interval, never the replica.
    ///
    /// # Errors
    /// Only when releasing the leases at shutdown fails (they lapse after `lease_ttl`).
    pub async fn run(&self, shutdown: CancellationToken) -> Result<()> {
        tracing::info!(replica = %self.replica_id, "watchdog replica started");
        let renew_every = self.config.lease_ttl / 3;
        let mut next_rebalance = Instant::now();
        let mut last_sync: Option<Instant> = None;
        // Partition → when its next round is due.
        let mut wake: BTreeMap<u16, Instant> = BTreeMap::new();
        // Reconciliation reads the registry and every queue's slots: it runs on its own
        // task so a slow pass never delays rounds or lease renewal.
        let reconciler = {
            let wd = self.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move { wd.reconcile_loop(stop).await })
        };
        // Retention likewise: pruning a backlog never delays a round.
        let pruner = {
            let wd = self.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move { wd.retention_loop(stop).await })
        };
        // Hook delivery, when hooks are configured.
        let hooks = {
            let wd = self.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move { wd.hooks_loop(stop).await })
        };
        // Worker remediation, when enabled: the holder of the workers lease judges.
        let tiers = {
            let wd = self.clone();
            let stop = shutdown.child_token();
            tokio::spawn(async move { wd.tiers_loop(stop).await })
        };
        while !shutdown.is_cancelled() {
            if Instant::now() >= next_rebalance {
                self.keep_leases().await;
                next_rebalance = Instant::now() + renew_every;
            }
            if last_sync.is_none_or(|at| at.elapsed() >= systemic::SYNC_EVERY) {
                last_sync = Some(Instant::now());
                if let Err(error) = self.sync_systemic().await {
                    tracing::warn!(replica = %self.replica_id, %error, "namespace-wide systemic count failed");
                }
            }
            self.run_due_rounds(&mut wake).await;
            let until = wake
                .values()
                .copied()
                .chain([
                    next_rebalance,
                    Instant::now() + self.config.max_poll_interval,
                ])
                .min()
                .unwrap_or(next_rebalance);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(until) => {}
            }
        }
        let _ = reconciler.await;
        let _ = pruner.await;
        let _ = tiers.await;
        let _ = hooks.await;
        let released = self.release_all().await;
        tracing::info!(replica = %self.replica_id, released = ?released.as_ref().ok(), "watchdog replica stopped");
        released.map(|_| ())
    }

    /// One rebalancing pass (renew, shed, acquire), logged when leases moved; and, for the
    /// holder of partition 0, tidying the worker registry.
    async fn keep_leases(&self) {
        match self.rebalance().await {
            Ok(changes) if !changes.acquired.is_empty() || !changes.lost.is_empty() => {
                tracing::info!(
                    replica = %self.replica_id,
                    acquired = ?changes.acquired,
                    lost = ?changes.lost,
                    released = ?changes.released,
                    live_replicas = changes.live_replicas,
                    "partition leases changed"
                );
            }
            Ok(_) => {}
            Err(error @ Error::DataLost { .. }) => {
                tracing::error!(replica = %self.replica_id, %error, "refusing to act")
            }
            Err(error) => {
                tracing::warn!(replica = %self.replica_id, %error, "lease renewal failed")
            }
        }
        if self.held_partitions().contains_key(&0)
            && let Err(error) = self
                .ledger
                .prune_workers(self.config.worker_retention, 100)
                .await
        {
            tracing::warn!(%error, "pruning the worker registry failed");
        }
    }

    /// Runs the round of every held partition that is due, each on a task of its own, and
    /// sets when each is due next: at once when its batch ran out, else at its earliest
    /// timer, bounded by `max_poll_interval`.
    async fn run_due_rounds(&self, wake: &mut BTreeMap<u16, Instant>) {
        let max_poll = self.config.max_poll_interval;
        let now = Instant::now();
        let held = self.held_partitions();
        wake.retain(|p, _| held.contains_key(p));
        for p in held.keys() {
            wake.entry(*p).or_insert(now);
        }
        let due: Vec<u16> = wake
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(p, _)| *p)
            .collect();
        let rounds: Vec<_> = due
            .iter()
            .map(|p| {
                let (wd, p) = (self.clone(), *p);
                tokio::spawn(async move { wd.round(p).await })
            })
            .collect();
        for (p, task) in due.iter().zip(futures_util::future::join_all(rounds).await) {
            let next = match task {
                Ok(Ok(report)) => {
                    self.record(&report);
                    if report.more {
                        Instant::now()
                    } else {
                        Instant::now() + report.next_due.unwrap_or(max_poll).min(max_poll)
                    }
                }
                Ok(Err(Error::LeaseLost { .. })) => {
                    wake.remove(p);
                    continue;
                }
                Ok(Err(error)) => {
                    tracing::warn!(partition = p, %error, "round failed");
                    Instant::now() + max_poll
                }
                Err(panic) => {
                    tracing::error!(partition = p, %panic, "round panicked");
                    Instant::now() + max_poll
                }
            };
            wake.insert(*p, next);
        }
    }
}
