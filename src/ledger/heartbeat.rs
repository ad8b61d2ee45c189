//! `heartbeat`: the worker says the attempt is alive, with optional progress, checkpoint
//! and fingerprint; the reply says whether to keep going (`lua/heartbeat.lua`).

use serde::{Deserialize, Serialize};

use super::attempt::refusal;
use super::{AttemptToken, Ledger, State, StopReason, Usage};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::scripts::HEARTBEAT;

/// What a heartbeat carries besides "alive".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Heartbeat {
    /// Any text that changes when the work moves on (a step counter, a phase name). A
    /// heartbeat whose progress equals the last one does not count as progress.
    pub progress: Option<String>,
    /// Where a retry should resume from; replaces the previous checkpoint.
    pub checkpoint: Option<serde_json::Value>,
    /// A short text naming the last action and its result (a hash of them, say), for loop
    /// detection: the same fingerprint `max_repeats` times in a row and the execution is
    /// stuck `looping`. A different one starts the count again; none leaves it alone. At
    /// most [`MAX_FINGERPRINT_BYTES`], not empty.
    pub fingerprint: Option<String>,
    /// Tokens and cost spent since the last delta (applied once, by its `seq`).
    pub usage: Option<Usage>,
}

/// Longest fingerprint a heartbeat may carry, in bytes.
pub const MAX_FINGERPRINT_BYTES: usize = 128;

impl Heartbeat {
    /// A heartbeat that says only "alive".
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports progress (it counts as progress only when it changes).
    pub fn progress(mut self, progress: impl Into<String>) -> Self {
        self.progress = Some(progress.into());
        self
    }

    /// Reports usage (tokens, cost) spent since the previous delta.
    pub fn usage(mut self, usage: Usage) -> Self {
        self.usage = Some(usage);
        self
    }

    /// Reports where a retry should resume from.
    pub fn checkpoint(mut self, checkpoint: serde_json::Value) -> Self {
        self.checkpoint = Some(checkpoint);
        self
    }

    /// Reports the fingerprint of the last action and its result (loop detection). Each
    /// heartbeat that carries one counts as one arrival.
    pub fn fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.fingerprint = Some(fingerprint.into());
        self
    }
}

/// Checks a fingerprint: 1 to [`MAX_FINGERPRINT_BYTES`] bytes.
///
/// # Errors
/// [`Error::InvalidArgument`] naming `fingerprint`.
pub(crate) fn check_fingerprint(fingerprint: &str) -> Result<()> {
    if fingerprint.is_empty() || fingerprint.len() > MAX_FINGERPRINT_BYTES {
        let mut shown: String = fingerprint.chars().take(40).collect();
        if shown.len() < fingerprint.len() {
            shown.push('…');
        }
        return Err(Error::InvalidArgument {
            name: "fingerprint".into(),
            value: format!("{shown:?} ({} bytes)", fingerprint.len()),
            expected: format!("a text of 1 to {MAX_FINGERPRINT_BYTES} bytes"),
        });
    }
    Ok(())
}

/// The reply to a heartbeat: keep going, or stop and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeartbeatReply {
    /// The attempt is current. Stop soon and acknowledge if `cancel_requested`.
    Ok {
        /// Stop soon and acknowledge the cancellation.
        cancel_requested: bool,
        /// Why, when the ledger asked and not an operator: `budget_exceeded`. `None`
        /// for an operator's cancel (or none requested).
        cancel_reason: Option<String>,
    },
    /// The caller's attempt is over: a newer attempt exists, or this one was ended and a
    /// retry waits in the queue still carrying this attempt's number (its claim makes it
    /// N+1, see [`next_attempt`](Self::next_attempt)). Stop, the work is not yours.
    StaleAttempt {
        /// The attempt the execution is on now (the caller's own, when a retry waits).
        current_attempt: u32,
        /// Its state now.
        state: State,
    },
    /// The execution is terminal: stop.
    Terminal {
        /// The state it ended in.
        state: State,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}

