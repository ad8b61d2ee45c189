//! `cancel`: stop queued work at once; ask active work to stop (`lua/cancel.lua`); and
//! `acknowledge_cancel`, the worker's answer (`lua/ack_cancel.lua`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::finish_outcome;
use super::{AttemptToken, CompleteOutcome};
use super::{Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::names;
use crate::scripts::{ACK_CANCEL, CANCEL};

/// What `cancel` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CancelOutcome {
    /// It was queued or awaiting (no worker held it): cancelled now.
    Cancelled,
    /// It is active: the worker sees `cancel_requested` on its next heartbeat.
    /// `already` is true when an earlier call had requested it.
    Requested {
        /// When the cancellation was first requested.
        requested_at: DateTime<Utc>,
        /// True when it had been requested before this call (nothing changed).
        already: bool,
    },
    /// Already terminal: nothing changed.
    AlreadyTerminal {
        /// The state it ended in.
        state: State,
        /// Why it stopped.
        stop_reason: StopReason,
    },
}

impl Ledger {
    /// Cancels an execution; `reason` is recorded for the people reading it later.
    /// One round trip.
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::InvalidName`].
    pub async fn cancel(&self, queue: &str, id: &str, reason: &str) -> Result<CancelOutcome> {
        crate::otel::settle(
            self,
            (queue, id, None),
            "cancel",
            self.cancel_once(queue, id, reason),
        )
        .await
    }

    async fn cancel_once(&self, queue: &str, id: &str, reason: &str) -> Result<CancelOutcome> {
        names::validate_queue(queue)?;
        names::validate_execution_id(id)?;
        self.check_size("cancel reason", reason.len())?;
        let k = &self.keys;
        let (maxlen, hist) = self.limits();
        let reply = CANCEL
            .key(k.execution(queue, id))
            .key(k.queue_events(queue))
            .key(k.pending(queue))
            .key(k.queue_timer(queue, Timer::Deadline))
            .key(k.queue_timer(queue, Timer::Cancel))
            .key(k.finished(queue, "cancelled"))
            .key(k.queue_timer(queue, Timer::Wait))
            .arg(Keyspace::member(queue, id))
            .arg(reason)
            .arg(maxlen)
            .arg(hist)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "cancelled" => Ok(CancelOutcome::Cancelled),
            "requested" => Ok(CancelOutcome::Requested {
                requested_at: reply.time(1)?,
                already: reply.flag(2)?,
            }),
            "terminal" => Ok(CancelOutcome::AlreadyTerminal {
                state: reply.state(1)?,
                stop_reason: StopReason::parse(reply.str(2)?),
            }),
            "missing" => Err(Error::NotFound {
                queue: queue.into(),
                id: id.into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }

    /// The worker acknowledges a cancellation request and has stopped: the execution is
    /// cancelled and its slot freed. One round trip.
    ///
    /// # Errors
    /// [`Error::InvalidTransition`] when no cancellation was requested,
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn acknowledge_cancel(&self, token: &AttemptToken) -> Result<CompleteOutcome> {
        let at = (token.queue.as_str(), token.id.as_str(), Some(token.attempt));
        let ack = self.acknowledge_cancel_once(token);
        crate::otel::settle(self, at, "acknowledge_cancel", ack).await
    }

    async fn acknowledge_cancel_once(&self, token: &AttemptToken) -> Result<CompleteOutcome> {
        let (maxlen, hist) = self.limits();
        let mut call = ACK_CANCEL.call();
        for key in self.attempt_keys(token) {
            call.key(key);
        }
        call.key(self.keys.finished(&token.queue, "cancelled"))
            .arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(maxlen)
            .arg(hist);
        let reply = call.run(&mut self.conn.clone()).await?;
        self.free_if_ended(&reply, token, "acknowledged its cancellation")
            .await?;
        if reply.status() == "not_requested" {
            return Err(Error::InvalidTransition {
                operation: "acknowledge cancellation of",
                queue: token.queue.clone(),
                id: token.id.clone(),
                reason: format!("no cancellation was requested (state {})", reply.str(1)?),
            });
        }
        finish_outcome(&reply, token)
    }
}
