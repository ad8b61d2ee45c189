//! One judgement round over a partition's due timers (`lua/round.lua`), and what it did.
//!
//! The rules, in the order the script applies them: the systemic hold first (an absent
//! watchdog, most running executions going stale at once, or a namespace-wide hold pause
//! every staleness rule below), then deadline (→ `timed_out`; it still applies during a
//! hold), start grace (→ retry path), heartbeat and progress (→ `stuck`), stuck threshold
//! counted from when the execution became stuck (→ retry path), cancel grace (→
//! `cancelled`). Every due entry is re-checked against its execution before it is acted
//! on; docs/watchdog.md ("The round script") states the systemic rule exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Watchdog;
use crate::error::{Error, Result};
use crate::keys::Timer;
use crate::otel;
use crate::scripts::ROUND;

/// Counts of what one round (or reconciliation) did in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoundReport {
    /// The partition.
    pub partition: u16,
    /// Deadline passed → timed_out.
    pub timed_out: u64,
    /// Running → stuck (no heartbeat, no progress, or looping).
    pub stuck: u64,
    /// Lost attempts (start grace, stuck past threshold, orphaned) sent back to the queue.
    pub retried: u64,
    /// Lost attempts with no attempts left → dead.
    pub dead: u64,
    /// Cancellations forced after the cancel grace (or lost while cancel was requested).
    pub cancelled: u64,
    /// Awaiting executions whose wait deadline passed with no resume (failed with
    /// `wait_expired`, or re-queued where their queue says so).
    #[serde(default)]
    pub wait_expired: u64,
    /// Executions orphaned by worker reconciliation (included in retried/dead/cancelled).
    pub orphaned: u64,
    /// Timer entries that turned out stale hints and were re-scored or removed.
    pub fixed: u64,
    /// Resource units freed by the sweep that ends the round (their holder attempt was
    /// over, or their ttl ended).
    #[serde(default)]
    pub resources_freed: u64,
    /// Finished executions removed by retention (a prune call reports only this).
    pub pruned: u64,
    /// A systemic hold started in this round.
    pub hold_started: bool,
    /// Staleness rules are paused for this much longer (zero when not holding).
    #[serde(with = "humantime_serde")]
    pub holding: Duration,
    /// Due timers remain beyond this round's batch: run again at once.
    #[serde(skip)]
    pub more: bool,
    /// Time until the earliest pending timer of the partition, if any.
    #[serde(skip)]
    pub next_due: Option<Duration>,
    /// Recent heartbeat verdicts of the partition (within two heartbeat timeouts, since
    /// the last namespace hold), after this round. A gauge, not summed into totals.
    #[serde(skip)]
    pub stale_in_window: u64,
    /// Running executions of the partition after this round (a gauge).
    #[serde(skip)]
    pub running: u64,
}

impl RoundReport {
    /// True when the round changed any execution or started a hold.
    pub fn acted(&self) -> bool {
        self.timed_out + self.stuck + self.retried + self.dead + self.cancelled + self.wait_expired
            > 0
            || self.hold_started
    }

    pub(crate) fn add(&mut self, other: &RoundReport) {
        self.timed_out += other.timed_out;
        self.stuck += other.stuck;
        self.retried += other.retried;
        self.dead += other.dead;
        self.cancelled += other.cancelled;
        self.wait_expired += other.wait_expired;
        self.orphaned += other.orphaned;
        self.fixed += other.fixed;
        self.pruned += other.pruned;
        self.resources_freed += other.resources_freed;
        self.hold_started |= other.hold_started;
    }
}

