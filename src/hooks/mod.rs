//! Remediation hooks: a command (the event JSON on stdin) or a webhook (an HMAC-signed
//! POST) called when an execution dies, times out or gets stuck, or a worker reaches a
//! tier or has its circuit opened — through a durable outbox in Redis.
//!
//! # Layout
//! - this file: [`HookConfig`] and which events call which hooks;
//! - `outbox.rs`: the outbox (`lua/hook_*.lua`): enqueue by idempotency key, claims with a
//!   visibility timeout, outcomes;
//! - `deliver.rs`: running a command, posting a webhook, retries with backoff.
//!
//! The watchdog feeds and drains the outbox (`src/watchdog/hook_loop.rs`).

mod deliver;
mod outbox;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use deliver::deliver;
pub use deliver::{SIGNATURE_HEADER, signature};
pub(crate) use outbox::{ClaimedCall, NewCall, Outbox};

use crate::error::{Error, Result, format_duration};
use crate::{Event, State};

/// The event kinds a hook can be called on.
pub const KINDS: [&str; 12] = [
    "execution.terminate",
    "execution.budget_warning",
    "execution.budget_exceeded",
    "queue.budget_paused",
    "execution.dead",
    "execution.timed_out",
    "execution.stuck",
    "worker.tier_1",
    "worker.tier_2",
    "worker.tier_3",
    "worker.circuit_opened",
    "hook.test",
];

/// One `[[watchdog.hooks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookConfig {
    /// Unique among the hooks: part of each call's idempotency key and of its events.
    pub name: String,
    /// The event kinds it is called on (see [`KINDS`]). A hook on `worker.tier_2` or
    /// `worker.tier_3` is that tier's terminate or kill action: its outcome decides
    /// whether the action worked. A hook on `execution.terminate` makes a deadline verdict
    /// on running work wait for it: the slot is released and `timed_out` written only once
    /// it succeeds; a failed one is called again after a backoff, the slot kept.
    pub on: Vec<String>,
    /// Only events with one of these reasons (an execution's stop or stuck reason, such
    /// as `no_progress`, `looping`, `deadline_exceeded`, `heartbeat_lost`); empty: every one.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// A command and its arguments, run with the event JSON on stdin: exit 0 is success.
    #[serde(default)]
    pub command: Vec<String>,
    /// Or a URL to POST the event JSON to: a 2xx reply is success.
    #[serde(default)]
    pub url: Option<String>,
    /// Signs webhook bodies: `X-Unstuck-Signature: sha256=<hex HMAC-SHA256 of the body>`.
    #[serde(default)]
    pub secret: Option<String>,
    /// Longest one try may take (a command is killed after it).
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Tries after the first failed one, with exponential backoff.
    #[serde(default = "default_retries")]
    pub retries: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    3
}

impl HookConfig {
    /// A command hook on `on`, with the default timeout and retries.
    pub fn command(name: &str, on: &[&str], command: &[&str]) -> Self {
        Self {
            name: name.into(),
            on: on.iter().map(|s| (*s).to_owned()).collect(),
            reasons: Vec::new(),
            command: command.iter().map(|s| (*s).to_owned()).collect(),
            url: None,
            secret: None,
            timeout: default_timeout(),
            retries: default_retries(),
        }
    }

    /// A webhook on `on`, with the default timeout and retries.
    pub fn webhook(name: &str, on: &[&str], url: &str) -> Self {
        Self {
            url: Some(url.into()),
            command: Vec::new(),
            ..Self::command(name, on, &[])
        }
    }

    /// Whether it is called on `kind`.
    pub fn is_on(&self, kind: &str) -> bool {
        self.on.iter().any(|k| k == kind)
    }

    /// How long a claim on one of its calls lasts: every try at its timeout, the
    /// backoff between them, and a margin.
    pub(crate) fn visibility(&self) -> Duration {
        let tries = self.retries + 1;
        let margin = self.timeout.min(Duration::from_secs(1));
        self.timeout * tries + deliver::MAX_BACKOFF * self.retries + margin
    }

    /// # Errors
    /// [`Error::InvalidConfig`] naming the key.
    pub(crate) fn validate(&self, index: usize) -> Result<()> {
        let bad = |key: &str, value: String, expected: &str| {
            Err(Error::InvalidConfig {
                key: format!("watchdog.hooks[{index}].{key}"),
                value,
                expected: expected.into(),
            })
        };
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return bad(
                "name",
                self.name.clone(),
                "1 to 64 letters, digits, '-', '_' or '.'",
            );
        }
        if self.on.is_empty() {
            return bad("on", "[]".into(), &format!("one or more of {KINDS:?}"));
        }
        if let Some(kind) = self.on.iter().find(|k| !KINDS.contains(&k.as_str())) {
            return bad("on", kind.clone(), &format!("one of {KINDS:?}"));
        }
        match (&self.url, self.command.is_empty()) {
            (Some(_), false) | (None, true) => {
                return bad(
                    "command",
                    format!("{:?}", self.command),
                    "either a command or a url, not both",
                );
            }
            (Some(url), true) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                return bad("url", url.clone(), "an http:// or https:// URL");
            }
            _ => {}
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(3600)).contains(&self.timeout) {
            return bad(
                "timeout",
                format_duration(self.timeout),
                "a duration from 10ms to 1h",
            );
        }
        if self.retries > 20 {
            return bad("retries", self.retries.to_string(), "0 to 20");
        }
        Ok(())
    }
}

/// Checks a list of hooks: each valid, names unique.
///
/// # Errors
/// [`Error::InvalidConfig`] naming the key.
pub(crate) fn validate(hooks: &[HookConfig]) -> Result<()> {
    for (i, hook) in hooks.iter().enumerate() {
        hook.validate(i)?;
        if hooks[..i].iter().any(|h| h.name == hook.name) {
            return Err(Error::InvalidConfig {
                key: format!("watchdog.hooks[{i}].name"),
                value: hook.name.clone(),
                expected: "a name no other hook has".into(),
            });
        }
    }
    Ok(())
}

/// The hook kind an execution event is, if any.
pub(crate) fn execution_kind(event: &Event) -> Option<&'static str> {
    match event.reason.as_str() {
        "terminate_requested" => return Some("execution.terminate"),
        "budget_warning" => return Some("execution.budget_warning"),
        "budget_exceeded" => return Some("execution.budget_exceeded"),
        "queue_paused" if event.detail.starts_with("by budget") => {
            return Some("queue.budget_paused");
        }
        _ => {}
    }
    match event.to? {
        State::Dead => Some("execution.dead"),
        State::TimedOut => Some("execution.timed_out"),
        State::Stuck => Some("execution.stuck"),
        _ => None,
    }
}

/// Whether `hook` is called on `event`.
pub(crate) fn calls_on(hook: &HookConfig, event: &Event) -> bool {
    execution_kind(event).is_some_and(|kind| hook.is_on(kind))
        && (hook.reasons.is_empty() || hook.reasons.contains(&event.reason))
}

/// The names of the hooks on `kind`, comma-separated (as the tier scripts take them).
pub(crate) fn names_on(hooks: &[HookConfig], kind: &str) -> String {
    hooks
        .iter()
        .filter(|h| h.is_on(kind))
        .map(|h| h.name.as_str())
        .collect::<Vec<_>>()
        .join(",")
}
