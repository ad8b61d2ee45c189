//! The watchdog tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../health_common/mod.rs"]
mod health_common;
#[path = "../runner_common/mod.rs"]
mod runner_common;
#[path = "../support/mod.rs"]
mod support;
#[path = "../watchdog_common/mod.rs"]
mod watchdog_common;

mod awaiting_expiry;
mod compact;
mod hooks;
mod hooks_outbox;
mod hooks_terminate;
mod inspection;
mod resources_sweep;
mod retention;
mod watchdog_attribution;
mod watchdog_budget;
mod watchdog_leases;
mod watchdog_loop;
mod watchdog_outage;
mod watchdog_pause;
mod watchdog_races;
mod watchdog_reconcile;
mod watchdog_replicas;
mod watchdog_robustness;
mod watchdog_rules;
mod watchdog_stuck;
mod watchdog_systemic;
mod watchdog_worker_timeout;
mod worker_tiers;
mod worker_tiers_systemic;
