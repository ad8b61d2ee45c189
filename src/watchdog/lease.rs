//! Partition leases: acquire, renew, release, and take no more than a fair share.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use super::Watchdog;
use crate::error::Result;
use crate::scripts::{LEASE, LEASE_RELEASE, REPLICA_BEAT};

/// What one rebalancing pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    pub acquired: Vec<u16>,
    pub lost: Vec<u16>,
    pub released: Vec<u16>,
    /// Live replicas seen, this one included.
    pub live_replicas: usize,
    /// Partitions this replica may hold.
    pub fair_share: usize,
}

impl Watchdog {
    /// Beats this replica's presence, renews held leases, drops leases beyond the fair
    /// share and acquires free ones up to it. Run at a third of `lease_ttl`.
    ///
    /// # Errors
    /// [`Error::Redis`](crate::Error::Redis) when Redis cannot be reached; leases then
    /// lapse on their own and every fenced write is refused.
    pub async fn rebalance(&self) -> Result<LeaseChanges> {
        let partitions = self.ledger.keys.partitions() as usize;
        // Replicas beat every third of lease_ttl: missing three beats means gone.
        let window = self.config.lease_ttl;
        let reply = REPLICA_BEAT
            .key(self.ledger.keys.replica_index())
            .arg(&self.replica_id)
            .arg(window.as_millis() as u64)
            .arg("0")
            .run(&mut self.ledger.conn.clone())
            .await?;
        let live = reply.usize(1)?.max(1);
        let rank = reply.usize(2)?;
        let share = partitions.div_ceil(live);
        let mut changes = LeaseChanges {
            live_replicas: live,
            fair_share: share,
            ..LeaseChanges::default()
        };

        // Renew what we hold; forget what was lost.
        let held: BTreeMap<u16, String> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (partition, epoch) in &held {
            match self.lease_call(*partition, Some(epoch)).await? {
                Some(new_epoch) if new_epoch == *epoch => {}
                Some(new_epoch) => {
                    // Re-acquired under a new epoch (our lease had lapsed meanwhile).
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(*partition, new_epoch);
                }
                None => {
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(partition);
                    changes.lost.push(*partition);
                }
            }
        }

        // Preferred partitions start at an offset given by rank, so replicas spread out.
        let start = rank * partitions / live;
        let order: Vec<u16> = (0..partitions)
            .map(|i| ((start + i) % partitions) as u16)
            .collect();
        let held_now = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        if held_now > share {
            let extra: Vec<(u16, String)> = {
                let table = self.held.lock().unwrap_or_else(PoisonError::into_inner);
                order
                    .iter()
                    .rev()
                    .filter_map(|p| table.get(p).map(|e| (*p, e.clone())))
                    .take(held_now - share)
                    .collect()
            };
            for (partition, epoch) in extra {
                self.release_one(partition, &epoch).await?;
                changes.released.push(partition);
            }
        } else {
            for partition in order {
                if self
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .len()
                    >= share
                {
                    break;
                }
                if self
                    .held
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .contains_key(&partition)
                {
                    continue;
                }
                if let Some(epoch) = self.lease_call(partition, None).await? {
                    self.held
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(partition, epoch);
                    changes.acquired.push(partition);
                }
            }
        }
        Ok(changes)
    }

    /// Acquire (epoch `None`) or renew; `Some(epoch)` while held by this replica.
    async fn lease_call(&self, partition: u16, epoch: Option<&String>) -> Result<Option<String>> {
        let reply = LEASE
            .key(self.ledger.keys.lease(partition))
            .key(self.ledger.keys.epoch(partition))
            .arg(&self.replica_id)
            .arg(self.config.lease_ttl.as_millis() as u64)
            .arg(epoch.map(String::as_str).unwrap_or(""))
            .run(&mut self.ledger.conn.clone())
            .await?;
        match reply.status() {
            "acquired" | "renewed" => Ok(Some(reply.str(1)?.to_owned())),
            "held" => Ok(None),
            _ => Err(reply.unexpected()),
        }
    }

    async fn release_one(&self, partition: u16, epoch: &str) -> Result<()> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&partition);
        LEASE_RELEASE
            .key(self.ledger.keys.lease(partition))
            .arg(&self.replica_id)
            .arg(epoch)
            .run(&mut self.ledger.conn.clone())
            .await?;
        Ok(())
    }

    /// Hands every held lease back and leaves the replica index (graceful shutdown), so
    /// other replicas take over at once instead of after `lease_ttl`.
    ///
    /// # Errors
    /// [`Error::Redis`](crate::Error::Redis); leases not released lapse after `lease_ttl`.
    pub async fn release_all(&self) -> Result<Vec<u16>> {
        let held: Vec<(u16, String)> = self
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(p, e)| (*p, e.clone()))
            .collect();
        let mut released = Vec::new();
        for (partition, epoch) in held {
            self.release_one(partition, &epoch).await?;
            released.push(partition);
        }
        REPLICA_BEAT
            .key(self.ledger.keys.replica_index())
            .arg(&self.replica_id)
            .arg(self.config.lease_ttl.as_millis() as u64)
            .arg("1")
            .run(&mut self.ledger.conn.clone())
            .await?;
        Ok(released)
    }

    /// Partitions this replica holds now, with their epochs.
    pub fn held_partitions(&self) -> BTreeMap<u16, String> {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}
