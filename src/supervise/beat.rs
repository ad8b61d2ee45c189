//! An attempt's heartbeats, on a task of their own: they carry the command's progress
//! and checkpoint, and their replies say when to stop (cancel requested, attempt lost).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::output::Output;
use crate::error::Error;
use crate::ledger::{AttemptToken, Heartbeat};
pub(crate) use crate::runner::beat::MIN_INTERVAL;
use crate::runner::beat::{Beaten, beat_once};
use crate::runner::coalesce::Coalescer;
pub(crate) use crate::runner::record::describe_reply;

/// Why a command was stopped before it exited by itself: the heartbeats' findings
/// ([`Beats::cause`]), its silence, or the supervisor stopping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cause {
    CancelRequested,
    Lost(String),
    Silent(Duration),
    Shutdown,
}

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
/// running) through the worker's batcher until `finished`, or until a reply says the
/// attempt is no longer ours.
pub(crate) async fn beat(
    beats_via: Coalescer,
    token: AttemptToken,
    output: Arc<Output>,
    interval: Duration,
    beats: Arc<Beats>,
    finished: CancellationToken,
) {
    let attempt = Beating {
        output: &output,
        beats: &beats,
    };
    let mut due = Instant::now();
    loop {
        tokio::select! {
            biased;
            () = finished.cancelled() => return,
            // A `::fingerprint` line goes out at once, with a beat of its own.
            () = output.nudge.notified() => {}
            () = beats_via.until_due(due, interval) => {}
        }
        match beat_once(&beats_via, &token, &attempt, interval).await {
            Some(_) if output.has_fingerprints() => due = Instant::now(),
            Some(next) => due = next,
            None => return,
        }
    }
}

/// A command's attempt as its heartbeats see it: its output carries the progress.
struct Beating<'a> {
    output: &'a Output,
    beats: &'a Beats,
}

impl Beaten for Beating<'_> {
    fn take(&self) -> Heartbeat {
        self.output.take_beat()
    }

    fn restore(&self, beat: Heartbeat) {
        self.output.restore(beat);
    }

    fn delivered(&self, beat: &Heartbeat) {
        self.output.usage_delivered(beat);
    }

    fn cancel_requested(&self) {
        if !self.beats.cancel.swap(true, Ordering::SeqCst) {
            self.beats.stopped.cancel();
        }
    }

    fn lose(&self, why: String) {
        self.beats.lose(why);
    }

    fn refused(&self, error: &Error) {
        self.output
            .note(&format!("progress or checkpoint refused, dropped: {error}"));
    }
}
