//! Worker remediation: workers that are stale, outdated or wedged go up one tier per
//! judgement — asked to restart, terminated, killed and restarted — with a cooldown per
//! tier, until a circuit breaker stops the watchdog acting on them.
//!
//! One replica judges at a time: the holder of the workers lease (a lease in the workers'
//! hash tag, from the same script as the partition leases), and every tier change is a
//! script fenced by that lease (`lua/worker_escalate.lua`, `worker_recover.lua`), so a
//! replica restarted, or paused past its lease, resumes from what Redis holds. The
//! terminate and kill actions run beside the judgement (`tier_action.rs`) and report to
//! `lua/worker_outcome.lua`. Reclaiming a stale worker's executions is reconciliation's
//! job (`reconcile.rs`) and never touches the tier state or the breaker.
//!
//! Cost per pass: the registry (one `HGETALL` per worker), each queue's slots, and one
//! pipelined `HGET` of the state of each execution held — only while some worker is
//! judged, every `tiers.interval`.

use std::collections::HashMap;
use std::sync::PoisonError;

use tokio_util::sync::CancellationToken;

use super::Watchdog;
use crate::WorkerInfo;
use crate::error::Result;
use crate::hooks;
use crate::ledger::WorkerRequest;
use crate::scripts::{LEASE, LEASE_RELEASE, WORKER_ESCALATE, WORKER_RECOVER};

/// What one judgement of the workers did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierReport {
    /// False when another replica holds the workers lease (nothing was judged).
    pub judged: bool,
    /// Workers that went up a tier: (worker, tier reached).
    pub escalated: Vec<(String, u8)>,
    /// Workers whose circuit opened in this pass.
    pub opened: Vec<String>,
    /// Workers back to tier 0.
    pub recovered: Vec<String>,
    /// Terminate or kill actions started: (worker, tier).
    pub actions: Vec<(String, u8)>,
    /// The workers lease turned out lost mid-pass: the pass stopped there.
    pub lease_lost: bool,
}

/// Why a worker is judged bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Stale,
    Outdated,
    Wedged,
}

impl Verdict {
    fn as_str(self) -> &'static str {
        match self {
            Verdict::Stale => "stale",
            Verdict::Outdated => "outdated",
            Verdict::Wedged => "wedged",
        }
    }
}

impl Watchdog {
    /// Judges every registered worker once: up one tier (after the cooldown of the one it
    /// is in) for a worker that is stale, outdated or wedged; back to tier 0 for one in a
    /// tier that is healthy again. Takes (or renews) the workers lease first; returns a
    /// report with `judged: false` when another replica holds it.
    ///
    /// # Errors
    /// [`crate::Error::Redis`] on connection trouble.
    pub async fn judge_workers(&self) -> Result<TierReport> {
        let mut report = TierReport::default();
        let Some(epoch) = self.workers_lease().await? else {
            return Ok(report);
        };
        report.judged = true;
        let workers = self.ledger.workers().await?;
        if workers.is_empty() {
            return Ok(report);
        }
        let now = self.redis_now().await?;
        let stuck = self.stuck_holdings(&workers).await?;
        // Invariant 10: a blip that makes most workers look gone at once (or a systemic
        // hold in force) is no reason to terminate anything: stale verdicts wait it out.
        let (hold_until, _, _) = self.namespace_hold_args();
        let blip = self.most_gone_at_once(&workers, now);
        let hold_stale = blip.is_some() || hold_until > now;
        if let Some((gone, recent)) = blip {
            tracing::warn!(
                gone,
                recently_alive = recent,
                "most workers look gone at once; stale verdicts held back"
            );
        }
        for w in &workers {
            if w.remediation.circuit_open {
                continue;
            }
            let gone_after = w.gone_after(self.config.worker_timeout);
            let expected = self.expected_version(w);
            let due = w.last_seen_at.timestamp_millis() + gone_after.as_millis() as i64;
            let verdict = if due < now {
                Some((
                    Verdict::Stale,
                    format!(
                        "no registry heartbeat for {}ms (judged gone after {}ms)",
                        now - w.last_seen_at.timestamp_millis(),
                        gone_after.as_millis()
                    ),
                ))
            } else if let Some(v) = expected.filter(|v| *v != w.version) {
                Some((
                    Verdict::Outdated,
                    format!("runs version {:?}, expected {v:?}", w.version),
                ))
            } else {
                stuck.get(&w.worker_id).map(|n| {
                    (
                        Verdict::Wedged,
                        format!("beats, but all {n} executions it holds are stuck"),
                    )
                })
            };
            let stale = verdict.as_ref().is_some_and(|(v, _)| *v == Verdict::Stale);
            if stale && (hold_stale || self.process_gone(w)) {
                continue; // held back, or it exited: its work was reclaimed
            }
            let fenced = match verdict {
                Some((verdict, detail)) => {
                    self.escalate(&epoch, w, verdict, &detail, expected, &mut report)
                        .await?
                }
                None if w.remediation.tier > 0 => {
                    self.recover(&epoch, w, expected, &mut report).await?
                }
                None => true,
            };
            if !fenced {
                tracing::warn!(replica = %self.replica_id, "workers lease lost; judgement stopped");
                self.forget_workers_lease();
                report.lease_lost = true;
                break;
            }
        }
        Ok(report)
    }

