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

    /// The script arguments: seq, input, output, cached, cost, model.
    pub(crate) fn args(&self) -> [String; 6] {
        [
            self.seq.to_string(),
            self.input_tokens.to_string(),
            self.output_tokens.to_string(),
            self.cached_input_tokens.to_string(),
            self.cost.to_string(),
            self.model.clone().unwrap_or_default(),
        ]
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

/// A limit on an execution's usage: tokens (input + output) and/or cost. At
/// `warning_share` of either limit one `budget_warning` event; at the limit the execution
/// gets a cancellation request with reason `budget_exceeded`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct Budget {
    /// Most tokens (input + output) over all attempts.
    pub tokens: Option<u64>,
    /// Most cost, micro-units.
    pub cost: Option<u64>,
    /// Share of a limit that sends the warning, 0 < x < 1 (default 0.8).
    pub warning_share: Option<f64>,
}

impl Eq for Budget {}

impl Budget {
    /// # Errors
    /// [`Error::InvalidArgument`]: no limit, a limit of 0, a share outside (0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, value: String, expected: &str| {
            Err(Error::InvalidArgument {
                name: format!("budget.{name}"),
                value,
                expected: expected.into(),
            })
        };
        if self.tokens.is_none() && self.cost.is_none() {
            return bad("tokens", "none".into(), "a limit in tokens and/or cost");
        }
        for (name, v) in [("tokens", self.tokens), ("cost", self.cost)] {
            if let Some(v) = v
                && (v == 0 || v > MAX_USAGE_AMOUNT)
            {
                return bad(name, v.to_string(), "1 to 10^15");
            }
        }
        if let Some(s) = self.warning_share
            && !(s > 0.0 && s < 1.0 && (s * 1000.0).round() >= 1.0)
        {
            return bad(
                "warning_share",
                s.to_string(),
                "more than 0 and less than 1",
            );
        }
        Ok(())
    }

    /// The stored text `tokens|cost|warning per mille` (0: none).
    pub(crate) fn to_text(self) -> String {
        let share = self.warning_share.unwrap_or(DEFAULT_WARNING_SHARE);
        format!(
            "{}|{}|{}",
            self.tokens.unwrap_or(0),
            self.cost.unwrap_or(0),
            (share * 1000.0).round() as u64
        )
    }

    pub(crate) fn from_parts(tokens: u64, cost: u64, per_mille: u64) -> Option<Self> {
        (tokens > 0 || cost > 0).then(|| Self {
            tokens: (tokens > 0).then_some(tokens),
            cost: (cost > 0).then_some(cost),
            warning_share: Some(if per_mille == 0 {
                DEFAULT_WARNING_SHARE
            } else {
                per_mille as f64 / 1000.0
            }),
        })
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut p = text.split('|').map(str::parse::<u64>);
        Self::from_parts(p.next()?.ok()?, p.next()?.ok()?, p.next()?.ok()?)
    }
}

/// A queue's budget per rolling window: when the usage of the window reaches it, the
/// queue is paused (by `budget`) until an operator resumes it or raises the budget.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct WindowBudget {
    /// Most tokens (input + output) in the window.
    pub tokens: Option<u64>,
    /// Most cost in the window, micro-units.
    pub cost: Option<u64>,
    /// The window (default 24 h), whole ms; at least 1 minute.
    #[serde(rename = "window_ms", with = "crate::timings::millis")]
    #[cfg_attr(feature = "server", schema(value_type = Option<u64>))]
    pub window: Option<Duration>,
}

impl WindowBudget {
    /// # Errors
    /// [`Error::InvalidArgument`].
    pub fn validate(&self) -> Result<()> {
        Budget {
            tokens: self.tokens,
            cost: self.cost,
            warning_share: None,
        }
        .validate()
        .map_err(|e| match e {
            Error::InvalidArgument {
                name,
                value,
                expected,
            } => Error::InvalidArgument {
                name: name.replace("budget.", "window_budget."),
                value,
                expected,
            },
            other => other,
        })?;
        if let Some(w) = self.window
            && (w < Duration::from_secs(60) || w > crate::timings::MAX_DURATION)
        {
            return Err(Error::InvalidArgument {
                name: "window_budget.window_ms".into(),
                value: format!("{}ms", w.as_millis()),
                expected: "1 minute to 365 days".into(),
            });
        }
        Ok(())
    }

