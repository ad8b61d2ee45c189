//! Memory over time: one sample of Redis and the ledger every interval, the table of them,
//! and the verdict on the samples after the warm-up.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use unstuck::{Ledger, State};

use crate::support;
use crate::traffic::Counters;

const MB: f64 = 1024.0 * 1024.0;

/// Redis and the ledger at one instant of the run.
#[derive(Debug, Clone)]
pub struct Sample {
    pub elapsed: Duration,
    pub handled: u64,
    /// INFO memory `used_memory`: what the data takes, as the allocator counts it.
    pub used_memory: i64,
    /// `used_memory_rss`: what the process holds (fragmentation included).
    pub rss: i64,
    /// Finished executions still kept, every queue and terminal state.
    pub finished: u64,
    /// Of those, by terminal state (summed over the queues).
    pub finished_by_state: Vec<(State, u64)>,
    /// Waiting plus holding a slot, every queue.
    pub in_flight: u64,
    /// The watchdog's `pruned` total so far.
    pub pruned: u64,
    /// The watchdog's dead and timed_out totals so far.
    pub dead: u64,
    pub timed_out: u64,
    /// Redis CPU time so far.
    pub redis_cpu: Duration,
}

impl Sample {
    /// Reads INFO, each queue's overview and the watchdog's totals.
    pub async fn take(
        admin: &mut MultiplexedConnection,
        ledger: &Ledger,
        queues: &[String],
        counters: &Counters,
        elapsed: Duration,
    ) -> Sample {
        let handled = counters.handled();
        let used_memory = support::used_memory(admin).await;
        let rss = support::info_field(admin, "memory", "used_memory_rss")
            .await
            .parse()
            .expect("used_memory_rss is an integer");
        let redis_cpu = support::redis_cpu(admin).await;
        let mut finished_by_state: Vec<(State, u64)> = Vec::new();
        let mut in_flight = 0;
        for queue in queues {
            let overview = ledger
                .queue_overview(queue)
                .await
                .expect("queue_overview answers");
            in_flight += overview.depth + overview.active;
            for (state, n) in overview.finished {
                match finished_by_state.iter_mut().find(|(s, _)| *s == state) {
                    Some((_, total)) => *total += n,
                    None => finished_by_state.push((state, n)),
                }
            }
        }
        let status = unstuck::watchdog::status(ledger)
            .await
            .expect("watchdog status answers");
        Sample {
            elapsed,
            handled,
            used_memory,
            rss,
            finished: finished_by_state.iter().map(|(_, n)| n).sum(),
            finished_by_state,
            in_flight,
            pruned: status.totals.pruned,
            dead: status.totals.dead,
            timed_out: status.totals.timed_out,
            redis_cpu,
        }
    }

    /// The progress line printed to stderr as the run goes.
    pub fn progress(&self, previous: Option<&Sample>) -> String {
        format!(
            "soak {:>4.0}s: {} done ({:.0}/s), used_memory {:.1} MB, {} finished kept, {} pruned",
            self.elapsed.as_secs_f64(),
            self.handled,
            rate(self, previous),
            self.used_memory as f64 / MB,
            self.finished,
            self.pruned
        )
    }
}

/// Executions handled per second since `previous` (since the start without one).
fn rate(s: &Sample, previous: Option<&Sample>) -> f64 {
    let (handled, at) = previous.map_or((0, Duration::ZERO), |p| (p.handled, p.elapsed));
    (s.handled - handled) as f64 / (s.elapsed - at).as_secs_f64().max(1e-9)
}

/// What the samples after the warm-up say.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub samples: usize,
    pub mean: f64,
    pub min: f64,
    pub max: f64,
    pub tolerance: f64,
    /// Least-squares slope of used_memory over executions handled, bytes per million.
    pub growth_per_million: f64,
    /// Mean finished executions kept.
    pub mean_finished: f64,
}

