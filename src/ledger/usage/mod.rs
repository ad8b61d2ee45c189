//! Usage and budgets: the deltas a worker reports (tokens and cost, named after the
//! OpenTelemetry `gen_ai.usage.*` attributes), what they add up to per execution and per
//! queue, and the budgets that stop a runaway execution or pause a queue
//! (`lua/_usage.lua`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

use super::Ledger;
use crate::error::{Error, Result};
use crate::names;

mod budget;
mod fold;
mod pending;

pub use budget::{Budget, WindowBudget};
pub(crate) use budget::{budget_pairs, budgets_from};
pub(crate) use pending::UsageQueue;

/// Longest model name a delta may carry, in bytes.
pub const MAX_MODEL_NAME: usize = 128;
/// Largest amount one delta member may carry.
pub const MAX_USAGE_AMOUNT: u64 = 1_000_000_000_000_000;
/// The window of a queue's rolling usage when its window budget names none: 24 h.
pub const DEFAULT_USAGE_WINDOW: Duration = Duration::from_secs(86_400);
/// The share of a budget at which `budget_warning` is sent when the budget names none.
pub const DEFAULT_WARNING_SHARE: f64 = 0.8;

/// One usage delta, reported with a heartbeat, a complete or a fail. Applied exactly once:
/// `seq` is a positive number increasing within the attempt, and a delta whose `seq` is
/// not above the last one applied for the attempt (a replayed call) is not counted again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Input (prompt) tokens.
    #[serde(default)]
    pub input_tokens: u64,
    /// Output (completion) tokens.
    #[serde(default)]
    pub output_tokens: u64,
    /// The part of `input_tokens` served from a cache (at most `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Cost in integer micro-units of the namespace's currency.
    #[serde(default)]
    pub cost: u64,
    /// The model the delta is for (at most 128 bytes, no `|` or control characters).
    #[serde(default)]
    pub model: Option<String>,
    /// The delta's number within its attempt: positive, increasing.
    pub seq: u64,
}

impl Usage {
    /// An empty delta numbered `seq`; add amounts with the setters.
    pub fn new(seq: u64) -> Self {
        Self {
            seq,
            ..Self::default()
        }
    }

    /// Sets the input tokens.
    pub fn input_tokens(mut self, n: u64) -> Self {
        self.input_tokens = n;
        self
    }

    /// Sets the output tokens.
    pub fn output_tokens(mut self, n: u64) -> Self {
        self.output_tokens = n;
        self
    }

    /// Sets the cached input tokens (a part of the input tokens).
    pub fn cached_input_tokens(mut self, n: u64) -> Self {
        self.cached_input_tokens = n;
        self
    }

    /// Sets the cost, in micro-units of the namespace's currency.
    pub fn cost(mut self, micros: u64) -> Self {
        self.cost = micros;
        self
    }

    /// Names the model.
    pub fn model(mut self, model: impl Into<String>) -> Self {
        self.model = Some(model.into());
        self
    }

    /// # Errors
    /// [`Error::InvalidArgument`] naming the bad member.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, value: String, expected: &str| {
            Err(Error::InvalidArgument {
                name: format!("usage.{name}"),
                value,
                expected: expected.into(),
            })
        };
        if self.seq == 0 {
            return bad(
                "seq",
                "0".into(),
                "a positive number, increasing within the attempt",
            );
        }
        for (name, n) in [
            ("input_tokens", self.input_tokens),
            ("output_tokens", self.output_tokens),
            ("cached_input_tokens", self.cached_input_tokens),
            ("cost", self.cost),
        ] {
            if n > MAX_USAGE_AMOUNT {
                return bad(name, n.to_string(), "at most 10^15");
            }
        }
        if self.cached_input_tokens > self.input_tokens {
            return bad(
                "cached_input_tokens",
                self.cached_input_tokens.to_string(),
                "at most input_tokens (the cached tokens are a part of them)",
            );
        }
        if let Some(m) = &self.model
            && (m.len() > MAX_MODEL_NAME || m.chars().any(|c| c == '|' || c.is_control()))
        {
            return bad(
                "model",
                m.chars().take(40).collect(),
                "at most 128 bytes, no '|' or control characters",
            );
        }
        Ok(())
    }

    /// The script argument: the delta as its journal entry (`lua/_usage.lua`),
    /// `<queue>/<id>|<attempt>|<seq>|<input>|<output>|<cached>|<cost>|<model>`, so the
    /// beat that takes it appends it as it is.
    pub(crate) fn arg(&self, member: &str, attempt: u32) -> String {
        format!(
            "{member}|{attempt}|{}|{}|{}|{}|{}|{}",
            self.seq,
            self.input_tokens,
            self.output_tokens,
            self.cached_input_tokens,
            self.cost,
            self.model.as_deref().unwrap_or_default()
        )
    }
}

/// Usage summed: tokens and cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct UsageTotals {
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cached input tokens (a part of the input tokens).
    pub cached_input_tokens: u64,
    /// Cost, micro-units of the namespace's currency.
    pub cost: u64,
}

impl UsageTotals {
    /// Tokens as budgets count them: input + output.
    pub fn tokens(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    /// Reads `input|output|cached|cost`.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('|').map(str::parse::<u64>);
        let t = Self {
            input_tokens: parts.next()?.ok()?,
            output_tokens: parts.next()?.ok()?,
            cached_input_tokens: parts.next()?.ok()?,
            cost: parts.next()?.ok()?,
        };
        parts.next().is_none().then_some(t)
    }

