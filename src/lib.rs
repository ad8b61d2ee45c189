//! unstuck: a Redis-backed execution ledger and watchdog for long-running work.
//!
//! Orchestrators [`enqueue`](Ledger::enqueue) executions; workers
//! [`claim`](Ledger::claim) them, [`heartbeat`](Ledger::heartbeat) with progress and
//! checkpoints, and [`complete`](Ledger::complete) or [`fail`](Ledger::fail) them. Every
//! transition is one Lua script: a compare-and-set on (state, attempt) that keeps the
//! timer indexes, capacity slots and event stream consistent with the execution.
//! [`watchdog::Watchdog`] replicas find what got stuck and fix it, fenced by partition
//! leases.
//!
//! ```text
//! queued ──claim──▶ dispatched ──first heartbeat──▶ running ──complete──▶ succeeded
//!    ▲                                                 │ fail(retryable, attempts left)
//!    └──────────────── backoff ◀───────────────────────┘ fail otherwise ──▶ failed
//! cancel: queued ──▶ cancelled; active ──▶ cancel_requested ──acknowledge──▶ cancelled
//! ```
//!
//! # Layout
//! - `keys`: the one place that builds Redis keys; every key of a partition shares one
//!   hash tag, so each script touches a single Redis Cluster slot. Crate-private: clients
//!   never see keys.
//! - `scripts`: the Lua scripts of `lua/`, loaded once, invoked with NOSCRIPT fallback.
//! - [`ledger`]: executions and queues, the orchestrator and worker API.
//! - [`runner`]: a worker-side loop for Rust workers that heartbeats on its own thread.
//! - `supervise` (feature `supervise`, Unix): `unstuck exec`, any command as a worker,
//!   one process group per execution.
//! - [`watchdog`]: partition leases, timer rounds, worker reconciliation, systemic hold,
//!   worker remediation tiers with their circuit breaker.
//! - [`hooks`]: remediation hooks (commands, signed webhooks) and their durable outbox.
//! - [`settings`]: the daemon's TOML file plus `UNSTUCK_*` environment overrides.
//! - [`events`]: reading and following the partition event streams.
//! - [`timeline`]: an execution's history merged with its surviving events.
//! - [`config`]: configuration with defaults; [`error`]: what can go wrong.
//! - `testkit` (feature `testkit`, hidden): throwaway `redis-server` processes and the
//!   invariant checker shared by the tests, the benches and `unstuck demo`.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

pub mod config;
mod conn;
pub mod error;
pub mod events;
mod fields;
pub mod hooks;
mod keys;
pub mod ledger;
pub mod names;
pub mod retention;
pub mod runner;
#[cfg(feature = "server")]
pub mod server;
pub mod settings;
#[cfg(all(unix, feature = "supervise"))]
pub mod supervise;
pub mod timeline;
pub mod timings;
pub mod watchdog;

mod scripts;

#[cfg(feature = "testkit")]
#[doc(hidden)]
pub mod testkit;

pub use config::LedgerConfig;
pub use error::{Error, Result};
pub use events::{Event, EventFollower};
pub use ledger::{
    AttemptToken, CancelOutcome, Claim, ClaimBatch, CompleteOutcome, EnqueueOptions, Enqueued,
    Execution, FailOutcome, Filter, Heartbeat, HeartbeatReply, Ledger, MAX_CLAIM_BATCH,
    MAX_ENQUEUE_BATCH, Page, QueueOverview, QueueSettings, State, StopMetadata, StopReason,
    Transition, WorkerBeat, WorkerEvent, WorkerInfo, WorkerRegistration, WorkerRemediation,
    WorkerRequest, WorkerReset,
};
pub use retention::Retention;
pub use runner::{Job, JobError, RunReport, Runner, RunnerConfig, StopSignal};
pub use timings::{ResolvedTimings, Timings};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
