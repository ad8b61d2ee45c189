//! Awaiting: a worker ends its attempt to wait on a person; a resume (by an orchestrator or
//! the one-time resume token) re-queues it as a continuation carrying the resume input;
//! bad waits and bad resumes are refused with nothing written.

use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::error::Error;
use unstuck::ledger::{DEFAULT_MAX_WAIT, MAX_WAIT_REASON};
use unstuck::*;

use ledger_common::{events_of, namespace_keys, raw, running};

fn wait(reason: &str, ms: u64) -> AwaitResume {
    AwaitResume {
        reason: reason.into(),
        wait_deadline: Duration::from_millis(ms),
        checkpoint: None,
    }
}

async fn awaited(ledger: &Ledger, token: &AttemptToken, w: AwaitResume) -> Awaited {
    match ledger.await_resume(token, w).await.unwrap() {
        AwaitOutcome::Awaiting(a) => a,
        other => panic!("not awaiting: {other:?}"),
    }
}

/// Every raw field of an execution hash, to show a refused call wrote nothing.
async fn raw_hash(ledger: &Ledger, q: &str, id: &str) -> Vec<(String, String)> {
    let key = unstuck::testkit::keys(ledger).execution(q, id);
    let mut fields: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg(key)
        .query_async(&mut raw().await)
        .await
        .unwrap();
    fields.sort();
    fields
}

#[tokio::test]
async fn awaiting_frees_the_slot_and_a_resume_continues_with_the_input() {
    let ledger = support::ledger("aw_resume").await;
    let opts = EnqueueOptions::new().max_attempts(1);
    let token = running(&ledger, "q", "a", opts).await;
    let w = AwaitResume {
        checkpoint: Some(json!({"step": "plan written"})),
        ..wait("approval of the plan", 60_000)
    };
    let a = awaited(&ledger, &token, w).await;
    assert!(a.slot_released);
    assert_eq!(ledger.slots_in_use("q").await.unwrap(), 0);
    let e = ledger.get("q", "a").await.unwrap();
    assert_eq!(e.state, State::Awaiting);
    assert_eq!(e.continuations, 1);
    assert_eq!(e.worker, None);
    let waiting = e.wait.clone().expect("the wait is shown");
    assert_eq!(waiting.reason, "approval of the plan");
    assert_eq!(waiting.deadline_at, a.wait_deadline_at);
    assert_eq!(waiting.on_expiry, "fail");
    assert_eq!(e.checkpoint, Some(json!({"step": "plan written"})));
    assert_eq!(e.history.last().unwrap().reason, "awaiting");
    support::invariants::assert_ok(&ledger, &["q"]).await;

    // The token is stale now: a late heartbeat, complete or second await is refused.
    let late = ledger.heartbeat(&token, Heartbeat::new()).await.unwrap();
    assert_eq!(
        late,
        HeartbeatReply::StaleAttempt {
            current_attempt: 1,
            state: State::Awaiting
        }
    );
    let done = ledger.complete(&token, None).await.unwrap();
    assert!(done.attempt_ended(), "{done:?}");
    let again = ledger.await_resume(&token, wait("x", 1000)).await.unwrap();
    assert!(again.attempt_ended(), "{again:?}");
    // Nothing to claim while it waits.
    assert!(ledger.claim("q", "w2").await.unwrap().is_none());
    let listed = ledger.list("q", State::Awaiting, None, 10).await.unwrap();
    assert_eq!(listed.items, vec![ledger.get("q", "a").await.unwrap()]);

    let r = ledger
        .resume("q", "a", Some(&json!({"approved": true})))
        .await
        .unwrap();
    assert!(!r.already);
    assert_eq!(r.state, State::Queued);
    // A second resume changes nothing and reports the first.
    let events = events_of(&ledger, "q").await.len();
    let r2 = ledger
        .resume("q", "a", Some(&json!({"approved": false})))
        .await
        .unwrap();
    assert!(r2.already);
    assert_eq!(r2.resumed_at, r.resumed_at);
    assert_eq!(events_of(&ledger, "q").await.len(), events);

    // The continuation: the checkpoint and the input; max_attempts 1 is not used up.
    let claim = ledger.claim("q", "w2").await.unwrap().unwrap();
    assert_eq!(claim.attempt(), 2);
    assert_eq!(claim.resume_input, Some(json!({"approved": true})));
    assert_eq!(claim.checkpoint, Some(json!({"step": "plan written"})));
    ledger
        .heartbeat(&claim.token, Heartbeat::new())
        .await
        .unwrap();
    let failed = ledger.fail(&claim.token, "flaky", true).await.unwrap();
    assert!(
        matches!(failed, FailOutcome::Failed { .. }),
        "the continuation is attempt 1 of 1 counted: {failed:?}"
    );
    let e = ledger.get("q", "a").await.unwrap();
    assert_eq!((e.attempt, e.continuations), (2, 1));
    let reasons: Vec<String> = events_of(&ledger, "q")
        .await
        .into_iter()
        .map(|e| e.reason)
        .collect();
    assert!(
        reasons.windows(2).any(|w| w == ["awaiting", "resumed"]),
        "{reasons:?}"
    );
    // A resume after it went on reports the first resume, still.
    assert!(ledger.resume("q", "a", None).await.unwrap().already);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_claim_that_does_not_continue_a_resume_has_no_input() {
    let ledger = support::ledger("aw_no_input").await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("a"))
        .await
        .unwrap();
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.resume_input, None);
    // Resumed without input: the continuation has none either.
    awaited(&ledger, &claim.token, wait("webhook", 60_000)).await;
    ledger.resume("q", "a", None).await.unwrap();
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.resume_input, None);
    assert_eq!(claim.attempt(), 2);
}

