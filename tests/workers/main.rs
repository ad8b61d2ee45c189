//! The workers tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../cli_common/mod.rs"]
mod cli_common;
#[path = "../exec_common/mod.rs"]
mod exec_common;
#[path = "../runner_common/mod.rs"]
mod runner_common;
#[path = "../support/mod.rs"]
mod support;
#[path = "../watchdog_common/mod.rs"]
mod watchdog_common;

mod beats;
mod exec;
mod exec_stop;
mod exec_usage;
mod runner;
mod runner_await;
mod runner_loop;
mod runner_pause;
mod runner_resources;
mod runner_snooze;
mod runner_stop;
mod runner_usage;
mod worker_loop;
mod worker_requests;
