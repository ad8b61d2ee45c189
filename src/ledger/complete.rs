//! `complete`: record that the attempt succeeded — and the batcher behind it: concurrent
//! `complete` and `complete_and_claim` calls for one queue share one script call
//! (`lua/complete_claim.lua`).
//!
//! Each queue with completions has a dispatcher task. A call hands its item to the
//! dispatcher and waits for its own reply. The dispatcher keeps at most [`IN_FLIGHT`]
//! script calls running; items that arrive meanwhile wait, and the next call takes all of
//! them (up to [`MAX_ITEMS`]). A quiet queue therefore sends each completion at once, alone;
//! a busy one sends fewer, larger calls, which is what lets one Redis core finish more
//! executions per second (the script's fixed cost and the round trip are shared).
//!
//! Inside the script the items run in order, each exactly as it would alone. A call that
//! fails as a whole (connection lost, a Redis error) fails each of its items with that
//! error, which is what each caller would have seen on its own call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::Value;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::attempt::queue_attempt_keys;
use super::claim::claim_batch;
use super::{AttemptToken, ClaimBatch, Ledger, MAX_CLAIM_BATCH, State, StopReason};
use crate::conn::Connection;
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::scripts::COMPLETE_CLAIM;

/// Script calls one queue's dispatcher keeps running at once: two keep Redis busy while
/// the client reads one reply and sends the next call.
const IN_FLIGHT: usize = 4;
/// Most completions in one script call, to keep each call short (about 25 µs of Redis time
/// per completion and claim).
const MAX_ITEMS: usize = 32;
/// A dispatcher with nothing to do for this long stops; the next completion starts another.
#[cfg(not(test))]
const IDLE_STOP: Duration = Duration::from_secs(30);
#[cfg(test)]
const IDLE_STOP: Duration = Duration::from_millis(100);

super::attempt::attempt_outcome! {
    /// The outcome of `complete` or `acknowledge_cancel`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub enum CompleteOutcome {
        /// Recorded now; `slot_released` says this attempt's slot was freed by this call.
        Recorded {
            /// True when this call freed the attempt's slot.
            slot_released: bool,
        },
    }
}

/// One completion: the attempt, its result, and how many next executions its worker
/// wants (0 for a plain `complete`).
pub(super) struct Finish {
    pub token: AttemptToken,
    /// The result as JSON text, empty for none.
    pub result: String,
    /// The worker the claims are for; empty when `max` is 0.
    pub worker: String,
    pub max: usize,
}

pub(super) type Finished = Result<(CompleteOutcome, ClaimBatch)>;

struct Pending {
    finish: Finish,
    reply: oneshot::Sender<Finished>,
}

/// The dispatchers of one `Ledger` (shared by its clones), by queue.
#[derive(Default)]
pub(crate) struct Finisher {
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>,
}

/// What a dispatcher needs for its calls. A copy, not the `Ledger`: the ledger owns the
/// dispatchers, and a dispatcher stops when the last clone of its ledger is dropped.
struct Context {
    conn: Connection,
    keys: Keyspace,
    default_capacity: u32,
    maxlen: String,
    hist: String,
}

impl Ledger {
    /// Records that the attempt succeeded, with an optional JSON result. Terminal; frees
    /// the slot this attempt holds. A replay returns the first outcome. One round trip,
    /// shared with the concurrent completions of the same queue (see
    /// [`complete_and_claim`](Self::complete_and_claim)).
    ///
    /// # Errors
    /// [`Error::NotFound`], [`Error::TokenMismatch`], [`Error::TooLarge`].
    pub async fn complete(
        &self,
        token: &AttemptToken,
        result: Option<&serde_json::Value>,
    ) -> Result<CompleteOutcome> {
        let result = result
            .map(|r| self.json_text("result", r))
            .transpose()?
            .unwrap_or_default();
        let finish = Finish {
            token: token.clone(),
            result,
            worker: String::new(),
            max: 0,
        };
        let at = (token.queue.as_str(), token.id.as_str(), Some(token.attempt));
        crate::otel::settle(self, at, "complete", async {
            Ok(self.finish(finish).await?.0)
        })
        .await
    }

