//! Batched heartbeats on a Redis Cluster: one script call per partition, the partitions in
//! different slots of three masters, each beat answered in its place.

use crate::support;

use serde_json::json;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_across_the_slots_of_a_cluster_gets_every_reply_in_its_place() {
    let l = support::cluster_ledger("cluster_beats").await;
    let names: Vec<String> = (0..24).map(|i| format!("hb-{i:02}")).collect();
    let mut beats = Vec::new();
    for q in &names {
        for id in ["a", "b"] {
            l.enqueue(q, &json!({}), EnqueueOptions::new().id(id))
                .await
                .unwrap();
            let token = l.claim(q, "w1").await.unwrap().expect("claimable").token;
            beats.push((token, Heartbeat::new().progress(format!("{q}/{id}"))));
        }
    }
    // One of them done already: its beat alone is refused.
    let (done, _) = beats[5].clone();
    l.complete(&done, None).await.unwrap();
    let replies = l.heartbeat_many(&beats).await.unwrap();
    assert_eq!(replies.len(), beats.len());
    for (i, (token, _)) in beats.iter().enumerate() {
        let reply = replies[i].as_ref().unwrap();
        if i == 5 {
            assert!(
                matches!(reply, HeartbeatReply::Terminal { .. }),
                "{reply:?}"
            );
            continue;
        }
        assert!(!reply.should_stop(), "{reply:?}");
        let e = l.get(token.queue(), token.execution_id()).await.unwrap();
        assert_eq!(e.state, State::Running);
        let expected = format!("{}/{}", token.queue(), token.execution_id());
        assert_eq!(e.progress.as_deref(), Some(expected.as_str()));
    }
}
