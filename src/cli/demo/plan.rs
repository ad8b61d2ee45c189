//! What the fault demo injects: the fault kinds, their expected verdicts, the timings
//! they are judged by, and the schedule of executions the orchestrators enqueue.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use unstuck::{State, Timings};

/// One kind of behaviour a simulated worker shows on an execution's first attempt. Later
/// attempts always behave healthily, so "remediated" means the retry succeeded (or the
/// right terminal state was reached for kinds that are not retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Heartbeats with progress and completes: the watchdog must leave it alone.
    Healthy,
    /// The job dies after a few heartbeats and its worker stops listing it.
    CrashMidRun,
    /// Still listed by its worker, but the heartbeats stop.
    HangNoHeartbeat,
    /// Heartbeats keep coming, progress never moves.
    ZombieNoProgress,
    /// Claimed, but the dispatch is lost: no heartbeat, never listed.
    NeverStarted,
    /// Alive and progressing, but runs past its deadline.
    DeadlineBlown,
    /// One late heartbeat, then healthy again: must not be failed.
    SlowButAlive,
    /// The orchestrator cancels it; the worker keeps going and never acknowledges.
    IgnoresCancel,
    /// Held by a worker process that dies: registry heartbeat and job heartbeats stop.
    WorkerGone,
}

/// How long after its last registry heartbeat a worker is judged gone.
pub const WORKER_TIMEOUT: Duration = Duration::from_secs(2);
/// How often simulated workers beat each job and their registry entry: a quarter of the
/// heartbeat timeout, so one delayed beat is never enough to look stale.
pub const BEAT: Duration = Duration::from_millis(250);
/// The gap of the slow-but-alive kind: longer than the heartbeat timeout (so it may be
/// judged stuck) but far shorter than heartbeat timeout + stuck threshold (so the late
/// heartbeat always revives it before any remediation).
pub const SLOW_GAP: Duration = Duration::from_millis(1600);
/// The deadline of the deadline-blown kind, counted from enqueue.
pub const DEADLINE: Duration = Duration::from_secs(3);
/// The queue served only by the worker process that dies (and then its replacement).
pub const DOOMED_QUEUE: &str = "batch";
/// The queues every other kind is spread over.
pub const MAIN_QUEUES: [&str; 3] = ["research", "summarize", "ingest"];

/// The timings of the demo's queues: seconds instead of the production minutes.
pub fn queue_timings() -> Timings {
    Timings {
        start_grace: Some(Duration::from_millis(1500)),
        heartbeat_timeout: Some(Duration::from_secs(1)),
        no_progress_timeout: Some(Duration::from_secs(2)),
        deadline: Some(Duration::ZERO),
        // Longer than the heartbeat timeout so the slow-but-alive gap has a clear margin.
        stuck_threshold: Some(Duration::from_millis(1500)),
        max_attempts: Some(2),
        backoff_base: Some(Duration::from_millis(100)),
        backoff_max: Some(Duration::from_secs(1)),
        cancel_grace: Some(Duration::from_secs(1)),
        max_snoozes: Some(10),
        // Loop detection off on the demo's queues: the looping row sets it per execution.
        max_repeats: Some(0),
    }
}