    /// Completes one attempt through its queue's dispatcher (see the module docs).
    pub(super) async fn finish(&self, finish: Finish) -> Finished {
        let (reply, done) = oneshot::channel();
        let mut pending = Pending { finish, reply };
        // A dispatcher that stopped (idle, or its runtime shut down) refuses the item
        // untouched: start a new one and hand it over again.
        for restart in [false, true] {
            let sender = self.dispatcher(&pending.finish.token.queue, restart);
            match sender.send(pending) {
                Ok(()) => return done.await.unwrap_or_else(|_| Err(outcome_unknown())),
                Err(mpsc::error::SendError(back)) => pending = back,
            }
        }
        Err(outcome_unknown())
    }

    /// The sender of `queue`'s dispatcher, started when there is none (or `restart`).
    fn dispatcher(&self, queue: &str, restart: bool) -> mpsc::UnboundedSender<Pending> {
        let mut queues = self
            .finisher
            .queues
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !restart && let Some(sender) = queues.get(queue).filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, items) = mpsc::unbounded_channel();
        let (maxlen, hist) = self.limits();
        let context = Context {
            conn: self.conn.clone(),
            keys: self.keys.clone(),
            default_capacity: self.config.default_capacity,
            maxlen: maxlen.to_owned(),
            hist: hist.to_owned(),
        };
        tokio::spawn(dispatch(context, queue.to_owned(), items));
        queues.insert(queue.to_owned(), sender.clone());
        sender
    }
}

/// The error a caller gets when its item was handed over but no reply came back (the
/// dispatcher's runtime shut down mid-call): the outcome is unknown, and a retry is safe
/// (a replayed completion reports the first outcome).
fn outcome_unknown() -> Error {
    Error::UnknownOutcome {
        operation: "complete_claim",
        detail: "the completion was handed to its queue's dispatcher but no reply came back".into(),
    }
}

/// One queue's dispatcher: gathers waiting items into script calls, at most [`IN_FLIGHT`]
/// at a time, until its ledger is dropped or it has been idle for [`IDLE_STOP`].
async fn dispatch(context: Context, queue: String, mut items: mpsc::UnboundedReceiver<Pending>) {
    let mut running = FuturesUnordered::new();
    let mut carry: Option<Pending> = None;
    loop {
        let idle = running.is_empty() && carry.is_none();
        tokio::select! {
            biased;
            Some(()) = running.next(), if !running.is_empty() => {}
            next = next_item(&mut items, &mut carry), if running.len() < IN_FLIGHT => {
                let Some(first) = next else { break };
                // Let the workers that just got their replies hand over their next items.
                tokio::task::yield_now().await;
                let batch = gather(first, &mut items, &mut carry);
                running.push(context.call(&queue, batch));
            }
            // Closing refuses new items (their callers start a new dispatcher) while the
            // ones already handed over are still served before the loop ends.
            () = tokio::time::sleep(IDLE_STOP), if idle => items.close(),
        }
    }
    while running.next().await.is_some() {}
}

async fn next_item(
    items: &mut mpsc::UnboundedReceiver<Pending>,
    carry: &mut Option<Pending>,
) -> Option<Pending> {
    match carry.take() {
        Some(pending) => Some(pending),
        None => items.recv().await,
    }
}

/// `first` and the items already waiting, up to [`MAX_ITEMS`] and [`MAX_CLAIM_BATCH`]
/// claims in all; an item that does not fit waits in `carry` for the next call.
fn gather(
    first: Pending,
    items: &mut mpsc::UnboundedReceiver<Pending>,
    carry: &mut Option<Pending>,
) -> Vec<Pending> {
    let mut claims = first.finish.max;
    let mut batch = vec![first];
    while batch.len() < MAX_ITEMS {
        let Ok(next) = items.try_recv() else { break };
        if claims + next.finish.max > MAX_CLAIM_BATCH {
            *carry = Some(next);
            break;
        }
        claims += next.finish.max;
        batch.push(next);
    }
    batch
}

