//! `unstuck workers`: lists the registered workers; its subcommands `reset`, `drain` and
//! `events` steer and audit their remediation.

use chrono::Utc;
use clap::Subcommand;
use unstuck::{Ledger, WorkerInfo, WorkerRemediation};

use crate::cli::WithActions;
use crate::cli::connect::connect;
use crate::cli::table::{ago, render};

/// `unstuck workers`: lists them, or does one of its [`Action`]s (its help line is on
/// its variant of `Command`).
pub(crate) type Args = WithActions<Action>;

#[derive(Subcommand)]
pub(crate) enum Action {
    /// Reset this worker's remediation (tier, failure count, open circuit).
    Reset {
        #[arg(value_name = "WORKER")]
        worker: String,
    },
    /// Ask this worker, in its next heartbeat reply, to finish what it runs and stop.
    Drain {
        #[arg(value_name = "WORKER")]
        worker: String,
    },
    /// The worker remediation events (tier changes, action and hook outcomes, circuits
    /// opened and reset), oldest first.
    Events {
        /// Keep printing them as they come, until Ctrl-C.
        #[arg(long)]
        follow: bool,
    },
}

impl WithActions<Action> {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let json = self.common.json;
        if let Some(worker) = self.stray {
            anyhow::bail!(
                "say what to do with worker {worker}: `unstuck workers reset {worker}`, \
                 `unstuck workers drain {worker}`, or `unstuck workers` to list them"
            );
        }
        let ledger = connect(&self.common).await?;
        match self.action {
            None => list(&ledger, json).await,
            Some(Action::Reset { worker }) => reset(&ledger, &worker, json).await,
            Some(Action::Drain { worker }) => drain(&ledger, &worker).await,
            Some(Action::Events { follow }) => events(&ledger, follow, json).await,
        }
    }
}

/// `unstuck workers` with no subcommand: the table, or `{"workers": [...]}`.
async fn list(ledger: &Ledger, json: bool) -> anyhow::Result<()> {
    let held = ledger.slot_holders().await?;
    let workers = ledger.workers().await?;
    if json {
        let items: Vec<WorkerInfo> = workers.into_iter().map(|w| w.with_held(&held)).collect();
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "workers": items }))?
        );
        return Ok(());
    }
    let now = Utc::now();
    let rows: Vec<Vec<String>> = workers
        .iter()
        .map(|w| {
            vec![
                w.worker_id.clone(),
                w.host.clone(),
                w.pid.to_string(),
                if w.version.is_empty() {
                    "-".into()
                } else {
                    w.version.clone()
                },
                w.queues.join(","),
                ago(Some(w.last_seen_at), now),
                held.get(&w.worker_id).map_or(0, Vec::len).to_string(),
                w.running.len().to_string(),
                tier_cell(&w.remediation),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "WORKER",
                "HOST",
                "PID",
                "VERSION",
                "QUEUES",
                "LAST BEAT",
                "HELD",
                "REPORTED",
                "TIER"
            ],
            &rows
        )
    );
    Ok(())
}

/// `-` (tier 0), the tier reached, or `open` when the circuit is open.
fn tier_cell(r: &WorkerRemediation) -> String {
    match (r.circuit_open, r.tier) {
        (true, _) => "open".into(),
        (false, 0) => "-".into(),
        (false, tier) => tier.to_string(),
    }
}

/// `unstuck workers reset W`.
async fn reset(ledger: &Ledger, worker: &str, json: bool) -> anyhow::Result<()> {
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
async fn drain(ledger: &Ledger, worker: &str) -> anyhow::Result<()> {
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
async fn events(ledger: &Ledger, follow: bool, json: bool) -> anyhow::Result<()> {
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
