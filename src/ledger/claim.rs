//! `claim`: a worker takes available executions, one capacity slot each.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{AttemptToken, Ledger, ms_to_time};
use crate::error::{Error, Result};
use crate::keys::Timer;
use crate::names;
use crate::otel::TraceParent;
use crate::scripts::{CLAIM, Reply};

/// One claimed attempt: what the worker runs and the token it must present from now on.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    /// Present it with every call about this attempt.
    pub token: AttemptToken,
    /// The payload the execution was enqueued with.
    pub payload: serde_json::Value,
    /// The last checkpoint of an earlier attempt: resume from here instead of restarting.
    pub checkpoint: Option<serde_json::Value>,
    /// Heartbeat at a fraction of this (the runner uses a third).
    pub heartbeat_timeout: Duration,
    /// The execution's hard deadline, if it has one (across attempts).
    pub deadline_at: Option<DateTime<Utc>>,
    /// What `resume` handed over, when this claim continues a resumed wait (it stays with
    /// the execution until it awaits again, so a retry of the continuation gets it too).
    pub resume_input: Option<serde_json::Value>,
    /// The trace context stored at enqueue (docs/tracing.md): a worker's span about
    /// this attempt links to it.
    pub traceparent: Option<TraceParent>,
}

impl Claim {
    /// The queue of the claimed execution.
    pub fn queue(&self) -> &str {
        &self.token.queue
    }

    /// The claimed execution's id.
    pub fn id(&self) -> &str {
        &self.token.id
    }

    /// The attempt number this claim started (1 for the first).
    pub fn attempt(&self) -> u32 {
        self.token.attempt
    }
}

/// The result of [`Ledger::claim_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimBatch {
    /// The claims made, in the queue's order.
    pub claims: Vec<Claim>,
    /// Claiming stopped because every capacity slot is held.
    pub queue_full: bool,
    /// Nothing was claimed because the queue is paused ([`Ledger::pause_queue`]).
    pub queue_paused: bool,
    /// When claiming stopped for lack of available work: the instant the earliest delayed
    /// (backing-off) execution becomes available, if any.
    pub next_available_at: Option<DateTime<Utc>>,
}

/// Most executions one `claim_many` call takes, to keep the script short.
pub const MAX_CLAIM_BATCH: usize = 1000;

impl Ledger {
    /// Claims the next available execution of `queue` for `worker_id`, if a capacity slot
    /// is free. One round trip.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad queue or worker id.
    pub async fn claim(&self, queue: &str, worker_id: &str) -> Result<Option<Claim>> {
        Ok(self.claim_many(queue, worker_id, 1).await?.claims.pop())
    }

    /// Claims up to `max` available executions in one round trip (a worker with spare
    /// concurrency fills it at once).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad queue or worker id, [`Error::InvalidArgument`] when
    /// `max` is 0 or above [`MAX_CLAIM_BATCH`].
    pub async fn claim_many(&self, queue: &str, worker_id: &str, max: usize) -> Result<ClaimBatch> {
        check_claim(queue, worker_id, max)?;
        let k = &self.keys;
        let (maxlen, hist) = self.limits();
        let mut call = CLAIM.call();
        call.key(k.pending(queue))
            .key(k.slots(queue))
            .key(k.queue_settings(queue))
            .key(k.queue_events(queue))
            .key(k.queue_timer(queue, Timer::Start))
            .arg(queue)
            .arg(k.execution_prefix(queue))
            .arg(worker_id)
            .arg(max)
            .arg(self.config.default_capacity)
            .arg(maxlen)
            .arg(hist);
        for _ in 0..max {
            call.arg(AttemptToken::fresh_nonce());
        }
        let reply = call.run(&mut self.conn.clone()).await?;
        claim_batch(&reply, queue)
    }
}

/// Refuses a bad queue or worker id, or a batch size out of range, before any call.
pub(super) fn check_claim(queue: &str, worker_id: &str, max: usize) -> Result<()> {
    names::validate_queue(queue)?;
    names::validate_worker_id(worker_id)?;
    if max == 0 || max > MAX_CLAIM_BATCH {
        return Err(Error::InvalidArgument {
            name: "max".into(),
            value: max.to_string(),
            expected: format!("1 to {MAX_CLAIM_BATCH}"),
        });
    }
    Ok(())
}

/// Reads the claim loop's reply (`lua/_claim.lua`).
pub(super) fn claim_batch(reply: &Reply, queue: &str) -> Result<ClaimBatch> {
    if reply.status() != "ok" {
        return Err(reply.unexpected());
    }
    let stop = reply.str(1)?;
    let next = reply.str(2)?;
    let count = reply.usize(3)?;
    if reply.len() != 4 + count * 9 {
        return Err(reply.unexpected());
    }
    let mut claims = Vec::with_capacity(count);
    for i in 0..count {
        let at = 4 + i * 9;
        let json = |j: usize| -> Result<Option<serde_json::Value>> {
            let text = reply.str(at + j)?;
            if text.is_empty() {
                return Ok(None);
            }
            serde_json::from_str(text)
                .map(Some)
                .map_err(|_| reply.unexpected())
        };
        let deadline_ms = reply.i64(at + 6)?;
        claims.push(Claim {
            token: AttemptToken {
                queue: queue.to_owned(),
                id: reply.str(at)?.to_owned(),
                attempt: reply.u32(at + 1)?,
                nonce: reply.str(at + 2)?.to_owned(),
            },
            payload: json(3)?.unwrap_or(serde_json::Value::Null),
            checkpoint: json(4)?,
            heartbeat_timeout: reply.millis(at + 5)?.max(Duration::from_millis(1)),
            deadline_at: if deadline_ms > 0 {
                Some(ms_to_time(deadline_ms)?)
            } else {
                None
            },
            resume_input: json(7)?,
            traceparent: TraceParent::parse(reply.str(at + 8)?),
        });
    }
    crate::otel::received(&claims);
    let next_available_at = if next.is_empty() {
        None
    } else {
        Some(reply.time(2)?)
    };
    Ok(ClaimBatch {
        claims,
        queue_full: stop == "full",
        queue_paused: stop == "paused",
        next_available_at,
    })
}
