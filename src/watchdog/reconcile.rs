//! Worker reconciliation: executions held by a worker that is gone, or that a live worker
//! no longer lists, are orphaned and take the retry path.
//!
//! Cost: one `HGETALL` of each queue's slots per pass (a slot's holder names its attempt and
//! worker), plus one `HMGET` per execution a live worker does not list — not one read per
//! execution in flight. A pass with no registered worker reads nothing else.

use std::collections::{HashMap, HashSet};

use redis::AsyncCommands;

use super::{RoundReport, Watchdog};
use crate::WorkerInfo;
use crate::error::Result;
use crate::fields;
use crate::keys::{Keyspace, Timer};
use crate::otel;
use crate::scripts::ORPHAN;
use crate::timings::stored_field;

/// Orphans sent to one script call, to keep it short.
const ORPHAN_BATCH: usize = 100;

struct Orphan {
    member: String,
    worker: String,
    attempt: u32,
    detail: String,
    due_ms: i64,
    /// For a gone worker: skip the execution if it heartbeated within this many ms (the
    /// worker is evidently alive); 0 for an unlisted execution.
    alive_within_ms: i64,
}

/// The worker registry as one reconciliation pass sees it.
pub(crate) struct RegistryView {
    workers: Vec<WorkerInfo>,
    /// Redis time of the reading, in ms.
    now: i64,
}

