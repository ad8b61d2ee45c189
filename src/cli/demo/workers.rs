//! Simulated worker processes: each registers, beats the registry with the executions it
//! runs (as a real worker runner would), claims work and runs every first attempt the way
//! its payload's fault kind says. Retries always behave healthily.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::plan::{BEAT, FaultKind, SLOW_GAP, jitter};
use unstuck::LedgerConfig;
use unstuck::Result;
use unstuck::{Claim, Heartbeat, HeartbeatReply, Ledger, WorkerRegistration};

/// Most executions one claim call takes.
const CLAIM_BATCH: usize = 16;
/// Pause between claim sweeps that found nothing.
const IDLE: Duration = Duration::from_millis(50);

/// Attempts a process runs, by `(queue, id)`: what its registry heartbeat lists. Keyed by
/// attempt too, so an old attempt that learns it lost the execution does not unlist a
/// newer attempt of the same execution running in the same process.
type Listing = Arc<Mutex<BTreeMap<(String, String), BTreeSet<u32>>>>;

/// One simulated worker process. Dropping it leaves its tasks running; call
/// [`shutdown`](Self::shutdown) or [`kill`](Self::kill).
pub struct WorkerProcess {
    pub worker_id: String,
    process: Process,
    claim_loop: JoinHandle<()>,
}

/// What every task of a process shares.
#[derive(Clone)]
struct Process {
    ledger: Ledger,
    worker_id: String,
    listing: Listing,
    /// Fires when the process stops, gracefully or by dying.
    stop: CancellationToken,
}

impl WorkerProcess {
    /// Connects (its own connection, like a separate process), registers as
    /// `<name>-<random>` and starts claiming from `queues`.
    ///
    /// # Errors
    /// Connection or registration failures.
    pub async fn start(config: LedgerConfig, name: &str, queues: &[&str]) -> Result<Self> {
        let ledger = Ledger::connect(config).await?;
        let random = uuid::Uuid::new_v4().simple().to_string();
        let registration = WorkerRegistration {
            worker_id: format!("{name}-{}", &random[..8]),
            host: "demo".into(),
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            queues: queues.iter().map(|q| (*q).to_owned()).collect(),
            heartbeat_interval: Some(BEAT),
        };
        ledger.register_worker(&registration).await?;
        let process = Process {
            ledger,
            worker_id: registration.worker_id.clone(),
            listing: Listing::default(),
            stop: CancellationToken::new(),
        };
        tokio::spawn(process.clone().registry_loop());
        let queues: Vec<String> = registration.queues.clone();
        let claim_loop = tokio::spawn(process.clone().claim_loop(queues));
        Ok(Self {
            worker_id: registration.worker_id,
            process,
            claim_loop,
        })
    }

    /// The process dies: every job and the registry heartbeat stop at once, nothing is
    /// reported, and its registry entry is left to age.
    pub fn kill(&self) {
        self.process.stop.cancel();
    }

    /// Stops claiming and running, then leaves the registry.
    pub async fn shutdown(self) {
        self.process.stop.cancel();
        let _ = self.claim_loop.await;
        // Already gone when it was killed before; nothing to do then.
        let _ = self.process.ledger.deregister_worker(&self.worker_id).await;
    }
}

impl Process {
    async fn registry_loop(self) {
        loop {
            let running: Vec<(String, String)> = self
                .listing
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .keys()
                .cloned()
                .collect();
            if let Err(error) = self
                .ledger
                .worker_heartbeat(&self.worker_id, &running)
                .await
            {
                tracing::warn!(worker = %self.worker_id, %error, "registry heartbeat failed");
            }
            if !self.pause(BEAT).await {
                return;
            }
        }
    }

    async fn claim_loop(self, queues: Vec<String>) {
        while !self.stop.is_cancelled() {
            let mut claimed = 0;
            for queue in &queues {
                match self
                    .ledger
                    .claim_many(queue, &self.worker_id, CLAIM_BATCH)
                    .await
                {
                    Ok(batch) => {
                        claimed += batch.claims.len();
                        for claim in batch.claims {
                            self.start_job(claim);
                        }
                    }
                    Err(error) => {
                        tracing::warn!(worker = %self.worker_id, %error, "claim failed")
                    }
                }
            }
            if claimed == 0 && !self.pause(IDLE).await {
                return;
            }
        }
    }

