//! `unstuck queues`: depth, claimable now, slots in use / capacity, age of the oldest queued.

use unstuck::{Ledger, QueueOverview};

use crate::cli::Common;
use crate::cli::connect::connect;
use crate::cli::output::print_json;
use crate::cli::table::{duration, render};

/// Queues: depth, claimable now, slots in use / capacity, age of the oldest queued.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        queues(&connect(&self.common).await?, self.common.json).await
    }
}

/// `unstuck queues`.
async fn queues(ledger: &Ledger, json: bool) -> anyhow::Result<()> {
    let queues: Vec<QueueOverview> = ledger.queue_overviews().await?.into_iter().collect();
    if json {
        return print_json(&serde_json::json!({ "queues": queues }));
    }
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                q.name.clone(),
                q.depth.to_string(),
                q.available.to_string(),
                format!("{}/{}", q.active, q.capacity),
                q.oldest_queued_age.map_or("-".into(), duration),
                q.partition.to_string(),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "QUEUE",
                "DEPTH",
                "AVAILABLE",
                "SLOTS",
                "OLDEST",
                "PARTITION"
            ],
            &rows
        )
    );
    Ok(())
}
