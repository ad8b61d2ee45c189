//! Retention: the watchdog removes finished executions past their time to live (or past
//! their queue's cap), in small fenced batches (`lua/prune.lua`), on a task of its own so a
//! large backlog of expired executions never delays a round.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{RoundReport, Watchdog};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::ledger::State;
use crate::scripts::PRUNE;

/// Prune calls per partition in one pass, at most: a backlog is worked off over passes,
/// and the other partitions get their turn in between.
const CALLS_PER_PASS: usize = 10;

/// What one prune call did in one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// The partition.
    pub partition: u16,
    /// Finished executions removed.
    pub pruned: u64,
    /// Of those, by terminal state.
    pub by_state: Vec<(State, u64)>,
    /// Pinned executions past their retention set aside (kept, listed after the others).
    pub kept: u64,
    /// The batch ran out: more may be due.
    pub more: bool,
}

impl Watchdog {
    /// Removes up to `prune_batch` finished executions of `partition` that are past their
    /// retention: one script call. The partition's lease must be held by this replica.
    ///
    /// # Errors
    /// [`Error::LeaseLost`] when the lease is not (or no longer) this replica's;
    /// [`Error::Redis`] on connection trouble.
    pub async fn prune(&self, partition: u16) -> Result<PruneReport> {
        let epoch = self.epoch_of(partition)?;
        let k = &self.ledger.keys;
        let (maxlen, _) = self.ledger.limits();
        let mut call = PRUNE.call();
        call.key(k.lease(partition))
            .key(k.events(partition))
            .key(k.watch_state(partition))
            .key(k.queues(partition));
        call.arg(&self.replica_id)
            .arg(&epoch)
            .arg(maxlen)
            .arg(self.config.prune_batch)
            .arg(&k.script_layout(partition)[..])
            .arg(Keyspace::queue_settings_suffix())
            .arg(k.retries_prefix(partition))
            .arg(&self.ledger.config().retention.to_args()[..]);
        let reply = call.run(&mut self.ledger.conn.clone()).await?;
        match reply.status() {
            "ok" => {
                let states = [
                    State::Succeeded,
                    State::Cancelled,
                    State::Failed,
                    State::Dead,
                    State::TimedOut,
                ];
                let by_state = states
                    .iter()
                    .enumerate()
                    .map(|(i, s)| Ok((*s, reply.u64(4 + i)?)))
                    .collect::<Result<Vec<_>>>()?
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .collect();
                Ok(PruneReport {
                    partition,
                    pruned: reply.u64(1)?,
                    kept: reply.u64(2)?,
                    more: reply.flag(3)?,
                    by_state,
                })
            }
            "lease_lost" => Err(self.lost(partition, &epoch)),
            _ => Err(reply.unexpected()),
        }
    }

    /// Prunes every held partition each `prune_interval` until `stop` fires.
    pub(crate) async fn retention_loop(&self, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let started = tokio::time::Instant::now();
            for p in self.held_partitions().into_keys() {
                if stop.is_cancelled() {
                    return;
                }
                self.prune_partition(p).await;
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(started + self.config.prune_interval) => {}
            }
        }
    }

    /// Up to [`CALLS_PER_PASS`] prune calls over one partition, while batches run out.
    async fn prune_partition(&self, partition: u16) {
        for _ in 0..CALLS_PER_PASS {
            match self.prune(partition).await {
                Ok(report) => {
                    if report.pruned > 0 {
                        self.record(&RoundReport {
                            partition,
                            pruned: report.pruned,
                            ..RoundReport::default()
                        });
                    }
                    if !report.more {
                        return;
                    }
                }
                Err(Error::LeaseLost { .. }) => return,
                Err(error) => {
                    tracing::warn!(partition, %error, "pruning finished executions failed");
                    return;
                }
            }
        }
    }
}

/// How often retention runs by default, and the batch of one call.
pub(crate) const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(1);