#[tokio::test]
async fn the_resume_token_works_once_and_forged_ones_never() {
    let ledger = support::ledger("aw_token").await;
    let token = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let a = awaited(&ledger, &token, wait("approval", 60_000)).await;
    assert!(a.resume_token.starts_with("q~a~"), "{}", a.resume_token);

    // Forged: another secret, another execution, garbage. Nothing written.
    let before = raw_hash(&ledger, "q", "a").await;
    let secret = a.resume_token.rsplit('~').next().unwrap();
    let other = format!("q~a~{}", "0".repeat(64));
    let elsewhere = format!("q~b~{secret}");
    for bad in [other.as_str(), elsewhere.as_str(), "q~a~xyz", "nonsense"] {
        let err = ledger.resume_by_token(bad, None).await.unwrap_err();
        assert!(
            matches!(err, Error::InvalidResumeToken { .. }),
            "{bad}: {err:?}"
        );
    }
    assert_eq!(raw_hash(&ledger, "q", "a").await, before);
    // The secret is kept only as a hash.
    assert!(!before.iter().any(|(_, v)| v.contains(secret)));

    let r = ledger
        .resume_by_token(&a.resume_token, Some(&json!({"ok": 1})))
        .await
        .unwrap();
    assert_eq!(
        (r.queue.as_str(), r.id.as_str(), r.already),
        ("q", "a", false)
    );
    let after = raw_hash(&ledger, "q", "a").await;
    let err = ledger
        .resume_by_token(&a.resume_token, None)
        .await
        .unwrap_err();
    match err {
        Error::ResumeTokenUsed {
            resumed_at, state, ..
        } => {
            assert_eq!(resumed_at, r.resumed_at);
            assert_eq!(state, "queued");
        }
        other => panic!("used token: {other:?}"),
    }
    assert_eq!(raw_hash(&ledger, "q", "a").await, after, "nothing written");
    let claim = ledger.claim("q", "w").await.unwrap().unwrap();
    assert_eq!(claim.resume_input, Some(json!({"ok": 1})));
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn a_resume_of_work_not_awaiting_is_refused_naming_its_state() {
    let ledger = support::ledger("aw_not").await;
    ledger
        .enqueue("q", &json!({}), EnqueueOptions::new().id("queued"))
        .await
        .unwrap();
    let err = ledger.resume("q", "queued", None).await.unwrap_err();
    assert!(
        matches!(&err, Error::NotAwaiting { state, .. } if state == "queued"),
        "{err:?}"
    );
    assert!(err.to_string().contains("queued"), "{err}");
    let token = running(&ledger, "q2", "run", EnqueueOptions::new()).await;
    let err = ledger.resume("q2", "run", None).await.unwrap_err();
    assert!(matches!(&err, Error::NotAwaiting { state, .. } if state == "running"));
    ledger.complete(&token, None).await.unwrap();
    let err = ledger.resume("q2", "run", None).await.unwrap_err();
    assert!(matches!(&err, Error::NotAwaiting { state, .. } if state == "succeeded"));
    let err = ledger.resume("q2", "nope", None).await.unwrap_err();
    assert!(err.is_not_found(), "{err:?}");
}

#[tokio::test]
async fn bad_waits_are_refused_and_nothing_is_written() {
    let ledger = support::ledger("aw_bad").await;
    ledger
        .set_queue(
            "capped",
            &QueueSettings {
                max_wait: Some(Duration::from_secs(60)),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap();
    let token = running(&ledger, "capped", "a", EnqueueOptions::new()).await;
    let other = running(&ledger, "plain", "b", EnqueueOptions::new()).await;
    let keys = namespace_keys(&ledger).await;
    let before_b = raw_hash(&ledger, "plain", "b").await;
    let before = raw_hash(&ledger, "capped", "a").await;
    for (w, field) in [
        (wait("zero", 0), "wait_deadline"),
        (wait("too long", 61_000), "wait_deadline"),
        (wait("", 1000), "reason"),
        (wait(&"x".repeat(MAX_WAIT_REASON + 1), 1000), "reason"),
    ] {
        let err = ledger.await_resume(&token, w).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument { name, .. } if name == field),
            "{err:?}"
        );
    }
    // Past the default longest wait of 7 days, on a queue that sets none.
    let week = DEFAULT_MAX_WAIT + Duration::from_millis(1);
    let err = ledger.await_resume(&other, wait("w", week.as_millis() as u64));
    assert!(matches!(
        err.await.unwrap_err(),
        Error::InvalidArgument { .. }
    ));
    assert_eq!(raw_hash(&ledger, "capped", "a").await, before);
    assert_eq!(raw_hash(&ledger, "plain", "b").await, before_b);
    assert_eq!(
        namespace_keys(&ledger).await,
        keys,
        "no key written or removed"
    );
    // A wait within the cap is fine.
    awaited(&ledger, &token, wait("ok", 60_000)).await;
    // A bad queue setting is refused too.
    let err = ledger
        .set_queue(
            "capped",
            &QueueSettings {
                max_wait: Some(Duration::ZERO),
                ..QueueSettings::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
}

#[tokio::test]
async fn cancelling_awaiting_work_ends_it_at_once() {
    let ledger = support::ledger("aw_cancel").await;
    let token = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    let a = awaited(&ledger, &token, wait("approval", 60_000)).await;
    assert_eq!(
        ledger.cancel("q", "a", "plan rejected").await.unwrap(),
        CancelOutcome::Cancelled
    );
    let e = ledger.get("q", "a").await.unwrap();
    assert_eq!(e.state, State::Cancelled);
    assert_eq!(e.wait, None);
    let err = ledger.resume("q", "a", None).await.unwrap_err();
    assert!(matches!(&err, Error::NotAwaiting { state, .. } if state == "cancelled"));
    let err = ledger
        .resume_by_token(&a.resume_token, None)
        .await
        .unwrap_err();
    assert!(matches!(&err, Error::NotAwaiting { state, .. } if state == "cancelled"));
    support::invariants::assert_ok(&ledger, &["q"]).await;

    // Awaiting after a cancel was requested ends it cancelled instead.
    let token = running(&ledger, "q", "b", EnqueueOptions::new()).await;
    ledger.cancel("q", "b", "stop").await.unwrap();
    let out = ledger.await_resume(&token, wait("x", 1000)).await.unwrap();
    assert_eq!(
        out,
        AwaitOutcome::Cancelled {
            slot_released: true
        }
    );
    assert_eq!(ledger.get("q", "b").await.unwrap().state, State::Cancelled);
    support::invariants::assert_ok(&ledger, &["q"]).await;
}

#[tokio::test]
async fn awaiting_work_is_found_by_state() {
    let ledger = support::ledger("aw_find").await;
    for id in ["a", "b"] {
        let token = running(&ledger, "q", id, EnqueueOptions::new()).await;
        awaited(&ledger, &token, wait("approval", 60_000)).await;
    }
    let filter = Filter {
        state: Some(State::Awaiting),
        ..Filter::default()
    };
    let page = ledger.find(&filter, None, 10).await.unwrap();
    let mut ids: Vec<&str> = page.items.iter().map(|e| e.id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["a", "b"]);
    let listed = ledger.list("q", State::Awaiting, None, 1).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.next.is_some());
}

#[tokio::test]
async fn the_invariant_checker_knows_awaiting_work() {
    use unstuck::testkit::{Keyspace, Timer};
    let ledger = support::ledger("aw_checker").await;
    let token = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    awaited(&ledger, &token, wait("approval", 60_000)).await;
    support::invariants::assert_ok(&ledger, &["q"]).await;
    let keys = unstuck::testkit::keys(&ledger);
    let mut conn = raw().await;
    // Out of its wait timer: reported.
    let _: i64 = redis::cmd("ZREM")
        .arg(keys.queue_timer("q", Timer::Wait))
        .arg(Keyspace::member("q", "a"))
        .query_async(&mut conn)
        .await
        .unwrap();
    let found = support::invariants::check(&ledger, &["q"]).await;
    assert!(
        found
            .iter()
            .any(|v| v.contains("awaiting") && v.contains("timer:wait")),
        "{found:?}"
    );
    // Holding a slot while awaiting: reported too.
    let _: i64 = redis::cmd("HSET")
        .arg(keys.slots("q"))
        .arg("a")
        .arg("1:w")
        .query_async(&mut conn)
        .await
        .unwrap();
    let found = support::invariants::check(&ledger, &["q"]).await;
    assert!(found.iter().any(|v| v.contains("is in slots")), "{found:?}");
}

#[tokio::test]
async fn a_resume_wakes_a_waiting_long_poll() {
    let ledger = support::ledger("aw_wake").await;
    let token = running(&ledger, "q", "a", EnqueueOptions::new()).await;
    awaited(&ledger, &token, wait("approval", 60_000)).await;
    let poller = ledger.clone();
    let poll = tokio::spawn(async move {
        poller
            .claim_wait("q", "w2", 1, Duration::from_secs(20))
            .await
            .unwrap()
    });
    // The poll is waiting (nothing claimable) before the resume comes.
    tokio::task::yield_now().await;
    ledger
        .resume("q", "a", Some(&json!({"go": 1})))
        .await
        .unwrap();
    let batch = poll.await.unwrap();
    assert_eq!(batch.claims.len(), 1, "{batch:?}");
    assert_eq!(batch.claims[0].resume_input, Some(json!({"go": 1})));
}
