//! `unstuck status`: the watchdog's leases, replicas, holds and totals, and the library's
//! health verdict (the one `GET /v1/watchdog` serves); exits non-zero when degraded.

use unstuck::Ledger;
use unstuck::watchdog;

use crate::cli::Common;
use crate::cli::table::{ago, opt, render};

/// The watchdog: partition leases, replicas, holds, totals, and a one-line verdict;
/// exits 1 when degraded.
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let healthy = status(self.common.config.as_deref(), self.common.json).await?;
        if !healthy {
            std::process::exit(1);
        }
        Ok(())
    }
}

/// `unstuck status`; false when degraded (the caller exits non-zero). The verdict is the
/// library's ([`unstuck::watchdog::Health`]), the one `GET /v1/watchdog` serves; with
/// Redis unreachable only the verdict is printed (`--json`: `{"health": ...}`).
async fn status(config: Option<&std::path::Path>, json: bool) -> anyhow::Result<bool> {
    let settings = unstuck::settings::Settings::load(config)?;
    let status = match Ledger::connect(settings.ledger).await {
        Ok(ledger) => watchdog::status(&ledger).await,
        Err(error) => Err(error),
    };
    let status = match status {
        Ok(status) => status,
        Err(error) => {
            let Some(health) = watchdog::Health::unreachable(&error) else {
                return Err(error.into());
            };
            if json {
                out!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({ "health": health }))?
                );
            } else {
                out!("{}", health.summary);
            }
            return Ok(false);
        }
    };
    let healthy = status.health.is_healthy();
    if json {
        out!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(healthy);
    }
    let at = status.at;
    let rows: Vec<Vec<String>> = status
        .partitions
        .iter()
        .map(|p| {
            vec![
                p.partition.to_string(),
                opt(p.owner.clone()),
                opt(p.epoch),
                ago(p.lease_expires_at, at),
                ago(p.last_round_at, at),
                p.hold_until
                    .map_or("-".into(), |h| format!("until {}", ago(Some(h), at))),
            ]
        })
        .collect();
    out!(
        "{}",
        render(
            &[
                "PARTITION",
                "OWNER",
                "EPOCH",
                "LEASE EXPIRES",
                "LAST ROUND",
                "HOLD"
            ],
            &rows
        )
    );
    let replicas: Vec<String> = status
        .replicas
        .iter()
        .map(|r| format!("{} (beat {})", r.replica_id, ago(Some(r.last_beat_at), at)))
        .collect();
    out!(
        "\nreplicas: {}",
        if replicas.is_empty() {
            "none".into()
        } else {
            replicas.join(", ")
        }
    );
    let t = &status.totals;
    out!(
        "totals: timed_out {} · stuck {} · retried {} · dead {} · cancelled {} · orphaned {} · holds {} · pruned {} · wait_expired {}",
        t.timed_out,
        t.stuck,
        t.retried,
        t.dead,
        t.cancelled,
        t.orphaned,
        t.holds,
        t.pruned,
        t.wait_expired
    );
    if let Some(h) = &status.namespace_hold {
        out!("namespace hold: until {} — {}", h.until, h.reason);
    }
    // Worker circuits are an alert about workers, not about the watchdog's health: shown,
    // but they do not make the verdict degraded (see src/watchdog/health.rs).
    if status.workers_in_tier > 0 || !status.open_circuits.is_empty() {
        out!(
            "workers in a remediation tier: {} · circuits open (unstuck no longer acts on \
             them; unstuck workers reset W): {:?}",
            status.workers_in_tier,
            status.open_circuits
        );
    }
    for p in status.partitions.iter().filter(|p| p.hold_until.is_some()) {
        out!(
            "hold in partition {}: {}",
            p.partition,
            opt(p.hold_reason.clone())
        );
    }
    out!("{}", status.health.summary);
    Ok(healthy)
}
