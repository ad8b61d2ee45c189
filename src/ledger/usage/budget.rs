//! Budgets: the limit on one execution's usage and a queue's budget per rolling window,
//! and how a queue stores its defaults in its settings hash.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_USAGE_WINDOW, DEFAULT_WARNING_SHARE, MAX_USAGE_AMOUNT};
use crate::error::{Error, Result};

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
