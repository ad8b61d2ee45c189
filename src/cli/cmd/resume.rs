//! `unstuck resume QUEUE ID [--input JSON]`: an awaiting execution goes back to the queue.

use serde_json::Value;
use unstuck::Ledger;

use crate::cli::ExecutionRef;

/// Resume an awaiting execution: back in the queue, the continuing claim gets the input.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    on: ExecutionRef,
    /// JSON handed to the claim that continues it (`resume_input`), e.g. '{"approved": true}'.
    #[arg(long)]
    input: Option<String>,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let input: Option<Value> = match &self.input {
            None => None,
            Some(text) => Some(serde_json::from_str(text).map_err(|e| {
                anyhow::anyhow!(
                    "--input is not JSON ({e}): quote it, e.g. --input '{{\"approved\": true}}'"
                )
            })?),
        };
        let ledger = self.on.connect().await?;
        resume(
            &ledger,
            &self.on.queue,
            &self.on.id,
            input.as_ref(),
            self.on.common.json,
        )
        .await
    }
}

/// `unstuck resume`.
async fn resume(
    ledger: &Ledger,
    queue: &str,
    id: &str,
    input: Option<&Value>,
    json: bool,
) -> anyhow::Result<()> {
    let r = ledger.resume(queue, id, input).await?;
    if json {
        out!("{}", serde_json::to_string_pretty(&r)?);
    } else if r.already {
        out!(
            "{queue}/{id} was already resumed at {} (it is {} now): nothing changed",
            r.resumed_at.format("%Y-%m-%d %H:%M:%S%.3f UTC"),
            r.state
        );
    } else {
        out!("resumed {queue}/{id}: queued, the next claim continues it");
    }
    Ok(())
}