impl Verdict {
    /// `None` with fewer than two samples after `warm_up`.
    pub fn of(samples: &[Sample], warm_up: Duration, tolerance: f64) -> Option<Verdict> {
        let steady: Vec<&Sample> = samples.iter().filter(|s| s.elapsed >= warm_up).collect();
        if steady.len() < 2 {
            return None;
        }
        let n = steady.len() as f64;
        let memory: Vec<f64> = steady.iter().map(|s| s.used_memory as f64).collect();
        let mean = memory.iter().sum::<f64>() / n;
        let done: Vec<f64> = steady.iter().map(|s| s.handled as f64).collect();
        let mean_done = done.iter().sum::<f64>() / n;
        let (mut covariance, mut variance) = (0.0, 0.0);
        for (x, y) in done.iter().zip(&memory) {
            covariance += (x - mean_done) * (y - mean);
            variance += (x - mean_done) * (x - mean_done);
        }
        Some(Verdict {
            samples: steady.len(),
            mean,
            min: memory.iter().copied().fold(f64::INFINITY, f64::min),
            max: memory.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            tolerance,
            growth_per_million: if variance > 0.0 {
                covariance / variance * 1e6
            } else {
                0.0
            },
            mean_finished: steady.iter().map(|s| s.finished as f64).sum::<f64>() / n,
        })
    }

    /// Max and min within `tolerance` of the mean.
    pub fn flat(&self) -> bool {
        self.max <= self.mean * (1.0 + self.tolerance)
            && self.min >= self.mean * (1.0 - self.tolerance)
    }

    /// `expected_kept`: rate × retention, the finished executions a prune that keeps up
    /// holds on to.
    pub fn print(&self, warm_up: Duration, baseline: i64, expected_kept: Option<f64>) {
        let pct = |v: f64| 100.0 * (v - self.mean) / self.mean;
        println!(
            "\nAfter the warm-up ({} samples from {:.0?} on): used_memory mean {:.1} MB, \
             min {:.1} MB ({:+.1} %), max {:.1} MB ({:+.1} %): {}",
            self.samples,
            warm_up,
            self.mean / MB,
            self.min / MB,
            pct(self.min),
            self.max / MB,
            pct(self.max),
            if self.flat() {
                format!("FLAT (within ±{:.0} %)", self.tolerance * 100.0)
            } else {
                format!("NOT FLAT (beyond ±{:.0} %)", self.tolerance * 100.0)
            }
        );
        println!(
            "Growth: {:+.2} MB per million executions (least squares over those samples)",
            self.growth_per_million / MB
        );
        if self.mean_finished > 0.0 {
            println!(
                "Finished executions kept: {:.0} on average{}; {:.0} B of used_memory above \
                 the empty server each (the capped event streams included)",
                self.mean_finished,
                expected_kept.map_or(String::new(), |e| format!(" (rate × retention: {e:.0})")),
                (self.mean - baseline as f64) / self.mean_finished
            );
        }
    }
}

/// The table of every sample; rows after the warm-up show their distance to the mean.
pub fn print_table(samples: &[Sample], warm_up: Duration, verdict: Option<&Verdict>) {
    println!(
        "\n| elapsed | executions done | done/s | used_memory MB | vs steady mean | RSS MB | finished kept | queued + active | pruned so far | redis CPU % |"
    );
    println!("|------:|------:|------:|------:|------:|------:|------:|------:|------:|------:|");
    let mut previous: Option<&Sample> = None;
    for s in samples {
        let versus = match verdict {
            Some(v) if s.elapsed >= warm_up => {
                format!("{:+.1} %", 100.0 * (s.used_memory as f64 - v.mean) / v.mean)
            }
            _ => "(warm-up)".to_owned(),
        };
        // The first sample, taken before any traffic, has no interval behind it.
        let (done_per_s, cpu) = match previous {
            Some(p) => {
                let seconds = (s.elapsed - p.elapsed).as_secs_f64().max(1e-9);
                let cpu = s.redis_cpu.saturating_sub(p.redis_cpu).as_secs_f64();
                (
                    format!("{:.0}", rate(s, previous)),
                    format!("{:.0}", 100.0 * cpu / seconds),
                )
            }
            None => ("-".to_owned(), "-".to_owned()),
        };
        let at = s.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {} | {:.1} | {} | {:.1} | {} | {} | {} | {} |",
            if at >= 10.0 {
                format!("{at:.0}s")
            } else {
                format!("{at:.1}s")
            },
            s.handled,
            done_per_s,
            s.used_memory as f64 / MB,
            versus,
            s.rss as f64 / MB,
            s.finished,
            s.in_flight,
            s.pruned,
            cpu
        );
        previous = Some(s);
    }
}
