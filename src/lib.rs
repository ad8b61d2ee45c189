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
//! running ──await──▶ awaiting ──resume──▶ queued (a continuation, not a retry)
//!                       └── wait deadline ──▶ failed (wait_expired), or queued
//! ```
//!
//! # Layout
//! Every module, in one table (a unit test keeps it, the module list below and the layout
//! of docs/development.md in step):
//!
//! | module | what it holds |
//! |---|---|
//! | [`ledger`] | executions and queues: the orchestrator and worker API, a file per operation |
//! | [`watchdog`] | replicas: partition leases, timer rounds, systemic hold, reconciliation, worker tiers, hooks, retention |
//! | [`runner`] | the worker loop for Rust closures (heartbeats on their own thread) |
//! | `supervise` | `unstuck exec` (feature `supervise`, Unix): any command as a worker, one process group per execution |
//! | `server` | `unstuck serve` (feature `server`): HTTP routes, auth, problem+json, SSE, metrics, the dashboard |
//! | [`hooks`] | remediation hooks (commands, signed webhooks) and their durable outbox |
//! | [`events`] | reading and following the partition event streams |
//! | [`otel`] | the W3C traceparent an execution carries; (feature `otel`) its spans, exported over OTLP |
//! | [`timeline`] | an execution's history merged with its surviving events |
//! | [`timings`] | the nine per-execution timings and how they resolve |
//! | [`retention`] | how long finished executions are kept |
//! | [`names`] | naming rules for namespaces, queues, execution and worker ids |
//! | [`config`] | the ledger's configuration with defaults |
//! | [`settings`] | the daemon's TOML file plus `UNSTUCK_*` environment overrides |
//! | [`error`] | everything that can go wrong, and what the caller should do |
//! | `keys` | the one place that builds Redis keys (crate-private; one hash tag per partition) |
//! | `scripts` | the Lua scripts of `lua/`, loaded once, invoked with NOSCRIPT fallback |
//! | `state` | an execution's state and stop reason, and Redis instants (crate-private; public as [`State`], [`StopReason`]) |
//! | `fields` | the glossary of an execution hash's fields |
//! | `conn` | connecting: standalone or cluster, credentials, TLS, the ACL check |
//! | `testkit` | (feature `testkit`, hidden) throwaway `redis-server`s and the invariant checker |

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
pub mod otel;
pub mod retention;
pub mod runner;
#[cfg(feature = "server")]
pub mod server;
pub mod settings;
mod state;
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
    Acquire, AcquireOutcome, AttemptToken, AwaitOutcome, AwaitResume, Awaited, CancelOutcome,
    Claim, ClaimBatch, CompleteOutcome, EnqueueOptions, Enqueued, Execution, FailOptions,
    FailOutcome, Filter, Fingerprint, Heartbeat, HeartbeatReply, Holder, Ledger, MAX_CLAIM_BATCH,
    MAX_ENQUEUE_BATCH, MAX_FINGERPRINT_BYTES, MAX_HEARTBEAT_BATCH, MAX_PAUSE_REASON, MAX_PAUSED_BY,
    MAX_SNOOZE, Page, QueueOverview, QueuePause, QueuePauseChange, QueueSettings, Resource,
    Resumed, Snooze, SnoozeOutcome, SnoozeTime, State, StopMetadata, StopReason, Transition,
    WaitExpiry, WorkerBeat, WorkerEvent, WorkerInfo, WorkerRegistration, WorkerRemediation,
    WorkerRequest, WorkerReset,
};
pub use ledger::{
    Budget, DEFAULT_WARNING_SHARE, QueueUsage, Usage, UsageSummary, UsageTotals, WindowBudget,
};
pub use retention::Retention;
pub use runner::{Job, JobError, RunReport, Runner, RunnerConfig, StopSignal};
pub use timings::{ResolvedTimings, Timings};

/// The README's examples, compiled as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The examples of the docs pages, compiled as doctests like the README's: one item per
/// page that holds Rust code blocks (the `doc_links` test checks none is missing).
#[cfg(doctest)]
pub mod doc_pages {
    /// docs/library.md: the ledger, the runner, the volume calls.
    #[doc = include_str!("../docs/library.md")]
    pub struct Library;
}

/// The docs' relative links resolve, and README.md stays a front page.
#[cfg(test)]
mod doc_links;

/// The crate map above names every module, and so does docs/development.md.
#[cfg(test)]
mod doc_layout;
