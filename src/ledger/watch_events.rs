//! Observing every event from now on through Redis outages: what a long-lived reader (the
//! `/metrics` counters, a dashboard feed) needs instead of its own reconnect loop.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Ledger;
use crate::error::Result;
use crate::events::{Event, EventFollower};

/// The longest wait between two tries while Redis cannot be read.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(2);

impl Ledger {
    /// Calls `observe` with every event appended to the streams of `partitions` (every
    /// partition when empty) from now until `stop` is cancelled, and rides out Redis
    /// outages: the follower keeps its place in each stream, so what was written while
    /// Redis could not be read is observed once it can (unless the capped stream trimmed
    /// it first), never skipped by a reader that started over from "now". An outage is
    /// logged once when it begins and once when it ends.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`](crate::Error::InvalidArgument) for a partition out of
    /// range; nothing else — Redis errors are waited out.
    pub async fn watch_events(
        &self,
        partitions: Vec<u16>,
        stop: &CancellationToken,
        mut observe: impl FnMut(&Event),
    ) -> Result<()> {
        for p in &partitions {
            self.check_partition(*p)?;
        }
        let mut outage = Outage::default();
        let mut follower: Option<EventFollower> = None;
        while !stop.is_cancelled() {
            let batch = match follower.as_mut() {
                None => match self.follow_events(partitions.clone()).await {
                    Ok(f) => {
                        follower = Some(f);
                        outage.ended();
                        continue;
                    }
                    Err(error) => Err(error),
                },
                // Reads are safe to abandon: the cursors move only with a reply.
                Some(f) => tokio::select! {
                    _ = stop.cancelled() => break,
                    batch = f.next_batch() => batch,
                },
            };
            match batch {
                Ok(events) => {
                    outage.ended();
                    events.iter().for_each(&mut observe);
                }
                Err(error) => {
                    let wait = outage.began(&error);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        Ok(())
    }
}

/// How long Redis has been unreadable, for the wait before the next try and the log.
#[derive(Default)]
struct Outage {
    tries: u32,
}

impl Outage {
    fn began(&mut self, error: &crate::Error) -> Duration {
        if self.tries == 0 {
            tracing::warn!(%error, "cannot read the event streams; retrying until Redis answers");
        }
        self.tries = self.tries.saturating_add(1);
        (Duration::from_millis(100) * 2u32.saturating_pow(self.tries.min(5))).min(MAX_RETRY_WAIT)
    }

    fn ended(&mut self) {
        if self.tries > 0 {
            tracing::info!(tries = self.tries, "reading the event streams again");
        }
        self.tries = 0;
    }
}
