mod support;

use serde_json::json;
use unstuck::*;

#[tokio::test]
async fn one_life() {
    let l = support::ledger("one_life").await;
    let e = l
        .enqueue("q", &json!({"a": 1}), EnqueueOptions::new().id("x1"))
        .await
        .unwrap();
    assert!(e.created);
    let again = l
        .enqueue("q", &json!({"a": 2}), EnqueueOptions::new().id("x1"))
        .await
        .unwrap();
    assert!(!again.created);
    let c = l.claim("q", "w1").await.unwrap().unwrap();
    assert_eq!(c.attempt(), 1);
    let r = l
        .heartbeat(
            &c.token,
            Heartbeat::new()
                .progress("1")
                .checkpoint(json!({"step": 1})),
        )
        .await
        .unwrap();
    assert_eq!(
        r,
        HeartbeatReply::Ok {
            cancel_requested: false
        }
    );
    let f = l.fail(&c.token, "boom", true).await.unwrap();
    println!("{f:?}");
    let ex = l.get("q", "x1").await.unwrap();
    println!("{ex:#?}");
    let page = l.list("q", State::Queued, None, 10).await.unwrap();
    println!("{page:?}");
    let evs = l.read_events(l.partition_of("q"), None, 100).await.unwrap();
    println!("{evs:#?}");
}
