//! Test support shared by the test suite, the benches and `unstuck demo`.
//!
//! Throwaway `redis-server` processes (from the `unstuck-redis-process` crate, the one
//! place with `unsafe` code), unique namespaces, raw key names for fault injection, the
//! invariant checker, and a record of the heartbeats workers batch (`beats.rs`). Compiled
//! only with the `testkit` feature and hidden from the docs: none of it is part of the
//! library's API, and clients of the library never see keys.
#![allow(missing_docs)]

pub mod beats;
pub mod invariants;
mod raw;
pub use raw::states;

pub use crate::keys::{Keyspace, Timer};

pub use beats::{BeatLog, BeatRecord};
pub use unstuck_redis_process::{
    RedisCluster, RedisProcess, RedisProcessError, RedisProcessOptions,
};

use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace no other caller in this process uses, like `t3_lease_expires_a1b2c3d4`: a
/// counter for uniqueness, part of `name` for reading keys in `redis-cli`, random hex so
/// two runs against the same server never collide. Only `[A-Za-z0-9_-]`, at most 40
/// characters.
pub fn namespace(name: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let counter = NEXT.fetch_add(1, Ordering::Relaxed);
    let name: String = name
        .rsplit("::")
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .take(16)
        .collect();
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("t{counter}_{name}_{}", &random[..8])
}

/// The key builder of `ledger`'s namespace, for tests that read or damage raw keys.
pub fn keys(ledger: &crate::Ledger) -> Keyspace {
    ledger.keys.clone()
}
