//! Worker-side outages: every worker loses Redis at once while Redis and the watchdog stay
//! healthy. Heartbeats are staggered as real ones are, so the executions go stale one by
//! one over a heartbeat timeout, one per round; "at once" is judged over a window across
//! rounds, replicas and partitions, and the verdicts made before the hold began are held
//! with it. A genuine failure of one worker among many is remediated as usual.

use crate::support;
use crate::watchdog_common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;
use watchdog_common::*;

const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(1);

/// Heartbeats of a fleet of running executions, each on its own phase, with one switch
/// that cuts every worker off from Redis at once.
struct Fleet {
    connected: Arc<AtomicBool>,
    stop: CancellationToken,
    beaters: Vec<JoinHandle<()>>,
}

impl Fleet {
    /// Beats `tokens[i]` every 960 ms, starting `i × 1000 / n` ms from now, so that the
    /// last beats before an outage are spread over the whole heartbeat timeout.
    fn start(ledger: &Ledger, tokens: &[AttemptToken]) -> Self {
        let connected = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let n = tokens.len() as u64;
        let beaters = tokens
            .iter()
            .enumerate()
            .map(|(i, token)| {
                let (ledger, token) = (ledger.clone(), token.clone());
                let (connected, stop) = (connected.clone(), stop.clone());
                let phase = Duration::from_millis(i as u64 * 1000 / n);
                tokio::spawn(async move {
                    tokio::time::sleep(phase).await;
                    while !stop.is_cancelled() {
                        if connected.load(Ordering::SeqCst) {
                            let _ = ledger.heartbeat(&token, Heartbeat::new()).await;
                        }
                        tokio::select! {
                            _ = stop.cancelled() => {}
                            _ = tokio::time::sleep(Duration::from_millis(960)) => {}
                        }
                    }
                })
            })
            .collect();
        Self {
            connected,
            stop,
            beaters,
        }
    }

    fn set_connected(&self, up: bool) {
        self.connected.store(up, Ordering::SeqCst);
    }

    async fn stop(self) {
        self.stop.cancel();
        for beater in self.beaters {
            beater.await.unwrap();
        }
    }
}

fn opts(stuck_threshold: Duration) -> EnqueueOptions {
    EnqueueOptions::new()
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .stuck_threshold(stuck_threshold)
        .max_attempts(2)
        .backoff_base(Duration::ZERO)
}

/// Starts `ids` of `queue` (enqueue, claim, first heartbeat) and returns their tokens.
async fn start_all(
    l: &Ledger,
    queue: &str,
    ids: &[String],
    o: EnqueueOptions,
) -> Vec<AttemptToken> {
    l.set_queue(
        queue,
        &QueueSettings {
            capacity: Some(1000),
            ..QueueSettings::default()
        },
    )
    .await
    .unwrap();
    let mut tokens = Vec::new();
    for id in ids {
        tokens.push(start(l, queue, id, o.clone()).await);
    }
    tokens
}

/// Default systemic settings (share 0.5 over at least 10 running), a grace long enough
/// to cover the outage of these tests, and short leases and polls.
fn default_systemic(replica: &str, grace: Duration) -> WatchdogConfig {
    WatchdogConfig {
        systemic_share: WatchdogConfig::default().systemic_share,
        systemic_min_running: WatchdogConfig::default().systemic_min_running,
        systemic_grace: Some(grace),
        ..running_config(replica)
    }
}

async fn spawn(
    l: &Ledger,
    config: WatchdogConfig,
    stop: &CancellationToken,
) -> JoinHandle<Result<()>> {
    let wd = Watchdog::new(reconnect(l).await, config).unwrap();
    let stop = stop.clone();
    tokio::spawn(async move { wd.run(stop).await })
}

/// A stream id as numbers, for ordering events.
fn entry(e: &Event) -> (u64, u64) {
    let (ms, seq) = e.stream_id.split_once('-').unwrap();
    (ms.parse().unwrap(), seq.parse().unwrap())
}

fn holds(events: &[Event]) -> Vec<&Event> {
    events
        .iter()
        .filter(|e| e.reason == "systemic_hold")
        .collect()
}

/// Every watchdog verdict in `partitions` other than `running → stuck` and holds: what a
/// blip must never cause.
async fn remediations(l: &Ledger, partitions: &[u16]) -> Vec<Event> {
    let mut out = Vec::new();
    for p in partitions {
        for e in events(l, *p).await {
            let watchdog = !CLIENT_REASONS.contains(&e.reason.as_str());
            let benign = e.reason == "systemic_hold" || e.to == Some(State::Stuck);
            if watchdog && !benign {
                out.push(e);
            }
        }
    }
    out
}

