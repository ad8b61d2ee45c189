//! The `unstuck` command line: parses it and hands each command over to the library.
//!
//! # Layout
//! - this file: the commands and their options, and the `watchdog` daemon;
//! - `inspect.rs`: `queues`, `executions`, `show`, `events`;
//! - `workers.rs`: `workers` and its subcommands `reset`, `drain`, `events`;
//! - `status.rs`: `status`, the health verdict;
//! - `steer.rs`: `enqueue`, `cancel`, `retry`; `table.rs`: tables for people;
//! - `serve.rs`: `unstuck serve`; `exec.rs`: `unstuck exec`;
//! - `demo/`: the fault-injection demo behind `unstuck demo`;
//! - `remediation.rs`: the tier column of `workers`, and `workers reset|drain|events`;
//! - `redis`: a throwaway `redis-server` for the demos when no `--redis` is given;
//! - `walkthrough`: `examples/walkthrough.rs`, included as a module.

/// `println!` for what a command prints on stdout: when stdout's reader has gone
/// (`unstuck executions | head`), the command ends quietly, as Unix tools do, instead of
/// panicking.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::emit_line(format_args!($($arg)*))
    };
}

mod demo;
#[cfg(unix)]
mod exec;
mod inspect;
mod redis;
mod remediation;
mod serve;
mod status;
mod steer;
mod table;
#[path = "../../examples/walkthrough.rs"]
mod walkthrough;
mod workers;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "unstuck",
    version,
    about = "Execution ledger and watchdog on Redis"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every operator command takes.