/// The doomed queue runs long batch jobs judged leniently (6s without a heartbeat or
/// progress), so the worker registry, not the job-level rules, is what notices their
/// worker process died: that path is what the worker-gone kind demonstrates.
pub fn doomed_queue_timings() -> Timings {
    Timings {
        heartbeat_timeout: Some(Duration::from_secs(6)),
        no_progress_timeout: Some(Duration::from_secs(6)),
        ..queue_timings()
    }
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Healthy,
        FaultKind::CrashMidRun,
        FaultKind::HangNoHeartbeat,
        FaultKind::ZombieNoProgress,
        FaultKind::NeverStarted,
        FaultKind::DeadlineBlown,
        FaultKind::SlowButAlive,
        FaultKind::IgnoresCancel,
        FaultKind::WorkerGone,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Healthy => "healthy",
            FaultKind::CrashMidRun => "crash_mid_run",
            FaultKind::HangNoHeartbeat => "hang_no_heartbeat",
            FaultKind::ZombieNoProgress => "zombie_no_progress",
            FaultKind::NeverStarted => "never_started",
            FaultKind::DeadlineBlown => "deadline_blown",
            FaultKind::SlowButAlive => "slow_but_alive",
            FaultKind::IgnoresCancel => "ignores_cancel",
            FaultKind::WorkerGone => "worker_gone",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Short prefix of execution ids, so ids say what was injected.
    fn id_prefix(self) -> &'static str {
        match self {
            FaultKind::Healthy => "ok",
            FaultKind::CrashMidRun => "crash",
            FaultKind::HangNoHeartbeat => "hang",
            FaultKind::ZombieNoProgress => "zombie",
            FaultKind::NeverStarted => "lost",
            FaultKind::DeadlineBlown => "late",
            FaultKind::SlowButAlive => "slow",
            FaultKind::IgnoresCancel => "stubborn",
            FaultKind::WorkerGone => "orphan",
        }
    }

    /// Relative share of the planned executions; healthy work is the control group and
    /// gets twice the share of each fault.
    fn weight(self) -> usize {
        if self == FaultKind::Healthy { 2 } else { 1 }
    }

    /// True for kinds the watchdog must leave alone (a stuck verdict withdrawn by a later
    /// heartbeat is allowed, any remediation is a false positive).
    pub fn must_survive(self) -> bool {
        matches!(self, FaultKind::Healthy | FaultKind::SlowButAlive)
    }

    /// Event reasons that count as detecting this fault. Two reasons where two rules can
    /// legitimately win the race (a crashed job is both unlisted and silent).
    pub fn detection_reasons(self) -> &'static [&'static str] {
        match self {
            FaultKind::Healthy | FaultKind::SlowButAlive => &[],
            FaultKind::CrashMidRun | FaultKind::WorkerGone => &["worker_lost", "heartbeat_lost"],
            FaultKind::HangNoHeartbeat => &["heartbeat_lost"],
            FaultKind::ZombieNoProgress => &["no_progress"],
            FaultKind::NeverStarted => &["start_timeout", "worker_lost"],
            FaultKind::DeadlineBlown => &["deadline_exceeded"],
            FaultKind::IgnoresCancel => &["cancel_forced"],
        }
    }

    /// Whether a watchdog action `(reason, to)` on attempt `attempt` belongs to the
    /// expected handling of this kind; anything else is a false positive.
    pub fn allows(self, attempt: u32, reason: &str, to: Option<State>) -> bool {
        if attempt != 1 {
            return false;
        }
        match self {
            FaultKind::Healthy => false,
            FaultKind::SlowButAlive => reason == "heartbeat_lost" && to == Some(State::Stuck),
            FaultKind::DeadlineBlown => to == Some(State::TimedOut),
            FaultKind::IgnoresCancel => to == Some(State::Cancelled),
            _ => {
                self.detection_reasons().contains(&reason)
                    && matches!(to, Some(State::Stuck) | Some(State::Queued))
            }
        }
    }

    /// The end state that counts as remediated (or, for the kinds that must survive, as
    /// correctly left alone).
    pub fn expected_end(self) -> (State, u32) {
        match self {
            FaultKind::Healthy | FaultKind::SlowButAlive => (State::Succeeded, 1),
            FaultKind::DeadlineBlown => (State::TimedOut, 1),
            FaultKind::IgnoresCancel => (State::Cancelled, 1),
            _ => (State::Succeeded, 2),
        }
    }

    /// What the report says the right outcome is.
    pub fn expectation(self) -> &'static str {
        match self {
            FaultKind::Healthy => "left alone, succeeds",
            FaultKind::SlowButAlive => "not failed, succeeds on attempt 1",
            FaultKind::DeadlineBlown => "timed_out, slot freed",
            FaultKind::IgnoresCancel => "cancel forced",
            _ => "retried, succeeds on attempt 2",
        }
    }
}

