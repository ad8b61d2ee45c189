//! Queue pause and resume: an operator stops a queue's claims, and starts them again
//! (`lua/pause_queue.lua`, `lua/resume_queue.lua`, the shared `lua/_pause.lua`).
//!
//! A paused queue's claims take nothing — a long poll keeps waiting, it is not refused —
//! while work already running goes on and is still judged by the watchdog; retries and
//! snoozes wait in the queue. The pause is kept in Redis (it survives restarts and
//! [`Ledger::set_queue`]); the resume event wakes the queue's waiting claims at once.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Ledger;
use crate::error::{Error, Result};
use crate::names;
use crate::scripts::{PAUSE_QUEUE, RESUME_QUEUE, Reply};

/// Longest `by` accepted: a name, not a story.
pub const MAX_PAUSED_BY: usize = 128;
/// Longest pause or resume reason accepted, in bytes.
pub const MAX_PAUSE_REASON: usize = 500;

/// A queue's pause: since when, by whom, why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct QueuePause {
    /// When it was paused (Redis time).
    pub since: DateTime<Utc>,
    /// Who paused it: `http:<scope>` over the HTTP API, `cli:<user>` from the command
    /// line, the caller's name in the library (`budget` when a queue budget did).
    pub by: String,
    /// Why, as given.
    pub reason: String,
}

/// What [`Ledger::pause_queue`] or [`Ledger::resume_queue`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct QueuePauseChange {
    /// The queue.
    pub queue: String,
    /// Whether the queue is paused now.
    pub paused: bool,
    /// False when it already was as asked (paused, or running): nothing was written and
    /// no event emitted.
    pub changed: bool,
    /// After a pause: the pause in force (this call's, or the earlier one when
    /// `changed` is false). After a resume: the pause it ended (`None` when the queue
    /// was running).
    pub pause: Option<QueuePause>,
}

impl Ledger {
    /// Pauses `queue`: from now on its claims take nothing (long polls keep waiting)
    /// until [`resume_queue`](Self::resume_queue). Work already running goes on and is
    /// still judged; retries and snoozes wait. `by` names who paused it and `reason` why;
    /// both go into the `queue_paused` event and the queue's overview. Pausing a paused
    /// queue changes nothing and says so (`changed: false`, the pause in force).
    ///
    /// ```no_run
    /// # async fn demo(ledger: unstuck::Ledger) -> unstuck::Result<()> {
    /// ledger.pause_queue("emails", "ops-bot", "provider outage").await?;
    /// // ... later ...
    /// ledger.resume_queue("emails", "ops-bot", "provider is back").await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::UnknownQueue`] for a queue never used or configured,
    /// [`Error::InvalidName`], [`Error::InvalidArgument`] for an empty or long `by` or
    /// `reason` (nothing written in each case), [`Error::Redis`].
    pub async fn pause_queue(
        &self,
        queue: &str,
        by: &str,
        reason: &str,
    ) -> Result<QueuePauseChange> {
        check_pause_args(queue, by, reason, true)?;
        let reply = self.pause_call(&PAUSE_QUEUE, queue, by, reason).await?;
        match reply.status() {
            "paused" => Ok(QueuePauseChange {
                queue: queue.to_owned(),
                paused: true,
                changed: true,
                pause: Some(QueuePause {
                    since: reply.time(1)?,
                    by: by.to_owned(),
                    reason: reason.to_owned(),
                }),
            }),
            "already" => Ok(QueuePauseChange {
                queue: queue.to_owned(),
                paused: true,
                changed: false,
                pause: Some(pause_at(&reply, 1)?),
            }),
            _ => Err(refusal(&reply, queue)),
        }
    }

    /// Resumes a paused `queue`: its waiting claims wake at once (the `queue_resumed`
    /// event wakes them) and take its work. `by` and `reason` (may be empty) go into the
    /// event. Resuming a running queue changes nothing and says so (`changed: false`).
    ///
    /// # Errors
    /// As [`pause_queue`](Self::pause_queue); `reason` may be empty.
    pub async fn resume_queue(
        &self,
        queue: &str,
        by: &str,
        reason: &str,
    ) -> Result<QueuePauseChange> {
        check_pause_args(queue, by, reason, false)?;
        let reply = self.pause_call(&RESUME_QUEUE, queue, by, reason).await?;
        match reply.status() {
            "resumed" => Ok(QueuePauseChange {
                queue: queue.to_owned(),
                paused: false,
                changed: true,
                pause: Some(pause_at(&reply, 1)?),
            }),
            "running" => Ok(QueuePauseChange {
                queue: queue.to_owned(),
                paused: false,
                changed: false,
                pause: None,
            }),
            _ => Err(refusal(&reply, queue)),
        }
    }

    async fn pause_call(
        &self,
        script: &crate::scripts::Lua,
        queue: &str,
        by: &str,
        reason: &str,
    ) -> Result<Reply> {
        let k = &self.keys;
        let (maxlen, _) = self.limits();
        script
            .key(k.queue_settings(queue))
            .key(k.queues(k.partition_of(queue)))
            .key(k.queue_events(queue))
            .arg(queue)
            .arg(by)
            .arg(reason)
            .arg(maxlen)
            .run(&mut self.conn.clone())
            .await
    }
}

/// The pause held in words `at` (since ms), `at + 1` (by), `at + 2` (why) of a reply;
/// `None` when the first is empty (the queue runs).
pub(super) fn pause_in(reply: &Reply, at: usize) -> Result<Option<QueuePause>> {
    if reply.str(at)?.is_empty() {
        return Ok(None);
    }
    pause_at(reply, at).map(Some)
}

fn pause_at(reply: &Reply, at: usize) -> Result<QueuePause> {
    Ok(QueuePause {
        since: reply.time(at)?,
        by: reply.str(at + 1)?.to_owned(),
        reason: reply.str(at + 2)?.to_owned(),
    })
}

fn refusal(reply: &Reply, queue: &str) -> Error {
    match reply.status() {
        "unknown" => Error::UnknownQueue {
            queue: queue.to_owned(),
        },
        _ => reply.unexpected(),
    }
}

/// Refuses a bad queue name, an empty or long `by`, and a reason that is long (or, for a
/// pause, empty), before any call. Neither may hold control characters (they end up in
/// tables and event lines).
fn check_pause_args(queue: &str, by: &str, reason: &str, reason_needed: bool) -> Result<()> {
    names::validate_queue(queue)?;
    let bad = |name: &str, value: &str, expected: String| Error::InvalidArgument {
        name: name.into(),
        value: format!("{:?}", value.chars().take(80).collect::<String>()),
        expected,
    };
    if by.trim().is_empty() || by.len() > MAX_PAUSED_BY || by.chars().any(char::is_control) {
        return Err(bad(
            "by",
            by,
            format!("who does it: 1 to {MAX_PAUSED_BY} bytes, no control characters"),
        ));
    }
    let empty = reason.trim().is_empty();
    if (reason_needed && empty)
        || reason.len() > MAX_PAUSE_REASON
        || reason.chars().any(char::is_control)
    {
        let least = if reason_needed { 1 } else { 0 };
        return Err(bad(
            "reason",
            reason,
            format!("why: {least} to {MAX_PAUSE_REASON} bytes, no control characters"),
        ));
    }
    Ok(())
}