#[derive(clap::Args, Debug, Clone)]
struct Common {
    /// TOML settings file (the one the watchdog and the server read); UNSTUCK_LEDGER__*
    /// environment variables override it.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Print JSON (the HTTP API's field names) instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Queues: depth, claimable now, slots in use / capacity, age of the oldest queued.
    Queues {
        #[command(flatten)]
        common: Common,
    },
    /// Executions across queues, newest first, filtered and paged.
    Executions {
        #[command(flatten)]
        common: Common,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Only this state: queued, dispatched, running, stuck, succeeded, failed,
        /// cancelled, timed_out, dead.
        #[arg(long)]
        state: Option<String>,
        /// Only finished executions that stopped for this reason (heartbeat_lost,
        /// no_progress, start_timeout, worker_lost, deadline_exceeded, failed, ...).
        #[arg(long)]
        stop_reason: Option<String>,
        /// Only executions whose current (or last) attempt is this worker's.
        #[arg(long)]
        worker: Option<String>,
        /// Most executions shown (1 to 1000).
        #[arg(long, default_value_t = 50, value_parser = page_limit)]
        limit: usize,
        /// Continue after an earlier page (its "more: --cursor ...").
        #[arg(long)]
        cursor: Option<String>,
    },
    /// One execution: state, timings, heartbeat and progress, checkpoint, stop metadata, and
    /// its timeline with reasons, thresholds and lag.
    Show {
        #[command(flatten)]
        common: Common,
        queue: String,
        id: String,
    },
    /// Enqueue an execution (for scripts, cron, re-driving work by hand).
    Enqueue {
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
        #[command(flatten)]
        timings: steer::TimingFlags,
    },
    /// Cancel an execution: at once when queued, by asking its worker when active.
    Cancel {
        #[command(flatten)]
        common: Common,
        queue: String,
        id: String,
        /// Why, for the people reading it later.
        #[arg(long)]
        reason: String,
    },
    /// Run a finished (failed, dead, timed_out, cancelled) execution again as a new one
    /// linked to it (retry_of), resuming from its last checkpoint.
    Retry {
        #[command(flatten)]
        common: Common,
        queue: String,
        id: String,
        /// The new execution's id (default: <id>.retry<n>).
        #[arg(long)]
        new_id: Option<String>,
        /// Why, recorded in the event.
        #[arg(long, default_value = "retried by an operator")]
        reason: String,
    },
    /// Pin an execution so retention never removes it (--off: retention applies again).
    Pin {
        #[command(flatten)]
        common: Common,
        queue: String,
        id: String,
        /// Unpin it instead.
        #[arg(long)]
        off: bool,
    },
    /// Transitions, one line each: the newest ones, then (with --follow) as they happen.
    Events {
        #[command(flatten)]
        common: Common,
        /// Only this queue.
        #[arg(long)]
        queue: Option<String>,
        /// Keep printing new events until Ctrl-C.
        #[arg(long)]
        follow: bool,
        /// How many of the newest to print first (1 to 1000).
        #[arg(long, default_value_t = 20, value_parser = page_limit)]
        limit: usize,
    },
    Workers(workers::Args),
    /// The watchdog: partition leases, replicas, holds, totals, and a one-line verdict;
    /// exits 1 when degraded.
    Status {
        #[command(flatten)]
        common: Common,
    },
    /// Run one watchdog replica until SIGINT/SIGTERM, then hand its leases back.
    Watchdog {
        /// TOML settings file ([ledger] and [watchdog] sections); UNSTUCK_LEDGER__* and
        /// UNSTUCK_WATCHDOG__* environment variables override it.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Serve the HTTP API (and one watchdog replica) until SIGINT/SIGTERM; see
    /// docs/http-api.md.
    Serve {
        /// TOML settings file ([ledger], [watchdog] and [server] sections); UNSTUCK_*
        /// environment variables override it (UNSTUCK_SERVER__LISTEN=127.0.0.1:9000).
        #[arg(long)]
        config: Option<PathBuf>,
        /// For trying it out: start a throwaway redis-server (no persistence, gone when
        /// the server stops) instead of connecting to ledger.redis_url.
        #[arg(long)]
        throwaway_redis: bool,
    },
    /// Print the HTTP API's OpenAPI 3.1 document (what `GET /openapi.json` serves), to
    /// generate a client from; needs no Redis.
    Openapi,
    /// Run a command as a worker: once per execution of the queue, in a process group of
    /// its own, the payload on stdin; heartbeats while it lives, its output is progress,
    /// its exit code the outcome; a cancel or a lost attempt kills the whole group.
    #[cfg(unix)]
    Exec(exec::ExecArgs),
    /// Walk through one execution's life: enqueue, claim, heartbeat, crash, retry, complete.
    Walkthrough {
        /// Use this Redis instead of starting a throwaway redis-server.
        #[arg(long)]
        redis: Option<String>,
    },
    /// Inject every kind of fault into simulated work under three watchdog replicas (one
    /// killed mid-run) and print a verdict per fault kind; exits 1 when a row is off.
    Demo {
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
    },
}

/// Runs the command named on the command line.
pub(crate) async fn run() -> anyhow::Result<()> {
    // Logs go to stderr: stdout is for what a script may read (`demo --json`, tables).
    // Colours only on a terminal: a log file or journald gets plain text.
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Watchdog { config } => watchdog(config).await,
        Command::Serve {
            config,
            throwaway_redis,
        } => serve::serve(config.as_deref(), throwaway_redis).await,
        Command::Openapi => {
            out!("{}", unstuck::server::openapi_document());
            Ok(())
        }
        Command::Queues { common } => inspect::queues(&connect(&common).await?, common.json).await,
        Command::Executions {
            common,
            queue,
            state,
            stop_reason,
            worker,
            limit,
            cursor,
        } => {
            let filter = unstuck::Filter {
                queue,
                state: state.map(|s| s.parse()).transpose()?,
                stop_reason,
                worker,
            };
            let ledger = connect(&common).await?;
            inspect::executions(&ledger, filter, cursor.as_deref(), limit, common.json).await
        }
        Command::Show { common, queue, id } => {
            inspect::show(&connect(&common).await?, &queue, &id, common.json).await
        }
        Command::Enqueue {
            common,
            queue,
            payload,
            id,
            delay,
            timings,
        } => {
            let ledger = connect(&common).await?;
            steer::enqueue(&ledger, &queue, &payload, id, delay, &timings, common.json).await
        }
        Command::Cancel {
            common,
            queue,
            id,
            reason,
        } => steer::cancel(&connect(&common).await?, &queue, &id, &reason, common.json).await,
        Command::Pin {
            common,
            queue,
            id,
            off,
        } => steer::pin(&connect(&common).await?, &queue, &id, !off, common.json).await,
        Command::Retry {
            common,
            queue,
            id,
            new_id,
            reason,
        } => {
            let ledger = connect(&common).await?;
            steer::retry(
                &ledger,
                &queue,
                &id,
                new_id.as_deref(),
                &reason,
                common.json,
            )
            .await
        }
        Command::Events {
            common,
            queue,
            follow,
            limit,
        } => {
            let ledger = connect(&common).await?;
            inspect::events(&ledger, queue.as_deref(), follow, limit, common.json).await
        }
        Command::Workers(args) => args.run().await,
        Command::Status { common } => {
            let healthy = status::status(common.config.as_deref(), common.json).await?;
            if !healthy {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Demo {
            redis,
            duration,
            executions,
            json,
        } => demo(redis, duration, executions, json).await,
        #[cfg(unix)]
        Command::Exec(args) => exec::exec(args).await,
        Command::Walkthrough { redis } => {
            let redis = redis::DemoRedis::obtain(redis).context("starting redis")?;
            println!("redis: {}", unstuck::config::redact_url(&redis.url));
            walkthrough::walkthrough(&redis.url)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            Ok(())
        }
    }
}

async fn demo(
    redis: Option<String>,
    duration: Duration,
    executions: usize,
    json: bool,
) -> anyhow::Result<()> {
    let mut opts = demo::FaultDemoOptions::new("");
    opts.duration = duration;
    opts.executions = executions;
    opts.validate()?;
    let redis = redis::DemoRedis::obtain(redis).context("starting redis")?;
    opts.redis_url = redis.url.clone();
    // Progress must never stop the run: write errors (a closed pipe) are ignored.
    let sink: demo::ProgressSink = if json {
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
    let report = demo::fault_demo(opts).await?;
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

/// A `--limit`: 1 to 1000.
fn page_limit(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err("expected a number from 1 to 1000".into()),
    }
}

/// Writes one line to stdout; exits 0 when stdout is closed, 1 on any other write error.
pub(crate) fn emit_line(line: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("unstuck: cannot write to stdout: {e}");
            std::process::exit(1);
        }
    }
}

/// The ledger of the settings an operator command names.
async fn connect(common: &Common) -> anyhow::Result<unstuck::Ledger> {
    connect_to(common.config.as_deref()).await
}

/// The ledger of a settings file (and the environment).
async fn connect_to(config: Option<&std::path::Path>) -> anyhow::Result<unstuck::Ledger> {
    let settings = unstuck::settings::Settings::load(config)?;
    let url = settings.ledger.redacted_urls();
    unstuck::Ledger::connect(settings.ledger)
        .await
        .map_err(|e| match e {
            // Nothing was sent: say where Redis was looked for and what to do, once.
            unstuck::Error::Unavailable { detail, .. } => anyhow::anyhow!(
                "cannot reach Redis at {url} ({detail}): start it, or point \
                 ledger.redis_url (or --config) at it; nothing was done"
            ),
            other => anyhow::Error::new(other).context(format!(
                "cannot connect to Redis at {url}: check ledger.redis_url (or --config)"
            )),
        })
}

async fn watchdog(config: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = unstuck::settings::Settings::load(config.as_deref())?;
    let ledger = unstuck::Ledger::connect(settings.ledger)
        .await
        .context("connecting to redis")?;
    let replica = unstuck::watchdog::Watchdog::new(ledger, settings.watchdog)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        signal.cancel();
    });
    eprintln!(
        "watchdog replica {} running; Ctrl-C to stop",
        replica.replica_id()
    );
    replica.run(shutdown).await?;
    Ok(())
}

pub(crate) async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
