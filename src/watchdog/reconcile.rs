//! Worker reconciliation: executions held by a worker that is gone, or that a live worker
//! no longer lists, are orphaned and take the retry path.

use std::collections::{HashMap, HashSet};

use redis::AsyncCommands;

use super::{RoundReport, Watchdog};
use crate::error::Result;
use crate::keys::{Keyspace, Timer};
use crate::scripts::{ORPHAN, Reply};

/// Orphans sent to one script call, to keep it short.
const ORPHAN_BATCH: usize = 100;

/// `wk, att, dsp, sg` of an active execution, as stored (a damaged field must not fail the
/// whole reply, so they are parsed one by one).
type HolderRow = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

struct Orphan {
    member: String,
    worker: String,
    attempt: u32,
    detail: String,
    due_ms: i64,
}

impl Watchdog {
    /// Reconciles `partition`'s active executions against the worker registry. Returns
    /// `None` when the round was skipped: the registry could not be read, the partition
    /// is in a systemic hold, or most workers look gone at once (a registry blip is not a
    /// reason to fail work; the heartbeat rules remain the backstop).
    ///
    /// Workers that never registered are not judged here: their executions are covered by
    /// the timer rules alone.
    ///
    /// # Errors
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) when the partition is not held;
    /// [`Error::Redis`](crate::Error::Redis) on connection trouble.
    pub async fn reconcile(&self, partition: u16) -> Result<Option<RoundReport>> {
        let epoch = self.epoch_of(partition)?;
        let k = &self.ledger.keys;
        let mut conn = self.ledger.conn.clone();
        let workers = match self.ledger.workers().await {
            Ok(workers) => workers,
            Err(error) => {
                tracing::warn!(partition, %error, "worker registry unreadable; reconciliation skipped");
                return Ok(None);
            }
        };
        let (secs, micros): (i64, i64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now = secs * 1000 + micros / 1000;
        let hold_until: Option<i64> = conn.hget(k.watch_state(partition), "hold_until").await?;
        if hold_until.is_some_and(|h| h > now) {
            return Ok(None);
        }
        let timeout = self.config.worker_timeout.as_millis() as i64;
        let gone: HashSet<&str> = workers
            .iter()
            .filter(|w| w.last_seen_at.timestamp_millis() + timeout < now)
            .map(|w| w.worker_id.as_str())
            .collect();
        // "At once": only workers that went quiet within the last timeout count, so crashed
        // workers piling up in the registry over time never hold reconciliation back.
        let recent = workers
            .iter()
            .filter(|w| w.last_seen_at.timestamp_millis() + 2 * timeout >= now)
            .count();
        let gone_recently = workers
            .iter()
            .filter(|w| {
                let seen = w.last_seen_at.timestamp_millis();
                seen + timeout < now && seen + 2 * timeout >= now
            })
            .count();
        if recent >= 3 && gone_recently as f64 > self.config.systemic_share * recent as f64 {
            tracing::warn!(
                partition,
                gone = gone_recently,
                recently_alive = recent,
                "most workers look gone at once; reconciliation held back"
            );
            return Ok(None);
        }
        let by_id: HashMap<&str, &crate::WorkerInfo> =
            workers.iter().map(|w| (w.worker_id.as_str(), w)).collect();

        let queues: Vec<String> = conn.smembers(k.queues(partition)).await?;
        let mut orphans = Vec::new();
        for queue in &queues {
            let slots: HashMap<String, u32> = conn.hgetall(k.slots(queue)).await?;
            if slots.is_empty() {
                continue;
            }
            let ids: Vec<&String> = slots.keys().collect();
            let mut pipe = redis::pipe();
            for id in &ids {
                pipe.cmd("HMGET")
                    .arg(k.execution(queue, id))
                    .arg(&["wk", "att", "dsp", "sg"]);
            }
            let rows: Vec<HolderRow> = pipe.query_async(&mut conn).await?;
            for (id, (worker, attempt, dispatched, grace)) in ids.iter().zip(rows) {
                let parse = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
                let (Some(worker), Some(attempt), Some(dispatched), Some(grace)) = (
                    worker,
                    parse(attempt).and_then(|a| u32::try_from(a).ok()),
                    parse(dispatched),
                    parse(grace),
                ) else {
                    continue; // unreadable: the timer rules judge (or drop) it
                };
                let Some(info) = by_id.get(worker.as_str()) else {
                    continue;
                };
                let seen = info.last_seen_at.timestamp_millis();
                let member = Keyspace::member(queue, id);
                if gone.contains(worker.as_str()) {
                    orphans.push(Orphan {
                        detail: format!(
                            "worker {worker} gone: no registry heartbeat for {}ms \
                             (worker_timeout {timeout}ms)",
                            now - seen
                        ),
                        due_ms: seen + timeout,
                        member,
                        worker,
                        attempt,
                    });
                } else if now > dispatched + grace
                    && seen > dispatched + grace
                    && !info.running.iter().any(|(q, i)| q == queue && i == *id)
                {
                    orphans.push(Orphan {
                        detail: format!(
                            "worker {worker} is alive but no longer lists this execution \
                             (start_grace {grace}ms)"
                        ),
                        due_ms: dispatched + grace,
                        member,
                        worker,
                        attempt,
                    });
                }
            }
        }

        let mut report = RoundReport {
            partition,
            ..RoundReport::default()
        };
        let (maxlen, hist) = self.ledger.limits();
        for chunk in orphans.chunks(ORPHAN_BATCH) {
            let mut call = ORPHAN.prepare_invoke();
            call.key(k.lease(partition)).key(k.events(partition));
            for timer in [
                Timer::Deadline,
                Timer::Start,
                Timer::Heartbeat,
                Timer::Progress,
                Timer::Stuck,
                Timer::Cancel,
            ] {
                call.key(k.timer(partition, timer));
            }
            call.arg(&self.replica_id)
                .arg(&epoch)
                .arg(&maxlen)
                .arg(&hist)
                .arg(k.tag(partition));
            for o in chunk {
                call.arg(&o.member)
                    .arg(&o.worker)
                    .arg(o.attempt)
                    .arg(&o.detail)
                    .arg(o.due_ms);
            }
            let reply = Reply::parse("orphan", call.invoke_async(&mut conn).await?)?;
            match reply.status() {
                "ok" => {
                    let (retried, dead, cancelled) = (
                        reply.int(1)? as u64,
                        reply.int(2)? as u64,
                        reply.int(3)? as u64,
                    );
                    report.retried += retried;
                    report.dead += dead;
                    report.cancelled += cancelled;
                    report.orphaned += retried + dead + cancelled;
                }
                "lease_lost" => return Err(self.lost(partition, &epoch)),
                _ => return Err(reply.unexpected()),
            }
        }
        Ok(Some(report))
    }
}
