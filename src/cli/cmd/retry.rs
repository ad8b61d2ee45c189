//! `unstuck retry QUEUE ID`: a finished execution run again as a new one linked to it.

use serde_json::Value;
use unstuck::Ledger;

use crate::cli::ExecutionRef;

/// Run a finished (failed, dead, timed_out, cancelled) execution again as a new one
/// linked to it (retry_of), resuming from its last checkpoint.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    on: ExecutionRef,
    /// The new execution's id (default: <id>.retry<n>).
    #[arg(long)]
    new_id: Option<String>,
    /// Why, recorded in the event.
    #[arg(long, default_value = "retried by an operator")]
    reason: String,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let ledger = self.on.connect().await?;
        let new_id = self.new_id.as_deref();
        retry(
            &ledger,
            &self.on.queue,
            &self.on.id,
            new_id,
            &self.reason,
            self.on.common.json,
        )
        .await
    }
}

/// `unstuck retry`.
async fn retry(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    new_id: Option<&str>,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let out = ledger.retry(queue, id, new_id, reason).await?;
    if json {
        let mut v = serde_json::to_value(&out)?;
        v["retry_of"] = Value::from(format!("{queue}/{id}"));
        out!("{}", serde_json::to_string_pretty(&v)?);
    } else if out.created {
        out!(
            "{queue}/{id} runs again as {}/{} ({})",
            out.queue,
            out.id,
            out.state
        );
    } else {
        out!(
            "{}/{} was made before ({}): nothing written",
            out.queue,
            out.id,
            out.state
        );
    }
    Ok(())
}