impl Context {
    /// Runs one script call and hands each item its outcome.
    async fn call(&self, queue: &str, batch: Vec<Pending>) {
        match self.invoke(queue, &batch).await {
            Ok(outcomes) => {
                // The attempts that ended (or had ended): free their resource units in
                // one call for the batch, before anyone hears back.
                let ended: Vec<(&str, &str, u32)> = batch
                    .iter()
                    .zip(&outcomes)
                    .filter(|(_, outcome)| outcome.is_ok())
                    .map(|(p, _)| {
                        let t = &p.finish.token;
                        (t.queue.as_str(), t.id.as_str(), t.attempt)
                    })
                    .collect();
                super::resources::free_ended(
                    &self.conn,
                    &self.keys,
                    &self.maxlen,
                    &ended,
                    "completed",
                )
                .await;
                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                    // A caller that stopped waiting does not want its reply.
                    let _ = pending.reply.send(outcome);
                }
            }
            Err(e) => {
                for pending in batch {
                    let _ = pending.reply.send(Err(e.clone()));
                }
            }
        }
    }

    async fn invoke(&self, queue: &str, batch: &[Pending]) -> Result<Vec<Finished>> {
        let k = &self.keys;
        let mut call = COMPLETE_CLAIM.call();
        for key in queue_attempt_keys(k, queue) {
            call.key(key);
        }
        call.key(k.finished(queue, "succeeded"))
            .key(k.pending(queue))
            .key(k.queue_settings(queue))
            .arg(queue)
            .arg(k.execution_prefix(queue))
            .arg(&self.maxlen)
            .arg(&self.hist)
            .arg(self.default_capacity);
        for Pending { finish, .. } in batch {
            let token = &finish.token;
            call.key(k.execution(queue, &token.id))
                .arg(Keyspace::member(queue, &token.id))
                .arg(token.attempt)
                .arg(&token.nonce)
                .arg(&finish.result)
                .arg(&finish.worker)
                .arg(finish.max);
            for _ in 0..finish.max {
                call.arg(AttemptToken::fresh_nonce());
            }
        }
        let value = call.run_raw(&mut self.conn.clone()).await?;
        let parts = match value {
            Value::Array(parts)
                if parts.len() == 1 + 2 * batch.len()
                    && matches!(&parts[0], Value::BulkString(ok) if ok == b"ok") =>
            {
                parts
            }
            // A flat refusal ({'bad_arg', name}) or a reply this version does not know.
            other => return Err(COMPLETE_CLAIM.reply(other)?.unexpected()),
        };
        // Two parts per item, in item order (the length was checked above).
        let mut parts = parts.into_iter().skip(1);
        Ok(batch
            .iter()
            .map(|Pending { finish, .. }| {
                let done = parts.next().unwrap_or(Value::Nil);
                let claims = parts.next().unwrap_or(Value::Nil);
                item_outcome(finish, queue, done, claims)
            })
            .collect())
    }
}

/// One item's part of the reply: its completion and its claims.
fn item_outcome(finish: &Finish, queue: &str, done: Value, claims: Value) -> Finished {
    let done = COMPLETE_CLAIM.reply(done)?;
    let outcome = super::attempt::finish_outcome(&done, &finish.token)?;
    let claims = COMPLETE_CLAIM.reply(claims)?;
    let batch = if claims.status() == "none" {
        ClaimBatch {
            claims: Vec::new(),
            queue_full: false,
            queue_paused: false,
            next_available_at: None,
        }
    } else {
        claim_batch(&claims, queue)?
    };
    Ok((outcome, batch))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::testkit::{RedisProcess, RedisProcessOptions};
    use crate::{CompleteOutcome, EnqueueOptions, Ledger, LedgerConfig};

    fn stopped(ledger: &Ledger, queue: &str) -> bool {
        let queues = ledger.finisher.queues.lock().unwrap();
        queues.get(queue).is_none_or(|sender| sender.is_closed())
    }

    #[tokio::test]
    async fn an_idle_dispatcher_stops_and_the_next_completion_starts_another() {
        let redis = RedisProcess::start(RedisProcessOptions::default()).unwrap();
        let ledger = Ledger::connect(LedgerConfig::new(redis.url()))
            .await
            .unwrap();
        for id in ["a", "b"] {
            let options = EnqueueOptions::new().id(id);
            ledger.enqueue("q", &json!({}), options).await.unwrap();
        }
        let claims = ledger.claim_many("q", "w", 2).await.unwrap().claims;
        let recorded = CompleteOutcome::Recorded {
            slot_released: true,
        };

        assert_eq!(
            ledger.complete(&claims[0].token, None).await.unwrap(),
            recorded
        );
        assert!(
            !stopped(&ledger, "q"),
            "the dispatcher runs after a completion"
        );
        tokio::time::sleep(super::IDLE_STOP * 4).await;
        assert!(stopped(&ledger, "q"), "an idle dispatcher stops");

        assert_eq!(
            ledger.complete(&claims[1].token, None).await.unwrap(),
            recorded
        );
        assert!(
            !stopped(&ledger, "q"),
            "the next completion started another"
        );
    }
}
