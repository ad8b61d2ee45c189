//! `unstuck workers`: lists the registered workers; its subcommands `reset`, `drain` and
//! `events` steer and audit their remediation (`remediation.rs`).

use chrono::Utc;
use clap::Subcommand;
use unstuck::{Ledger, WorkerInfo};

use super::table::{ago, render};
use super::{Common, connect, remediation};

/// Registered workers: host, pid, version, queues, last beat, executions held, and the
/// remediation tier (`open`: the circuit is open, unstuck no longer acts on it).
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    action: Option<Action>,
    /// Not an option: catches `unstuck workers W` (a worker without what to do with it),
    /// which would otherwise be clap's multi-line "unrecognized subcommand".
    #[arg(hide = true)]
    stray: Option<String>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Action {
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

impl Args {
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
            Some(Action::Reset { worker }) => remediation::reset(&ledger, &worker, json).await,
            Some(Action::Drain { worker }) => remediation::drain(&ledger, &worker).await,
            Some(Action::Events { follow }) => remediation::events(&ledger, follow, json).await,
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
                remediation::tier_cell(&w.remediation),
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