    /// One fenced escalation; starts the tier's action when it reached 2 or 3. False when
    /// the workers lease was lost.
    async fn escalate(
        &self,
        epoch: &str,
        w: &WorkerInfo,
        verdict: Verdict,
        detail: &str,
        expected: Option<&str>,
        report: &mut TierReport,
    ) -> Result<bool> {
        let tiers = &self.config.tiers;
        let k = &self.ledger.keys;
        let action_id = format!("{}:{}", w.worker_id, uuid::Uuid::now_v7().simple());
        let local = self.local_supervisor(w);
        let hooks = &self.config.hooks;
        let reply = WORKER_ESCALATE
            .key(k.workers_lease())
            .key(k.worker(&w.worker_id))
            .key(k.worker_events())
            .key(k.hooks_pending())
            .arg(&self.replica_id)
            .arg(epoch)
            .arg(self.ledger.config().events_max_len)
            .arg(verdict.as_str())
            .arg(detail)
            .arg(w.gone_after(self.config.worker_timeout).as_millis() as u64)
            .arg(expected.unwrap_or(""))
            .arg(WorkerRequest::Restart.as_str())
            .arg(tiers.cooldown(1).as_millis() as u64)
            .arg(tiers.cooldown(2).as_millis() as u64)
            .arg(tiers.cooldown(3).as_millis() as u64)
            .arg(tiers.breaker_failures)
            .arg(tiers.breaker_window.as_millis() as u64)
            .arg(if local { "1" } else { "0" })
            .arg(&action_id)
            .arg(k.hook_call_prefix())
            .arg(hooks::names_on(hooks, "worker.tier_1"))
            .arg(hooks::names_on(hooks, "worker.tier_2"))
            .arg(hooks::names_on(hooks, "worker.tier_3"))
            .arg(hooks::names_on(hooks, "worker.circuit_opened"))
            .arg(&w.host)
            .arg(w.pid)
            .run(&mut self.ledger.conn.clone())
            .await?;
        match reply.status() {
            "tier" => {
                let tier = reply.u32(1)? as u8;
                tracing::warn!(worker = %w.worker_id, tier, verdict = verdict.as_str(), detail, "worker escalated");
                report.escalated.push((w.worker_id.clone(), tier));
                if tier >= 2 {
                    report.actions.push((w.worker_id.clone(), tier));
                    if !reply.flag(3)? {
                        self.signal_action(w, tier, &action_id);
                    }
                }
                Ok(true)
            }
            "opened" => {
                tracing::error!(worker = %w.worker_id, verdict = verdict.as_str(), detail, "worker circuit opened: unstuck stops acting on it");
                report.opened.push(w.worker_id.clone());
                Ok(true)
            }
            "gone" | "healthy" | "open" | "cooling" | "done" => Ok(true),
            "lease_lost" => Ok(false),
            _ => Err(reply.unexpected()),
        }
    }

    async fn recover(
        &self,
        epoch: &str,
        w: &WorkerInfo,
        expected: Option<&str>,
        report: &mut TierReport,
    ) -> Result<bool> {
        let k = &self.ledger.keys;
        let reply = WORKER_RECOVER
            .key(k.workers_lease())
            .key(k.worker(&w.worker_id))
            .key(k.worker_events())
            .arg(&self.replica_id)
            .arg(epoch)
            .arg(self.ledger.config().events_max_len)
            .arg(w.gone_after(self.config.worker_timeout).as_millis() as u64)
            .arg(expected.unwrap_or(""))
            .arg("beats, runs the expected version, and not all it holds is stuck")
            .run(&mut self.ledger.conn.clone())
            .await?;
        match reply.status() {
            "ok" => {
                tracing::info!(worker = %w.worker_id, "worker healthy again; back to tier 0");
                report.recovered.push(w.worker_id.clone());
                Ok(true)
            }
            "gone" | "unchanged" => Ok(true),
            "lease_lost" => Ok(false),
            _ => Err(reply.unexpected()),
        }
    }

