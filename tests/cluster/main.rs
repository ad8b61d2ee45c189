//! The cluster tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../support/mod.rs"]
mod support;
#[path = "../watchdog_common/mod.rs"]
mod watchdog_common;

mod cluster;
mod cluster_awaiting;
mod cluster_beats;
mod cluster_loop;
mod cluster_pause;
mod cluster_resources;
mod cluster_snooze;
mod cluster_tiers;
mod cluster_usage;
