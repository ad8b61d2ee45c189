//! Worker remediation as the registry records it: the tier a worker reached, what its
//! heartbeat reply asks of it, its circuit, and the log of tier changes.
//!
//! The watchdog escalates (`src/watchdog/tiers.rs`); this is what workers, operators and
//! the registry listing see of it. The scripts are `lua/worker_*.lua` (+ `_tiers.lua`).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Ledger, ms_to_time};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::names;
use crate::scripts::{WORKER_HEARTBEAT, WORKER_OUTCOME, WORKER_REQUEST, WORKER_RESET};

/// What a worker's heartbeat reply asks of it (tier 1, cooperative).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub enum WorkerRequest {
    /// Stop claiming, hand back what it runs (failed retryably), deregister, and exit so
    /// that its process manager starts a fresh one (of the expected version).
    Restart,
    /// Stop claiming, finish what it runs, deregister, exit.
    Drain,
}

impl WorkerRequest {
    /// The word on the wire and in Redis.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerRequest::Restart => "restart",
            WorkerRequest::Drain => "drain",
        }
    }
}

impl fmt::Display for WorkerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WorkerRequest {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "restart" => Ok(WorkerRequest::Restart),
            "drain" => Ok(WorkerRequest::Drain),
            _ => Err(()),
        }
    }
}

/// Where a worker stands in the remediation ladder: 0 none, 1 asked to restart (in its
/// heartbeat reply), 2 terminated through a hook (SIGTERM for a local `unstuck exec`),
/// 3 killed and restarted through a hook; then the circuit opens.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerRemediation {
    /// The tier reached: 0 to 3.
    pub tier: u8,
    /// When that tier was entered (its cooldown counts from here).
    pub tier_since: Option<DateTime<Utc>>,
    /// What escalated it: `stale`, `outdated` or `wedged`.
    pub verdict: Option<String>,
    /// What the worker's heartbeat reply asks of it.
    pub request: Option<WorkerRequest>,
    /// The current tier's terminate or kill action: `pending`, `ok` or `failed`.
    pub action: Option<String>,
    /// The action's outcome, in words.
    pub action_detail: Option<String>,
    /// Consecutive tier-3 actions that did not fix the worker.
    pub tier3_failures: u32,
    /// True once unstuck stopped acting on the worker; an operator resets it.
    pub circuit_open: bool,
    /// When the circuit opened.
    pub circuit_opened_at: Option<DateTime<Utc>>,
    /// Why it opened.
    pub circuit_reason: Option<String>,
}

impl WorkerRemediation {
    /// Reads the tier fields of a worker hash (all absent: tier 0, closed).
    pub(crate) fn from_fields(f: &HashMap<String, String>) -> Result<Self> {
        let text = |k: &str| f.get(k).filter(|v| !v.is_empty()).cloned();
        let time = |k: &str| -> Result<Option<DateTime<Utc>>> {
            match text(k) {
                None => Ok(None),
                Some(v) => {
                    let ms = v.parse::<i64>().map_err(|_| Error::Protocol {
                        script: "worker hash",
                        detail: format!("{k} is not a number"),
                    })?;
                    ms_to_time(ms).map(Some)
                }
            }
        };
        let tier = text("tr").and_then(|t| t.parse::<u8>().ok()).unwrap_or(0);
        Ok(Self {
            tier,
            tier_since: if tier > 0 { time("tat")? } else { None },
            verdict: if tier > 0 { text("tvd") } else { None },
            request: text("req").and_then(|r| r.parse().ok()),
            action: text("act"),
            action_detail: text("adt"),
            tier3_failures: text("t3f").and_then(|n| n.parse().ok()).unwrap_or(0),
            circuit_open: text("cb").as_deref() == Some("open"),
            circuit_opened_at: time("cbat")?,
            circuit_reason: text("cbr"),
        })
    }
}

/// The registry's answer to a worker heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerBeat {
    /// The instant the registry recorded.
    pub last_seen_at: DateTime<Utc>,
    /// What the watchdog asks of the worker, if anything: honour it.
    pub request: Option<WorkerRequest>,
}

