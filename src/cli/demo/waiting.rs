//! The demo's "waiting is not stuck" rows: work that legitimately waits (an agent waiting
//! for approval, snoozes for a rate limit, a paused queue) is neither judged stuck nor charged an attempt. Each scenario is a
//! file of its own and runs in a namespace of its own, after the fault kinds.

use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
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
    let ledger = ledger_in(redis_url, namespace).await?;
    Ok(vec![
        super::awaiting::run(redis_url, &format!("{namespace}-await")).await?,
        super::snooze::rate_limited(&ledger).await?,
        super::paused_queue::run(redis_url, &format!("{namespace}-pause")).await?,
        super::looping::run(redis_url, &format!("{namespace}-loop")).await?,
        super::resource_lease::run(redis_url, &format!("{namespace}-lease")).await?,
        super::budget::runaway(&ledger).await?,
    ])
}

/// What a scenario saw: `Ok(Ok(what happened))` when all went as expected,
/// `Ok(Err(what went wrong))` when not.
pub(super) type Observed = Result<std::result::Result<String, String>>;

/// A ledger of two partitions in `namespace`, a case's own.
pub(super) async fn ledger_in(redis_url: &str, namespace: &str) -> Result<Ledger> {
    let mut config = LedgerConfig::new(redis_url.to_owned());
    config.namespace = namespace.to_owned();
    config.partitions = 2;
    Ledger::connect(config).await
}

/// Runs `scenario` against a ledger in `namespace` with a watchdog replica of its own
/// (it stops when the scenario ends; the scenario gets the token that stops it) and makes
/// what it saw the row `case`.
///
/// # Errors
/// Redis errors before the scenario starts.
pub(super) async fn watched<F, Fut>(
    redis_url: &str,
    namespace: &str,
    case: &str,
    expected: &str,
    scenario: F,
) -> Result<WaitingRow>
where
    F: FnOnce(Ledger, CancellationToken) -> Fut,
    Fut: Future<Output = Observed>,
{
    let ledger = ledger_in(redis_url, namespace).await?;
    let stop = CancellationToken::new();
    let watchdog = Watchdog::new(
        ledger.clone(),
        WatchdogConfig {
            max_poll_interval: Duration::from_millis(50),
            ..WatchdogConfig::default()
        },
    )?;
    let replica = {
        let stop = stop.clone();
        tokio::spawn(async move { watchdog.run(stop).await })
    };
    let observed = scenario(ledger, stop.clone()).await;
    stop.cancel();
    let _ = replica.await;
    let (observed, correct) = match observed {
        Ok(Ok(what)) => (what, true),
        Ok(Err(wrong)) => (wrong, false),
        Err(error) => (error.to_string(), false),
    };
    Ok(WaitingRow {
        case: case.into(),
        expected: expected.into(),
        observed,
        correct,
    })
}