    /// The version `w` must run: that of the first of its queues with one of its own,
    /// else the namespace-wide one.
    fn expected_version<'a>(&'a self, w: &WorkerInfo) -> Option<&'a str> {
        let per_queue = &self.config.tiers.expected_versions;
        w.queues
            .iter()
            .find_map(|q| per_queue.get(q))
            .or(self.config.expected_worker_version.as_ref())
            .map(String::as_str)
    }

    /// Workers that hold at least one execution and whose every held execution is stuck,
    /// with how many they hold: one `HGETALL` of each queue's slots, then one pipelined
    /// `HGET` of each held execution's state.
    async fn stuck_holdings(&self, workers: &[WorkerInfo]) -> Result<HashMap<String, usize>> {
        let live: std::collections::HashSet<&str> =
            workers.iter().map(|w| w.worker_id.as_str()).collect();
        let held = self.ledger.slot_holders().await?;
        let mut pipe = redis::pipe();
        let mut owners = Vec::new();
        for (worker, list) in held.iter().filter(|(w, _)| live.contains(w.as_str())) {
            for (queue, id) in list {
                pipe.hget(self.ledger.keys.execution(queue, id), crate::fields::STATE);
                owners.push(worker.as_str());
            }
        }
        if owners.is_empty() {
            return Ok(HashMap::new());
        }
        let states: Vec<Option<String>> = pipe.query_async(&mut self.ledger.conn.clone()).await?;
        let mut count: HashMap<&str, (usize, usize)> = HashMap::new();
        for (owner, state) in owners.into_iter().zip(states) {
            let entry = count.entry(owner).or_default();
            entry.0 += 1;
            if state.as_deref() == Some("stuck") {
                entry.1 += 1;
            }
        }
        Ok(count
            .into_iter()
            .filter(|(_, (all, stuck))| all == stuck)
            .map(|(w, (all, _))| (w.to_owned(), all))
            .collect())
    }

    /// The workers lease outlives three judgements, so the replica that holds it keeps it
    /// from one pass to the next (it is renewed once per pass).
    fn workers_lease_ttl(&self) -> std::time::Duration {
        self.config.lease_ttl.max(self.config.tiers.interval * 3)
    }

    /// Takes or renews the workers lease: its epoch while this replica holds it.
    async fn workers_lease(&self) -> Result<Option<String>> {
        let k = &self.ledger.keys;
        let held = self
            .workers_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let reply = LEASE
            .key(k.workers_lease())
            .key(k.workers_epoch())
            .arg(&self.replica_id)
            .arg(self.workers_lease_ttl().as_millis() as u64)
            .arg(held.as_deref().unwrap_or(""))
            .run(&mut self.ledger.conn.clone())
            .await?;
        let epoch = match reply.status() {
            "acquired" | "renewed" => Some(reply.str(1)?.to_owned()),
            "held" => None,
            _ => return Err(reply.unexpected()),
        };
        *self
            .workers_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = epoch.clone();
        Ok(epoch)
    }

    /// Hands the workers lease back (graceful shutdown), so another replica judges at
    /// once instead of after `lease_ttl`.
    pub(crate) async fn release_workers_lease(&self) {
        let held = self
            .workers_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(epoch) = held {
            let released = LEASE_RELEASE
                .key(self.ledger.keys.workers_lease())
                .arg(&self.replica_id)
                .arg(epoch)
                .run(&mut self.ledger.conn.clone())
                .await;
            if let Err(error) = released {
                tracing::warn!(%error, "handing back the workers lease failed; it lapses");
            }
        }
    }

    fn forget_workers_lease(&self) {
        *self
            .workers_epoch
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub(crate) async fn redis_now(&self) -> Result<i64> {
        let (secs, micros): (i64, i64) = redis::cmd("TIME")
            .query_async(&mut self.ledger.conn.clone())
            .await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// Judges the workers every `tiers.interval` until `stop` fires (when enabled).
    pub(crate) async fn tiers_loop(&self, stop: CancellationToken) {
        if !self.config.tiers.enabled {
            return;
        }
        tracing::info!(replica = %self.replica_id, "worker remediation started");
        while !stop.is_cancelled() {
            let started = tokio::time::Instant::now();
            if let Err(error) = self.judge_workers().await {
                tracing::warn!(%error, "judging the workers failed");
            }
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(started + self.config.tiers.interval) => {}
            }
        }
        self.release_workers_lease().await;
        tracing::info!(replica = %self.replica_id, "worker remediation stopped");
    }
}
