//! The runner's `Job::set_fingerprint` and `unstuck exec`'s `::fingerprint` line against a
//! real Redis: each is one arrival, sent at once with a beat of its own (never merged with
//! the next, even when set faster than beats), and bad ones are refused.

use crate::exec_common;
use crate::runner_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_set_fingerprint_arrives_with_a_beat_of_its_own() {
    let ledger = support::ledger("runner_fingerprint").await;
    // Beats every 20s: only the fingerprints' own beats can bring them within the wait.
    let options = EnqueueOptions::new().heartbeat_timeout(Duration::from_secs(60));
    runner_common::enqueue(&ledger, "f1", options).await;
    let l = ledger.clone();
    let handler = move |job: Job| {
        let l = l.clone();
        async move {
            let refused = [String::new(), "x".repeat(MAX_FINGERPRINT_BYTES + 1)]
                .into_iter()
                .all(|bad| job.set_fingerprint(bad).is_err());
            for _ in 0..5 {
                job.set_fingerprint("fetch https://example.test -> 500")
                    .map_err(|e| JobError::fatal(e.to_string()))?;
            }
            let mut seen = None;
            for _ in 0..200 {
                let e = l
                    .get("q", job.id())
                    .await
                    .map_err(|e| JobError::fatal(e.to_string()))?;
                seen = e.fingerprint.map(|f| f.repeats);
                if seen == Some(5) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            Ok(Some(json!({ "repeats": seen, "refused": refused })))
        }
    };
    let runner = runner_common::start(&ledger, runner_common::config(1), handler);
    let e = runner_common::wait_state(&ledger, "f1", State::Succeeded).await;
    runner.stop().await;
    assert_eq!(e.result, Some(json!({ "repeats": 5, "refused": true })));
}

#[tokio::test]
async fn fingerprint_lines_each_arrive_and_a_long_one_is_output() {
    let l = support::ledger("exec_fingerprint").await;
    let s = exec_common::Scratch::new();
    exec_common::enqueue(&l, "e", 1).await;
    let long = "y".repeat(MAX_FINGERPRINT_BYTES + 1);
    let script = format!(
        r#"echo "::fingerprint ls -> a b" >&2
echo "::fingerprint ls -> a b" >&2
echo "::fingerprint ls -> a b" >&2
echo "::fingerprint {long}" >&2
while [ ! -e go ]; do sleep 0.02; done"#
    );
    let mut exec = exec_common::start(&l, &s, &[], &script);
    support::wait_until(Duration::from_secs(10), "three fingerprints", || async {
        let e = l.get("q", "e").await.unwrap();
        e.fingerprint
            .is_some_and(|f| f.last == "ls -> a b" && f.repeats == 3)
    })
    .await;
    std::fs::write(s.path("go"), "").unwrap();
    let e = exec_common::wait_state(&l, "e", State::Succeeded).await;
    let f = e.fingerprint.unwrap();
    assert_eq!((f.last.as_str(), f.repeats), ("ls -> a b", 3));
    // The refused line is output: the only line counted.
    assert_eq!(e.progress.as_deref(), Some("output: 1 line"));
    assert_eq!(exec.stop().await, Some(0));
}