    /// The window it covers.
    pub fn window(&self) -> Duration {
        self.window.unwrap_or(DEFAULT_USAGE_WINDOW)
    }
}

/// Queue settings fields: the default execution budget and the window budget.
pub(crate) const BUDGET_FIELDS: [&str; 3] = ["bgt", "bgc", "bgs"];
pub(crate) const WINDOW_BUDGET_FIELDS: [&str; 3] = ["wbt", "wbc", "wbw"];

/// The settings-hash pairs of a queue's budgets.
pub(crate) fn budget_pairs(
    budget: Option<&Budget>,
    window: Option<&WindowBudget>,
) -> Vec<(&'static str, u64)> {
    let mut pairs = Vec::new();
    if let Some(b) = budget {
        let share = b.warning_share.unwrap_or(DEFAULT_WARNING_SHARE);
        pairs.extend(BUDGET_FIELDS.into_iter().zip([
            b.tokens.unwrap_or(0),
            b.cost.unwrap_or(0),
            (share * 1000.0).round() as u64,
        ]));
    }
    if let Some(w) = window {
        pairs.extend(WINDOW_BUDGET_FIELDS.into_iter().zip([
            w.tokens.unwrap_or(0),
            w.cost.unwrap_or(0),
            w.window().as_millis() as u64,
        ]));
    }
    pairs
}

/// A queue's budgets as stored in its settings hash.
pub(crate) fn budgets_from(
    stored: &HashMap<String, String>,
) -> (Option<Budget>, Option<WindowBudget>) {
    let num = |f: &str| stored.get(f).and_then(|v| v.parse::<u64>().ok());
    let budget = num("bgt")
        .and_then(|t| Budget::from_parts(t, num("bgc").unwrap_or(0), num("bgs").unwrap_or(0)));
    let window = match (num("wbt"), num("wbc")) {
        (Some(t), Some(c)) if t > 0 || c > 0 => Some(WindowBudget {
            tokens: (t > 0).then_some(t),
            cost: (c > 0).then_some(c),
            window: num("wbw").map(Duration::from_millis),
        }),
        _ => None,
    };
    (budget, window)
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
    /// A queue's usage: totals, by model, and the rolling window. One read of its usage
    /// hash and one of its settings.
    ///
    /// # Errors
    /// [`Error::InvalidName`], [`Error::Redis`].
    pub async fn queue_usage(&self, queue: &str) -> Result<QueueUsage> {
        names::validate_queue(queue)?;
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

/// The usage deltas a worker added and has not delivered yet, oldest first. A delta gets
/// its `seq` the first time it is taken and keeps it until delivered, so a beat that is
/// retried after a lost reply carries the same delta under the same seq (applied once).
#[derive(Debug, Default)]
pub(crate) struct UsageQueue {
    pending: std::collections::VecDeque<Usage>,
    seq: u64,
}

impl UsageQueue {
    /// Adds a delta (its `seq` ignored): merged into the newest one while that is not
    /// numbered yet and names the same model.
    pub(crate) fn add(&mut self, usage: Usage) {
        if let Some(last) = self.pending.back_mut()
            && last.seq == 0
            && last.model == usage.model
        {
            last.input_tokens = last.input_tokens.saturating_add(usage.input_tokens);
            last.output_tokens = last.output_tokens.saturating_add(usage.output_tokens);
            last.cached_input_tokens = last
                .cached_input_tokens
                .saturating_add(usage.cached_input_tokens);
            last.cost = last.cost.saturating_add(usage.cost);
            return;
        }
        self.pending.push_back(Usage { seq: 0, ..usage });
    }

    /// The oldest undelivered delta, numbered.
    pub(crate) fn next(&mut self) -> Option<Usage> {
        let front = self.pending.front_mut()?;
        if front.seq == 0 {
            self.seq += 1;
            front.seq = self.seq;
        }
        Some(front.clone())
    }

    /// The delta numbered `seq` got through: drop it.
    pub(crate) fn delivered(&mut self, seq: u64) {
        if self.pending.front().is_some_and(|u| u.seq == seq) {
            self.pending.pop_front();
        }
    }
}
