//! The http tests, one binary (each test binary links the whole tree, so areas share one;
//! one throwaway Redis per binary, a namespace per test).

#[path = "../health_common/mod.rs"]
mod health_common;
#[path = "../http_common/mod.rs"]
mod http_common;
#[path = "../support/mod.rs"]
mod support;

mod http_api;
mod http_awaiting;
mod http_beats;
mod http_loop;
mod http_operator;
mod http_pause;
mod http_redis_down;
mod http_refusals;
mod http_resources;
mod http_service;
mod http_snooze;
mod http_streams;
mod http_usage;
mod http_views;
mod http_worker_tiers;
