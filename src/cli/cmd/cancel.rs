//! `unstuck cancel QUEUE ID`: at once when queued, by asking its worker when active.

use unstuck::{CancelOutcome, Ledger};

use crate::cli::ExecutionRef;

/// Cancel an execution: at once when queued, by asking its worker when active.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    on: ExecutionRef,
    /// Why, for the people reading it later.
    #[arg(long)]
    reason: String,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let ledger = self.on.connect().await?;
        cancel(
            &ledger,
            &self.on.queue,
            &self.on.id,
            &self.reason,
            self.on.common.json,
        )
        .await
    }
}

/// `unstuck cancel`.
async fn cancel(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let outcome = ledger.cancel(queue, id, reason).await?;
    let (word, line) = match &outcome {
        CancelOutcome::Cancelled => ("cancelled", format!("cancelled {queue}/{id}")),
        CancelOutcome::Requested { already: false, .. } => (
            "requested",
            format!(
                "cancellation of {queue}/{id} requested: its worker stops at its next heartbeat"
            ),
        ),
        CancelOutcome::Requested { already: true, .. } => (
            "requested",
            format!("cancellation of {queue}/{id} was already requested"),
        ),
        CancelOutcome::AlreadyTerminal { state, stop_reason } => {
            anyhow::bail!("{queue}/{id} already ended {state} ({stop_reason}): nothing to cancel")
        }
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"outcome": word, "queue": queue, "id": id})
        );
    } else {
        out!("{line}");
    }
    Ok(())
}