impl HeartbeatReply {
    /// True when the worker should stop working on this attempt.
    pub fn should_stop(&self) -> bool {
        !matches!(
            self,
            HeartbeatReply::Ok {
                cancel_requested: false,
                ..
            }
        )
    }
}

impl Ledger {
    /// Reports that the attempt is alive, with optional progress and checkpoint. The first
    /// heartbeat moves dispatched → running. One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`](crate::Error::NotFound), [`Error::TokenMismatch`](crate::Error::TokenMismatch) for a token never issued for this
    /// attempt, [`Error::TooLarge`](crate::Error::TooLarge) for an oversized checkpoint,
    /// [`Error::InvalidArgument`] for an empty or over-long fingerprint (nothing written).
    pub async fn heartbeat(&self, token: &AttemptToken, beat: Heartbeat) -> Result<HeartbeatReply> {
        let checkpoint = beat
            .checkpoint
            .as_ref()
            .map(|c| self.json_text("checkpoint", c))
            .transpose()?;
        if let Some(p) = &beat.progress {
            self.check_size("progress", p.len())?;
        }
        if let Some(fp) = &beat.fingerprint {
            check_fingerprint(fp)?;
        }
        if let Some(u) = &beat.usage {
            u.validate()?;
        }
        let k = &self.keys;
        let q = token.queue.as_str();
        let (maxlen, hist) = self.limits();
        let mut call = HEARTBEAT.key(k.execution(q, &token.id));
        call.key(k.queue_events(q))
            .key(k.queue_timer(q, Timer::Start))
            .key(k.queue_timer(q, Timer::Heartbeat))
            .key(k.queue_timer(q, Timer::Progress))
            .key(k.queue_timer(q, Timer::Stuck))
            .arg(Keyspace::member(q, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(if beat.progress.is_some() { "1" } else { "0" })
            .arg(beat.progress.as_deref().unwrap_or(""))
            .arg(if checkpoint.is_some() { "1" } else { "0" })
            .arg(checkpoint.as_deref().unwrap_or(""))
            .arg(maxlen)
            .arg(hist)
            .arg(beat.fingerprint.as_deref().unwrap_or(""));
        if let Some(usage) = &beat.usage {
            call.key(k.queue_settings(q))
                .key(k.queue_usage_journal(q))
                .key(k.usage_journals(k.partition_of(q)))
                .key(k.queue_timer(q, Timer::Cancel))
                .arg(usage.arg(&Keyspace::member(q, &token.id), token.attempt));
        }
        let reply = call.run(&mut self.conn.clone()).await?;
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(refused);
        }
        match reply.status() {
            "ok" => {
                if reply.len() > 2 && reply.str(2)? == "revived" {
                    self.leave_stale_windows(token).await;
                }
                let cancel_reason = match reply.len() > 3 && !reply.str(3)?.is_empty() {
                    true => Some(reply.str(3)?.to_owned()),
                    false => None,
                };
                if reply.len() > 4 && reply.str(4)? == "fold" {
                    self.fold_in_background(&token.queue);
                }
                Ok(HeartbeatReply::Ok {
                    cancel_requested: reply.flag(1)?,
                    cancel_reason,
                })
            }
            _ => Err(reply.unexpected()),
        }
    }

    /// A revived execution was not lost after all: it no longer counts toward a systemic
    /// hold (nor twice in the running population). Bookkeeping for the watchdog's count,
    /// kept off the heartbeat script's keys so every plain beat stays as cheap as it was;
    /// if it fails, the entry simply ages out of the window.
    async fn leave_stale_windows(&self, token: &AttemptToken) {
        let k = &self.keys;
        let p = k.partition_of(&token.queue);
        let member = Keyspace::member(&token.queue, &token.id);
        let mut pipe = redis::pipe();
        pipe.zrem(k.stale_window(p), &member)
            .ignore()
            .zrem(k.namespace_stale_window(p), &member)
            .ignore();
        if let Err(error) = pipe.query_async::<()>(&mut self.conn.clone()).await {
            tracing::debug!(%error, "a revived execution stays in the systemic window until it ages out");
        }
    }
}
