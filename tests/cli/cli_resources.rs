//! Resource leases in the `unstuck` binary: `resources` lists each resource's holders
//! (table and `--json`), `resources release` force-releases with a reason, and `events`
//! shows the resource events.

use crate::cli_common;
use crate::support;

use serde_json::json;
use unstuck::*;

use cli_common::{run, run_json};

#[tokio::test]
async fn resources_lists_holders_and_release_frees_with_a_reason() {
    let l = support::ledger("cli_resources").await;
    l.enqueue("q", &json!({}), EnqueueOptions::new().id("a"))
        .await
        .unwrap();
    let claim = l.claim("q", "w").await.unwrap().unwrap();
    l.acquire(&claim.token, Acquire::new("browser").capacity(2))
        .await
        .unwrap();

    let table = run(&l, &["resources"]).await;
    assert_eq!(table.code, Some(0), "{table:?}");
    assert!(table.stdout.contains("RESOURCE"), "{}", table.stdout);
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("browser"))
        .unwrap_or_else(|| panic!("{}", table.stdout));
    assert!(row.contains("1/2") && row.contains("q/a"), "{row}");
    let listed = run_json(&l, &["resources"]).await;
    assert_eq!(listed["resources"][0]["resource"], "browser");
    assert_eq!(listed["resources"][0]["holders"][0]["attempt"], 1);

    // A reason is required; a holder that holds nothing is a one-line failure.
    let no_reason = run(&l, &["resources", "release", "browser", "q", "a"]).await;
    assert_ne!(no_reason.code, Some(0));
    let nothing = run(
        &l,
        &[
            "resources",
            "release",
            "browser",
            "q",
            "zz",
            "--reason",
            "x",
        ],
    )
    .await;
    assert!(
        nothing.one_line_failure().contains("holds no unit"),
        "{nothing:?}"
    );
    let freed = run(
        &l,
        &[
            "resources",
            "release",
            "browser",
            "q",
            "a",
            "--reason",
            "hung tab",
        ],
    )
    .await;
    assert_eq!(freed.code, Some(0), "{freed:?}");
    assert!(
        freed.stdout.contains("released browser"),
        "{}",
        freed.stdout
    );
    assert!(l.resources().await.unwrap().is_empty());
    let empty = run(&l, &["resources"]).await;
    assert!(empty.stdout.contains("no resource is held"), "{empty:?}");

    let events = run(&l, &["events", "--queue", "q"]).await;
    assert!(
        events.stdout.contains("resource_acquired")
            && events.stdout.contains("resource_force_released")
            && events.stdout.contains("hung tab"),
        "{}",
        events.stdout
    );
}
