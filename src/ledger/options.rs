//! Per-execution and per-queue options: timings, capacity, idempotency id.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::MAX_DURATION;
use crate::error::{Error, Result};

/// The timings that judge an execution. Each is resolved execution → queue → global
/// default when the execution is enqueued, and stored with it, so later changes to a
/// queue's defaults never change work already in flight. `None` means "not set here".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timings {
    /// Dispatched but not started (no first heartbeat) within this: the dispatch was lost.
    #[serde(with = "humantime_serde")]
    pub start_grace: Option<Duration>,
    /// Running with no heartbeat for this long: the execution goes stale.
    #[serde(with = "humantime_serde")]
    pub heartbeat_timeout: Option<Duration>,
    /// Heartbeats arrive but progress has not changed for this long: a wedged loop.
    /// Zero disables the rule.
    #[serde(with = "humantime_serde")]
    pub no_progress_timeout: Option<Duration>,
    /// Hard ceiling from enqueue to a terminal state, across attempts. Zero: no deadline.
    #[serde(with = "humantime_serde")]
    pub deadline: Option<Duration>,
    /// How long an execution stays stuck, counted from the moment it became stuck, before
    /// it is remediated.
    #[serde(with = "humantime_serde")]
    pub stuck_threshold: Option<Duration>,
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: Option<u32>,
    /// First retry delay; each further retry doubles it, up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Option<Duration>,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Option<Duration>,
    /// How long a worker has to acknowledge a cancellation before it is forced.
    #[serde(with = "humantime_serde")]
    pub cancel_grace: Option<Duration>,
}

/// Names of the timings in the order scripts receive them.
const NAMES: [&str; 9] = [
    "start_grace",
    "heartbeat_timeout",
    "no_progress_timeout",
    "deadline",
    "stuck_threshold",
    "max_attempts",
    "backoff_base",
    "backoff_max",
    "cancel_grace",
];

impl Timings {
    /// The built-in global defaults.
    pub fn global_defaults() -> Self {
        Self {
            start_grace: Some(Duration::from_secs(30)),
            heartbeat_timeout: Some(Duration::from_secs(30)),
            no_progress_timeout: Some(Duration::ZERO),
            deadline: Some(Duration::ZERO),
            stuck_threshold: Some(Duration::from_secs(30)),
            max_attempts: Some(2),
            backoff_base: Some(Duration::from_secs(1)),
            backoff_max: Some(Duration::from_secs(300)),
            cancel_grace: Some(Duration::from_secs(30)),
        }
    }

    /// These timings, with the unset ones taken from `fallback`.
    pub fn or(&self, fallback: &Timings) -> Timings {
        Timings {
            start_grace: self.start_grace.or(fallback.start_grace),
            heartbeat_timeout: self.heartbeat_timeout.or(fallback.heartbeat_timeout),
            no_progress_timeout: self.no_progress_timeout.or(fallback.no_progress_timeout),
            deadline: self.deadline.or(fallback.deadline),
            stuck_threshold: self.stuck_threshold.or(fallback.stuck_threshold),
            max_attempts: self.max_attempts.or(fallback.max_attempts),
            backoff_base: self.backoff_base.or(fallback.backoff_base),
            backoff_max: self.backoff_max.or(fallback.backoff_max),
            cancel_grace: self.cancel_grace.or(fallback.cancel_grace),
        }
    }