    fn add(&mut self, other: &Self) {
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_input_tokens += other.cached_input_tokens;
        self.cost += other.cost;
    }
}

/// An execution's usage over all its attempts, and by model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct UsageSummary {
    /// The sums.
    #[serde(flatten)]
    pub totals: UsageTotals,
    /// The same per model (`""` for deltas that named none).
    pub by_model: BTreeMap<String, UsageTotals>,
}

impl UsageSummary {
    /// Reads the execution hash's usage fields (`us`, `um:<model>`); `None` without usage.
    pub(crate) fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        let totals = UsageTotals::parse(fields.get(crate::fields::USAGE)?)?;
        let by_model = fields
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("um:")?.to_owned(), UsageTotals::parse(v)?)))
            .collect();
        Some(Self { totals, by_model })
    }
}

/// A queue's usage: running totals since it was first used, by model, and the rolling
/// window (24 h, or its window budget's window).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct QueueUsage {
    /// The queue.
    pub queue: String,
    /// The currency costs are in (micro-units of it): the namespace's `currency`.
    pub currency: String,
    /// Totals since its first usage.
    pub totals: UsageTotals,
    /// The same per model (`""`: deltas that named none).
    pub by_model: BTreeMap<String, UsageTotals>,
    /// Usage within the rolling window (resolution: a 24th of the window).
    pub window: UsageTotals,
    /// The window's length, ms.
    pub window_ms: u64,
    /// Its window budget, if set.
    pub window_budget: Option<WindowBudget>,
}

impl Ledger {
    /// A queue's usage: totals, by model, and the rolling window. Folds its usage journal
    /// first (`fold.rs`), then one read of its usage hash and one of its settings.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn queue_usage(&self, queue: &str) -> Result<QueueUsage> {
        names::validate_queue(queue)?;
        self.fold_usage(queue).await?;
        let mut conn = self.conn.clone();
        let stored: HashMap<String, String> = conn.hgetall(self.keys.queue_usage(queue)).await?;
        let settings: HashMap<String, String> =
            conn.hgetall(self.keys.queue_settings(queue)).await?;
        let (_, window_budget) = budgets_from(&settings);
        let window = window_budget.map_or(DEFAULT_USAGE_WINDOW, |w| w.window());
        let window_ms = window.as_millis() as u64;
        let now: (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let now_ms = now.0 * 1000 + now.1 / 1000;
        let read = |v: &String| UsageTotals::parse(v).unwrap_or_default();
        let mut usage = QueueUsage {
            queue: queue.to_owned(),
            currency: self.config.currency.clone(),
            totals: stored.get("t").map(read).unwrap_or_default(),
            window_ms,
            window_budget,
            ..QueueUsage::default()
        };
        for (field, value) in &stored {
            if let Some(model) = field.strip_prefix("m:") {
                usage.by_model.insert(model.to_owned(), read(value));
            } else if let Some(start) = field.strip_prefix("b:")
                && start.parse::<u64>().is_ok_and(|s| s + window_ms > now_ms)
            {
                usage.window.add(&read(value));
            }
        }
        Ok(usage)
    }
}

impl Ledger {
    /// Reports a usage delta of the attempt on its own: a heartbeat that carries only
    /// usage (the first one moves a dispatched execution to running).
    ///
    /// # Errors
    /// As [`heartbeat`](Self::heartbeat); [`Error::InvalidArgument`] for a bad delta.
    pub async fn report_usage(
        &self,
        token: &super::AttemptToken,
        usage: Usage,
    ) -> Result<super::HeartbeatReply> {
        self.heartbeat(token, super::Heartbeat::new().usage(usage))
            .await
    }

    /// [`complete`](Self::complete) with the attempt's last usage delta: the delta is
    /// applied first (once, by its `seq`: a replayed call does not count it again), then
    /// the completion is recorded.
    ///
    /// # Errors
    /// As [`complete`](Self::complete); [`Error::InvalidArgument`] for a bad delta
    /// (nothing written).
    pub async fn complete_with_usage(
        &self,
        token: &super::AttemptToken,
        result: Option<&serde_json::Value>,
        usage: Option<Usage>,
    ) -> Result<super::CompleteOutcome> {
        if let Some(usage) = usage {
            usage.validate()?;
            // A refusal (stale, terminal) is the completion's to report.
            self.report_usage(token, usage).await?;
        }
        self.complete(token, result).await
    }

    /// [`fail_with`](Self::fail_with) with the attempt's last usage delta, applied first
    /// as for [`complete_with_usage`](Self::complete_with_usage).
    ///
    /// # Errors
    /// As [`fail_with`](Self::fail_with); [`Error::InvalidArgument`] for a bad delta.
    pub async fn fail_with_usage(
        &self,
        token: &super::AttemptToken,
        message: &str,
        options: super::FailOptions,
        usage: Option<Usage>,
    ) -> Result<super::FailOutcome> {
        if let Some(usage) = usage {
            usage.validate()?;
            options.check()?;
            self.report_usage(token, usage).await?;
        }
        self.fail_with(token, message, options).await
    }
}
