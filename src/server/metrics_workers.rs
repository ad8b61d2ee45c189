//! The worker remediation metrics: workers per tier (sampled from the registry) and the
//! workers' events counted by reason.

use super::metrics::Metrics;
use crate::ledger::Ledger;

impl Metrics {
    /// Samples the tiers and counts the worker events since the last sample.
    pub(super) async fn sample_workers(&self, ledger: &Ledger) {
        if let Ok(workers) = ledger.workers().await {
            let mut counts = [0i64; 5];
            for w in &workers {
                let r = &w.remediation;
                counts[if r.circuit_open {
                    4
                } else {
                    usize::from(r.tier.min(3))
                }] += 1;
            }
            for (tier, n) in ["0", "1", "2", "3", "open"].iter().zip(counts) {
                self.tiers
                    .get_or_create(&vec![("tier", (*tier).to_owned())])
                    .set(n);
            }
        }
        self.count_worker_events(ledger).await;
    }

    /// Counts the worker events written since the last sample (from the newest one at
    /// the first sample: what happened before this process started is not counted).
    async fn count_worker_events(&self, ledger: &Ledger) {
        let cursor = self
            .worker_cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (events, counted) = match &cursor {
            None => match ledger.recent_worker_events(1).await {
                Ok(newest) => (Vec::new(), newest),
                Err(_) => return,
            },
            Some(after) => match ledger.worker_events(Some(after), 1000).await {
                Ok(events) => (events, Vec::new()),
                Err(_) => return,
            },
        };
        for e in &events {
            self.worker_events
                .get_or_create(&vec![("reason", e.reason.clone())])
                .inc();
        }
        let newest = events.last().or(counted.last());
        let next = match (&cursor, newest) {
            (_, Some(e)) => Some(e.stream_id.clone()),
            (None, None) => Some("0-0".to_owned()), // an empty stream: count from its start
            (Some(_), None) => None,
        };
        if let Some(next) = next {
            *self
                .worker_cursor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(next);
        }
    }
}