    /// Checks the values that are set.
    ///
    /// # Errors
    /// [`Error::InvalidDuration`] or [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<()> {
        for (key, value, positive) in self.durations() {
            if let Some(d) = value {
                check_duration(key, d, positive)?;
            }
        }
        if let Some(n) = self.max_attempts
            && !(1..=1000).contains(&n)
        {
            return Err(Error::InvalidConfig {
                key: "max_attempts".into(),
                value: n.to_string(),
                expected: "an integer from 1 to 1000".into(),
            });
        }
        Ok(())
    }

    /// Checks that every value is set and valid, as global defaults must be.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the first missing field.
    pub fn validate_as_defaults(&self) -> Result<()> {
        self.validate()?;
        for (name, value) in NAMES.iter().zip(self.to_args()) {
            if value.is_empty() {
                return Err(Error::InvalidConfig {
                    key: format!("defaults.{name}"),
                    value: "unset".into(),
                    expected: "a value (global defaults must all be set)".into(),
                });
            }
        }
        Ok(())
    }

    fn durations(&self) -> [(&'static str, Option<Duration>, bool); 8] {
        [
            ("start_grace", self.start_grace, true),
            ("heartbeat_timeout", self.heartbeat_timeout, true),
            ("no_progress_timeout", self.no_progress_timeout, false),
            ("deadline", self.deadline, false),
            ("stuck_threshold", self.stuck_threshold, false),
            ("backoff_base", self.backoff_base, false),
            ("backoff_max", self.backoff_max, false),
            ("cancel_grace", self.cancel_grace, false),
        ]
    }

    /// The nine values as script arguments: milliseconds, or '' when unset.
    pub(crate) fn to_args(&self) -> [String; 9] {
        let ms = |d: Option<Duration>| d.map(|d| d.as_millis().to_string()).unwrap_or_default();
        [
            ms(self.start_grace),
            ms(self.heartbeat_timeout),
            ms(self.no_progress_timeout),
            ms(self.deadline),
            ms(self.stuck_threshold),
            self.max_attempts.map(|n| n.to_string()).unwrap_or_default(),
            ms(self.backoff_base),
            ms(self.backoff_max),
            ms(self.cancel_grace),
        ]
    }

    /// Field names as stored in a queue's settings hash, in `to_args` order.
    pub(crate) const STORED_FIELDS: [&'static str; 9] =
        ["sg", "ht", "npt", "dl", "stt", "ma", "bb", "bm", "cg"];
}

fn check_duration(key: &'static str, d: Duration, positive: bool) -> Result<()> {
    let sub_ms = !d.subsec_nanos().is_multiple_of(1_000_000);
    if d > MAX_DURATION {
        return Err(Error::InvalidDuration {
            key,
            value: d,
            expected: "at most 365 days",
        });
    }
    if positive && d < Duration::from_millis(1) {
        return Err(Error::InvalidDuration {
            key,
            value: d,
            expected: "at least 1ms",
        });
    }
    if sub_ms {
        return Err(Error::InvalidDuration {
            key,
            value: d,
            expected: "a whole number of milliseconds",
        });
    }
    Ok(())
}

/// Settings of a queue, shared by every orchestrator through Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Most executions of the queue that may hold a slot (dispatched, running or stuck)
    /// at once. `None`: the ledger's `default_capacity`.
    pub capacity: Option<u32>,
    /// Default timings of the queue's executions.
    pub timings: Timings,
}

impl QueueSettings {
    /// # Errors
    /// As [`Timings::validate`]; a capacity of 0 is refused.
    pub fn validate(&self) -> Result<()> {
        if self.capacity == Some(0) {
            return Err(Error::InvalidConfig {
                key: "capacity".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        self.timings.validate()
    }
}

/// Options of one `enqueue` call. Built with the chained setters:
/// `EnqueueOptions::new().id("order-42").heartbeat_timeout(Duration::from_secs(10))`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Caller-chosen id: enqueueing the same id twice returns the existing execution.
    /// `None`: a fresh UUIDv7 (time-ordered, so pending work stays FIFO).
    pub id: Option<String>,
    pub timings: Timings,
    /// Make the execution available only after this delay.
    pub delay: Option<Duration>,
}

macro_rules! duration_setter {
    ($($name:ident),*) => {$(
        pub fn $name(mut self, value: Duration) -> Self {
            self.timings.$name = Some(value);
            self
        }
    )*};
}

impl EnqueueOptions {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.timings.max_attempts = Some(n);
        self
    }

    duration_setter!(
        start_grace,
        heartbeat_timeout,
        no_progress_timeout,
        deadline,
        stuck_threshold,
        backoff_base,
        backoff_max,
        cancel_grace
    );
}
