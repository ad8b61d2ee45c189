//! `unstuck resources`: lists the resources held (resource leases) with their holders;
//! `unstuck resources release RESOURCE QUEUE ID --reason ..` force-releases a unit.

use chrono::Utc;
use clap::Subcommand;
use unstuck::Ledger;

use crate::cli::WithActions;
use crate::cli::connect::connect;
use crate::cli::table::{ago, render};

/// `unstuck resources`: lists them, or does one of its [`Action`]s.
pub(crate) type Args = WithActions<Action>;

#[derive(Subcommand)]
pub(crate) enum Action {
    /// Free the unit of RESOURCE that execution QUEUE/ID holds, whatever its attempt,
    /// recording why in a `resource_force_released` event.
    Release {
        #[arg(value_name = "RESOURCE")]
        resource: String,
        #[arg(value_name = "QUEUE")]
        queue: String,
        #[arg(value_name = "ID")]
        id: String,
        /// Why (recorded in the event).
        #[arg(long)]
        reason: String,
    },
}

impl WithActions<Action> {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let json = self.common.json;
        if let Some(resource) = self.stray {
            anyhow::bail!(
                "say what to do with resource {resource}: `unstuck resources release \
                 {resource} QUEUE ID --reason ..`, or `unstuck resources` to list them"
            );
        }
        let ledger = connect(&self.common).await?;
        match self.action {
            None => list(&ledger, json).await,
            Some(Action::Release {
                resource,
                queue,
                id,
                reason,
            }) => release(&ledger, &resource, &queue, &id, &reason, json).await,
        }
    }
}

/// The table (one row per holder), or `{"resources": [...]}`.
async fn list(ledger: &Ledger, json: bool) -> anyhow::Result<()> {
    let resources = ledger.resources().await?;
    if json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "resources": resources }))?
        );
        return Ok(());
    }
    if resources.is_empty() {
        out!("no resource is held");
        return Ok(());
    }
    let now = Utc::now();
    let mut rows = Vec::new();
    for r in &resources {
        for h in &r.holders {
            rows.push(vec![
                r.resource.clone(),
                format!("{}/{}", r.held, r.capacity),
                format!("{}/{}", h.queue, h.id),
                h.attempt.to_string(),
                ago(Some(h.since), now),
                h.expires_at
                    .map_or_else(|| "-".to_owned(), |at| at.to_rfc3339()),
            ]);
        }
    }
    out!(
        "{}",
        render(
            &["RESOURCE", "HELD", "HOLDER", "ATTEMPT", "SINCE", "EXPIRES"],
            &rows
        )
    );
    Ok(())
}

/// `unstuck resources release R Q ID --reason ..`.
async fn release(
    ledger: &Ledger,
    resource: &str,
    queue: &str,
    id: &str,
    reason: &str,
    json: bool,
) -> anyhow::Result<()> {
    let attempt = ledger.force_release(resource, queue, id, reason).await?;
    if json {
        out!(
            "{}",
            serde_json::json!({ "released": attempt.is_some(), "attempt": attempt })
        );
        return Ok(());
    }
    match attempt {
        Some(a) => out!("released {resource} held by {queue}/{id} (attempt {a})"),
        None => anyhow::bail!(
            "{queue}/{id} holds no unit of {resource}: see `unstuck resources` for the holders"
        ),
    }
    Ok(())
}
