//! `unstuck resume` and `unstuck executions --state awaiting`, checked through the library.

use crate::cli_common;
use crate::ledger_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

use cli_common::{page_ids, run, run_json};

async fn awaiting(l: &Ledger, q: &str, id: &str) {
    let token = ledger_common::running(l, q, id, EnqueueOptions::new()).await;
    let wait = AwaitResume {
        reason: "approval of the plan".into(),
        wait_deadline: Duration::from_secs(3600),
        checkpoint: None,
    };
    assert!(matches!(
        l.await_resume(&token, wait).await.unwrap(),
        AwaitOutcome::Awaiting(_)
    ));
}

#[tokio::test]
async fn awaiting_work_is_listed_shown_and_resumed() {
    let l = support::ledger("cli_resume").await;
    awaiting(&l, "q", "a").await;
    let page = run_json(&l, &["executions", "--queue", "q", "--state", "awaiting"]).await;
    assert_eq!(page_ids(&page), ["q/a"]);
    let shown = run(&l, &["show", "q", "a"]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    assert!(
        shown
            .stdout
            .contains("waiting for     approval of the plan"),
        "{shown:?}"
    );

    let r = run_json(
        &l,
        &["resume", "q", "a", "--input", r#"{"approved": true}"#],
    )
    .await;
    assert_eq!(
        (&r["state"], &r["already"]),
        (&json!("queued"), &json!(false))
    );
    let claim = l.claim("q", "w2").await.unwrap().unwrap();
    assert_eq!(claim.resume_input, Some(json!({"approved": true})));

    // Again: nothing changes, it says so, exit 0.
    let again = run(&l, &["resume", "q", "a"]).await;
    assert_eq!(again.code, Some(0), "{again:?}");
    assert!(again.stdout.contains("already resumed"), "{again:?}");
}

#[tokio::test]
async fn resume_refuses_bad_input_and_work_that_does_not_wait() {
    let l = support::ledger("cli_resume_bad").await;
    awaiting(&l, "q", "a").await;
    let bad = run(&l, &["resume", "q", "a", "--input", "{not json"]).await;
    assert!(
        bad.one_line_failure().contains("--input is not JSON"),
        "{bad:?}"
    );
    assert_eq!(l.get("q", "a").await.unwrap().state, State::Awaiting);
    l.enqueue("q", &json!({}), EnqueueOptions::new().id("b"))
        .await
        .unwrap();
    let not = run(&l, &["resume", "q", "b"]).await;
    let line = not.one_line_failure();
    assert!(line.contains("queued, not awaiting"), "{line}");
}
