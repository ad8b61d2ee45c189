//! Loop detection in the `unstuck` binary: `enqueue --max-repeats`, and `show` naming the
//! last fingerprint with its run, and the `looping` verdict with its count.

use crate::cli_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::watchdog::{Watchdog, WatchdogConfig};
use unstuck::*;

use cli_common::{run, run_json};

#[tokio::test]
async fn enqueue_takes_max_repeats_and_show_names_the_fingerprint_and_the_verdict() {
    let l = support::ledger("cli_loop").await;
    let args = ["enqueue", "q", "--id", "l1", "--max-repeats", "3"];
    run_json(&l, &args).await;
    assert_eq!(l.get("q", "l1").await.unwrap().timings.max_repeats, Some(3));
    for bad in ["1", "lots"] {
        let out = run(&l, &["enqueue", "q", "--id", "l2", "--max-repeats", bad]).await;
        assert!(
            out.one_line_failure().contains("max-repeats")
                || out.one_line_failure().contains("max_repeats"),
            "{out:?}"
        );
    }
    assert!(l.get("q", "l2").await.is_err(), "nothing enqueued");

    let claim = l.claim("q", "w").await.unwrap().unwrap();
    for _ in 0..2 {
        l.heartbeat(&claim.token, Heartbeat::new().fingerprint("ls -la"))
            .await
            .unwrap();
    }
    let shown = run(&l, &["show", "q", "l1"]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let text = &shown.stdout;
    assert!(
        text.contains("fingerprint     ls -la (2 in a row of max_repeats 3)"),
        "{text}"
    );
    assert!(text.contains("max repeats 3"), "{text}");
    let json = run_json(&l, &["show", "q", "l1"]).await;
    let execution = json.get("execution").unwrap_or(&json);
    assert_eq!(
        execution["fingerprint"],
        json!({"last": "ls -la", "repeats": 2}),
        "{json}"
    );

    // The third in a row: the next round judges it looping, and show says why.
    l.heartbeat(&claim.token, Heartbeat::new().fingerprint("ls -la"))
        .await
        .unwrap();
    let wd = Watchdog::new(
        l.clone(),
        WatchdogConfig {
            replica_id: Some("r1".into()),
            lease_ttl: Duration::from_secs(60),
            systemic_share: 1.0,
            ..WatchdogConfig::default()
        },
    )
    .unwrap();
    wd.rebalance().await.unwrap();
    assert_eq!(wd.round(l.partition_of("q")).await.unwrap().stuck, 1);
    let text = run(&l, &["show", "q", "l1"]).await.stdout;
    assert!(
        text.contains("running → stuck")
            && text.contains("looping")
            && text.contains("same fingerprint 3 times in a row (max_repeats 3)"),
        "{text}"
    );
}
