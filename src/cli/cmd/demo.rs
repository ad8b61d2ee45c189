//! `unstuck demo`: the fault-injection demo (`src/cli/demo/`) with its report.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

/// Inject every kind of fault into simulated work under three watchdog replicas (one
/// killed mid-run) and print a verdict per fault kind; exits 1 when a row is off.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Use this Redis instead of starting a throwaway redis-server.
    #[arg(long)]
    redis: Option<String>,
    /// How long the live part of the run lasts (6s to 1h).
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Executions planned in all, split over the fault kinds (at least 9).
    #[arg(long, default_value_t = 120)]
    executions: usize,
    /// Print the report as JSON on stdout (progress goes to stderr).
    #[arg(long)]
    json: bool,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        demo(self.redis, self.duration, self.executions, self.json).await
    }
}

async fn demo(
    redis: Option<String>,
    duration: Duration,
    executions: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut opts = crate::cli::demo::FaultDemoOptions::new("");
    opts.duration = duration;
    opts.executions = executions;
    opts.validate()?;
    let redis = crate::cli::redis::DemoRedis::obtain(redis).context("starting redis")?;
    opts.redis_url = redis.url.clone();
    // Progress must never stop the run: write errors (a closed pipe) are ignored.
    let sink: crate::cli::demo::ProgressSink = if json {
        Arc::new(|line: &str| {
            let _ = writeln!(std::io::stderr(), "{line}");
        })
    } else {
        Arc::new(|line: &str| {
            let _ = writeln!(std::io::stdout(), "{line}");
        })
    };
    sink(&format!(
        "redis: {}",
        unstuck::config::redact_url(&redis.url)
    ));
    opts.progress = Some(sink);
    let report = crate::cli::demo::fault_demo(opts).await?;
    if json {
        let mut value = serde_json::to_value(&report)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("all_correct".into(), report.all_correct().into());
            object.insert("problems".into(), report.problems().into());
        }
        writeln!(
            std::io::stdout(),
            "{}",
            serde_json::to_string_pretty(&value)?
        )?;
    } else {
        writeln!(std::io::stdout(), "{report}")?;
    }
    let correct = report.all_correct();
    // Stop our redis-server before exiting: `exit` skips destructors.
    drop(redis);
    if !correct {
        std::process::exit(1);
    }
    Ok(())
}
