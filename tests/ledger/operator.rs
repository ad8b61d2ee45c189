//! What an operator needs from the library: finding executions across queues by state,
//! stop reason and worker, paged; running a finished execution again as a new one linked
//! to it; and which worker holds what.

use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

async fn finish(l: &Ledger, q: &str, id: &str, outcome: &str) {
    l.enqueue(
        q,
        &json!({"id": id}),
        EnqueueOptions::new().id(id).max_attempts(1),
    )
    .await
    .unwrap();
    let claim = l.claim(q, &format!("worker-{q}")).await.unwrap().unwrap();
    match outcome {
        "succeeded" => {
            l.complete(&claim.token, None).await.unwrap();
        }
        "failed" => {
            let beat = Heartbeat::new().checkpoint(json!({"step": 3}));
            l.heartbeat(&claim.token, beat).await.unwrap();
            l.fail(&claim.token, "boom", false).await.unwrap();
        }
        "running" => {
            l.heartbeat(&claim.token, Heartbeat::new()).await.unwrap();
        }
        other => panic!("{other}"),
    }
}

fn ids(page: &Page) -> Vec<String> {
    page.items
        .iter()
        .map(|e| format!("{}/{}", e.queue, e.id))
        .collect()
}

#[tokio::test]
async fn find_filters_across_queues_newest_first_and_pages() {
    let l = support::ledger("op_find").await;
    finish(&l, "alpha", "a1", "failed").await;
    finish(&l, "alpha", "a2", "failed").await;
    finish(&l, "alpha", "a3", "succeeded").await;
    finish(&l, "beta", "b1", "failed").await;
    finish(&l, "beta", "b2", "running").await;

    let failed = Filter {
        state: Some(State::Failed),
        ..Filter::default()
    };
    let page = l.find(&failed, None, 10).await.unwrap();
    assert_eq!(ids(&page), ["alpha/a2", "alpha/a1", "beta/b1"]);
    assert_eq!(page.next, None);

    // Two at a time: the cursor carries on across queues.
    let first = l.find(&failed, None, 2).await.unwrap();
    assert_eq!(ids(&first), ["alpha/a2", "alpha/a1"]);
    let rest = l.find(&failed, first.next.as_deref(), 2).await.unwrap();
    assert_eq!(ids(&rest), ["beta/b1"]);

    let by_reason = Filter {
        stop_reason: Some("succeeded".into()),
        ..Filter::default()
    };
    assert_eq!(
        ids(&l.find(&by_reason, None, 10).await.unwrap()),
        ["alpha/a3"]
    );
    let by_worker = Filter {
        worker: Some("worker-beta".into()),
        ..Filter::default()
    };
    assert_eq!(
        ids(&l.find(&by_worker, None, 10).await.unwrap()),
        ["beta/b2", "beta/b1"],
        "running first (lifecycle order), then its failed one"
    );
    let one_queue = Filter {
        queue: Some("beta".into()),
        ..Filter::default()
    };
    assert_eq!(l.find(&one_queue, None, 10).await.unwrap().items.len(), 2);
    assert!(matches!(
        l.find(&failed, Some("garbage"), 10).await,
        Err(Error::InvalidArgument { .. })
    ));
    let held = l.slot_holders().await.unwrap();
    assert_eq!(held["worker-beta"], [("beta".to_owned(), "b2".to_owned())]);
    assert_eq!(held.len(), 1, "{held:?}");
}

#[tokio::test]
async fn retry_runs_a_finished_execution_again_as_a_linked_one() {
    let l = support::ledger("op_retry").await;
    finish(&l, "q", "orig", "failed").await;
    let before = l.get("q", "orig").await.unwrap();

    let again = l.retry("q", "orig", None, "fixed the input").await.unwrap();
    assert_eq!((again.id.as_str(), again.created), ("orig.retry1", true));
    let replay = l
        .retry("q", "orig", Some("orig.retry1"), "again")
        .await
        .unwrap();
    assert!(!replay.created, "the same retry twice is one");

    let copy = l.get("q", "orig.retry1").await.unwrap();
    assert_eq!(copy.state, State::Queued);
    assert_eq!(copy.retry_of, Some(("q".into(), "orig".into())));
    assert_eq!(copy.payload, before.payload);
    assert_eq!(
        copy.checkpoint,
        Some(json!({"step": 3})),
        "resumes from the checkpoint"
    );
    assert_eq!(copy.timings, before.timings);
    let orig = l.get("q", "orig").await.unwrap();
    assert_eq!(orig.retries, ["orig.retry1"]);
    assert_eq!(
        (orig.state, orig.finished_at),
        (before.state, before.finished_at),
        "unchanged"
    );

    let claim = l.claim("q", "w2").await.unwrap().unwrap();
    assert_eq!(
        (claim.id(), claim.checkpoint.clone()),
        ("orig.retry1", Some(json!({"step": 3})))
    );
    l.complete(&claim.token, None).await.unwrap();
    let second = l.retry("q", "orig", None, "once more").await.unwrap();
    assert_eq!(second.id, "orig.retry2");

    // Only finished-and-not-succeeded executions are retried.
    match l.retry("q", "orig.retry1", None, "").await {
        Err(Error::InvalidTransition { reason, .. }) => {
            assert!(reason.contains("succeeded"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    l.enqueue(
        "q",
        &json!({}),
        EnqueueOptions::new()
            .id("waiting")
            .delay(Duration::from_secs(60)),
    )
    .await
    .unwrap();
    assert!(matches!(
        l.retry("q", "waiting", None, "").await,
        Err(Error::InvalidTransition { .. })
    ));
    assert!(matches!(
        l.retry("q", "nobody", None, "").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        l.retry("q", "orig", Some("waiting"), "").await,
        Err(Error::InvalidTransition { .. })
    ));
    support::invariants::assert_ok(&l, &["q"]).await;
}
