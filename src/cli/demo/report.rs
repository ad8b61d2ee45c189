//! The fault demo's verdict: one row per fault kind, judged from the event streams and
//! final states, printed as a table or serialized as JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::collect::Observed;
use super::plan::FaultKind;
use super::replicas::{ReplicaKill, ReplicaSummary};
use unstuck::{State, StopReason};

/// Most false positives described one by one (the count is always exact).
const MAX_LISTED: usize = 20;

/// How the watchdog handled one fault kind.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindRow {
    pub kind: FaultKind,
    pub injected: usize,
    /// Fault kinds: the expected detection happened on the first attempt. Kinds that must
    /// survive (healthy, slow-but-alive): the watchdog judged them alive (no remediation).
    pub detected: usize,
    /// The expected end state was reached (see `expected`).
    pub remediated: usize,
    /// Detection lag: the first watchdog action's instant minus the instant its timer
    /// fired, in milliseconds. `None` for kinds with nothing to detect.
    pub lag_p50_ms: Option<i64>,
    pub lag_p99_ms: Option<i64>,
    /// Which rule caught it first, by event reason.
    pub detected_by: BTreeMap<String, usize>,
    /// Stuck verdicts withdrawn by a later heartbeat.
    pub false_alarms: u64,
    /// Watchdog actions outside this kind's expected handling.
    pub false_positives: usize,
    pub expected: String,
}

impl KindRow {
    pub fn correct(&self) -> bool {
        self.detected == self.injected
            && self.remediated == self.injected
            && self.false_positives == 0
    }
}

/// The worker process that died mid-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerDeath {
    pub worker_id: String,
    pub at_secs: f64,
    /// Executions it held when it died.
    pub held: usize,
    /// The process started in its place (a fresh id, as after any restart).
    pub replacement: String,
}

/// The whole verdict of a fault demo run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultDemoReport {
    /// Key namespace the run used (inspect it with the CLI when `--redis` was given).
    pub namespace: String,
    pub executions: usize,
    pub duration_secs: f64,
    /// Wall time from the first enqueue until every execution was terminal (or gave up).
    pub elapsed_secs: f64,
    pub rows: Vec<KindRow>,
    pub false_positives: usize,
    pub false_positive_details: Vec<String>,
    /// Capacity slots still held once every execution was terminal.
    pub leaked_slots: usize,
    /// Executions not terminal when the run gave up waiting.
    pub unfinished: Vec<String>,
    pub index_violations: usize,
    pub index_violation_details: Vec<String>,
    /// Stuck verdicts withdrawn by a later heartbeat, over every kind.
    pub revived_false_alarms: u64,
    /// Systemic holds the watchdog started, described (partition, instant, why).
    pub systemic_holds: Vec<String>,
    pub replica_kill: Option<ReplicaKill>,
    pub worker_death: Option<WorkerDeath>,
    pub replicas: Vec<ReplicaSummary>,
    /// The worker-supervision rows: `unstuck exec`, worker tiers, hooks.
    pub supervision: Vec<super::supervision::SupervisionRow>,
    /// The "waiting is not stuck" rows: an agent waiting for approval, snoozes, a paused queue
    #[serde(default)]
    pub waiting: Vec<super::waiting::WaitingRow>,
}

impl FaultDemoReport {
    /// Every row detected and remediated all it injected, no false positive, no leaked
    /// slot, nothing left unfinished, indexes consistent.
    pub fn all_correct(&self) -> bool {
        self.problems().is_empty()
    }

    /// What is off, one line each; empty when all is correct.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for r in self.rows.iter().filter(|r| !r.correct()) {
            out.push(format!(
                "{}: injected {}, detected {}, remediated {}, false positives {}",
                r.kind, r.injected, r.detected, r.remediated, r.false_positives
            ));
        }
        if self.false_positives > 0 {
            out.push(format!("{} false positive(s)", self.false_positives));
        }
        if self.leaked_slots > 0 {
            out.push(format!("{} leaked slot(s)", self.leaked_slots));
        }
        if !self.unfinished.is_empty() {
            out.push(format!(
                "{} execution(s) never finished",
                self.unfinished.len()
            ));
        }
        if self.index_violations > 0 {
            out.push(format!("{} index violation(s)", self.index_violations));
        }
        for r in self.supervision.iter().filter(|r| !r.correct) {
            out.push(format!("{}: {}", r.case, r.observed));
        }
        for r in self.waiting.iter().filter(|r| !r.correct) {
            out.push(format!("{}: {}", r.case, r.observed));
        }
        out
    }
}