    /// Sleeps for `d`; false when the process stopped meanwhile.
    async fn pause(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    fn start_job(&self, claim: Claim) {
        let kind = claim
            .payload
            .get("kind")
            .and_then(|k| k.as_str())
            .and_then(FaultKind::parse)
            .unwrap_or(FaultKind::Healthy);
        let seq = claim
            .payload
            .get("seq")
            .and_then(|s| s.as_u64())
            .unwrap_or(0);
        let behaviour = if claim.attempt() == 1 {
            kind
        } else {
            FaultKind::Healthy
        };
        // A lost dispatch: the worker never learned it holds the execution.
        if behaviour != FaultKind::NeverStarted {
            self.listed(&claim, true);
        }
        let step = claim
            .checkpoint
            .as_ref()
            .and_then(|c| c.get("step"))
            .and_then(|s| s.as_u64())
            .unwrap_or(0);
        let job = Job {
            process: self.clone(),
            claim,
            behaviour,
            seed: seq
                .wrapping_mul(31)
                .wrapping_add(u64::from(behaviour as u8)),
            step,
        };
        tokio::spawn(job.run());
    }

    fn listed(&self, claim: &Claim, listed: bool) {
        let mut table = self.listing.lock().unwrap_or_else(PoisonError::into_inner);
        let key = (claim.queue().to_owned(), claim.id().to_owned());
        if listed {
            table.entry(key).or_default().insert(claim.attempt());
        } else if let Some(attempts) = table.get_mut(&key) {
            attempts.remove(&claim.attempt());
            if attempts.is_empty() {
                table.remove(&key);
            }
        }
    }
}

/// One attempt running in a simulated process.
struct Job {
    process: Process,
    claim: Claim,
    behaviour: FaultKind,
    seed: u64,
    /// Progress counter; resumes from the checkpoint of an earlier attempt.
    step: u64,
}

impl Job {
    async fn run(mut self) {
        let p = self.process.clone();
        match self.behaviour {
            FaultKind::Healthy => {
                let beats = jitter(self.seed, 4, 8);
                if self.beats(beats).await {
                    self.complete().await;
                }
            }
            // Dies after some heartbeats, no report, and the worker forgets it. Early
            // crashes (before start_grace) are caught by the heartbeat rule, later ones by
            // reconciliation, which sees the worker no longer lists it.
            FaultKind::CrashMidRun => {
                self.beats(jitter(self.seed, 2, 9)).await;
            }
            // Wedged: still listed by its worker, silent until the process stops.
            FaultKind::HangNoHeartbeat => {
                if self.beats(jitter(self.seed, 2, 4)).await {
                    p.stop.cancelled().await;
                }
            }
            FaultKind::ZombieNoProgress => self.until_stopped(false).await,
            FaultKind::NeverStarted => {}
            FaultKind::DeadlineBlown | FaultKind::IgnoresCancel | FaultKind::WorkerGone => {
                self.until_stopped(true).await
            }
            FaultKind::SlowButAlive => {
                if self.beats(3).await
                    && p.pause(SLOW_GAP).await
                    && self.beats(jitter(self.seed, 3, 5)).await
                {
                    self.complete().await;
                }
            }
        }
        p.listed(&self.claim, false);
    }

    /// `n` heartbeats with progress, `BEAT` apart; false when the attempt should stop.
    async fn beats(&mut self, n: u64) -> bool {
        for i in 0..n {
            if i > 0 && !self.process.pause(BEAT).await {
                return false;
            }
            if !self.beat(true).await {
                return false;
            }
        }
        true
    }

    /// Heartbeats until a reply (or the process) says stop; `progress` false is a zombie.
    async fn until_stopped(&mut self, progress: bool) {
        while self.beat(progress).await && self.process.pause(BEAT).await {}
    }

    /// One heartbeat; false when the attempt should stop (lost, terminal, cancelled and
    /// acknowledged, or the process stopped).
    async fn beat(&mut self, progress: bool) -> bool {
        if self.process.stop.is_cancelled() {
            return false;
        }
        if progress {
            self.step += 1;
        }
        let beat = Heartbeat::new()
            .progress(format!("step {}", self.step))
            .checkpoint(json!({ "step": self.step }));
        let ledger = &self.process.ledger;
        match ledger.heartbeat(&self.claim.token, beat).await {
            Ok(HeartbeatReply::Ok {
                cancel_requested: true,
                ..
            }) if self.behaviour != FaultKind::IgnoresCancel => {
                if let Err(error) = ledger.acknowledge_cancel(&self.claim.token).await {
                    tracing::warn!(id = self.claim.id(), %error, "acknowledging cancel failed");
                }
                false
            }
            Ok(HeartbeatReply::Ok { .. }) => true,
            Ok(_) => false,
            Err(error) => {
                tracing::warn!(id = self.claim.id(), %error, "heartbeat failed");
                true
            }
        }
    }

    async fn complete(&self) {
        if self.process.stop.is_cancelled() {
            return;
        }
        let result = json!({ "steps": self.step });
        if let Err(error) = self
            .process
            .ledger
            .complete(&self.claim.token, Some(&result))
            .await
        {
            tracing::warn!(id = self.claim.id(), %error, "complete failed");
        }
    }
}
