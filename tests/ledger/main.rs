//! The ledger tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../ledger_common/mod.rs"]
mod ledger_common;
#[path = "../support/mod.rs"]
mod support;

mod awaiting;
mod bad_config;
mod bad_input;
mod batches;
mod cancel;
mod claim_paths;
mod claim_wait;
mod coalescing;
mod concurrency;
mod connect;
mod events;
mod heartbeat_batch;
mod invariant_checker;
mod ledger_resources;
mod ledger_usage;
mod lifecycle;
mod listing;
mod model;
mod operator;
mod pause;
mod queues;
mod registry;
mod scripts;
mod snooze;
mod tokens;
mod transitions;
mod usage_hot_path;
mod usage_journal;
