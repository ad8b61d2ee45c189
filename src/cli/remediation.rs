//! Worker remediation on the command line: the tier column of `unstuck workers`,
//! `unstuck workers reset W`, `drain W` and `events`.

use unstuck::{Ledger, WorkerRemediation};

/// `-` (tier 0), the tier reached, or `open` when the circuit is open.
pub(crate) fn tier_cell(r: &WorkerRemediation) -> String {
    match (r.circuit_open, r.tier) {
        (true, _) => "open".into(),
        (false, 0) => "-".into(),
        (false, tier) => tier.to_string(),
    }
}

/// `unstuck workers reset W`.
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

/// `unstuck workers drain W`.
pub(crate) async fn drain(ledger: &Ledger, worker: &str) -> anyhow::Result<()> {
    match ledger
        .request_worker(
            worker,
            unstuck::WorkerRequest::Drain,
            "asked from the command line",
        )
        .await
    {
        Ok(()) => {
            out!("worker {worker} is asked to drain in its next heartbeat reply");
            Ok(())
        }
        Err(unstuck::Error::UnknownWorker { .. }) => anyhow::bail!(
            "worker {worker} is not registered: `unstuck workers` lists the ones that are"
        ),
        Err(e) => Err(e.into()),
    }
}

/// `unstuck workers events [--follow]`: the newest 1000, oldest first, then (following)
/// each new one as it comes, polled every 500 ms.
pub(crate) async fn events(ledger: &Ledger, follow: bool, json: bool) -> anyhow::Result<()> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = ledger.worker_events(after.as_deref(), 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.stream_id.clone());
        events.extend(page);
    }
    let skip = events.len().saturating_sub(1000);
    if json && !follow {
        let events = &events[skip..];
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "events": events }))?
        );
        return Ok(());
    }
    for e in &events[skip..] {
        print_event(e, json)?;
    }
    if !follow {
        return Ok(());
    }
    loop {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        for e in ledger.worker_events(after.as_deref(), 1000).await? {
            after = Some(e.stream_id.clone());
            print_event(&e, json)?;
        }
    }
}

/// One event: a line for people, or (following with --json) one JSON object per line.
fn print_event(e: &unstuck::WorkerEvent, json: bool) -> anyhow::Result<()> {
    if json {
        out!("{}", serde_json::to_string(e)?);
        return Ok(());
    }
    let tiers = if e.from_tier == e.to_tier {
        format!("tier {}", e.to_tier)
    } else {
        format!("tier {} -> {}", e.from_tier, e.to_tier)
    };
    let worker = if e.worker_id.is_empty() {
        "-"
    } else {
        &e.worker_id
    };
    out!(
        "{}  {worker}  {tiers}  {}  {}",
        e.at.format("%H:%M:%S%.3f"),
        e.reason,
        e.detail
    );
    Ok(())
}
