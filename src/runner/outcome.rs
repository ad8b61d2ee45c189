//! What became of one attempt, and the count of them a worker reports when it stops.

use tokio::task::JoinError;

/// What became of one attempt, as a worker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Retried,
    /// Snoozed: back in the queue until a given time, no attempt counted.
    Snoozed,
    Cancelled,
    /// The job ended its attempt to wait for a resume (`awaiting`).
    Awaiting,
    /// The attempt was no longer ours: nothing was recorded.
    Lost,
    /// Redis could not be reached to record the outcome; the watchdog will see the
    /// attempt go quiet and deal with it.
    Unreported,
}

/// A worker's attempts counted by what became of them: the counts of a
/// [`RunReport`](super::RunReport) (Rust jobs) and an
/// [`ExecReport`](crate::supervise::ExecReport) (supervised commands) alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptCounts {
    /// Attempts claimed.
    pub claimed: u64,
    /// Completed.
    pub succeeded: u64,
    /// Failed for good: a fatal error, or a retryable one with no attempts left (or a
    /// result the ledger refused).
    pub failed: u64,
    /// Failed retryably and put back in the queue for another attempt.
    pub retried: u64,
    /// Snoozed (a Rust job's [`JobError::snooze`](super::JobError::snooze)): back in the
    /// queue until a given time, no attempt counted. A command cannot snooze.
    pub snoozed: u64,
    /// Stopped on a cancellation request, acknowledged.
    pub cancelled: u64,
    /// Ended to wait for a resume (a Rust job's
    /// [`JobError::await_resume`](super::JobError::await_resume)). A command cannot await.
    pub awaiting: u64,
    /// The attempt stopped being this worker's while it ran; nothing was recorded.
    pub lost: u64,
    /// The outcome could not be recorded (Redis unreachable); the watchdog takes over.
    pub unreported: u64,
}

impl AttemptCounts {
    /// Counts a joined attempt task; one that panicked or was aborted recorded nothing.
    pub(crate) fn count(&mut self, joined: Result<Outcome, JoinError>) {
        let counter = match joined {
            Ok(Outcome::Succeeded) => &mut self.succeeded,
            Ok(Outcome::Failed) => &mut self.failed,
            Ok(Outcome::Retried) => &mut self.retried,
            Ok(Outcome::Snoozed) => &mut self.snoozed,
            Ok(Outcome::Cancelled) => &mut self.cancelled,
            Ok(Outcome::Awaiting) => &mut self.awaiting,
            Ok(Outcome::Lost) => &mut self.lost,
            Ok(Outcome::Unreported) => &mut self.unreported,
            Err(e) => {
                tracing::error!(error = %e, "an attempt's task failed");
                &mut self.unreported
            }
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_task_counts_as_unreported() {
        let mut tally = AttemptCounts::default();
        tally.count(Ok(Outcome::Succeeded));
        tally.count(Ok(Outcome::Retried));
        fn boom() -> Outcome {
            panic!("the job's code panicked")
        }
        tally.count(tokio::spawn(async { boom() }).await);
        assert_eq!(
            tally,
            AttemptCounts {
                succeeded: 1,
                retried: 1,
                unreported: 1,
                ..AttemptCounts::default()
            }
        );
    }
}