impl Watchdog {
    /// Reads the worker registry and the Redis clock once for a reconciliation pass.
    /// `None` when the registry cannot be read: the pass is skipped, never guessed.
    pub(crate) async fn registry_view(&self) -> Result<Option<RegistryView>> {
        let workers = match self.ledger.workers().await {
            Ok(workers) => workers,
            Err(error) => {
                tracing::warn!(%error, "worker registry unreadable; reconciliation skipped");
                return Ok(None);
            }
        };
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.ledger.conn.clone())
            .await?;
        Ok(Some(RegistryView {
            workers,
            now: secs * 1000 + micros / 1000,
        }))
    }

    /// Reconciles `partition`'s active executions against the worker registry. Returns
    /// `None` when the pass was skipped: the registry could not be read, the partition
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
        self.epoch_of(partition)?;
        match self.registry_view().await? {
            Some(view) => self.reconcile_with(partition, &view).await,
            None => Ok(None),
        }
    }

    /// One pass over `partition`: is the registry to be trusted now, which executions
    /// are orphans, then one fenced script per [`ORPHAN_BATCH`] of them.
    pub(crate) async fn reconcile_with(
        &self,
        partition: u16,
        view: &RegistryView,
    ) -> Result<Option<RoundReport>> {
        let epoch = self.epoch_of(partition)?;
        let Some(judge) = self.judgement(partition, view).await? else {
            return Ok(None);
        };
        let mut orphans = Vec::new();
        if !view.workers.is_empty() {
            let queues: Vec<String> = self
                .ledger
                .conn
                .clone()
                .smembers(self.ledger.keys.queues(partition))
                .await?;
            for queue in &queues {
                orphans.extend(self.orphans_of(queue, &judge).await?);
            }
        }
        self.orphan(partition, &epoch, &orphans).await.map(Some)
    }

    /// How workers are judged in this pass, or `None` when the pass must not judge: the
    /// partition is in a systemic hold, or most workers look gone at once.
    async fn judgement<'v>(
        &self,
        partition: u16,
        view: &'v RegistryView,
    ) -> Result<Option<Judgement<'v>>> {
        let now = view.now;
        let hold_until: Option<i64> = self
            .ledger
            .conn
            .clone()
            .hget(self.ledger.keys.watch_state(partition), "hold_until")
            .await?;
        if hold_until.is_some_and(|h| h > now) {
            return Ok(None);
        }
        let worker_timeout = self.config.worker_timeout;
        // A worker's own timeout: worker_timeout, or three of the registry intervals it
        // declared when that is longer.
        let timeout_of = |w: &WorkerInfo| w.gone_after(worker_timeout).as_millis() as i64;
        let workers = &view.workers;
        let gone: HashSet<&str> = workers
            .iter()
            .filter(|w| w.last_seen_at.timestamp_millis() + timeout_of(w) < now)
            .map(|w| w.worker_id.as_str())
            .collect();
        if let Some((gone_recently, recent)) = self.most_gone_at_once(workers, now) {
            tracing::warn!(
                partition,
                gone = gone_recently,
                recently_alive = recent,
                "most workers look gone at once; reconciliation held back"
            );
            return Ok(None);
        }
        Ok(Some(Judgement {
            now,
            worker_timeout,
            by_id: workers.iter().map(|w| (w.worker_id.as_str(), w)).collect(),
            gone,
        }))
    }

    /// The orphans among `queue`'s slot holders: held by a gone worker, or not listed by
    /// their live worker past the start grace.
    async fn orphans_of(&self, queue: &str, judge: &Judgement<'_>) -> Result<Vec<Orphan>> {
        let k = &self.ledger.keys;
        let slots: HashMap<String, String> =
            self.ledger.conn.clone().hgetall(k.slots(queue)).await?;
        let mut orphans = Vec::new();
        // Executions a live worker does not list: judged once their start grace is known
        // to have passed.
        let mut unlisted: Vec<(String, String, u32)> = Vec::new();
        for (id, holder) in slots {
            let Some((attempt, worker)) = holder
                .split_once(':')
                .and_then(|(a, w)| Some((a.parse::<u32>().ok()?, w.to_owned())))
            else {
                continue; // unreadable holder: the timer rules judge the execution
            };
            let Some(info) = judge.by_id.get(worker.as_str()) else {
                continue; // never registered (or pruned): timer rules only
            };
            if judge.gone.contains(worker.as_str()) {
                let seen = info.last_seen_at.timestamp_millis();
                let timeout = info.gone_after(judge.worker_timeout).as_millis() as i64;
                orphans.push(Orphan {
                    detail: format!(
                        "worker {worker} gone: no registry heartbeat for {}ms (judged gone \
                         after {timeout}ms) and none for this execution either",
                        judge.now - seen
                    ),
                    due_ms: seen + timeout,
                    member: Keyspace::member(queue, &id),
                    worker,
                    attempt,
                    alive_within_ms: timeout,
                });
            } else if !info.running.iter().any(|(q, i)| q == queue && *i == id) {
                unlisted.push((id, worker, attempt));
            }
        }
        if !unlisted.is_empty() {
            orphans.extend(self.unlisted_past_grace(queue, unlisted, judge).await?);
        }
        Ok(orphans)
    }

    /// Of the executions live workers do not list, those whose start grace has passed
    /// and whose worker reported since: one pipelined read of their dispatch times.
    async fn unlisted_past_grace(
        &self,
        queue: &str,
        unlisted: Vec<(String, String, u32)>,
        judge: &Judgement<'_>,
    ) -> Result<Vec<Orphan>> {
        let k = &self.ledger.keys;
        let mut pipe = redis::pipe();
        for (id, _, _) in &unlisted {
            pipe.cmd("HMGET")
                .arg(k.execution(queue, id))
                .arg(&[fields::DISPATCHED, stored_field::start_grace]);
        }
        let rows: Vec<(Option<String>, Option<String>)> =
            pipe.query_async(&mut self.ledger.conn.clone()).await?;
        let mut orphans = Vec::new();
        for ((id, worker, attempt), (dispatched, grace)) in unlisted.into_iter().zip(rows) {
            let parse = |v: Option<String>| v.and_then(|v| v.parse::<i64>().ok());
            let (Some(dispatched), Some(grace)) = (parse(dispatched), parse(grace)) else {
                continue; // unreadable: the timer rules judge (or drop) it
            };
            let seen = judge
                .by_id
                .get(worker.as_str())
                .map_or(0, |w| w.last_seen_at.timestamp_millis());
            // The worker had the whole start grace to list it, and reported since.
            if judge.now > dispatched + grace && seen > dispatched + grace {
                orphans.push(Orphan {
                    detail: format!(
                        "worker {worker} is alive but no longer lists this execution \
                         (start_grace {grace}ms)"
                    ),
                    due_ms: dispatched + grace,
                    member: Keyspace::member(queue, &id),
                    worker,
                    attempt,
                    alive_within_ms: 0,
                });
            }
        }
        Ok(orphans)
    }

    /// Sends the orphans to the retry path, [`ORPHAN_BATCH`] per fenced script call.
    async fn orphan(&self, partition: u16, epoch: &str, orphans: &[Orphan]) -> Result<RoundReport> {
        let k = &self.ledger.keys;
        let (maxlen, hist) = self.ledger.limits();
        let mut report = RoundReport {
            partition,
            ..RoundReport::default()
        };
        for chunk in orphans.chunks(ORPHAN_BATCH) {
            let mut call = ORPHAN.call();
            call.key(k.lease(partition)).key(k.events(partition));
            // Timer::ALL is the order the scripts' KEYS list the timers in.
            for timer in Timer::ALL {
                call.key(k.timer(partition, timer));
            }
            call.key(k.watch_state(partition));
            call.arg(&self.replica_id)
                .arg(epoch)
                .arg(maxlen)
                .arg(hist)
                .arg(&k.script_layout(partition)[..])
                .arg(if otel::tracing_on() { "1" } else { "0" });
            for o in chunk {
                call.arg(&o.member)
                    .arg(&o.worker)
                    .arg(o.attempt)
                    .arg(&o.detail)
                    .arg(o.due_ms)
                    .arg(o.alive_within_ms);
            }
            let reply = call.run(&mut self.ledger.conn.clone()).await?;
            match reply.status() {
                "ok" => {
                    let (retried, dead, cancelled) = (reply.u64(1)?, reply.u64(2)?, reply.u64(3)?);
                    report.retried += retried;
                    report.dead += dead;
                    report.cancelled += cancelled;
                    report.orphaned += retried + dead + cancelled;
                    let actions = (5..reply.len()).filter_map(|i| reply.str(i).ok());
                    otel::watchdog_actions(&self.replica_id, epoch, partition, actions);
                }
                "lease_lost" => return Err(self.lost(partition, epoch)),
                _ => return Err(reply.unexpected()),
            }
        }
        Ok(report)
    }
}

