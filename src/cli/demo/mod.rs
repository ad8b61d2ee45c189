//! The fault-injection demo: three watchdog replicas, two orchestrators and simulated
//! workers showing every kind of fault, one replica killed mid-run, then a verdict per
//! fault kind.
//!
//! # Layout
//! - `plan`: the fault kinds, what each must lead to, the demo timings and the schedule;
//! - `orchestrators`, `workers`, `replicas`: the cast, each on its own Redis connection;
//! - `collect`: reading back states, events and indexes after the run;
//! - `report`: the verdict (serializable as JSON); `table`: the verdict printed;
//! - `supervision`: the worker-supervision rows (`unstuck exec`, worker tiers, hooks), run
//!   after the fault kinds in a namespace of their own;
//! - `waiting`: the "waiting is not stuck" rows, one scenario per file (`snooze`: a
//!   rate-limited agent; `paused_queue`: nothing claimed while paused, drained after
//!   resume; `awaiting`: an agent waiting for approval; `resource_lease`: a crashed agent
//!   whose tool lease passes to its retry), in namespaces of their own.
//!
//! Timeline of a run of `duration` D: executions are enqueued over the first 0.6 D, the
//! replica holding most of the demo's partitions is killed at 0.35 D, the worker process
//! of the `batch` queue dies at 0.65 D (a replacement starts under a fresh id). The live
//! part lasts D; the demo then waits for every execution to be terminal, and judges.

mod awaiting;
mod budget;
mod collect;
mod looping;
mod orchestrators;
mod paused_queue;
mod plan;
mod replicas;
mod report;
mod resource_lease;
mod snooze;
mod supervision;
mod table;
mod timeline;
mod waiting;
mod workers;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use plan::FaultKind;

pub use report::FaultDemoReport;

use plan::{DOOMED_QUEUE, MAIN_QUEUES};
use replicas::Replicas;
use timeline::Run;
use unstuck::LedgerConfig;
use unstuck::{Error, Result};
use unstuck::{Ledger, QueueSettings};
use workers::WorkerProcess;

/// Receives the demo's live progress, one line per call.
pub type ProgressSink = Arc<dyn Fn(&str) + Send + Sync>;

/// Shortest and longest accepted `duration`. Below the minimum the faults' own timings
/// (seconds each) do not fit in the schedule.
pub const MIN_DURATION: Duration = Duration::from_secs(6);
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most executions one run plans.
pub const MAX_EXECUTIONS: usize = 100_000;
/// Share of `duration` over which executions are enqueued.
const ENQUEUE_SHARE: f64 = 0.6;
const REPLICAS: usize = 3;
const WORKERS: [&str; 3] = ["worker-a", "worker-b", "worker-c"];
/// Partitions of the demo's namespace: few, so a killed replica certainly held some of
/// the partitions the demo's queues live in.
const PARTITIONS: u16 = 8;

/// What to run. `FaultDemoOptions::new(url)` gives the defaults of `unstuck demo`.
#[derive(Clone)]
pub struct FaultDemoOptions {
    pub redis_url: String,
    /// The live part of the run (see the module docs for the timeline).
    pub duration: Duration,
    /// Executions planned in all, split over the fault kinds (healthy ones get a double
    /// share); at least one per kind.
    pub executions: usize,
    /// Live progress: a line per second and one per injected failure.
    pub progress: Option<ProgressSink>,
}

impl FaultDemoOptions {
    pub fn new(redis_url: impl Into<String>) -> Self {
        Self {
            redis_url: redis_url.into(),
            duration: Duration::from_secs(20),
            executions: 120,
            progress: None,
        }
    }

