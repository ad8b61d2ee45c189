//! Worker remediation on the command line: the tier column of `unstuck workers`, and
//! `unstuck workers --reset W`.

use unstuck::{Ledger, WorkerRemediation};

/// `-` (tier 0), the tier reached, or `open` when the circuit is open.
pub(crate) fn tier_cell(r: &WorkerRemediation) -> String {
    match (r.circuit_open, r.tier) {
        (true, _) => "open".into(),
        (false, 0) => "-".into(),
        (false, tier) => tier.to_string(),
    }
}

/// `unstuck workers --reset W`.
pub(crate) async fn reset(ledger: &Ledger, worker: &str, json: bool) -> anyhow::Result<()> {
    let reset = match ledger
        .reset_worker(worker, "reset from the command line")
        .await
    {
        Ok(reset) => reset,
        Err(unstuck::Error::UnknownWorker { .. }) => anyhow::bail!(
            "worker {worker} is not registered: `unstuck workers` lists the ones that are"
        ),
        Err(e) => return Err(e.into()),
    };
    if json {
        out!("{}", serde_json::to_string_pretty(&reset)?);
    } else {
        out!(
            "worker {worker} reset: it was at tier {}, circuit {}; the watchdog judges it afresh",
            reset.previous_tier,
            if reset.circuit_was_open {
                "open"
            } else {
                "closed"
            }
        );
    }
    Ok(())
}
