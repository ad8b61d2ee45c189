//! `unstuck exec`'s `::usage JSON` lines: each a delta exec numbers, on stdout or stderr,
//! all delivered by the time the outcome is recorded; a bad one is output with a note.

use crate::exec_common;
use crate::support;

use exec_common::*;
use unstuck::State;

#[tokio::test]
async fn usage_lines_add_up_on_the_execution() {
    let l = support::ledger("exec_usage").await;
    let s = Scratch::new();
    enqueue(&l, "e", 1).await;
    let script = r#"echo '::usage {"input_tokens":120,"output_tokens":40,"model":"m"}'
echo '::usage {"input_tokens":5,"cached_input_tokens":2}' >&2
echo '::usage {"input_tokens":1,"cached_input_tokens":9}' >&2
echo '::usage {"output_tokens":3,"model":"m"}'
echo '{"done": true}'"#;
    let mut exec = start(&l, &s, &[], script);
    let e = wait_state(&l, "e", State::Succeeded).await;
    let usage = e.usage.expect("usage recorded");
    assert_eq!(
        (
            usage.totals.input_tokens,
            usage.totals.output_tokens,
            usage.totals.cached_input_tokens
        ),
        (125, 43, 2),
        "the refused line (cached above input) is not counted"
    );
    assert_eq!(usage.by_model["m"].output_tokens, 43);
    assert_eq!(exec.stop().await, Some(0));
    assert!(
        exec.stderr().contains("::usage ignored"),
        "{}",
        exec.stderr()
    );
}
