//! Detection lag with three replicas running side by side while executions go stale at
//! staggered instants.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::{EnqueueOptions, Ledger, State};

use crate::Scale;
use crate::server::{client_cpu, flush, stats};
use crate::setup::{NO_RETRY_SOON, connect, make_running, queues, spread, wait_for};

/// Three replicas (`run()`, one connection each) while executions go stale at staggered
/// instants among healthy ones; lag = event instant − timer instant of the stuck events.
pub(crate) async fn lag(url: &str, admin: &mut MultiplexedConnection, scale: &Scale) {
    let mut p50s = Vec::new();
    let mut p99s = Vec::new();
    for run in 0..scale.runs {
        flush(admin).await;
        let driver = connect(url, "wd_lag", 1_000_000).await;
        let queues = queues(&driver);
        let healthy = EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_secs(3600))
            .backoff_base(NO_RETRY_SOON)
            .backoff_max(NO_RETRY_SOON);
        make_running(
            &driver,
            &spread(&queues, scale.lag_healthy, 0),
            &healthy,
            "h",
            0,
        )
        .await;
        let stale = healthy
            .heartbeat_timeout(scale.stale_timeout)
            .stuck_threshold(Duration::ZERO)
            .max_attempts(3);

        let shutdown = CancellationToken::new();
        let mut replicas = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let own = Ledger::connect(driver.config().clone())
                .await
                .expect("replica ledger");
            let wd = Watchdog::new(
                own,
                WatchdogConfig {
                    max_poll_interval: Duration::from_millis(200),
                    lease_ttl: scale.lag_lease_ttl,
                    reconcile_interval: scale.lag_reconcile,
                    // Half the fleet going stale within seconds is what the share rule
                    // holds back for; this measures how fast stale work is found.
                    systemic_share: 1.0,
                    ..WatchdogConfig::default()
                },
            )
            .expect("watchdog config");
            let (w, s) = (wd.clone(), shutdown.clone());
            tasks.push(tokio::spawn(async move { w.run(s).await }));
            replicas.push(wd);
        }
        let settle = Instant::now();
        wait_for(
            Duration::from_secs(30),
            "leases spread over 3 replicas",
            || {
                let held: Vec<usize> = replicas.iter().map(|w| w.held_partitions().len()).collect();
                held.iter().sum::<usize>() == 16 && held.iter().all(|h| (1..=6).contains(h))
            },
        )
        .await;
        let settled = settle.elapsed();

        let before = stats(admin).await;
        let (now_s, now_us): (u64, u64) =
            redis::cmd("TIME").query_async(admin).await.expect("TIME");
        let load_began = format!("{}-0", now_s * 1000 + now_us / 1000);
        let client_before = client_cpu();
        let started = Instant::now();
        let ticks = (scale.lag_spread.as_millis() / 50).max(1) as usize;
        let mut ticker = tokio::time::interval(Duration::from_millis(50));
        let mut driving = Vec::new();
        for tick in 0..ticks {
            ticker.tick().await;
            let count = scale.lag_stale / ticks + usize::from(tick < scale.lag_stale % ticks);
            let plan = spread(&queues, count, tick * 16);
            let (d, o) = (driver.clone(), stale.clone());
            let tag = format!("t{tick}-");
            driving.push(tokio::spawn(async move {
                make_running(&d, &plan, &o, &tag, 0).await
            }));
        }
        join_all(driving).await;
        let retried = || replicas.iter().map(|w| w.totals().retried).sum::<u64>();
        wait_for(
            Duration::from_secs(60),
            "every stale execution retried",
            || retried() >= scale.lag_stale as u64,
        )
        .await;
        let secs = started.elapsed().as_secs_f64();
        let delta = stats(admin).await.since(&before);
        let client = client_cpu() - client_before;
        shutdown.cancel();
        for task in tasks {
            task.await.expect("replica task").expect("replica stops");
        }

        let mut lags = Vec::new();
        let mut retry_lags = Vec::new();
        for p in 0..16 {
            // Only what happened since the load began, page by page.
            let mut events = Vec::new();
            let mut after = load_began.clone();
            loop {
                let page = driver
                    .read_events(p, Some(&after), 10_000)
                    .await
                    .expect("events");
                let Some(last) = page.last() else { break };
                after = last.stream_id.clone();
                events.extend(page);
            }
            for e in events {
                let Some(due) = e.timer_due_at else { continue };
                let ms = (e.at - due).num_milliseconds();
                match (e.to, e.reason.as_str()) {
                    (Some(State::Stuck), "heartbeat_lost") => lags.push(ms),
                    (Some(State::Queued), "heartbeat_lost") => retry_lags.push(ms),
                    other => panic!("unexpected watchdog event {other:?}"),
                }
            }
        }
        assert_eq!(
            lags.len(),
            scale.lag_stale,
            "one stuck event per stale execution"
        );
        assert_eq!(retry_lags.len(), scale.lag_stale);
        lags.sort_unstable();
        retry_lags.sort_unstable();
        let (p50, p99) = (pct(&lags, 0.50), pct(&lags, 0.99));
        println!(
            "lag run={run}: {} stale among {} healthy over {:?}, 3 replicas (leases settled in \
             {settled:.1?}), max_poll 200ms: stuck lag p50 {p50} ms, p99 {p99} ms, max {} ms; \
             retry after stuck: p50 {} ms, p99 {} ms; over {secs:.1}s CPU redis {:.0}%, \
             bench process {:.0}% (reconcile_interval {:?})",
            scale.lag_stale,
            scale.lag_healthy,
            scale.lag_spread,
            lags[lags.len() - 1],
            pct(&retry_lags, 0.50),
            pct(&retry_lags, 0.99),
            delta.cpu / secs * 100.0,
            client / secs * 100.0,
            scale.lag_reconcile,
        );
        println!("      top commands: {}", delta.top(8));
        p50s.push(p50);
        p99s.push(p99);
    }
    p50s.sort_unstable();
    p99s.sort_unstable();
    println!(
        "lag summary (median of {} runs): p50 {} ms, p99 {} ms",
        scale.runs,
        p50s[p50s.len() / 2],
        p99s[p99s.len() / 2]
    );
}

fn pct(sorted: &[i64], q: f64) -> i64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
