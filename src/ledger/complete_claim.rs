//! `complete_and_claim`: a worker's loop (finish one, take the next) in one script call.

use redis::Value;

use super::claim::{check_claim, claim_batch};
use super::{AttemptToken, ClaimBatch, CompleteOutcome, Ledger};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::scripts::{COMPLETE_CLAIM, Reply};

impl Ledger {
    /// Completes the attempt like [`complete`](Self::complete) and, when the completion
    /// was recorded, claims up to `max` next executions of the same queue for `worker_id`
    /// like [`claim_many`](Self::claim_many), atomically and in one round trip: the slot
    /// the completion frees can go straight to the next execution. When the completion is
    /// refused (a stale attempt, already terminal) nothing is claimed and the batch is
    /// empty.
    ///
    /// ```no_run
    /// # async fn demo(ledger: unstuck::Ledger) -> unstuck::Result<()> {
    /// let mut next = ledger.claim("emails", "worker-1").await?;
    /// while let Some(claim) = next {
    ///     // ... send the email ...
    ///     let (_, batch) = ledger.complete_and_claim(&claim.token, None, "worker-1", 1).await?;
    ///     next = batch.claims.into_iter().next();
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// When the reply is lost (the connection drops mid-call) and the call is retried,
    /// the retry finds the execution already succeeded and claims nothing, while the
    /// first try may have claimed: such an execution stays dispatched to this worker
    /// until the watchdog's start-grace rule puts it back in the queue.
    ///
    /// # Errors
    /// As `complete` and `claim_many`; nothing is written when any check fails.
    pub async fn complete_and_claim(
        &self,
        token: &AttemptToken,
        result: Option<&serde_json::Value>,
        worker_id: &str,
        max: usize,
    ) -> Result<(CompleteOutcome, ClaimBatch)> {
        let queue = token.queue.as_str();
        check_claim(queue, worker_id, max)?;
        let result = result
            .map(|r| self.json_text("result", r))
            .transpose()?
            .unwrap_or_default();
        let k = &self.keys;
        let (maxlen, hist) = self.limits();
        let mut call = COMPLETE_CLAIM.prepare_invoke();
        for key in self.attempt_keys(token) {
            call.key(key);
        }
        call.key(k.finished(queue, "succeeded"))
            .key(k.pending(queue))
            .key(k.queue_settings(queue))
            .arg(Keyspace::member(queue, &token.id))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(result)
            .arg(maxlen)
            .arg(hist)
            .arg(queue)
            .arg(k.execution_prefix(queue))
            .arg(worker_id)
            .arg(max)
            .arg(self.config.default_capacity);
        for _ in 0..max {
            call.arg(AttemptToken::fresh_nonce());
        }
        let value: Value = call.invoke_async(&mut self.conn.clone()).await?;
        // A two-part reply {completion, claims}; anything else is a flat refusal.
        let parts = match value {
            Value::Array(parts) if matches!(parts.first(), Some(Value::Array(_))) => parts,
            other => return Err(Reply::parse("complete_claim", other)?.unexpected()),
        };
        let [done, claims] = <[Value; 2]>::try_from(parts).map_err(|parts| Error::Protocol {
            script: "complete_claim",
            detail: format!("expected two parts, got {}", parts.len()),
        })?;
        let done = Reply::parse("complete_claim", done)?;
        let claims = Reply::parse("complete_claim", claims)?;
        let outcome = super::attempt::finish_outcome(&done, token)?;
        let batch = if claims.status() == "none" {
            ClaimBatch {
                claims: Vec::new(),
                queue_full: false,
                next_available_at: None,
            }
        } else {
            claim_batch(&claims, queue)?
        };
        Ok((outcome, batch))
    }
}
