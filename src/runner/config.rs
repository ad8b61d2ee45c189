//! How a runner works: its queue, concurrency, and heartbeat and claiming rhythm.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::ledger::{MAX_CLAIM_WAIT, WorkerRegistration};
use crate::names;

/// Most jobs one runner (or `unstuck exec`) runs at once: one claim fills every free slot.
pub const MAX_CONCURRENCY: usize = 1000;

/// How a [`Runner`](super::Runner) works. Start from [`RunnerConfig::new`] and override fields:
/// `RunnerConfig { concurrency: 4, ..RunnerConfig::new("emails") }`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunnerConfig {
    /// The queue the runner claims from.
    pub queue: String,
    /// Jobs run at once. The queue's capacity still bounds all workers together.
    pub concurrency: usize,
    /// The longest one claim waits for work (a long poll: it returns as soon as an
    /// execution becomes claimable, so this costs no latency) before it asks again; at
    /// most 30 s. Shutdown and the watchdog's requests cut the wait short.
    pub poll_interval: Duration,
    /// Heartbeat every this fraction of an execution's heartbeat timeout: a third leaves
    /// room for two lost or late beats before the execution is judged stale.
    pub heartbeat_fraction: f64,
    /// `None`: register as this process with a fresh id, serving `queue`.
    pub registration: Option<WorkerRegistration>,
    /// How often the worker registry hears that this worker is alive and what it runs.
    /// Declared when the runner registers, so the watchdog waits three of these before
    /// judging it gone, whatever its `worker_timeout`.
    pub worker_heartbeat_interval: Duration,
    /// How long a job told to stop may take to return before its task is aborted.
    pub stop_grace: Duration,
}

impl RunnerConfig {
    /// The defaults for `queue`: one job at a time, claims that wait up to 5 s, heartbeats
    /// at a third of the heartbeat timeout, a worker heartbeat every 5 s, 5 s stop grace.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            concurrency: 1,
            poll_interval: Duration::from_secs(5),
            heartbeat_fraction: 1.0 / 3.0,
            registration: None,
            worker_heartbeat_interval: Duration::from_secs(5),
            stop_grace: Duration::from_secs(5),
        }
    }

    /// Checks every value.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad queue name, [`Error::InvalidConfig`] naming the
    /// field (`runner.<field>`).
    pub fn validate(&self) -> Result<()> {
        names::validate_queue(&self.queue)?;
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return Err(Error::InvalidConfig {
                key: "runner.concurrency".into(),
                value: self.concurrency.to_string(),
                expected: format!("1 to {MAX_CONCURRENCY}"),
            });
        }
        let fraction = self.heartbeat_fraction;
        if !(fraction.is_finite() && fraction > 0.0 && fraction < 1.0) {
            return Err(Error::InvalidConfig {
                key: "runner.heartbeat_fraction".into(),
                value: fraction.to_string(),
                expected: "a number above 0 and below 1".into(),
            });
        }
        for (key, value) in [
            ("runner.poll_interval", self.poll_interval),
            (
                "runner.worker_heartbeat_interval",
                self.worker_heartbeat_interval,
            ),
        ] {
            if value.is_zero() {
                return Err(Error::InvalidConfig {
                    key: key.into(),
                    value: crate::error::format_duration(value),
                    expected: "a duration of more than zero".into(),
                });
            }
        }
        if self.poll_interval > MAX_CLAIM_WAIT {
            return Err(Error::InvalidConfig {
                key: "runner.poll_interval".into(),
                value: crate::error::format_duration(self.poll_interval),
                expected: "at most 30s".into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_values_that_cannot_work() {
        assert!(RunnerConfig::new("q").validate().is_ok());
        let base = || RunnerConfig::new("q");
        let bad = [
            RunnerConfig::new("bad queue"),
            RunnerConfig {
                concurrency: 0,
                ..base()
            },
            RunnerConfig {
                concurrency: MAX_CONCURRENCY + 1,
                ..base()
            },
            RunnerConfig {
                heartbeat_fraction: 1.0,
                ..base()
            },
            RunnerConfig {
                heartbeat_fraction: 0.0,
                ..base()
            },
            RunnerConfig {
                heartbeat_fraction: f64::NAN,
                ..base()
            },
            RunnerConfig {
                poll_interval: Duration::ZERO,
                ..base()
            },
            RunnerConfig {
                poll_interval: MAX_CLAIM_WAIT + Duration::from_millis(1),
                ..base()
            },
            RunnerConfig {
                worker_heartbeat_interval: Duration::ZERO,
                ..base()
            },
        ];
        for config in bad {
            assert!(config.validate().is_err(), "accepted {config:?}");
        }
    }
}
