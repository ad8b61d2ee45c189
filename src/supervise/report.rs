//! Recording an attempt's outcome (`crate::runner::record`), and saying what happened in
//! one note beside the command's output.

use crate::ledger::{AttemptToken, HeartbeatReply, Ledger};
use crate::runner::Outcome;
use crate::runner::coalesce::Coalescer;
use crate::runner::record::{Record, Recorded};

use super::output::Output;

/// Records the outcome of one attempt and notes it.
pub(crate) struct Report<'a> {
    record: Record<'a>,
    beats: &'a Coalescer,
    output: &'a Output,
}

impl<'a> Report<'a> {
    pub(crate) fn new(
        ledger: &'a Ledger,
        beats: &'a Coalescer,
        token: &'a AttemptToken,
        output: &'a Output,
    ) -> Self {
        Self {
            record: Record { ledger, token },
            beats,
            output,
        }
    }

    /// Sends the progress and checkpoint the heartbeats have not carried yet; the reply,
    /// or `None` when there was nothing to send or it could not be sent.
    /// The `::usage` deltas still pending go one beat each.
    pub(crate) async fn flush(&self) -> Option<HeartbeatReply> {
        let mut last = None;
        loop {
            let beat = self.output.take_beat();
            if beat.checkpoint.is_none() && beat.progress.is_none() && beat.usage.is_none() {
                return last;
            }
            match self.beats.last_beat(self.record.token, &beat).await {
                Ok((reply @ HeartbeatReply::Ok { .. }, _)) => {
                    self.output.usage_delivered(&beat);
                    last = Some(reply);
                }
                Ok((reply, _)) => return Some(reply),
                Err(e) => {
                    self.output
                        .note(&format!("last progress and checkpoint not recorded: {e}"));
                    return last;
                }
            }
        }
    }

    pub(crate) async fn complete(&self, result: Option<serde_json::Value>) -> Outcome {
        self.noted(self.record.complete(result).await)
    }

    pub(crate) async fn fail(&self, message: &str, retryable: bool) -> Outcome {
        self.noted(self.record.fail(message, retryable, None).await)
    }

    pub(crate) async fn acknowledge_cancel(&self) -> Outcome {
        self.noted(self.record.acknowledge_cancel().await)
    }

    fn noted(&self, recorded: Recorded) -> Outcome {
        self.output.note(&recorded.note);
        recorded.outcome
    }
}
