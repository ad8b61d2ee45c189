//! Partition leases: acquire, renew, release, and take no more than a fair share.

use std::collections::BTreeMap;
use std::sync::PoisonError;

use super::Watchdog;
use crate::error::{Error, Result};
use crate::scripts::{LEASE, LEASE_RELEASE, REPLICA_BEAT};

/// What one rebalancing pass changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseChanges {
    /// Partitions acquired in this pass.
    pub acquired: Vec<u16>,
    /// Partitions whose lease turned out lost (lapsed, or taken over).
    pub lost: Vec<u16>,
    /// Partitions handed back to stay within the fair share.
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
    /// [`Error::Redis`] when Redis cannot be reached; leases then
    /// lapse on their own and every fenced write is refused.
    pub async fn rebalance(&self) -> Result<LeaseChanges> {
        let partitions = self.ledger.keys.partitions() as usize;
        let reply = self.beat_presence(false).await?;
        let live = reply.usize(1)?.max(1);
        let rank = reply.usize(2)?;
        let share = partitions.div_ceil(live);
        let mut changes = LeaseChanges {
            live_replicas: live,
            fair_share: share,
            ..LeaseChanges::default()
        };
        self.renew_held(&mut changes).await?;
        // Preferred partitions start at an offset given by rank, so replicas spread out.
        let start = rank * partitions / live;
        let order: Vec<u16> = (0..partitions)
            .map(|i| ((start + i) % partitions) as u16)
            .collect();
        if self.held_count() > share {
            self.shed_beyond(share, &order, &mut changes).await?;
        } else {
            self.acquire_up_to(share, &order, &mut changes).await?;
        }
        Ok(changes)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, String>> {
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn held_count(&self) -> usize {
        self.table().len()
    }

    /// Renews every held lease; forgets (and reports) those that were lost.
    async fn renew_held(&self, changes: &mut LeaseChanges) -> Result<()> {
        let held = self.held_partitions();
        for (partition, epoch) in &held {
            match self.lease_call(*partition, Some(epoch)).await? {
                Some(new_epoch) if new_epoch == *epoch => {}
                // Re-acquired under a new epoch (our lease had lapsed meanwhile).
                Some(new_epoch) => {
                    self.table().insert(*partition, new_epoch);
                }
                None => {
                    self.table().remove(partition);
                    changes.lost.push(*partition);
                }
            }
        }
        Ok(())
    }

    /// Hands back the leases beyond `share`, least preferred first.
    async fn shed_beyond(
        &self,
        share: usize,
        order: &[u16],
        changes: &mut LeaseChanges,
    ) -> Result<()> {
        let extra: Vec<(u16, String)> = {
            let table = self.table();
            let excess = table.len().saturating_sub(share);
            order
                .iter()
                .rev()
                .filter_map(|p| table.get(p).map(|e| (*p, e.clone())))
                .take(excess)
                .collect()
        };
        for (partition, epoch) in extra {
            self.release_one(partition, &epoch).await?;
            changes.released.push(partition);
        }
        Ok(())
    }

    /// Takes free partitions, most preferred first, until this replica holds `share`.
    async fn acquire_up_to(
        &self,
        share: usize,
        order: &[u16],
        changes: &mut LeaseChanges,
    ) -> Result<()> {
        for partition in order {
            if self.held_count() >= share {
                break;
            }
            if self.table().contains_key(partition) {
                continue;
            }
            if let Some(epoch) = self.lease_call(*partition, None).await? {
                self.table().insert(*partition, epoch);
                changes.acquired.push(*partition);
            }
        }
        Ok(())
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
        self.table().remove(&partition);
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
    /// [`Error::Redis`]; leases not released lapse after `lease_ttl`.
    pub async fn release_all(&self) -> Result<Vec<u16>> {
        let mut released = Vec::new();
        for (partition, epoch) in self.held_partitions() {
            self.release_one(partition, &epoch).await?;
            released.push(partition);
        }
        self.beat_presence(true).await?;
        Ok(released)
    }

    /// Says in the replica index that this replica is alive (or, `leaving`, that it is
    /// gone); the reply counts the live replicas and gives this one's rank. Replicas beat
    /// every third of lease_ttl: missing three beats means gone.
    ///
    /// The same script checks the namespace's marker: when the one this replica remembers
    /// is gone or changed, Redis lost the namespace's data, and from then on this replica
    /// holds nothing and refuses to act ([`Error::DataLost`]) until it is restarted; it
    /// still beats, so the script keeps it in the data-lost index the health verdict reads.
    async fn beat_presence(&self, leaving: bool) -> Result<crate::scripts::Reply> {
        let remembered = self
            .marker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let fresh = uuid::Uuid::now_v7().simple().to_string();
        let reply = REPLICA_BEAT
            .key(self.ledger.keys.replica_index())
            .key(self.ledger.keys.incarnation())
            .key(self.ledger.keys.data_lost_index())
            .arg(&self.replica_id)
            .arg(self.config.lease_ttl.as_millis() as u64)
            .arg(if leaving { "1" } else { "0" })
            .arg(remembered.as_deref().unwrap_or(""))
            .arg(&fresh)
            .run(&mut self.ledger.conn.clone())
            .await?;
        match reply.status() {
            "ok" => {
                let marker = reply.str(3)?.to_owned();
                *self.marker.lock().unwrap_or_else(PoisonError::into_inner) = Some(marker);
                Ok(reply)
            }
            "data_lost" => {
                let first = !self
                    .lost_data
                    .swap(true, std::sync::atomic::Ordering::SeqCst);
                // Nothing is held any more: the leases went with the data.
                self.table().clear();
                let error = self.data_lost_error();
                if first {
                    tracing::error!(replica = %self.replica_id, %error, "Redis lost its data");
                }
                Err(error)
            }
            _ => Err(reply.unexpected()),
        }
    }

    /// True once this replica found that Redis lost the namespace's data; it then holds
    /// no lease and acts on nothing until it is restarted.
    pub fn data_lost(&self) -> bool {
        self.lost_data.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub(super) fn data_lost_error(&self) -> Error {
        Error::DataLost {
            namespace: self.ledger.keys.namespace().to_owned(),
        }
    }

    /// Partitions this replica holds now, with their epochs.
    pub fn held_partitions(&self) -> BTreeMap<u16, String> {
        self.table().clone()
    }
}
