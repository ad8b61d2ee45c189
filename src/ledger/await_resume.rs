//! `await_resume`: a worker ends its attempt to wait on a person or an outside event
//! (`lua/await.lua`); `resume` and `resume_by_token` put the execution back in the queue
//! with the input the continuing claim gets (`lua/resume.lua`).
//!
//! An awaiting execution holds no slot and no staleness timer: only its wait deadline
//! (judged by the watchdog's round: `failed` with `wait_expired`, or re-queued where its
//! queue says so) and its hard deadline apply. The attempt that awaited is a continuation,
//! not a retry: it does not count toward `max_attempts`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::refusal;
use super::{AttemptToken, Ledger, State, StopReason};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::names;
use crate::scripts::{AWAIT, RESUME, Reply};

/// Longest wait a queue allows when it sets none (`QueueSettings::waits`): 7 days.
pub const DEFAULT_MAX_WAIT: Duration = Duration::from_secs(7 * 24 * 3600);

/// Longest wait reason kept, in bytes.
pub const MAX_WAIT_REASON: usize = 1024;

/// What a worker says when it ends its attempt to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitResume {
    /// What it waits for, for the people who may resume it ("approval of the plan").
    pub reason: String,
    /// How long it may wait for a resume, from now: more than zero, at most its queue's
    /// longest wait ([`DEFAULT_MAX_WAIT`] unless the queue sets one).
    pub wait_deadline: Duration,
    /// Where the continuing claim resumes from; replaces the last checkpoint when given.
    pub checkpoint: Option<serde_json::Value>,
}

/// The execution waits: how it can be resumed, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Awaited {
    /// The one-time resume token: whoever holds it may resume the execution once (an
    /// approval link, a webhook) without a scoped credential. Only its hash is stored:
    /// it cannot be read back, keep it.
    pub resume_token: String,
    /// When the watchdog ends the wait if nobody resumes it.
    pub wait_deadline_at: DateTime<Utc>,
    /// True when this call freed the attempt's slot.
    pub slot_released: bool,
}

super::attempt::attempt_outcome! {
    /// The outcome of `await_resume`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum AwaitOutcome {
        /// The execution is `awaiting`.
        Awaiting(Awaited),
        /// Cancellation had been requested: it ended as cancelled instead of waiting.
        Cancelled {
            /// True when this call freed the attempt's slot.
            slot_released: bool,
        },
    }
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resumed {
    /// The queue of the execution.
    pub queue: String,
    /// The execution id.
    pub id: String,
    /// When it was resumed (by this call, or by the first resume when `already`).
    pub resumed_at: DateTime<Utc>,
    /// True when an earlier resume did it: nothing changed.
    pub already: bool,
    /// Its state now: `queued` after this call; whatever it went on to when `already`.
    pub state: State,
}

/// A resume token: `<queue>~<id>~<secret>`, safe in a URL path (names never hold `~`).
/// The queue and id say which execution to look at; the secret (64 hex digits, 244 random
/// bits) is what proves the holder was given it.
struct ResumeToken<'a> {
    queue: &'a str,
    id: &'a str,
    secret: &'a str,
}

impl<'a> ResumeToken<'a> {
    fn parse(text: &'a str) -> Result<Self> {
        let bad = |reason| Error::InvalidResumeToken { reason };
        let mut parts = text.split('~');
        let (Some(queue), Some(id), Some(secret), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected <queue>~<id>~<secret>"));
        };
        names::validate_queue(queue).map_err(|_| bad("invalid queue name"))?;
        names::validate_execution_id(id).map_err(|_| bad("invalid execution id"))?;
        if secret.len() != 64 || !secret.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the secret is not 64 hex digits"));
        }
        Ok(Self { queue, id, secret })
    }

    fn fresh_secret() -> String {
        format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        )
    }
}

