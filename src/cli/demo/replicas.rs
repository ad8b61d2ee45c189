//! The demo's watchdog replicas: started in-process, each on its own connection; one is
//! killed mid-run without handing its leases back, as a crashed process would.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::WORKER_TIMEOUT;
use unstuck::Ledger;
use unstuck::LedgerConfig;
use unstuck::Result;
use unstuck::watchdog::{RoundReport, Watchdog, WatchdogConfig};

/// How long leases last; renewed at a third of it.
pub const LEASE_TTL: Duration = Duration::from_millis(1500);

/// The replicas' settings: the production defaults scaled down to the demo's seconds.
pub fn watchdog_config(replica_id: &str) -> WatchdogConfig {
    WatchdogConfig {
        replica_id: Some(replica_id.to_owned()),
        lease_ttl: LEASE_TTL,
        // Below the shortest timing in use (the 1s heartbeat timeout).
        max_poll_interval: Duration::from_millis(200),
        reconcile_interval: Duration::from_millis(250),
        worker_timeout: WORKER_TIMEOUT,
        // A killed replica's partitions stay unwatched until the survivors stop counting it
        // live (2 × lease_ttl after its last beat, 3s) and rebalance (at most a third of
        // lease_ttl later): about 3.5s. The absence threshold sits well above that, so a
        // single replica crash is handled as what it is, late detection on a few
        // partitions, not as a systemic event. Holds that still happen are reported.
        systemic_absence: Some(Duration::from_secs(6)),
        systemic_grace: Some(Duration::from_secs(2)),
        ..WatchdogConfig::default()
    }
}

/// What a replica did over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaSummary {
    pub replica_id: String,
    /// Seconds into the run at which it was killed.
    pub killed_at_secs: Option<f64>,
    pub totals: RoundReport,
}

/// The mid-run replica kill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaKill {
    pub replica_id: String,
    pub at_secs: f64,
    /// Partitions it held when killed.
    pub partitions: Vec<u16>,
    /// Of those, the partitions the demo's queues live in.
    pub busy_partitions: Vec<u16>,
    /// How long until the survivors held every partition again.
    pub takeover_after_secs: Option<f64>,
}

struct Replica {
    watchdog: Watchdog,
    task: JoinHandle<Result<()>>,
    killed_at: Option<Duration>,
}

/// Every replica of the run.
pub struct Replicas {
    members: Vec<Replica>,
    shutdown: CancellationToken,
    partitions: u16,
}

impl Replicas {
    /// Starts `n` replicas named `wd-1` … `wd-n`.
    ///
    /// # Errors
    /// Connection failures and invalid settings.
    pub async fn start(config: &LedgerConfig, n: usize) -> Result<Self> {
        let shutdown = CancellationToken::new();
        let mut members = Vec::with_capacity(n);
        for i in 1..=n {
            let ledger = Ledger::connect(config.clone()).await?;
            let watchdog = Watchdog::new(ledger, watchdog_config(&format!("wd-{i}")))?;
            let runner = watchdog.clone();
            let token = shutdown.clone();
            let task = tokio::spawn(async move { runner.run(token).await });
            members.push(Replica {
                watchdog,
                task,
                killed_at: None,
            });
        }
        Ok(Self {
            members,
            shutdown,
            partitions: config.partitions,
        })
    }

    /// Waits until every partition is held and every replica holds its share.
    pub async fn settled(&self, timeout: Duration) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < until {
            let each_holds = self
                .members
                .iter()
                .all(|r| !r.watchdog.held_partitions().is_empty());
            if each_holds && self.covered() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// True when the live replicas hold every partition between them.
    pub fn covered(&self) -> bool {
        let held: BTreeSet<u16> = self
            .members
            .iter()
            .filter(|r| r.killed_at.is_none())
            .flat_map(|r| r.watchdog.held_partitions().into_keys())
            .collect();
        held.len() == usize::from(self.partitions)
    }

    /// Kills the replica holding the most of `busy` partitions (where the demo's queues
    /// live), so the kill costs something: its task is aborted mid-flight, and its leases
    /// are not released but left to lapse.
    pub fn kill_busiest(&mut self, busy: &BTreeSet<u16>, at: Duration) -> ReplicaKill {
        let (index, _) = self
            .members
            .iter()
            .enumerate()
            .filter(|(_, r)| r.killed_at.is_none())
            .map(|(i, r)| {
                let held = r.watchdog.held_partitions();
                let busy_held = held.keys().filter(|p| busy.contains(p)).count();
                (i, (busy_held, held.len(), i))
            })
            .max_by_key(|(_, score)| *score)
            .unwrap_or((0, (0, 0, 0)));
        let replica = &mut self.members[index];
        replica.task.abort();
        replica.killed_at = Some(at);
        let partitions: Vec<u16> = replica.watchdog.held_partitions().into_keys().collect();
        ReplicaKill {
            replica_id: replica.watchdog.replica_id().to_owned(),
            at_secs: at.as_secs_f64(),
            busy_partitions: partitions
                .iter()
                .filter(|p| busy.contains(p))
                .copied()
                .collect(),
            partitions,
            takeover_after_secs: None,
        }
    }

    /// Watchdog actions on executions so far, over every replica (the killed one's too).
    pub fn actions(&self) -> u64 {
        self.members
            .iter()
            .map(|r| {
                let t = r.watchdog.totals();
                t.timed_out + t.stuck + t.retried + t.dead + t.cancelled
            })
            .sum()
    }

    /// `(live, total)` replica counts.
    pub fn live(&self) -> (usize, usize) {
        let live = self
            .members
            .iter()
            .filter(|r| r.killed_at.is_none())
            .count();
        (live, self.members.len())
    }

    /// Stops the live replicas gracefully and sums up what each did.
    pub async fn stop(self) -> Vec<ReplicaSummary> {
        self.shutdown.cancel();
        let mut summaries = Vec::with_capacity(self.members.len());
        for replica in self.members {
            if replica.killed_at.is_none()
                && let Ok(Err(error)) = replica.task.await
            {
                tracing::warn!(%error, "watchdog replica stopped with an error");
            }
            summaries.push(ReplicaSummary {
                replica_id: replica.watchdog.replica_id().to_owned(),
                killed_at_secs: replica.killed_at.map(|d| d.as_secs_f64()),
                totals: replica.watchdog.totals(),
            });
        }
        summaries
    }
}
