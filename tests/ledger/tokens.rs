//! Attempt tokens: a token never issued (wrong secret, future attempt) is refused with a
//! clear error and changes nothing; an unknown execution is NotFound; garbage does not parse.

use crate::ledger_common;
use crate::support;

use unstuck::error::Error;
use unstuck::*;

use ledger_common::{events_of, forged, running};

#[tokio::test]
async fn tokens_never_issued_are_refused() {
    let ledger = support::ledger("tr_tokens").await;
    let token = running(&ledger, "q", "x", EnqueueOptions::new()).await;
    let before = ledger.get("q", "x").await.unwrap();
    let events = events_of(&ledger, "q").await.len();

    for (what, bad) in [
        ("wrong nonce", forged(&token, 1)),
        ("future attempt", forged(&token, 2)),
    ] {
        let mismatch = |e: Error| match e {
            Error::TokenMismatch {
                queue,
                id,
                current_attempt,
            } => assert_eq!(
                (queue.as_str(), id.as_str(), current_attempt),
                ("q", "x", 1)
            ),
            other => panic!("{what}: expected TokenMismatch, got {other:?}"),
        };
        mismatch(
            ledger
                .heartbeat(&bad, Heartbeat::new().progress("p"))
                .await
                .unwrap_err(),
        );
        mismatch(ledger.complete(&bad, None).await.unwrap_err());
        mismatch(ledger.fail(&bad, "x", true).await.unwrap_err());
        mismatch(ledger.acknowledge_cancel(&bad).await.unwrap_err());
    }
    // A token for a future attempt with the current secret was never issued either.
    let future: AttemptToken = {
        let text = token.to_string();
        let (head, nonce) = text.rsplit_once('/').unwrap();
        let (head, _) = head.rsplit_once('/').unwrap();
        format!("{head}/5/{nonce}").parse().unwrap()
    };
    assert!(matches!(
        ledger.complete(&future, None).await,
        Err(Error::TokenMismatch {
            current_attempt: 1,
            ..
        })
    ));
    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    assert_eq!(events_of(&ledger, "q").await.len(), events);

    // An execution that does not exist.
    let unknown: AttemptToken = format!("q/nope/1/{}", "ab".repeat(16)).parse().unwrap();
    for result in [
        ledger
            .heartbeat(&unknown, Heartbeat::new())
            .await
            .map(|_| ()),
        ledger.complete(&unknown, None).await.map(|_| ()),
        ledger.fail(&unknown, "x", true).await.map(|_| ()),
        ledger.acknowledge_cancel(&unknown).await.map(|_| ()),
    ] {
        match result {
            Err(Error::NotFound { queue, id }) => {
                assert_eq!((queue, id), ("q".into(), "nope".into()))
            }
            other => panic!("expected NotFound, got {other:?}"),
        }
    }
    assert!(ledger.get("q", "nope").await.unwrap_err().is_not_found());
    assert!(matches!(
        ledger.cancel("q", "nope", "why").await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(ledger.get("q", "x").await.unwrap(), before);
    let keys = ledger_common::namespace_keys(&ledger).await;
    assert!(!keys.iter().any(|k| k.ends_with("/nope")), "{keys:?}");
}

#[test]
fn malformed_token_strings_do_not_parse() {
    let good = format!("emails/e-1/3/{}", "0f".repeat(16));
    let parsed: AttemptToken = good.parse().unwrap();
    assert_eq!(
        (parsed.queue(), parsed.execution_id(), parsed.attempt()),
        ("emails", "e-1", 3)
    );
    assert_eq!(parsed.to_string(), good);
    let long_nonce = format!("q/x/1/{}", "a".repeat(65));
    for bad in [
        "",
        "q",
        "q/x/1",
        "q/x/1/ab/extra",
        "q/x/0/ab",
        "q/x/-1/ab",
        "q/x/one/ab",
        "q/x/99999999999/ab",
        "q/x/1/",
        "q/x/1/xyz",
        long_nonce.as_str(),
        "q q/x/1/ab",
        "q/x y/1/ab",
        "/x/1/ab",
        "q//1/ab",
        "{q}/x/1/ab",
    ] {
        match bad.parse::<AttemptToken>() {
            Err(Error::InvalidToken { token, .. }) => assert_eq!(token, bad),
            other => panic!("{bad:?}: expected InvalidToken, got {other:?}"),
        }
    }
    // The serde form goes through the same parser.
    assert!(serde_json::from_str::<AttemptToken>("\"q/x/0/ab\"").is_err());
    assert_eq!(
        serde_json::from_str::<AttemptToken>(&format!("{good:?}")).unwrap(),
        parsed
    );
}