    /// # Errors
    /// [`Error::InvalidConfig`] naming `duration` or `executions`.
    pub fn validate(&self) -> Result<()> {
        if self.duration < MIN_DURATION || self.duration > MAX_DURATION {
            return Err(Error::InvalidConfig {
                key: "duration".into(),
                value: humantime::format_duration(self.duration).to_string(),
                expected: "a duration from 6s to 1h".into(),
            });
        }
        if plan::split(self.executions).is_none() || self.executions > MAX_EXECUTIONS {
            return Err(Error::InvalidConfig {
                key: "executions".into(),
                value: self.executions.to_string(),
                expected: format!(
                    "{} to {MAX_EXECUTIONS}: at least one execution per fault kind",
                    FaultKind::ALL.len()
                ),
            });
        }
        Ok(())
    }

    fn say(&self, line: &str) {
        if let Some(sink) = &self.progress {
            sink(line);
        }
    }
}

/// Runs the demo against the Redis at `opts.redis_url`, in a fresh namespace.
///
/// # Errors
/// Invalid options, Redis errors. A run whose verdict is wrong is not an error: see
/// [`FaultDemoReport::all_correct`].
pub async fn fault_demo(opts: FaultDemoOptions) -> Result<FaultDemoReport> {
    opts.validate()?;
    let counts = plan::split(opts.executions).unwrap_or_default();
    let plan = Arc::new(plan::schedule(
        &counts,
        opts.duration.mul_f64(ENQUEUE_SHARE),
    ));
    let random = uuid::Uuid::new_v4().simple().to_string();
    let mut config = LedgerConfig::new(opts.redis_url.clone());
    config.namespace = format!("demo-{}", &random[..12]);
    config.partitions = PARTITIONS;
    // Every event of the run is read back for the verdict: none may be trimmed.
    config.events_max_len = (opts.executions * 40).max(10_000);
    let admin = Ledger::connect(config.clone()).await?;
    let capacity = u32::try_from(opts.executions).unwrap_or(u32::MAX);
    for (queue, timings) in MAIN_QUEUES
        .iter()
        .map(|q| (*q, plan::queue_timings()))
        .chain([(DOOMED_QUEUE, plan::doomed_queue_timings())])
    {
        let settings = QueueSettings {
            capacity: Some(capacity),
            timings,
            ..QueueSettings::default()
        };
        admin.set_queue(queue, &settings).await?;
    }
    let faults = counts.get(1).map(|(_, n)| *n).unwrap_or(0);
    opts.say(&format!(
        "fault demo: {} executions ({} healthy, ~{faults} per fault kind) over {}s, namespace {}",
        opts.executions,
        counts[0].1,
        opts.duration.as_secs_f64(),
        config.namespace
    ));
    let t = plan::queue_timings();
    let show = |d: Option<Duration>| format!("{}s", d.unwrap_or_default().as_secs_f64());
    opts.say(&format!(
        "timings: heartbeat_timeout {}, stuck_threshold {}, start_grace {}, \
         no_progress_timeout {}, cancel_grace {}, max_attempts {}, deadline {} (deadline_blown \
         only); worker_timeout {}, lease_ttl {}",
        show(t.heartbeat_timeout),
        show(t.stuck_threshold),
        show(t.start_grace),
        show(t.no_progress_timeout),
        show(t.cancel_grace),
        t.max_attempts.unwrap_or_default(),
        show(Some(plan::DEADLINE)),
        show(Some(plan::WORKER_TIMEOUT)),
        show(Some(replicas::LEASE_TTL)),
    ));

    let mut orchestrator_ledgers = Vec::new();
    for _ in 0..2 {
        orchestrator_ledgers.push(Ledger::connect(config.clone()).await?);
    }
    let mut replicas = Replicas::start(&config, REPLICAS).await?;
    if !replicas.settled(Duration::from_secs(10)).await {
        opts.say("warning: the replicas did not split the partitions within 10s");
    }
    let (workers, doomed) = match start_workers(&config).await {
        Ok(started) => started,
        Err(error) => {
            replicas.stop().await;
            return Err(error);
        }
    };
    let busy: BTreeSet<u16> = MAIN_QUEUES
        .iter()
        .chain([&DOOMED_QUEUE])
        .map(|q| admin.partition_of(q))
        .collect();
    opts.say(&format!(
        "cast: {REPLICAS} watchdog replicas, 2 orchestrators, workers {} on {}, {} on {}; \
         queues live in partitions {busy:?} of {PARTITIONS}",
        workers
            .iter()
            .map(|w| w.worker_id.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        MAIN_QUEUES.join("/"),
        doomed.worker_id,
        DOOMED_QUEUE
    ));

    let start = Instant::now();
    let enqueued = Arc::new(AtomicUsize::new(0));
    let mut orchestrators: Vec<JoinHandle<Result<()>>> = Vec::new();
    for (me, ledger) in orchestrator_ledgers.into_iter().enumerate() {
        orchestrators.push(tokio::spawn(orchestrators::orchestrate(
            ledger,
            plan.clone(),
            me,
            start,
            enqueued.clone(),
            me == 1,
        )));
    }
    let mut run = Run {
        opts: &opts,
        config: &config,
        admin: &admin,
        plan: &plan,
        start,
        enqueued,
        replicas: &mut replicas,
        busy,
        doomed: &doomed,
        kill: None,
        death: None,
        replacement: None,
    };
    let outcome = run.drive().await;
    let (kill, death, replacement) = (run.kill.take(), run.death.take(), run.replacement.take());
    let elapsed = start.elapsed();

    // Stop the cast whatever happened, so no task outlives the demo.
    let mut failure = None;
    for handle in orchestrators {
        if !handle.is_finished() {
            handle.abort();
        } else if let Ok(Err(error)) = handle.await {
            failure.get_or_insert(error);
        }
    }
    doomed.kill();
    for worker in workers.into_iter().chain(replacement) {
        worker.shutdown().await;
    }
    let summaries = replicas.stop().await;
    let unfinished = outcome?;
    if let Some(error) = failure {
        return Err(error);
    }

    opts.say("worker supervision: a silent command under unstuck exec, an outdated worker, a wedged worker");
    let supervision =
        supervision::run(&opts.redis_url, &format!("{}-sup", config.namespace)).await?;
    opts.say("waiting is not stuck: an agent waiting for approval, a rate-limited agent that snoozes, a paused queue, a looping agent, a crashed agent's tool lease");
    let waiting = waiting::run(&opts.redis_url, &format!("{}-wait", config.namespace)).await?;
    let (observed, systemic_holds) = collect::observe(&admin, &plan).await?;
    let (rows, false_positive_details, false_positives) = report::judge(&observed);
    let (index_violations, index_violation_details) =
        collect::index_violations(&admin, &plan).await;
    Ok(FaultDemoReport {
        namespace: config.namespace.clone(),
        executions: plan.len(),
        duration_secs: opts.duration.as_secs_f64(),
        elapsed_secs: elapsed.as_secs_f64(),
        revived_false_alarms: rows.iter().map(|r| r.false_alarms).sum(),
        rows,
        false_positives,
        false_positive_details,
        leaked_slots: collect::leaked_slots(&admin, &plan).await?,
        unfinished,
        index_violations,
        index_violation_details,
        systemic_holds,
        replica_kill: kill,
        worker_death: death,
        replicas: summaries,
        supervision,
        waiting,
    })
}

/// The three regular worker processes, then the `batch` one that will die; on failure,
/// the ones already started are shut down.
async fn start_workers(config: &LedgerConfig) -> Result<(Vec<WorkerProcess>, WorkerProcess)> {
    let mut workers = Vec::new();
    let doomed = async {
        for name in WORKERS {
            workers.push(WorkerProcess::start(config.clone(), name, &MAIN_QUEUES).await?);
        }
        WorkerProcess::start(config.clone(), "batch-1", &[DOOMED_QUEUE]).await
    }
    .await;
    match doomed {
        Ok(doomed) => Ok((workers, doomed)),
        Err(error) => {
            for worker in workers {
                worker.shutdown().await;
            }
            Err(error)
        }
    }
}
