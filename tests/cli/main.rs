//! The cli tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../cli_common/mod.rs"]
mod cli_common;
#[path = "../health_common/mod.rs"]
mod health_common;
#[path = "../ledger_common/mod.rs"]
mod ledger_common;
#[path = "../support/mod.rs"]
mod support;

mod cli_awaiting;
mod cli_loop;
mod cli_pause;
mod cli_read;
mod cli_resources;
mod cli_snooze;
mod cli_steer;
mod cli_usage;
mod cli_workers;
mod demo;
