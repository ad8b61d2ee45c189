//! The resource sweep: frees every unit of a resource lease whose holder attempt is no
//! longer current (a watchdog remediation, a crashed worker, a release that never came)
//! or whose ttl passed, for the executions of one partition, at the end of each of its
//! rounds.
//!
//! Only the replica holding the partition's lease runs its rounds, so each unit is swept
//! by one replica. Cost per round: one `ZRANGE` of the partition's holders index (empty
//! in most rounds), one pipelined `HMGET` of the holders' executions, and one fenced
//! release (plus its event) per unit freed: O(holders of the partition).

use chrono::Utc;
use redis::AsyncCommands;

use super::Watchdog;
use crate::error::Result;
use crate::ledger::State;

/// Most units of one partition the sweep looks at in one round; more wait for the next.
pub(crate) const SWEEP_BATCH: isize = 1000;

/// One entry of a partition's holders index: `<resource>|<queue>/<id>|<attempt>`.
struct Held {
    resource: String,
    queue: String,
    id: String,
    attempt: u32,
    /// Its ttl's end in Redis ms, `f64::INFINITY` for none.
    expires: f64,
}

fn parse(member: &str, expires: f64) -> Option<Held> {
    let mut parts = member.splitn(3, '|');
    let resource = parts.next()?.to_owned();
    let (queue, id) = parts.next()?.split_once('/')?;
    let attempt = parts.next()?.parse().ok()?;
    Some(Held {
        resource,
        queue: queue.to_owned(),
        id: id.to_owned(),
        attempt,
        expires,
    })
}

impl Watchdog {
    /// Sweeps the resource units held by executions of `partition`; returns how many
    /// were freed.
    ///
    /// # Errors
    /// [`Error::Redis`](crate::Error::Redis) and the like (the round itself has acted).
    pub(crate) async fn sweep_resources(&self, partition: u16) -> Result<u64> {
        let ledger = &self.ledger;
        let k = &ledger.keys;
        let mut conn = ledger.conn.clone();
        let entries: Vec<(String, f64)> = conn
            .zrange_withscores(k.resource_holders(partition), 0, SWEEP_BATCH - 1)
            .await?;
        let held: Vec<Held> = entries
            .iter()
            .filter_map(|(member, score)| parse(member, *score))
            .collect();
        if held.is_empty() {
            return Ok(0);
        }
        let mut pipe = redis::pipe();
        for h in &held {
            pipe.cmd("HMGET")
                .arg(k.execution(&h.queue, &h.id))
                .arg("st")
                .arg("att");
        }
        let now: Vec<(Option<String>, Option<u32>)> = pipe.query_async(&mut conn).await?;
        // A hint only: the release script decides expiry by Redis time.
        let local_now = Utc::now().timestamp_millis() as f64;
        let mut freed = 0;
        for (h, (state, attempt)) in held.iter().zip(now) {
            let state: Option<State> = state.and_then(|s| s.parse().ok());
            let active = matches!(
                state,
                Some(State::Dispatched | State::Running | State::Stuck)
            );
            let current = active && attempt == Some(h.attempt);
            let (units, why) = if !current {
                let why = match (state, attempt) {
                    (Some(s), Some(a)) => {
                        format!(
                            "attempt {} is over (the execution is {s} on attempt {a})",
                            h.attempt
                        )
                    }
                    _ => format!("attempt {} is over (the execution is gone)", h.attempt),
                };
                let units = ledger
                    .release_units(&h.queue, &h.id, Some(h.attempt), &h.resource)
                    .await?;
                (units, why)
            } else if h.expires <= local_now {
                let units = ledger
                    .release_units_mode(&h.queue, &h.id, Some(h.attempt), &h.resource, true)
                    .await?;
                (units, "its ttl ended".to_owned())
            } else {
                continue;
            };
            for unit in units {
                freed += 1;
                let detail = format!("{} freed by the watchdog's sweep: {why}", unit.resource);
                ledger
                    .resource_event(&h.queue, &h.id, unit.attempt, "resource_freed", &detail)
                    .await?;
            }
        }
        Ok(freed)
    }
}
