//! The demo's "waiting is not stuck" rows: work that legitimately waits (an agent waiting
//! for approval, snoozes for a rate limit, a paused queue) is neither judged stuck nor charged an attempt. Each scenario is a
//! file of its own and runs in a namespace of its own, after the fault kinds.

use serde::{Deserialize, Serialize};
use unstuck::{Ledger, LedgerConfig, Result};

/// One waiting case, as the table shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WaitingRow {
    pub case: String,
    pub expected: String,
    pub observed: String,
    pub correct: bool,
}

/// Runs every waiting case against `redis_url` in namespace `namespace`.
///
/// # Errors
/// Redis errors.
pub async fn run(redis_url: &str, namespace: &str) -> Result<Vec<WaitingRow>> {
    let mut config = LedgerConfig::new(redis_url.to_owned());
    config.namespace = namespace.to_owned();
    config.partitions = 2;
    let ledger = Ledger::connect(config).await?;
    Ok(vec![
        super::awaiting::run(redis_url, &format!("{namespace}-await")).await?,
        super::snooze::rate_limited(&ledger).await?,
        super::paused_queue::run(redis_url, &format!("{namespace}-pause")).await?,
        super::looping::run(redis_url, &format!("{namespace}-loop")).await?,
        super::resource_lease::run(redis_url, &format!("{namespace}-lease")).await?,
        super::budget::runaway(&ledger).await?,
    ])
}
