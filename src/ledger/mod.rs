//! The execution ledger: the orchestrator and worker API over Redis.
//!
//! Each operation is one script call (one round trip) unless its docs say otherwise.

mod attempt;
mod cancel;
mod claim;
mod complete_claim;
mod enqueue;
mod execution;
mod finish;
mod inspect;
mod options;
mod queue;
mod token;
mod workers;

use std::sync::Arc;

pub use attempt::{CompleteOutcome, FailOutcome, Heartbeat, HeartbeatReply, MAX_ERROR_MESSAGE};
pub use cancel::CancelOutcome;
pub use claim::{Claim, ClaimBatch, MAX_CLAIM_BATCH};
pub use enqueue::{Enqueued, MAX_ENQUEUE_BATCH};
pub use execution::{Execution, State, StopMetadata, StopReason, Transition};
pub use inspect::{MAX_PAGE, Page};
pub use options::{EnqueueOptions, QueueSettings};
pub use token::AttemptToken;
pub use workers::{WorkerInfo, WorkerRegistration};

pub(crate) use execution::ms_to_time;

use crate::config::LedgerConfig;
use crate::conn::{self, BlockingPool, Connection};
use crate::error::{Error, Result};
use crate::keys::Keyspace;

/// Handle to the ledger. Cheap to clone; clones share one multiplexed connection, so one
/// `Ledger` per process is the intended use.
#[derive(Clone)]
pub struct Ledger {
    pub(crate) conn: Connection,
    pub(crate) blocking: BlockingPool,
    pub(crate) keys: Keyspace,
    pub(crate) config: Arc<LedgerConfig>,
    /// Global default timings as script arguments, computed once.
    pub(crate) default_args: Arc<[String; crate::timings::COUNT]>,
    /// Event stream cap and history length as script arguments, computed once (every
    /// transition script takes them).
    limit_args: Arc<(String, String)>,
    pub(crate) cluster: bool,
    /// The completion dispatchers, one per queue (`finish.rs`).
    finisher: Arc<finish::Finisher>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("namespace", &self.keys.namespace())
            .field("partitions", &self.keys.partitions())
            .field("cluster", &self.cluster)
            .finish()
    }
}

impl Ledger {
    /// Validates `config`, connects, and checks that Redis will not evict keys.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] and friends for a bad config, [`Error::Redis`] when Redis
    /// cannot be reached, [`Error::EvictionPolicy`] when `maxmemory-policy` is not
    /// `noeviction` (and `require_noeviction` is on).
    pub async fn connect(config: LedgerConfig) -> Result<Self> {
        config.validate()?;
        let keys = Keyspace::new(&config.namespace, config.partitions)?;
        let mut connected = conn::connect(&config).await?;
        if config.require_noeviction {
            conn::check_eviction_policy(&mut connected.conn).await?;
        }
        let default_args = Arc::new(config.defaults.to_args());
        let limit_args = Arc::new((
            config.events_max_len.to_string(),
            config.history_len.to_string(),
        ));
        Ok(Self {
            conn: connected.conn,
            blocking: connected.blocking,
            keys,
            config: Arc::new(config),
            default_args,
            limit_args,
            cluster: connected.cluster,
            finisher: Arc::default(),
        })
    }

    pub fn config(&self) -> &LedgerConfig {
        &self.config
    }

    /// The partition a queue's keys live in.
    pub fn partition_of(&self, queue: &str) -> u16 {
        self.keys.partition_of(queue)
    }

    pub(crate) fn limits(&self) -> (&str, &str) {
        (&self.limit_args.0, &self.limit_args.1)
    }

    /// Checks a JSON document against the size limit; returns its compact text.
    pub(crate) fn json_text(
        &self,
        what: &'static str,
        value: &serde_json::Value,
    ) -> Result<String> {
        let text = serde_json::to_string(value).map_err(|e| Error::NotJson {
            what,
            reason: e.to_string(),
        })?;
        self.check_size(what, text.len())?;
        Ok(text)
    }

    pub(crate) fn check_size(&self, what: &'static str, size: usize) -> Result<()> {
        if size > self.config.max_payload_bytes {
            return Err(Error::TooLarge {
                what,
                size,
                limit: self.config.max_payload_bytes,
            });
        }
        Ok(())
    }
}