/// What an operator's reset found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct WorkerReset {
    /// The tier the worker was in.
    pub previous_tier: u8,
    /// Whether its circuit was open.
    pub circuit_was_open: bool,
}

impl Ledger {
    /// A worker's registry heartbeat, with what the watchdog asks of it in the reply.
    /// One round trip.
    ///
    /// # Errors
    /// [`Error::UnknownWorker`] when the worker is not registered: register again under a
    /// fresh id.
    pub async fn worker_beat(
        &self,
        worker_id: &str,
        running: &[(String, String)],
    ) -> Result<WorkerBeat> {
        names::validate_worker_id(worker_id)?;
        let members: Vec<String> = running
            .iter()
            .map(|(q, id)| Keyspace::member(q, id))
            .collect();
        let list = serde_json::to_string(&members).map_err(|e| Error::NotJson {
            what: "running list",
            reason: e.to_string(),
        })?;
        self.check_size("running list", list.len())?;
        let reply = WORKER_HEARTBEAT
            .key(self.keys.worker(worker_id))
            .key(self.keys.worker_index())
            .arg(worker_id)
            .arg(list)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(WorkerBeat {
                last_seen_at: reply.time(1)?,
                request: reply.str(2).ok().and_then(|r| r.parse().ok()),
            }),
            "unknown" => Err(Error::UnknownWorker {
                worker_id: worker_id.into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// Resets a worker's remediation — its tier, its failed tier-3 count, an open circuit
    /// — so the watchdog judges it afresh. `why` goes into the `circuit_reset` event.
    ///
    /// # Errors
    /// [`Error::UnknownWorker`] when it is not registered.
    pub async fn reset_worker(&self, worker_id: &str, why: &str) -> Result<WorkerReset> {
        names::validate_worker_id(worker_id)?;
        self.check_size("reset reason", why.len())?;
        let reply = WORKER_RESET
            .key(self.keys.worker(worker_id))
            .key(self.keys.worker_events())
            .arg(self.config.events_max_len)
            .arg("operator")
            .arg(why)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(WorkerReset {
                previous_tier: reply.u32(1)? as u8,
                circuit_was_open: reply.flag(2)?,
            }),
            "unknown" => Err(Error::UnknownWorker {
                worker_id: worker_id.into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// Asks a worker, in its next registry heartbeat reply, to restart or drain (what tier
    /// 1 asks, without a verdict): a deploy or a maintenance. `why` goes into the event.
    ///
    /// # Errors
    /// [`Error::UnknownWorker`] when it is not registered.
    pub async fn request_worker(
        &self,
        worker_id: &str,
        request: WorkerRequest,
        why: &str,
    ) -> Result<()> {
        names::validate_worker_id(worker_id)?;
        self.check_size("request reason", why.len())?;
        let reply = WORKER_REQUEST
            .key(self.keys.worker(worker_id))
            .key(self.keys.worker_events())
            .arg(self.config.events_max_len)
            .arg(request.as_str())
            .arg("operator")
            .arg(why)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(()),
            "unknown" => Err(Error::UnknownWorker {
                worker_id: worker_id.into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// Records the outcome of a tier's terminate or kill action `action_id`. Returns false
    /// when that action is no longer the worker's current one (a late or repeated report).
    ///
    /// # Errors
    /// [`Error::Redis`].
    pub(crate) async fn record_worker_action(
        &self,
        worker_id: &str,
        action_id: &str,
        ok: bool,
        detail: &str,
        actor: &str,
    ) -> Result<bool> {
        let reply = WORKER_OUTCOME
            .key(self.keys.worker(worker_id))
            .key(self.keys.worker_events())
            .arg(self.config.events_max_len)
            .arg(action_id)
            .arg(if ok { "ok" } else { "failed" })
            .arg(truncate(detail, 1000))
            .arg(actor)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(true),
            "stale" | "gone" => Ok(false),
            _ => Err(reply.unexpected()),
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
