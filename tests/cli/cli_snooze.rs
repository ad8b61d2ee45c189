//! Snoozes in the `unstuck` binary: `enqueue --max-snoozes`, and `show` naming the snoozes
//! and when a snoozed execution becomes claimable.

use crate::cli_common;
use crate::support;

use std::time::Duration;

use serde_json::json;
use unstuck::*;

use cli_common::{run, run_json};

#[tokio::test]
async fn enqueue_takes_max_snoozes_and_show_names_the_snoozes() {
    let l = support::ledger("cli_snooze").await;
    let args = ["enqueue", "q", "--id", "s1", "--max-snoozes", "4"];
    run_json(&l, &args).await;
    assert_eq!(l.get("q", "s1").await.unwrap().timings.max_snoozes, 4);
    let bad = run(&l, &["enqueue", "q", "--id", "s2", "--max-snoozes", "lots"]).await;
    assert!(
        bad.one_line_failure()
            .contains("expected a whole number of snoozes"),
        "{bad:?}"
    );

    let claim = l.claim("q", "w").await.unwrap().unwrap();
    let snooze = Snooze::after(Duration::from_secs(600), "rate limited");
    l.snooze(&claim.token, snooze).await.unwrap();
    let shown = run(&l, &["show", "q", "s1"]).await;
    assert_eq!(shown.code, Some(0), "{shown:?}");
    let text = &shown.stdout;
    assert!(text.contains("snoozes         1 of 4 allowed"), "{text}");
    assert!(
        text.contains("available       ") && text.contains("(in 9m"),
        "{text}"
    );
    assert!(
        text.contains("snoozed") && text.contains("rate limited"),
        "{text}"
    );
    let json = run_json(&l, &["show", "q", "s1"]).await;
    let execution = json.get("execution").unwrap_or(&json);
    assert_eq!(execution["snoozes"], json!(1), "{json}");
}