/// Runs the outage: healthy for 1.5 s, every worker cut off for 3 s, then back. Waits
/// until every execution is running again (revived or never judged) and past the instant
/// the verdicts made before the hold would have been remediated without it.
async fn outage(l: &Ledger, executions: &[(String, String)], fleet: &Fleet) {
    pass(1500).await;
    let before = remediations(l, &partitions_of(l, executions)).await;
    assert!(before.is_empty(), "healthy fleet judged: {before:?}");
    fleet.set_connected(false);
    pass(3000).await;
    fleet.set_connected(true);
    support::wait_until(
        Duration::from_secs(10),
        "every execution running",
        || async {
            for (q, id) in executions {
                if state(l, q, id).await != State::Running {
                    return false;
                }
            }
            true
        },
    )
    .await;
    pass(1500).await;
}

fn partitions_of(l: &Ledger, executions: &[(String, String)]) -> Vec<u16> {
    let mut ps: Vec<u16> = executions.iter().map(|(q, _)| l.partition_of(q)).collect();
    ps.sort_unstable();
    ps.dedup();
    ps
}

/// After the outage: nothing remediated, every execution still on its first attempt and
/// completed by the worker that held it all along.
async fn assert_nothing_lost(l: &Ledger, executions: &[(String, String)], tokens: &[AttemptToken]) {
    let ps = partitions_of(l, executions);
    let acted = remediations(l, &ps).await;
    assert!(acted.is_empty(), "remediated during a blip: {acted:?}");
    for token in tokens {
        let outcome = l.complete(token, Some(&json!({"ok": true}))).await.unwrap();
        assert_eq!(
            outcome,
            CompleteOutcome::Recorded {
                slot_released: true
            },
            "{}/{}",
            token.queue(),
            token.execution_id()
        );
    }
    for (q, id) in executions {
        let e = l.get(q, id).await.unwrap();
        assert_eq!((e.state, e.attempt), (State::Succeeded, 1), "{q}/{id}");
    }
    let queues: Vec<&str> = {
        let mut qs: Vec<&str> = executions.iter().map(|(q, _)| q.as_str()).collect();
        qs.dedup();
        qs
    };
    support::invariants::assert_ok(l, &queues).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_side_outage_with_staggered_heartbeats_holds_instead_of_failing() {
    let l = support::ledger("outage_one_partition").await;
    let q = "fleet";
    let ids: Vec<String> = (0..24).map(|i| format!("e{i:02}")).collect();
    // A stuck threshold shorter than the outage: without a hold the first verdicts would
    // be retried while the workers are still cut off.
    let tokens = start_all(&l, q, &ids, opts(Duration::from_secs(2))).await;
    let stop = CancellationToken::new();
    let replica = spawn(&l, default_systemic("r1", Duration::from_secs(3)), &stop).await;
    let workers = reconnect(&l).await;
    let fleet = Fleet::start(&workers, &tokens);
    let executions: Vec<(String, String)> =
        ids.iter().map(|id| (q.to_owned(), id.clone())).collect();

    outage(&l, &executions, &fleet).await;
    fleet.stop().await;
    stop.cancel();
    replica.await.unwrap().unwrap();

    let evs = events(&l, l.partition_of(q)).await;
    let hold = holds(&evs);
    assert_eq!(hold.len(), 1, "one hold: {hold:?}");
    assert!(hold[0].detail.contains("went stale"), "{}", hold[0].detail);
    // Some went stuck one by one before the hold began (no more than half of them), and
    // those whose worker was still cut off when the hold ended after it; every one of
    // them was withdrawn by a heartbeat.
    let before_hold = evs
        .iter()
        .filter(|e| e.to == Some(State::Stuck) && entry(e) < entry(hold[0]))
        .count();
    assert!(
        (1..=12).contains(&before_hold),
        "{before_hold} stuck before the hold"
    );
    let stuck = evs.iter().filter(|e| e.to == Some(State::Stuck)).count();
    let revived = evs.iter().filter(|e| e.reason == "revived").count();
    assert_eq!(
        revived, stuck,
        "every stuck verdict withdrawn by a heartbeat"
    );
    assert_nothing_lost(&l, &executions, &tokens).await;
}

/// `n` queues in distinct partitions, alternating between the lower and upper half of
/// the 16 so that two replicas sharing them both hold some.
fn spread_queues(l: &Ledger, n: usize) -> Vec<String> {
    let mut taken = Vec::new();
    let mut queues = Vec::new();
    for i in 0.. {
        let q = format!("q{i}");
        let p = l.partition_of(&q);
        if !taken.contains(&p) && (p >= 8) == (queues.len() % 2 == 1) {
            taken.push(p);
            queues.push(q);
            if queues.len() == n {
                return queues;
            }
        }
    }
    unreachable!()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_spread_over_partitions_and_two_replicas_holds_everywhere() {
    let l = support::ledger("outage_partitions").await;
    // Six partitions with four running each: no partition reaches systemic_min_running
    // (10) alone; the namespace does.
    let queues = spread_queues(&l, 6);
    let mut executions = Vec::new();
    let mut tokens = Vec::new();
    for q in &queues {
        let ids: Vec<String> = (0..4).map(|i| format!("e{i}")).collect();
        tokens.extend(start_all(&l, q, &ids, opts(Duration::from_secs(2))).await);
        executions.extend(ids.into_iter().map(|id| (q.clone(), id)));
    }
    // Interleave the phases across partitions, as a fleet of workers would.
    let order: Vec<usize> = (0..4)
        .flat_map(|i| (0..6).map(move |q| q * 4 + i))
        .collect();
    let staggered: Vec<AttemptToken> = order.iter().map(|i| tokens[*i].clone()).collect();

    let stop = CancellationToken::new();
    let grace = Duration::from_secs(3);
    let a = spawn(&l, default_systemic("ra", grace), &stop).await;
    let b = spawn(&l, default_systemic("rb", grace), &stop).await;
    let workers = reconnect(&l).await;
    let fleet = Fleet::start(&workers, &staggered);

    outage(&l, &executions, &fleet).await;
    fleet.stop().await;
    stop.cancel();
    a.await.unwrap().unwrap();
    b.await.unwrap().unwrap();

    let mut replicas = std::collections::BTreeSet::new();
    for q in &queues {
        let evs = events(&l, l.partition_of(q)).await;
        let hold = holds(&evs);
        assert_eq!(hold.len(), 1, "{q}: one hold: {hold:?}");
        assert!(hold[0].detail.contains("partitions"), "{}", hold[0].detail);
        replicas.insert(hold[0].replica.clone());
    }
    assert_eq!(
        replicas.len(),
        2,
        "both replicas held their partitions: {replicas:?}"
    );
    assert_nothing_lost(&l, &executions, &tokens).await;
}

#[tokio::test]
async fn the_window_is_counted_across_a_lease_hand_over() {
    let l = support::ledger("outage_hand_over").await;
    let q = "handover";
    let p = l.partition_of(q);
    let stt = Duration::from_secs(1);
    let grace = Duration::from_millis(1500);
    let config = |r: &str| WatchdogConfig {
        systemic_share: 0.5,
        systemic_min_running: 10,
        systemic_grace: Some(grace),
        ..config(r)
    };
    // One heartbeat each, at once, with heartbeat timeouts 50 ms apart: they go stale one
    // by one, 400 ms to 1.55 s from now.
    let mut tokens = Vec::new();
    for i in 0..24u64 {
        let o = EnqueueOptions::new()
            .heartbeat_timeout(Duration::from_millis(400 + 50 * i))
            .stuck_threshold(stt)
            .backoff_base(Duration::ZERO);
        let claim = dispatch(&l, q, &format!("e{i:02}"), o, "w1").await;
        tokens.push(claim.token);
    }
    let t0 = tokio::time::Instant::now();
    for token in &tokens {
        beat(&l, token, Heartbeat::new()).await;
    }
    let at = |ms: u64| tokio::time::sleep_until(t0 + Duration::from_millis(ms));

    // Replica 1 judges the first few, alone in the partition, then hands the lease over.
    let wd1 = sole_replica(&l, config("wd1")).await;
    at(400 + 50 * 5 + 25).await;
    let first = wd1.round(p).await.unwrap();
    assert!(!first.hold_started, "{first:?}");
    assert!((1..=12).contains(&first.stuck), "{first:?}");
    wd1.release_all().await.unwrap();
    let wd2 = sole_replica(&l, config("wd2")).await;

    // Replica 2 sees the verdicts replica 1 made: thirteen of 24 within the window.
    at(400 + 50 * 12 + 25).await;
    let second = wd2.round(p).await.unwrap();
    assert!(second.hold_started, "{second:?}");
    assert_eq!(second.stuck, 0, "{second:?}");
    let hold_at = tokio::time::Instant::now();
    let evs = events(&l, p).await;
    let hold = holds(&evs)[0].clone();
    assert!(hold.detail.contains("13 of 24"), "{}", hold.detail);
    assert_eq!(hold.replica.as_deref(), Some("wd2"));

    // The verdicts replica 1 made are held: their stuck threshold passes during the hold
    // and after it, yet they are remediated no earlier than one threshold after its end.
    tokio::time::sleep_until(hold_at + grace + Duration::from_millis(300)).await;
    let after = wd2.round(p).await.unwrap();
    assert_eq!(after.retried + after.dead, 0, "{after:?}");
    for i in 0..first.stuck as usize {
        assert_eq!(
            state(&l, q, &format!("e{i:02}")).await,
            State::Stuck,
            "e{i:02}"
        );
    }
    // Half of them turn out alive.
    let revive = first.stuck.div_ceil(2) as usize;
    for token in &tokens[..revive] {
        beat(&l, token, Heartbeat::new()).await;
    }
    support::wait_until(Duration::from_secs(5), "the rest remediated", || async {
        wd2.round(p).await.unwrap();
        l.pending_count(q).await.unwrap() == 24 - revive
    })
    .await;
    for (i, token) in tokens.iter().enumerate() {
        let e = l.get(q, token.execution_id()).await.unwrap();
        if i < revive {
            // Alive after all: never retried (it may be stale again since, without beats).
            assert!(
                matches!(e.state, State::Running | State::Stuck),
                "e{i:02}: {e:?}"
            );
            assert_eq!((e.attempt, e.false_alarms), (1, 1), "e{i:02}");
        } else {
            assert_eq!(e.state, State::Queued, "e{i:02}");
        }
    }
    let held = events_of(&l, q, "e00").await;
    let retried_at = events_of(&l, q, &format!("e{:02}", revive)).await;
    let remediated = retried_at.last().unwrap();
    assert_eq!(remediated.to, Some(State::Queued));
    assert!(
        remediated.at >= hold.at + chrono::Duration::from_std(grace + stt).unwrap(),
        "remediated {:?}, hold {:?}",
        remediated.at,
        hold.at
    );
    assert!(held.iter().any(|e| e.reason == "revived"));
    support::invariants::assert_ok(&l, &[q]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_worker_of_four_dying_is_remediated_without_a_hold() {
    let l = support::ledger("outage_one_worker").await;
    let q = "four";
    let ids: Vec<String> = (0..24).map(|i| format!("e{i:02}")).collect();
    let tokens = start_all(&l, q, &ids, opts(Duration::from_millis(500))).await;
    let stop = CancellationToken::new();
    let replica = spawn(&l, default_systemic("r1", Duration::from_secs(3)), &stop).await;
    // Four workers of six executions each; the last one dies.
    let workers = reconnect(&l).await;
    let fleets: Vec<Fleet> = tokens
        .chunks(6)
        .map(|chunk| Fleet::start(&workers, chunk))
        .collect();
    pass(1500).await;
    fleets[3].set_connected(false);
    support::wait_until(
        Duration::from_secs(10),
        "the dead worker's work retried",
        || async { l.pending_count(q).await.unwrap() == 6 },
    )
    .await;
    for fleet in fleets {
        fleet.stop().await;
    }
    stop.cancel();
    replica.await.unwrap().unwrap();

    let evs = events(&l, l.partition_of(q)).await;
    assert!(holds(&evs).is_empty(), "no hold: {:?}", holds(&evs));
    for (i, id) in ids.iter().enumerate() {
        let e = l.get(q, id).await.unwrap();
        if i >= 18 {
            assert_eq!((e.state, e.attempt), (State::Queued, 1), "{id}");
            assert!(e.stop.is_none(), "{id}");
            let last = events_of(&l, q, id).await.pop().unwrap();
            assert_eq!(last.reason, "heartbeat_lost", "{id}");
        } else {
            assert_eq!((e.state, e.attempt), (State::Running, 1), "{id}");
        }
    }
    support::invariants::assert_ok(&l, &[q]).await;
}