/// Builds the rows and the false-positive list from what was observed.
pub fn judge(observed: &[Observed]) -> (Vec<KindRow>, Vec<String>, usize) {
    let mut rows = Vec::new();
    let mut details = Vec::new();
    let mut total_fp = 0;
    for kind in FaultKind::ALL {
        let mut row = KindRow {
            kind,
            injected: 0,
            detected: 0,
            remediated: 0,
            lag_p50_ms: None,
            lag_p99_ms: None,
            detected_by: BTreeMap::new(),
            false_alarms: 0,
            false_positives: 0,
            expected: kind.expectation().to_owned(),
        };
        let mut lags = Vec::new();
        for o in observed.iter().filter(|o| o.plan.kind == kind) {
            row.injected += 1;
            // Watchdog actions are the events that name the timer that caused them.
            let actions: Vec<_> = o
                .events
                .iter()
                .filter(|e| e.timer_due_at.is_some())
                .collect();
            let wrong: Vec<_> = actions
                .iter()
                .filter(|e| !kind.allows(e.attempt, &e.reason, e.to))
                .collect();
            row.false_positives += wrong.len();
            for e in &wrong {
                if details.len() < MAX_LISTED {
                    details.push(format!(
                        "{kind} {}/{}: attempt {} {} -> {} ({}): {}",
                        e.queue,
                        e.execution_id,
                        e.attempt,
                        e.from.map(State::as_str).unwrap_or("-"),
                        e.to.map(State::as_str).unwrap_or("-"),
                        e.reason,
                        e.detail
                    ));
                }
            }
            let first = actions.iter().find(|e| e.attempt == 1);
            let detected = if kind.must_survive() {
                wrong.is_empty()
            } else {
                first.is_some_and(|e| kind.detection_reasons().contains(&e.reason.as_str()))
            };
            if detected {
                row.detected += 1;
                if let Some(e) = first.filter(|_| !kind.must_survive()) {
                    *row.detected_by.entry(e.reason.clone()).or_default() += 1;
                    if let Some(due) = e.timer_due_at {
                        lags.push((e.at - due).num_milliseconds());
                    }
                }
            }
            if let Some(e) = &o.execution {
                row.false_alarms += u64::from(e.false_alarms);
                let (state, attempt) = kind.expected_end();
                let ended_right = match kind {
                    FaultKind::DeadlineBlown => {
                        e.stop.as_ref().map(|s| &s.reason) == Some(&StopReason::DeadlineExceeded)
                    }
                    FaultKind::IgnoresCancel => {
                        o.events.iter().any(|e| e.reason == "cancel_forced")
                    }
                    _ => true,
                };
                if e.state == state && e.attempt == attempt && ended_right {
                    row.remediated += 1;
                }
            }
        }
        lags.sort_unstable();
        row.lag_p50_ms = percentile(&lags, 50);
        row.lag_p99_ms = percentile(&lags, 99);
        total_fp += row.false_positives;
        rows.push(row);
    }
    (rows, details, total_fp)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[i64], p: usize) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rows: Vec<KindRow>) -> FaultDemoReport {
        FaultDemoReport {
            namespace: "demo-test".into(),
            executions: rows.iter().map(|r| r.injected).sum(),
            duration_secs: 20.0,
            elapsed_secs: 21.0,
            rows,
            false_positives: 0,
            false_positive_details: Vec::new(),
            leaked_slots: 0,
            unfinished: Vec::new(),
            index_violations: 0,
            index_violation_details: Vec::new(),
            revived_false_alarms: 0,
            systemic_holds: Vec::new(),
            replica_kill: None,
            worker_death: None,
            replicas: Vec::new(),
            supervision: Vec::new(),
            waiting: Vec::new(),
        }
    }

    fn row(kind: FaultKind, injected: usize, detected: usize, remediated: usize) -> KindRow {
        KindRow {
            kind,
            injected,
            detected,
            remediated,
            lag_p50_ms: None,
            lag_p99_ms: None,
            detected_by: BTreeMap::new(),
            false_alarms: 0,
            false_positives: 0,
            expected: kind.expectation().into(),
        }
    }

    #[test]
    fn one_row_off_makes_the_verdict_wrong() {
        let good = report(vec![
            row(FaultKind::Healthy, 2, 2, 2),
            row(FaultKind::HangNoHeartbeat, 1, 1, 1),
        ]);
        assert!(good.all_correct());
        assert!(good.to_string().contains("RESULT: all 2 rows correct"));

        let missed = report(vec![
            row(FaultKind::Healthy, 2, 2, 2),
            row(FaultKind::HangNoHeartbeat, 1, 0, 1),
        ]);
        assert!(!missed.all_correct());
        assert!(missed.problems()[0].starts_with("hang_no_heartbeat"));
        assert!(missed.to_string().contains("<-- WRONG"));

        let mut leaked = report(vec![row(FaultKind::Healthy, 1, 1, 1)]);
        leaked.leaked_slots = 1;
        assert!(!leaked.all_correct());
        let mut flagged = report(vec![row(FaultKind::Healthy, 1, 1, 1)]);
        flagged.false_positives = 1;
        assert!(!flagged.all_correct());
    }

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50), None);
        assert_eq!(percentile(&[7], 99), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), Some(50));
        assert_eq!(percentile(&v, 99), Some(99));
        assert_eq!(percentile(&[1, 2, 3], 50), Some(2));
    }
}
