//! The namespace-wide half of the systemic hold: stale counts summed over partitions.
//!
//! A partition's round script judges the share rule over its own executions (see
//! `lua/round.lua`). An outage of a worker fleet serving many queues is spread over many
//! partitions, each of which may hold fewer running executions than
//! `systemic_min_running`; so every replica also publishes what its rounds counted, and
//! one small script (`lua/systemic_sync.lua`) sums the namespace and starts a namespace
//! hold that every partition adopts in its next round. One call per replica per
//! [`SYNC_EVERY`] at most, whatever the number of partitions.

use std::collections::BTreeMap;
use std::sync::PoisonError;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Watchdog;
use crate::error::Result;
use crate::ledger::ms_to_time;
use crate::scripts::SYSTEMIC_SYNC;

/// Shortest time between two syncs of one replica. A verdict stays recent for two heartbeat
/// timeouts, so a count up to this much older changes nothing that matters.
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(50);

/// What one replica knows of the namespace-wide rule.
#[derive(Debug, Clone, Default)]
pub(crate) struct NamespaceState {
    /// Partition → (recent heartbeat verdicts, running), from its latest round.
    pub(crate) counts: BTreeMap<u16, (u64, u64)>,
    /// The namespace hold in force at the last sync: (until, start, reason), Redis ms.
    pub(crate) hold: Option<(i64, i64, String)>,
}

/// The namespace-wide systemic count, as of one sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamespaceWindow {
    /// Recent heartbeat verdicts (within two heartbeat timeouts of their execution), over
    /// every partition counted.
    pub stale: u64,
    /// Running executions plus those verdicts.
    pub population: u64,
    /// Partitions whose replica published a fresh count.
    pub partitions: u64,
    /// The namespace-wide hold in force, if any.
    pub hold: Option<NamespaceHold>,
}

/// A namespace-wide systemic hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct NamespaceHold {
    /// When it began.
    pub started_at: DateTime<Utc>,
    /// When the staleness rules resume.
    pub until: DateTime<Utc>,
    /// Why: the counts that started it.
    pub reason: String,
}

impl Watchdog {
    /// Publishes the stale counts of the partitions this replica holds, reads the
    /// namespace-wide sum, and starts a namespace hold when the share rule is met over the
    /// whole namespace. [`run`](Self::run) calls it at most every 50 ms; rounds driven by
    /// hand pass on the hold it last saw. One script call.
    ///
    /// # Errors
    /// [`Error::Redis`](crate::Error::Redis) on connection trouble; the last known state
    /// is kept.
    pub async fn sync_systemic(&self) -> Result<NamespaceWindow> {
        let held = self.held_partitions();
        let counts: Vec<(u16, (u64, u64))> = {
            let state = self
                .namespace
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            state
                .counts
                .iter()
                .filter(|(p, _)| held.contains_key(p))
                .map(|(p, c)| (*p, *c))
                .collect()
        };
        let mut call = SYSTEMIC_SYNC.key(self.ledger.keys.systemic());
        call.arg((self.config.lease_ttl * 2).as_millis() as u64)
            .arg(self.share_per_mille())
            .arg(self.config.systemic_min_running)
            .arg(self.systemic_grace.as_millis() as u64);
        for (p, (stale, running)) in &counts {
            call.arg(p).arg(format!("{stale}|{running}"));
        }
        let reply = call.run(&mut self.ledger.conn.clone()).await?;
        if reply.status() != "ok" {
            return Err(reply.unexpected());
        }
        let (until, start) = (reply.i64(4)?, reply.i64(5)?);
        let reason = reply.str(6)?.to_owned();
        let hold = (until > 0).then(|| (until, start, reason.clone()));
        self.namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hold = hold;
        Ok(NamespaceWindow {
            stale: reply.u64(1)?,
            population: reply.u64(2)?,
            partitions: reply.u64(3)?,
            hold: if until > 0 {
                Some(NamespaceHold {
                    started_at: ms_to_time(start)?,
                    until: ms_to_time(until)?,
                    reason,
                })
            } else {
                None
            },
        })
    }

    pub(crate) fn share_per_mille(&self) -> u64 {
        (self.config.systemic_share * 1000.0).round() as u64
    }

    /// Remembers what a partition's round counted, for the next sync.
    pub(crate) fn note_counts(&self, partition: u16, stale: u64, running: u64) {
        self.namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .counts
            .insert(partition, (stale, running));
    }

    /// The namespace hold to pass to a round: (until, start, reason), zeros for none.
    pub(crate) fn namespace_hold_args(&self) -> (i64, i64, String) {
        self.namespace
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .hold
            .clone()
            .unwrap_or_default()
    }
}
