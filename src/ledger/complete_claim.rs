//! `complete_and_claim`: a worker's loop (finish one, take the next) in one script call.

use super::claim::check_claim;
use super::complete::Finish;
use super::{AttemptToken, ClaimBatch, CompleteOutcome, Ledger};
use crate::error::Result;

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
    /// Concurrent `complete` and `complete_and_claim` calls for the same queue (the
    /// workers of one process sharing this `Ledger`) are sent together in one script
    /// call while an earlier one is still running: each runs exactly as it would alone,
    /// and under load Redis does less work per execution.
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
        check_claim(&token.queue, worker_id, max)?;
        let result = result
            .map(|r| self.json_text("result", r))
            .transpose()?
            .unwrap_or_default();
        let finish = Finish {
            token: token.clone(),
            result,
            worker: worker_id.to_owned(),
            max,
        };
        let at = (token.queue.as_str(), token.id.as_str(), Some(token.attempt));
        crate::otel::settle(self, at, "complete", self.finish(finish)).await
    }
}