impl Ledger {
    /// Ends the attempt to wait for a resume (a person's approval, a webhook): the slot is
    /// freed, the execution is `awaiting` and judged by nothing but its wait deadline and
    /// its hard deadline. The attempt counts as a continuation, not toward `max_attempts`.
    /// The token is stale afterwards. One round trip.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a wait of zero or above the queue's longest wait, or
    /// an empty or too long reason (nothing written); [`Error::TooLarge`],
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn await_resume(
        &self,
        token: &AttemptToken,
        wait: AwaitResume,
    ) -> Result<AwaitOutcome> {
        if wait.reason.trim().is_empty() || wait.reason.len() > MAX_WAIT_REASON {
            return Err(Error::InvalidArgument {
                name: "reason".into(),
                value: format!("of {} bytes", wait.reason.len()),
                expected: format!("a text of 1 to {MAX_WAIT_REASON} bytes"),
            });
        }
        let wait_ms = wait.wait_deadline.as_millis();
        if wait_ms == 0 {
            return Err(bad_wait(wait.wait_deadline, "more than 0ms"));
        }
        let checkpoint = wait
            .checkpoint
            .as_ref()
            .map(|c| self.json_text("checkpoint", c))
            .transpose()?;
        let secret = ResumeToken::fresh_secret();
        let (maxlen, hist) = self.limits();
        let k = &self.keys;
        let mut call = AWAIT.call();
        for key in self.attempt_keys(token) {
            call.key(key);
        }
        call.key(k.queue_timer(&token.queue, Timer::Wait))
            .key(k.queue_settings(&token.queue))
            .key(k.finished(&token.queue, "cancelled"))
            .arg(Keyspace::member(&token.queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(&wait.reason)
            .arg(u64::try_from(wait_ms).unwrap_or(u64::MAX))
            .arg(if checkpoint.is_some() { "1" } else { "0" })
            .arg(checkpoint.unwrap_or_default())
            .arg(&secret)
            .arg(DEFAULT_MAX_WAIT.as_millis() as u64)
            .arg(WaitExpiry::Fail.as_str())
            .arg(maxlen)
            .arg(hist);
        let reply = call.run(&mut self.conn.clone()).await?;
        self.free_if_ended(&reply, token, "began awaiting").await?;
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(refused);
        }
        match reply.status() {
            "awaiting" => Ok(AwaitOutcome::Awaiting(Awaited {
                resume_token: format!("{}~{}~{secret}", token.queue, token.id),
                wait_deadline_at: reply.time(1)?,
                slot_released: reply.flag(2)?,
            })),
            "cancelled" => Ok(AwaitOutcome::Cancelled {
                slot_released: reply.flag(1)?,
            }),
            "too_long" => Err(bad_wait(
                wait.wait_deadline,
                &format!("at most the queue's longest wait, {}ms", reply.u64(1)?),
            )),
            _ => Err(reply.unexpected()),
        }
    }

    /// Resumes an awaiting execution: back in the queue, available now; the claim that
    /// continues it gets `input` (as `Claim::resume_input`) and its checkpoint. A second
    /// resume of the same wait changes nothing and reports the first. One round trip.
    ///
    /// # Errors
    /// [`Error::NotAwaiting`] (naming its state) when it is not awaiting and was not
    /// resumed from its latest wait; [`Error::NotFound`], [`Error::InvalidName`],
    /// [`Error::TooLarge`].
    pub async fn resume(
        &self,
        queue: &str,
        id: &str,
        input: Option<&serde_json::Value>,
    ) -> Result<Resumed> {
        names::validate_queue(queue)?;
        names::validate_execution_id(id)?;
        let reply = self.run_resume(queue, id, None, input).await?;
        self.resumed(&reply, queue, id)
    }

    /// Resumes the execution a resume token was issued for, as [`resume`](Self::resume),
    /// once: the token is the credential (an approval link, a webhook).
    ///
    /// # Errors
    /// [`Error::InvalidResumeToken`] for a token that was never issued (forged, or of a
    /// wait a later one replaced); [`Error::ResumeTokenUsed`] once it resumed its wait;
    /// [`Error::NotAwaiting`] when the wait ended otherwise (expired, cancelled);
    /// [`Error::TooLarge`].
    pub async fn resume_by_token(
        &self,
        resume_token: &str,
        input: Option<&serde_json::Value>,
    ) -> Result<Resumed> {
        let t = ResumeToken::parse(resume_token)?;
        let reply = self
            .run_resume(t.queue, t.id, Some(t.secret), input)
            .await?;
        match reply.status() {
            "token_invalid" => Err(Error::InvalidResumeToken {
                reason: "no wait was given this token (forged, or replaced by a later wait)",
            }),
            "token_used" => Err(Error::ResumeTokenUsed {
                queue: t.queue.to_owned(),
                id: t.id.to_owned(),
                resumed_at: reply.time(1)?,
                state: reply.str(2)?.to_owned(),
            }),
            _ => self.resumed(&reply, t.queue, t.id),
        }
    }

    async fn run_resume(
        &self,
        queue: &str,
        id: &str,
        secret: Option<&str>,
        input: Option<&serde_json::Value>,
    ) -> Result<Reply> {
        let input = input
            .map(|v| self.json_text("resume input", v))
            .transpose()?;
        let k = &self.keys;
        let (maxlen, hist) = self.limits();
        RESUME
            .key(k.execution(queue, id))
            .key(k.queue_events(queue))
            .key(k.pending(queue))
            .key(k.queue_timer(queue, Timer::Wait))
            .arg(Keyspace::member(queue, id))
            .arg(if secret.is_some() { "token" } else { "id" })
            .arg(secret.unwrap_or_default())
            .arg(if input.is_some() { "1" } else { "0" })
            .arg(input.unwrap_or_default())
            .arg(maxlen)
            .arg(hist)
            .run(&mut self.conn.clone())
            .await
    }

    fn resumed(&self, reply: &Reply, queue: &str, id: &str) -> Result<Resumed> {
        let done = |already: bool, state: State| -> Result<Resumed> {
            Ok(Resumed {
                queue: queue.to_owned(),
                id: id.to_owned(),
                resumed_at: reply.time(1)?,
                already,
                state,
            })
        };
        match reply.status() {
            "resumed" => done(false, State::Queued),
            "already" => done(true, reply.state(2)?),
            "not_awaiting" => Err(Error::NotAwaiting {
                queue: queue.to_owned(),
                id: id.to_owned(),
                state: reply.str(1)?.to_owned(),
            }),
            "missing" => Err(Error::NotFound {
                queue: queue.to_owned(),
                id: id.to_owned(),
            }),
            _ => Err(reply.unexpected()),
        }
    }
}

fn bad_wait(wait: Duration, expected: &str) -> Error {
    Error::InvalidArgument {
        name: "wait_deadline".into(),
        value: format!("{}ms", wait.as_millis()),
        expected: expected.to_owned(),
    }
}

/// What the watchdog does with an awaiting execution nobody resumed by its wait deadline:
/// a queue setting, taken when the execution starts waiting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum WaitExpiry {
    /// Failed, stop reason `wait_expired` (the default).
    #[default]
    Fail,
    /// Back in the queue (no resume input): the next claim decides what to do.
    Requeue,
}

impl WaitExpiry {
    /// The name, as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitExpiry::Fail => "fail",
            WaitExpiry::Requeue => "requeue",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_tokens_parse_or_are_refused() {
        let secret = ResumeToken::fresh_secret();
        let text = format!("emails~e-1~{secret}");
        let t = ResumeToken::parse(&text).unwrap();
        assert_eq!(
            (t.queue, t.id, t.secret),
            ("emails", "e-1", secret.as_str())
        );
        for bad in [
            String::new(),
            "emails~e-1".into(),
            format!("emails~e-1~{secret}~x"),
            format!("em ails~e-1~{secret}"),
            "emails~e-1~abc".into(),
            format!("emails~e-1~{}", "z".repeat(64)),
        ] {
            assert!(ResumeToken::parse(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