impl Watchdog {
    /// Runs one round over `partition`'s due timers: one script call, then the sweep of
    /// the resource units its executions hold (`resources.rs`): a unit whose attempt ended
    /// (in this round or before) is free when the round returns; then the fold of the
    /// partition's usage journals (`ledger/usage/fold.rs`). The partition's lease
    /// must be held by this replica.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when the lease is not (or no longer) this replica's; the
    /// partition is then dropped from the held set. [`Error::Redis`] on connection trouble.
    pub async fn round(&self, partition: u16) -> Result<RoundReport> {
        let epoch = self.epoch_of(partition)?;
        let k = &self.ledger.keys;
        let (maxlen, hist) = self.ledger.limits();
        let (ns_until, ns_start, ns_reason) = self.namespace_hold_args();
        let mut call = ROUND.call();
        call.key(k.lease(partition))
            .key(k.watch_state(partition))
            .key(k.events(partition));
        // Timer::ALL is the order the scripts' KEYS list the timers in.
        for timer in Timer::ALL {
            call.key(k.timer(partition, timer));
        }
        call.key(k.stale_window(partition))
            .key(k.namespace_stale_window(partition))
            .key(k.timer(partition, Timer::Wait))
            .key(k.usage_journals(partition));
        call.arg(&self.replica_id)
            .arg(&epoch)
            .arg(self.config.batch)
            .arg(maxlen)
            .arg(hist)
            .arg(&k.script_layout(partition)[..])
            .arg(self.systemic_absence.as_millis() as u64)
            .arg(self.share_per_mille())
            .arg(self.config.systemic_min_running)
            .arg(self.systemic_grace.as_millis() as u64)
            .arg(ns_until.max(0))
            .arg(ns_start.max(0))
            .arg(ns_reason)
            .arg(if self.terminate_first() { "1" } else { "0" })
            .arg(if otel::tracing_on() { "1" } else { "0" });
        let reply = call.run(&mut self.ledger.conn.clone()).await?;
        match reply.status() {
            "ok" => {
                let next = reply.i64(8)?;
                let (stale_in_window, running) = (reply.u64(11)?, reply.u64(12)?);
                self.note_counts(partition, stale_in_window, running);
                let actions = (15..reply.len()).filter_map(|i| reply.str(i).ok());
                otel::watchdog_actions(&self.replica_id, &epoch, partition, actions);
                // After the script: the attempts it ended are over when the sweep reads them.
                let resources_freed = match self.sweep_resources(partition).await {
                    Ok(n) => n,
                    Err(error) => {
                        tracing::warn!(partition, %error, "resource sweep failed");
                        0
                    }
                };
                // The usage its beats journaled, when any: sums, and window budgets judged.
                if reply.u64(14)? > 0
                    && let Err(error) = self.ledger.fold_partition_usage(partition).await
                {
                    tracing::warn!(partition, %error, "usage fold failed");
                }
                Ok(RoundReport {
                    partition,
                    resources_freed,
                    timed_out: reply.u64(1)?,
                    stuck: reply.u64(2)?,
                    retried: reply.u64(3)?,
                    dead: reply.u64(4)?,
                    cancelled: reply.u64(5)?,
                    wait_expired: reply.u64(13)?,
                    orphaned: 0,
                    pruned: 0,
                    fixed: reply.u64(6)?,
                    more: reply.flag(7)?,
                    next_due: (next >= 0).then(|| Duration::from_millis(next as u64)),
                    holding: Duration::from_millis(reply.u64(9)?),
                    hold_started: reply.flag(10)?,
                    stale_in_window,
                    running,
                })
            }
            "lease_lost" => Err(self.lost(partition, &epoch)),
            _ => Err(reply.unexpected()),
        }
    }

    pub(crate) fn epoch_of(&self, partition: u16) -> Result<String> {
        self.held_partitions()
            .get(&partition)
            .cloned()
            .ok_or(Error::LeaseLost {
                partition,
                replica: self.replica_id.clone(),
            })
    }

    /// Forgets a partition whose lease a script found not current.
    pub(crate) fn lost(&self, partition: u16, epoch: &str) -> Error {
        let mut table = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if table.get(&partition).map(String::as_str) == Some(epoch) {
            table.remove(&partition);
        }
        Error::LeaseLost {
            partition,
            replica: self.replica_id.clone(),
        }
    }
}
