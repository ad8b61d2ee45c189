//! `unstuck enqueue`: an execution enqueued from a script, cron or by hand; one flag per
//! timing.

use std::time::Duration;

use clap::{Arg, ArgMatches, FromArgMatches};
use serde_json::{Map, Value};
use unstuck::otel::TraceParent;
use unstuck::server::wire::TimingsIn;
use unstuck::timings::{NAMES, Timings};
use unstuck::{EnqueueOptions, Ledger};

use crate::cli::Common;
use crate::cli::connect::connect;

/// Enqueue an execution (for scripts, cron, re-driving work by hand).
#[derive(clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    common: Common,
    queue: String,
    /// The payload, JSON.
    #[arg(long, default_value = "null")]
    payload: String,
    /// The execution id (idempotency); a fresh one when absent.
    #[arg(long)]
    id: Option<String>,
    /// Make it claimable only after this long.
    #[arg(long, value_parser = humantime::parse_duration)]
    delay: Option<Duration>,
    /// The caller's W3C trace context (00-<trace id>-<span id>-<flags>), stored on the
    /// execution and handed to its claims (docs/tracing.md).
    #[arg(long, value_parser = |s: &str| s.parse::<TraceParent>().map_err(|e| e.to_string()))]
    traceparent: Option<TraceParent>,
    /// Budget: most tokens (input + output) over all its attempts.
    #[arg(long, value_name = "N")]
    budget_tokens: Option<u64>,
    /// Budget: most cost, integer micro-units of the namespace's currency.
    #[arg(long, value_name = "MICROS")]
    budget_cost: Option<u64>,
    /// The share of the budget that sends `budget_warning` (default 0.8).
    #[arg(long, value_name = "SHARE")]
    budget_warning_share: Option<f64>,
    #[command(flatten)]
    timings: TimingFlags,
}

impl Args {
    pub(crate) async fn run(self) -> anyhow::Result<()> {
        let budget = match (
            self.budget_tokens,
            self.budget_cost,
            self.budget_warning_share,
        ) {
            (None, None, None) => None,
            (tokens, cost, warning_share) => Some(unstuck::Budget {
                tokens,
                cost,
                warning_share,
            }),
        };
        let ledger = connect(&self.common).await?;
        enqueue(
            &ledger,
            &self.queue,
            &self.payload,
            EnqueueOptions {
                id: self.id,
                delay: self.delay,
                traceparent: self.traceparent,
                budget,
                ..EnqueueOptions::default()
            },
            &self.timings,
            self.common.json,
        )
        .await
    }
}

/// One flag per timing (`--heartbeat-timeout 20s`, `--max-attempts 3`, ...), made from
/// the library's table of timings, so a new timing gets its flag without an edit here.
#[derive(Debug, Clone, Default)]
pub(crate) struct TimingFlags(Map<String, Value>);

impl TimingFlags {
    /// The timings the flags set.
    ///
    /// # Errors
    /// A value that is not a duration (or, for `--max-attempts`, a count), naming it.
    pub(crate) fn timings(&self) -> anyhow::Result<Timings> {
        // Each flag alone first, so the error names the flag that is wrong.
        for (name, value) in &self.0 {
            let one = Map::from_iter([(name.clone(), value.clone())]);
            if serde_json::from_value::<TimingsIn>(Value::Object(one)).is_err() {
                let expected = if name == "max_attempts" {
                    "a whole number of attempts (1 or more)"
                } else if name == "max_snoozes" {
                    "a whole number of snoozes (0 to 10000)"
                } else if name == "max_repeats" {
                    "0 (off) or a whole number of repeats from 2 to 10000"
                } else {
                    "a duration like 500ms, 30s, 5m or 1h"
                };
                anyhow::bail!("--{} {value}: expected {expected}", name.replace('_', "-"));
            }
        }
        let parsed: TimingsIn = serde_json::from_value(Value::Object(self.0.clone()))?;
        Ok(parsed.into())
    }
}

impl FromArgMatches for TimingFlags {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        let mut map = Map::new();
        for name in NAMES {
            if let Some(v) = m.get_one::<String>(name) {
                // A count stays a number; durations parse as text ("30s") or milliseconds.
                let value = v
                    .parse::<u64>()
                    .map(Value::from)
                    .unwrap_or_else(|_| Value::from(v.clone()));
                map.insert(name.to_owned(), value);
            }
        }
        Ok(TimingFlags(map))
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for TimingFlags {
    fn augment_args(mut cmd: clap::Command) -> clap::Command {
        for name in NAMES {
            let flag: &'static str = Box::leak(name.replace('_', "-").into_boxed_str());
            let help = if name == "max_attempts" {
                "attempts in all, the first included".to_owned()
            } else if name == "max_snoozes" {
                "snoozes allowed in all (0: none); past it a snooze is a retryable failure"
                    .to_owned()
            } else if name == "max_repeats" {
                "the same heartbeat fingerprint this many times in a row is stuck looping \
                 (2 to 10000; 0: off)"
                    .to_owned()
            } else {
                format!(
                    "the execution's {} (500ms, 30s, 5m, 1h)",
                    name.replace('_', " ")
                )
            };
            cmd = cmd.arg(
                Arg::new(name)
                    .long(flag)
                    .value_name(
                        if ["max_attempts", "max_snoozes", "max_repeats"].contains(&name) {
                            "N"
                        } else {
                            "DURATION"
                        },
                    )
                    .help(help),
            );
        }
        cmd
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

/// `unstuck enqueue`.
async fn enqueue(
    ledger: &Ledger,
    queue: &str,
    payload: &str,
    opts: EnqueueOptions,
    timings: &TimingFlags,
    json: bool,
) -> anyhow::Result<()> {
    let payload: Value = serde_json::from_str(payload).map_err(|e| {
        anyhow::anyhow!("--payload is not JSON ({e}); quote it: --payload '{{\"k\": 1}}'")
    })?;
    let opts = EnqueueOptions {
        timings: timings.timings()?,
        ..opts
    };
    let out = ledger.enqueue(queue, &payload, opts).await?;
    if out.conflict {
        anyhow::bail!(
            "{}/{} exists with a different payload or timings: use another --id for other work",
            out.queue,
            out.id
        );
    }
    if json {
        out!("{}", serde_json::to_string_pretty(&out)?);
    } else if out.created {
        out!("enqueued {}/{} ({})", out.queue, out.id, out.state);
    } else {
        out!(
            "{}/{} already exists ({}, attempt {}): nothing written",
            out.queue,
            out.id,
            out.state,
            out.attempt
        );
    }
    Ok(())
}
