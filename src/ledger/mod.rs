//! The execution ledger: the orchestrator and worker API over Redis.
//!
//! Each operation is one script call (one round trip) unless its docs say otherwise.
//!
//! # Layout
//! One file per operation, named for it, beside the script it runs:
//!
//! | operation | Rust | script |
//! |---|---|---|
//! | [`Ledger::enqueue`], `enqueue_json`, `enqueue_many` | `enqueue.rs` | `lua/enqueue.lua` |
//! | [`Ledger::claim`], `claim_many` | `claim.rs` | `lua/claim.lua` (+ `_claim.lua`) |
//! | [`Ledger::heartbeat`] | `heartbeat.rs` | `lua/heartbeat.lua` |
//! | [`Ledger::complete`] and its per-queue batcher | `complete.rs` | `lua/complete_claim.lua` (+ `_complete.lua`) |
//! | [`Ledger::complete_and_claim`] | `complete_claim.rs` | `lua/complete_claim.lua` |
//! | [`Ledger::fail`], `fail_with` | `fail.rs` | `lua/fail.lua` (+ `_fail.lua`) |
//! | [`Ledger::snooze`] | `snooze.rs` | `lua/snooze.lua` (+ `_fail.lua`) |
//! | [`Ledger::await_resume`], `resume`, `resume_by_token` | `await_resume.rs` | `lua/await.lua`, `lua/resume.lua` |
//! | [`Ledger::cancel`], `acknowledge_cancel` | `cancel.rs` | `lua/cancel.lua`, `lua/ack_cancel.lua` |
//! | [`Ledger::get`], `list` | `inspect.rs` | reads only |
//! | [`Ledger::find`] | `find.rs` | reads only |
//! | [`Ledger::retry`] | `retry.rs` | `lua/retry.lua` |
//! | [`Ledger::pin`], `unpin` | `pin.rs` | `lua/pin.lua` |
//! | [`Ledger::set_queue`], `queue_settings`, `queues`, counts | `queue.rs` | `lua/set_queue.lua` |
//! | [`Ledger::pause_queue`], `resume_queue` | `pause.rs` | `lua/pause_queue.lua`, `lua/resume_queue.lua` (+ `_pause.lua`) |
//! | [`Ledger::acquire`], `release`, `resources`, `resource`, `force_release` (resource leases) | `resources/` | `lua/resource_acquire.lua`, `lua/resource_release.lua`, `lua/resource_event.lua` |
//! | the worker registry | `workers.rs` | `lua/worker_*.lua` |
//! | worker tiers as workers and operators see them | `tiers.rs` | `lua/worker_heartbeat.lua`, `worker_reset.lua`, `worker_request.lua`, `worker_outcome.lua` |
//! | [`Ledger::read_events`], `recent_events`, `execution_events`, `follow_events` (the executions' event streams) | `events.rs` | reads only |
//! | [`Ledger::watch_events`] (following through outages) | `watch_events.rs` | reads only |
//! | the workers' event stream | `worker_events.rs` | reads only |
//!
//! Shared: `attempt.rs` (the replies of a token that is not current, the attempt scripts'
//! keys), `token.rs` (the attempt token), `execution.rs` (what an execution is, read from
//! its hash; its [`State`] and [`StopReason`] are in `src/state.rs`), `options.rs` (enqueue options, queue settings). The timings are in
//! [`crate::timings`], the hash fields' glossary in `src/fields.rs`, the scripts' registry
//! in `src/scripts.rs`.

mod attempt;
mod await_resume;
mod beats;
mod cancel;
mod claim;
mod complete;
mod complete_claim;
mod enqueue;
mod events;
mod execution;
mod fail;
mod find;
mod heartbeat;
mod inspect;
mod options;
mod pause;
mod pin;
mod queue;
mod resources;
mod retry;
mod snooze;
mod tiers;
mod token;
mod usage;
mod wait;
mod watch_events;
mod worker_events;
mod workers;

use std::sync::Arc;

pub use crate::state::{State, StopReason};
pub use await_resume::{
    AwaitOutcome, AwaitResume, Awaited, DEFAULT_MAX_WAIT, MAX_WAIT_REASON, Resumed, WaitExpiry,
};
pub use beats::MAX_HEARTBEAT_BATCH;
pub use cancel::CancelOutcome;
pub use claim::{Claim, ClaimBatch, MAX_CLAIM_BATCH};
pub use complete::CompleteOutcome;
pub use enqueue::{Enqueued, MAX_ENQUEUE_BATCH};
pub use execution::{Execution, Fingerprint, StopMetadata, Transition, Wait};
pub use fail::{FailOptions, FailOutcome, MAX_ERROR_MESSAGE};
pub use find::Filter;
pub(crate) use heartbeat::check_fingerprint;
pub use heartbeat::{Heartbeat, HeartbeatReply, MAX_FINGERPRINT_BYTES};
pub(crate) use inspect::check_page_limit;
pub use inspect::{MAX_PAGE, Page};
pub use options::{EnqueueOptions, QueueSettings};
pub use pause::{MAX_PAUSE_REASON, MAX_PAUSED_BY, QueuePause, QueuePauseChange};
pub use queue::QueueOverview;
pub use resources::{
    Acquire, AcquireOutcome, Holder, MAX_RELEASE_REASON, MAX_RESOURCE_CAPACITY, MAX_RESOURCE_TTL,
    Resource,
};
pub use snooze::{MAX_SNOOZE, MAX_SNOOZE_REASON, Snooze, SnoozeOutcome, SnoozeTime};
pub use tiers::{WorkerBeat, WorkerRemediation, WorkerRequest, WorkerReset};
pub use token::AttemptToken;
pub(crate) use usage::UsageQueue;
pub use usage::{
    Budget, DEFAULT_USAGE_WINDOW, DEFAULT_WARNING_SHARE, MAX_MODEL_NAME, MAX_USAGE_AMOUNT,
    QueueUsage, Usage, UsageSummary, UsageTotals, WindowBudget,
};
pub use wait::MAX_CLAIM_WAIT;
pub use worker_events::{WorkerEvent, WorkerEventFollower};
pub(crate) use workers::this_host;
pub use workers::{MISSED_WORKER_BEATS, WorkerInfo, WorkerRegistration};

pub(crate) use crate::state::ms_to_time;
pub use attempt::AttemptRefused;
#[cfg(feature = "server")]
pub(crate) use attempt::next_claim;

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
    /// The completion dispatchers, one per queue (`complete.rs`).
    finisher: Arc<complete::Finisher>,
    /// Long-poll claim waiters and their wake-up signals (`wait.rs`).
    wakeups: Arc<wait::Wakeups>,
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
    /// [`Error::InvalidConfig`] and friends for a bad config, [`Error::Unavailable`] when
    /// Redis cannot be reached, [`Error::EvictionPolicy`] when `maxmemory-policy` is not
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
            wakeups: Arc::default(),
        })
    }

    /// Checks that Redis answers and will not evict keys (where `CONFIG` is readable):
    /// what a readiness probe asks.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when Redis cannot be reached; [`Error::EvictionPolicy`] when
    /// it may evict keys.
    pub async fn check_ready(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        conn::check_eviction_policy(&mut conn).await
    }

    /// The configuration the ledger was connected with.
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
