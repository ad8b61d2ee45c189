//! The run's clock: injects the timed failures (a replica kill, a worker process death),
//! reports progress every second, and ends once every execution is terminal.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::FaultDemoOptions;
use super::collect;
use super::plan::{DOOMED_QUEUE, FaultKind, MAIN_QUEUES, PlannedExecution};
use super::replicas::{ReplicaKill, Replicas};
use super::report::WorkerDeath;
use super::workers::WorkerProcess;
use unstuck::Ledger;
use unstuck::LedgerConfig;
use unstuck::Result;

/// How long after `duration` the demo waits for every execution to be terminal.
const SETTLE: Duration = Duration::from_secs(30);
/// How long the worker death may wait for its process to hold every execution it should.
const DEATH_WAIT: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(100);

/// One run in progress; `drive` moves it along.
pub struct Run<'a> {
    pub opts: &'a FaultDemoOptions,
    pub config: &'a LedgerConfig,
    pub admin: &'a Ledger,
    pub plan: &'a Arc<Vec<PlannedExecution>>,
    pub start: Instant,
    /// Executions the orchestrators have enqueued so far.
    pub enqueued: Arc<AtomicUsize>,
    pub replicas: &'a mut Replicas,
    /// Partitions the demo's queues live in.
    pub busy: BTreeSet<u16>,
    pub doomed: &'a WorkerProcess,
    pub kill: Option<ReplicaKill>,
    pub death: Option<WorkerDeath>,
    pub replacement: Option<WorkerProcess>,
}

impl Run<'_> {
    /// Runs the timeline until every execution is terminal (or `SETTLE` after
    /// `duration`); returns the executions still not terminal.
    ///
    /// # Errors
    /// Redis errors, or the replacement worker failing to start.
    pub async fn drive(&mut self) -> Result<Vec<String>> {
        let duration = self.opts.duration;
        let kill_at = duration.mul_f64(0.35);
        let death_at = duration.mul_f64(0.65);
        let mut next_line = Duration::from_secs(1);
        let mut done = vec![false; self.plan.len()];
        let mut next_check = duration;
        loop {
            let t = self.start.elapsed();
            if self.kill.is_none() && t >= kill_at {
                let kill = self.replicas.kill_busiest(&self.busy, t);
                self.say(
                    t,
                    &format!(
                        "* killed watchdog replica {} (no lease hand-back) holding partitions {:?}",
                        kill.replica_id, kill.partitions
                    ),
                );
                self.kill = Some(kill);
            }
            if let Some(kill) = self.kill.as_mut()
                && kill.takeover_after_secs.is_none()
                && self.replicas.covered()
            {
                let after = t.as_secs_f64() - kill.at_secs;
                kill.takeover_after_secs = Some(after);
                let line =
                    format!("* survivors hold every partition again, {after:.1}s after the kill");
                self.say(t, &line);
            }
            if self.death.is_none() && t >= death_at {
                self.maybe_kill_worker(t, t >= death_at + DEATH_WAIT)
                    .await?;
            }
            if t >= next_line {
                self.progress(t).await?;
                next_line += Duration::from_secs(1);
            }
            let all_enqueued = self.enqueued.load(Ordering::Relaxed) == self.plan.len();
            if t >= next_check && all_enqueued && self.death.is_some() {
                let open = collect::unfinished(self.admin, self.plan, &mut done).await?;
                if open.is_empty() || t >= duration + SETTLE {
                    return Ok(open);
                }
                next_check = t + Duration::from_millis(500);
            }
            if t >= duration + SETTLE && !all_enqueued {
                return collect::unfinished(self.admin, self.plan, &mut done).await;
            }
            tokio::time::sleep(TICK).await;
        }
    }

    /// Kills the `batch` worker process once it holds every worker-gone execution (or
    /// `force`), and starts its replacement under a fresh id.
    async fn maybe_kill_worker(&mut self, t: Duration, force: bool) -> Result<()> {
        let expected = self
            .plan
            .iter()
            .filter(|p| p.kind == FaultKind::WorkerGone)
            .count();
        let held = self.admin.slots_in_use(DOOMED_QUEUE).await?;
        if held < expected && !force {
            return Ok(());
        }
        self.doomed.kill();
        let replacement =
            WorkerProcess::start(self.config.clone(), "batch-2", &[DOOMED_QUEUE]).await?;
        self.say(
            t,
            &format!(
                "* worker process {} died holding {held} executions; {} started in its place",
                self.doomed.worker_id, replacement.worker_id
            ),
        );
        self.death = Some(WorkerDeath {
            worker_id: self.doomed.worker_id.clone(),
            at_secs: t.as_secs_f64(),
            held,
            replacement: replacement.worker_id.clone(),
        });
        self.replacement = Some(replacement);
        Ok(())
    }

    async fn progress(&self, t: Duration) -> Result<()> {
        let (mut queued, mut active) = (0, 0);
        for queue in MAIN_QUEUES.iter().chain([&DOOMED_QUEUE]) {
            queued += self.admin.pending_count(queue).await?;
            active += self.admin.slots_in_use(queue).await?;
        }
        let enqueued = self.enqueued.load(Ordering::Relaxed);
        let (live, total) = self.replicas.live();
        let line = format!(
            "enqueued {enqueued:>4}/{}  queued {queued:>3}  active {active:>3}  \
             terminal {:>4}  watchdog actions {:>4}  replicas {live}/{total} live",
            self.plan.len(),
            enqueued.saturating_sub(queued + active),
            self.replicas.actions(),
        );
        self.say(t, &line);
        Ok(())
    }

    fn say(&self, t: Duration, line: &str) {
        self.opts
            .say(&format!("[{:>5.1}s] {line}", t.as_secs_f64()));
    }
}
