//! The fault demo's verdict as a table: one row per fault kind, then the run's totals.

use std::fmt;

use super::report::FaultDemoReport;

fn lag(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms.abs() < 1000 => format!("{ms}ms"),
        Some(ms) => format!("{:.2}s", ms as f64 / 1000.0),
    }
}

impl fmt::Display for FaultDemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "\n{:<19} {:>8} {:>8} {:>10} {:>8} {:>8}  {:<34} expected",
            "fault kind", "injected", "detected", "remediated", "lag p50", "lag p99", "caught by"
        )?;
        for r in &self.rows {
            let caught = if r.kind.must_survive() {
                "(judged alive)".to_owned()
            } else {
                r.detected_by
                    .iter()
                    .map(|(reason, n)| format!("{reason} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(
                f,
                "{:<19} {:>8} {:>8} {:>10} {:>8} {:>8}  {:<34} {}{}",
                r.kind.as_str(),
                r.injected,
                r.detected,
                r.remediated,
                lag(r.lag_p50_ms),
                lag(r.lag_p99_ms),
                caught,
                r.expected,
                if r.correct() { "" } else { "   <-- WRONG" }
            )?;
        }
        writeln!(
            f,
            "(lag: from the instant the triggering timer fired to the watchdog's action; \
             judged alive: never remediated, a withdrawn stuck verdict allowed)"
        )?;
        writeln!(
            f,
            "\nfalse positives: {}   leaked slots: {}   unfinished: {}   index violations: {}",
            self.false_positives,
            self.leaked_slots,
            self.unfinished.len(),
            self.index_violations
        )?;
        writeln!(
            f,
            "false alarms revived by a late heartbeat: {}   systemic holds: {}",
            self.revived_false_alarms,
            self.systemic_holds.len()
        )?;
        if let Some(k) = &self.replica_kill {
            let takeover = k
                .takeover_after_secs
                .map(|s| format!("survivors held every partition again {s:.1}s later"))
                .unwrap_or_else(|| "its partitions were never taken over".into());
            writeln!(
                f,
                "replica {} killed at {:.1}s holding partitions {:?} ({} with demo queues); {takeover}",
                k.replica_id,
                k.at_secs,
                k.partitions,
                k.busy_partitions.len()
            )?;
        }
        if let Some(d) = &self.worker_death {
            writeln!(
                f,
                "worker process {} killed at {:.1}s holding {} executions; replaced by {}",
                d.worker_id, d.at_secs, d.held, d.replacement
            )?;
        }
        for hold in &self.systemic_holds {
            writeln!(f, "  systemic hold: {hold}")?;
        }
        for r in &self.replicas {
            let t = &r.totals;
            writeln!(
                f,
                "  {:<5} {:<14} timed_out {:>3}  stuck {:>3}  retried {:>3}  dead {:>3}  \
                 cancelled {:>3}  orphaned {:>3}",
                r.replica_id,
                r.killed_at_secs
                    .map(|s| format!("(killed {s:.1}s)"))
                    .unwrap_or_default(),
                t.timed_out,
                t.stuck,
                t.retried,
                t.dead,
                t.cancelled,
                t.orphaned
            )?;
        }
        for line in self
            .false_positive_details
            .iter()
            .chain(&self.index_violation_details)
            .chain(&self.unfinished)
        {
            writeln!(f, "  ! {line}")?;
        }
        writeln!(
            f,
            "\n{:<30} {:<8} {:<32} expected",
            "worker supervision", "tiers", "hooks called"
        )?;
        for r in &self.supervision {
            let tiers = if r.tiers.is_empty() {
                "-".to_owned()
            } else {
                r.tiers
                    .iter()
                    .map(u8::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            let hooks = if r.hooks.is_empty() {
                "-".to_owned()
            } else {
                r.hooks
                    .iter()
                    .map(|(h, n)| format!("{h} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(
                f,
                "{:<30} {:<8} {:<32} {}{}",
                r.case,
                tiers,
                hooks,
                r.expected,
                if r.correct {
                    String::new()
                } else {
                    format!("   <-- WRONG: {}", r.observed)
                }
            )?;
        }
        // Columns as wide as their longest entry (30 and 62 at least).
        let case = self
            .waiting
            .iter()
            .map(|r| r.case.len())
            .fold(30, usize::max);
        let seen = (self.waiting.iter())
            .map(|r| r.observed.len())
            .fold(62, usize::max);
        writeln!(
            f,
            "\n{:<case$} {:<seen$} expected",
            "waiting is not stuck", "observed"
        )?;
        for r in &self.waiting {
            writeln!(
                f,
                "{:<case$} {:<seen$} {}{}",
                r.case,
                r.observed,
                r.expected,
                if r.correct { "" } else { "   <-- WRONG" }
            )?;
        }
        let problems = self.problems();
        if problems.is_empty() {
            write!(
                f,
                "\nRESULT: all {} rows correct ({} executions, {:.1}s, namespace {})",
                self.rows.len() + self.supervision.len() + self.waiting.len(),
                self.executions,
                self.elapsed_secs,
                self.namespace
            )
        } else {
            write!(f, "\nRESULT: WRONG: {}", problems.join("; "))
        }
    }
}
