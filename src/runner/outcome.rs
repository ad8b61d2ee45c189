//! What became of one attempt, and the count of them a worker reports when it stops.

use tokio::task::JoinError;

/// What became of one attempt, as a worker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Succeeded,
    Failed,
    Retried,
    Cancelled,
    /// The job ended its attempt to wait for a resume (`awaiting`).
    Awaiting,
    /// The attempt was no longer ours: nothing was recorded.
    Lost,
    /// Redis could not be reached to record the outcome; the watchdog will see the
    /// attempt go quiet and deal with it.
    Unreported,
}

/// Attempts counted by outcome; [`RunReport`](super::RunReport) and
/// [`ExecReport`](crate::supervise::ExecReport) are built from it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub(crate) claimed: u64,
    pub(crate) succeeded: u64,
    pub(crate) failed: u64,
    pub(crate) retried: u64,
    pub(crate) cancelled: u64,
    pub(crate) awaiting: u64,
    pub(crate) lost: u64,
    pub(crate) unreported: u64,
}

impl Tally {
    /// Counts a joined attempt task; one that panicked or was aborted recorded nothing.
    pub(crate) fn count(&mut self, joined: Result<Outcome, JoinError>) {
        let counter = match joined {
            Ok(Outcome::Succeeded) => &mut self.succeeded,
            Ok(Outcome::Failed) => &mut self.failed,
            Ok(Outcome::Retried) => &mut self.retried,
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
        let mut tally = Tally::default();
        tally.count(Ok(Outcome::Succeeded));
        tally.count(Ok(Outcome::Retried));
        fn boom() -> Outcome {
            panic!("the job's code panicked")
        }
        tally.count(tokio::spawn(async { boom() }).await);
        assert_eq!(
            tally,
            Tally {
                succeeded: 1,
                retried: 1,
                unreported: 1,
                ..Tally::default()
            }
        );
    }
}
