//! Settings of worker remediation: which workers are judged bad, the cooldown of each tier,
//! the circuit breaker.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, format_duration};

/// `[watchdog.tiers]`: how workers are escalated. Off by default: turning it on lets the
/// watchdog signal local `unstuck exec` supervisors and call the worker hooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TierConfig {
    /// Judge workers at all.
    pub enabled: bool,
    /// How often the workers are judged (one tier per judgement at most).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Time a worker stays in tier 1 (asked to restart) before it is terminated.
    #[serde(with = "humantime_serde")]
    pub cooldown_cooperative: Duration,
    /// Time a worker stays in tier 2 (terminated) before it is killed and restarted.
    #[serde(with = "humantime_serde")]
    pub cooldown_terminate: Duration,
    /// Time after a kill-and-restart before it counts as failed, when the worker is still
    /// judged bad (and the next one is tried).
    #[serde(with = "humantime_serde")]
    pub cooldown_kill: Duration,
    /// Failed tier-3 actions in a row, within `breaker_window`, that open the circuit.
    pub breaker_failures: u32,
    /// The window in which those failures count; an older one starts the count afresh.
    #[serde(with = "humantime_serde")]
    pub breaker_window: Duration,
    /// Signal `unstuck exec` supervisors on this host directly (SIGTERM at tier 2,
    /// SIGKILL at tier 3) when no worker hook is configured.
    pub signal_local: bool,
    /// How long a local signal waits for the process to go before it counts as failed.
    #[serde(with = "humantime_serde")]
    pub signal_wait: Duration,
    /// The version stamp workers of a queue must run (overrides
    /// `watchdog.expected_worker_version` for that queue).
    pub expected_versions: BTreeMap<String, String>,
}

impl Default for TierConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            interval: Duration::from_secs(5),
            cooldown_cooperative: Duration::from_secs(60),
            cooldown_terminate: Duration::from_secs(30),
            cooldown_kill: Duration::from_secs(60),
            breaker_failures: 3,
            breaker_window: Duration::from_secs(1800),
            signal_local: true,
            signal_wait: Duration::from_secs(5),
            expected_versions: BTreeMap::new(),
        }
    }
}

impl TierConfig {
    /// The cooldown of `tier` (1 to 3).
    pub(crate) fn cooldown(&self, tier: u8) -> Duration {
        match tier {
            1 => self.cooldown_cooperative,
            2 => self.cooldown_terminate,
            _ => self.cooldown_kill,
        }
    }

    /// # Errors
    /// [`Error::InvalidConfig`] naming the key.
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("watchdog.tiers.{key}"),
                value,
                expected: expected.into(),
            })
        };
        let (lo, hi) = (Duration::from_millis(10), Duration::from_secs(7 * 86_400));
        for (key, d) in [
            ("interval", self.interval),
            ("cooldown_cooperative", self.cooldown_cooperative),
            ("cooldown_terminate", self.cooldown_terminate),
            ("cooldown_kill", self.cooldown_kill),
            ("breaker_window", self.breaker_window),
            ("signal_wait", self.signal_wait),
        ] {
            if !(lo..=hi).contains(&d) {
                return bad(key, format_duration(d), "a duration from 10ms to 7 days");
            }
        }
        if !(1..=100).contains(&self.breaker_failures) {
            return bad(
                "breaker_failures",
                self.breaker_failures.to_string(),
                "1 to 100",
            );
        }
        for (queue, version) in &self.expected_versions {
            crate::names::validate_queue(queue)?;
            if version.is_empty() || version.len() > 200 {
                return bad(
                    &format!("expected_versions.{queue}"),
                    version.clone(),
                    "a version stamp of 1 to 200 bytes",
                );
            }
        }
        Ok(())
    }
}
