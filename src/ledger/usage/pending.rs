//! The worker's side: usage deltas added by a job and not yet delivered.

use super::Usage;

/// The usage deltas a worker added and has not delivered yet, oldest first. A delta gets
/// its `seq` the first time it is taken and keeps it until delivered, so a beat that is
/// retried after a lost reply carries the same delta under the same seq (applied once).
#[derive(Debug, Default)]
pub(crate) struct UsageQueue {
    pending: std::collections::VecDeque<Usage>,
    seq: u64,
}

impl UsageQueue {
    /// Adds a delta (its `seq` ignored): merged into the newest one while that is not
    /// numbered yet and names the same model.
    pub(crate) fn add(&mut self, usage: Usage) {
        if let Some(last) = self.pending.back_mut()
            && last.seq == 0
            && last.model == usage.model
        {
            last.input_tokens = last.input_tokens.saturating_add(usage.input_tokens);
            last.output_tokens = last.output_tokens.saturating_add(usage.output_tokens);
            last.cached_input_tokens = last
                .cached_input_tokens
                .saturating_add(usage.cached_input_tokens);
            last.cost = last.cost.saturating_add(usage.cost);
            return;
        }
        self.pending.push_back(Usage { seq: 0, ..usage });
    }

    /// The oldest undelivered delta, numbered.
    pub(crate) fn next(&mut self) -> Option<Usage> {
        let front = self.pending.front_mut()?;
        if front.seq == 0 {
            self.seq += 1;
            front.seq = self.seq;
        }
        Some(front.clone())
    }

    /// The delta numbered `seq` got through: drop it.
    pub(crate) fn delivered(&mut self, seq: u64) {
        if self.pending.front().is_some_and(|u| u.seq == seq) {
            self.pending.pop_front();
        }
    }
}