impl Watchdog {
    /// `Some((gone recently, recently alive))` when most of the workers alive recently went
    /// quiet at once: a registry blip (Redis unreachable, a paused watchdog, a partition
    /// cutting the fleet off), not a reason to take work away or to act on workers.
    /// "At once": only workers that went quiet within the last timeout count, so crashed
    /// workers piling up in the registry over time never hold anything back.
    pub(crate) fn most_gone_at_once(
        &self,
        workers: &[WorkerInfo],
        now: i64,
    ) -> Option<(usize, usize)> {
        let timeout_of =
            |w: &WorkerInfo| w.gone_after(self.config.worker_timeout).as_millis() as i64;
        let recent = workers
            .iter()
            .filter(|w| w.last_seen_at.timestamp_millis() + 2 * timeout_of(w) >= now)
            .count();
        let gone_recently = workers
            .iter()
            .filter(|w| {
                let (seen, timeout) = (w.last_seen_at.timestamp_millis(), timeout_of(w));
                seen + timeout < now && seen + 2 * timeout >= now
            })
            .count();
        (recent >= 3 && gone_recently as f64 > self.config.systemic_share * recent as f64)
            .then_some((gone_recently, recent))
    }
}

/// How one reconciliation pass judges workers.
struct Judgement<'v> {
    /// Redis time of the registry reading, in ms.
    now: i64,
    worker_timeout: std::time::Duration,
    by_id: HashMap<&'v str, &'v WorkerInfo>,
    gone: HashSet<&'v str>,
}
