//! `unstuck pin QUEUE ID`: retention never removes a pinned execution.

use unstuck::Ledger;

use crate::cli::ExecutionRef;

/// Pin an execution so retention never removes it (--off: retention applies again).
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    on: ExecutionRef,
    /// Unpin it instead.
    #[arg(long)]
    off: bool,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let ledger = self.on.connect().await?;
        pin(
            &ledger,
            &self.on.queue,
            &self.on.id,
            !self.off,
            self.on.common.json,
        )
        .await
    }
}

/// `unstuck pin` / `unstuck pin --off`.
async fn pin(ledger: &Ledger, queue: &str, id: &str, pin: bool, json: bool) -> anyhow::Result<()> {
    let state = if pin {
        ledger.pin(queue, id).await?
    } else {
        ledger.unpin(queue, id).await?
    };
    if json {
        out!(
            "{}",
            serde_json::json!({"queue": queue, "id": id, "pinned": pin, "state": state})
        );
    } else if pin {
        out!("pinned {queue}/{id} ({state}): retention never removes it");
    } else {
        out!("unpinned {queue}/{id} ({state}): retention applies again");
    }
    Ok(())
}
