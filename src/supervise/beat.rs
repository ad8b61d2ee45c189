//! An attempt's heartbeats, on a task of their own: they carry the command's progress
//! and checkpoint, and their replies say when to stop (cancel requested, attempt lost).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::attempt::Cause;
use super::output::Output;
use crate::error::Error;
use crate::ledger::{AttemptToken, HeartbeatReply, Ledger};
pub(crate) use crate::runner::record::describe_reply;

/// Shortest wait between two beats of one attempt, whatever its timeout.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// What the heartbeats found out: cancellation requested, or the attempt lost.
#[derive(Default)]
pub(crate) struct Beats {
    pub(crate) cancel: AtomicBool,
    lost: Mutex<Option<String>>,
    /// Fires on either.
    pub(crate) stopped: CancellationToken,
}

impl Beats {
    pub(crate) fn lost(&self) -> Option<String> {
        self.lost
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lose(&self, why: String) {
        *self.lost.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
        self.stopped.cancel();
    }

    pub(crate) fn cause(&self) -> Cause {
        match self.lost() {
            Some(why) => Cause::Lost(why),
            None => Cause::CancelRequested,
        }
    }
}

/// Beats the attempt every `interval` (the first at once: it moves the execution to
/// running) until `finished`, or until a reply says the attempt is no longer ours.
pub(crate) async fn beat(
    ledger: Ledger,
    token: AttemptToken,
    output: Arc<Output>,
    interval: Duration,
    beats: Arc<Beats>,
    finished: CancellationToken,
) {
    let mut wait = Duration::ZERO;
    loop {
        tokio::select! {
            biased;
            () = finished.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
        }
        let beat = output.take_beat();
        let reply = ledger.heartbeat(&token, beat.clone()).await;
        wait = interval;
        match reply {
            Ok(HeartbeatReply::Ok { cancel_requested }) => {
                if cancel_requested && !beats.cancel.swap(true, Ordering::SeqCst) {
                    beats.stopped.cancel();
                }
            }
            Ok(refused) => {
                beats.lose(describe_reply(&refused));
                return;
            }
            Err(e) if e.is_transient() => {
                tracing::warn!(execution = %token, error = %e, "heartbeat failed; retrying soon");
                output.restore(beat);
                wait = (interval / 4).max(MIN_INTERVAL);
            }
            Err(e @ (Error::TooLarge { .. } | Error::NotJson { .. })) => {
                // Keep the attempt alive: beat again at once without what was refused.
                output.note(&format!("progress or checkpoint refused, dropped: {e}"));
                wait = Duration::ZERO;
            }
            Err(e @ (Error::NotFound { .. } | Error::TokenMismatch { .. })) => {
                beats.lose(e.to_string());
                return;
            }
            Err(e) => tracing::warn!(execution = %token, error = %e, "heartbeat failed"),
        }
    }
}