impl std::fmt::Display for FaultKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution the orchestrators will enqueue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedExecution {
    pub id: String,
    pub queue: &'static str,
    pub kind: FaultKind,
    /// Sequence number: seeds the execution's jitter.
    pub seq: u64,
    /// When to enqueue it, from the start of the run.
    pub at: Duration,
    /// Which orchestrator enqueues it (0 or 1).
    pub orchestrator: usize,
}

/// How many of each kind `total` executions hold; `None` when `total` is below one per
/// kind.
pub fn split(total: usize) -> Option<Vec<(FaultKind, usize)>> {
    let weights: usize = FaultKind::ALL.iter().map(|k| k.weight()).sum();
    let mut counts: Vec<(FaultKind, usize)> = FaultKind::ALL
        .iter()
        .filter(|k| **k != FaultKind::Healthy)
        .map(|k| (*k, (total * k.weight() / weights).max(1)))
        .collect();
    let faults: usize = counts.iter().map(|(_, n)| n).sum();
    let healthy = total.checked_sub(faults).filter(|n| *n >= 1)?;
    counts.insert(0, (FaultKind::Healthy, healthy));
    Some(counts)
}

/// The schedule: kinds interleaved in a fixed pseudo-random order, enqueued evenly over
/// `window`, alternating between the two orchestrators.
pub fn schedule(counts: &[(FaultKind, usize)], window: Duration) -> Vec<PlannedExecution> {
    let mut kinds: Vec<(u64, FaultKind, usize)> = Vec::new();
    for (kind, n) in counts {
        for i in 0..*n {
            kinds.push((mix(kinds.len() as u64), *kind, i));
        }
    }
    kinds.sort();
    let total = kinds.len().max(1) as u32;
    kinds
        .into_iter()
        .enumerate()
        .map(|(seq, (_, kind, nth))| PlannedExecution {
            id: format!("{}-{:04}", kind.id_prefix(), nth + 1),
            queue: if kind == FaultKind::WorkerGone {
                DOOMED_QUEUE
            } else {
                MAIN_QUEUES[seq % MAIN_QUEUES.len()]
            },
            kind,
            seq: seq as u64,
            at: window * seq as u32 / total,
            orchestrator: seq % 2,
        })
        .collect()
}

/// splitmix64: a fixed, well-spread hash for deterministic jitter without a RNG crate.
pub fn mix(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A number in `lo..=hi` picked by `seed`.
pub fn jitter(seed: u64, lo: u64, hi: u64) -> u64 {
    lo + mix(seed) % (hi - lo + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_gives_every_kind_one_and_sums_to_total() {
        assert!(split(8).is_none());
        for total in [9, 10, 36, 120, 1000] {
            let counts = split(total).expect("enough executions");
            assert_eq!(counts.len(), FaultKind::ALL.len());
            assert!(counts.iter().all(|(_, n)| *n >= 1));
            assert_eq!(counts.iter().map(|(_, n)| n).sum::<usize>(), total);
        }
        let counts = split(120).expect("enough");
        assert_eq!(counts[0], (FaultKind::Healthy, 24));
        assert!(counts[1..].iter().all(|(_, n)| *n == 12));
    }

    #[test]
    fn schedule_has_unique_ids_spread_over_the_window() {
        let plan = schedule(&split(120).expect("enough"), Duration::from_secs(8));
        assert_eq!(plan.len(), 120);
        let ids: std::collections::BTreeSet<_> =
            plan.iter().map(|p| (p.queue, p.id.clone())).collect();
        assert_eq!(ids.len(), 120);
        assert!(plan.iter().all(|p| p.at < Duration::from_secs(8)));
        assert!(
            plan.iter()
                .all(|p| (p.kind == FaultKind::WorkerGone) == (p.queue == DOOMED_QUEUE))
        );
        assert_eq!(plan.iter().filter(|p| p.orchestrator == 1).count(), 60);
    }
}
