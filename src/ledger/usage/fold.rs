//! Folding the usage journals: the deltas a beat appended (`lua/_usage.lua`) added to an
//! execution's, a queue's and the window's sums, by the watchdog's rounds and before any
//! read of a sum, so a read sees every delta the ledger accepted.

use super::super::Ledger;
use crate::error::Result;
use crate::keys::Keyspace;
use crate::scripts::USAGE_FOLD;

/// Most journal entries one fold script takes; a longer journal takes several calls.
const FOLD_BATCH: u64 = 2_000;

impl Ledger {
    /// Folds `queue`'s usage journal into its sums. One round trip when the journal is
    /// empty (the script answers before loading its helpers).
    pub(crate) async fn fold_usage(&self, queue: &str) -> Result<u64> {
        self.fold_usage_of(self.keys.partition_of(queue), queue)
            .await
    }

    /// Folds `queue`'s usage journal on a task of its own: a beat found it long (no
    /// watchdog folding it), and the beat's caller does not wait for the fold.
    pub(crate) fn fold_in_background(&self, queue: &str) {
        let ledger = self.clone();
        let queue = queue.to_owned();
        tokio::spawn(async move {
            if let Err(error) = ledger.fold_usage(&queue).await {
                tracing::warn!(%queue, %error, "usage fold failed");
            }
        });
    }

    /// Folds the usage journals of every queue of `partition` that has one: the
    /// watchdog's round. Returns the deltas folded.
    pub(crate) async fn fold_partition_usage(&self, partition: u16) -> Result<u64> {
        self.fold_usage_of(partition, "").await
    }

    async fn fold_usage_of(&self, partition: u16, queue: &str) -> Result<u64> {
        let k = &self.keys;
        let layout = k.script_layout(partition);
        let (maxlen, _) = self.limits();
        let mut folded = 0;
        loop {
            let mut call = USAGE_FOLD.key(k.usage_journals(partition));
            call.key(k.events(partition))
                .arg(&layout[1])
                .arg(&layout[0])
                .arg(maxlen)
                .arg(queue)
                .arg(FOLD_BATCH)
                .arg(&Keyspace::usage_suffixes()[..]);
            let reply = call.run(&mut self.conn.clone()).await?;
            if reply.status() != "ok" {
                return Err(reply.unexpected());
            }
            folded += reply.u64(1)?;
            if !reply.flag(2)? {
                return Ok(folded);
            }
        }
    }
}
