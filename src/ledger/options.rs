//! Per-execution and per-queue options: timings, capacity, idempotency id, delay.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::WaitExpiry;
use crate::error::{Error, Result};
use crate::retention::Retention;
use crate::timings::{Timings, timing_setters};

/// Settings of a queue, shared by every orchestrator through Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueSettings {
    /// Most executions of the queue that may hold a slot (dispatched, running or stuck)
    /// at once. `None`: the ledger's `default_capacity`.
    pub capacity: Option<u32>,
    /// Default timings of the queue's executions.
    pub timings: Timings,
    /// How long its finished executions are kept; unset fields take the ledger's.
    pub retention: Retention,
    /// Longest wait an `await` of the queue may ask for (`None`:
    /// [`DEFAULT_MAX_WAIT`](super::DEFAULT_MAX_WAIT), 7 days).
    #[serde(default, with = "crate::timings::millis")]
    pub max_wait: Option<Duration>,
    /// What the watchdog does with an awaiting execution nobody resumed by its wait
    /// deadline (`None`: fail it, stop reason `wait_expired`). Taken when the execution
    /// starts waiting.
    pub on_wait_expiry: Option<WaitExpiry>,
    /// The budget of its executions enqueued without one (read when their usage arrives).
    pub budget: Option<super::Budget>,
    /// Its budget per rolling window: when spent, the queue is paused by `budget`.
    pub window_budget: Option<super::WindowBudget>,
}

/// The settings hash fields of the wait settings: longest wait (ms), and at expiry
/// (`0`: fail, `1`: requeue; `lua/await.lua` reads both).
pub(crate) const MAX_WAIT_FIELD: &str = "mwt";
pub(crate) const WAIT_EXPIRY_FIELD: &str = "wex";

impl QueueSettings {
    /// # Errors
    /// As [`Timings::validate`]; a capacity of 0 is refused.
    pub fn validate(&self) -> Result<()> {
        if self.capacity == Some(0) {
            return Err(Error::InvalidArgument {
                name: "capacity".into(),
                value: "0".into(),
                expected: "at least 1".into(),
            });
        }
        if let Some(max) = self.max_wait
            && (max.is_zero() || max > crate::timings::MAX_DURATION)
        {
            return Err(Error::InvalidArgument {
                name: "max_wait".into(),
                value: format!("{}ms", max.as_millis()),
                expected: "more than 0ms and at most 365 days".into(),
            });
        }
        if let Some(b) = &self.budget {
            b.validate()?;
        }
        if let Some(w) = &self.window_budget {
            w.validate()?;
        }
        self.timings.validate()?;
        self.retention.validate()
    }
}

/// Options of one `enqueue` call. Built with the chained setters:
/// `EnqueueOptions::new().id("order-42").heartbeat_timeout(Duration::from_secs(10))`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnqueueOptions {
    /// Caller-chosen id: enqueueing the same id twice returns the existing execution.
    /// `None`: a fresh UUIDv7 (time-ordered, so pending work stays FIFO).
    pub id: Option<String>,
    /// Timings of this execution; unset ones come from the queue, then the global defaults.
    pub timings: Timings,
    /// Make the execution available only after this delay.
    pub delay: Option<Duration>,
    /// The W3C trace context of the caller: stored on the execution and handed to every
    /// claim of it (docs/tracing.md).
    pub traceparent: Option<crate::otel::TraceParent>,
    /// A limit on its usage over all attempts (`None`: its queue's default budget).
    pub budget: Option<super::Budget>,
}

impl EnqueueOptions {
    /// Options with nothing set: a fresh id, the queue's or the global timings, no delay.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the caller-chosen id (idempotency: the same id again returns the execution).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Makes the execution available only after `delay`.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Sets the caller's trace context (`"00-…".parse()?`): the `send` span is its child,
    /// and the workers' spans link to it.
    pub fn traceparent(mut self, traceparent: crate::otel::TraceParent) -> Self {
        self.traceparent = Some(traceparent);
        self
    }

    /// Limits its usage (tokens and/or cost) over all its attempts.
    pub fn budget(mut self, budget: super::Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    timing_setters!();
}
