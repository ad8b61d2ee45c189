//! The attempt token a worker presents for every call about the attempt it holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names;

/// Names one attempt of one execution, with a secret nonce issued at claim time so a token
/// from an earlier life of the same id can never pass for the current one. Its text form
/// `<queue>/<id>/<attempt>/<nonce>` is what non-Rust workers carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AttemptToken {
    pub(crate) queue: String,
    pub(crate) id: String,
    pub(crate) attempt: u32,
    pub(crate) nonce: String,
}

impl AttemptToken {
    /// The queue of the execution.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// The execution id.
    pub fn execution_id(&self) -> &str {
        &self.id
    }

    /// The attempt this token was issued for.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    pub(crate) fn fresh_nonce() -> String {
        uuid::Uuid::new_v4().simple().to_string()
    }
}

impl fmt::Display for AttemptToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.queue, self.id, self.attempt, self.nonce
        )
    }
}

impl FromStr for AttemptToken {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad = |reason| Error::InvalidToken {
            token: s.chars().take(300).collect(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        let [queue, id, attempt, nonce] = parts[..] else {
            return Err(bad("expected <queue>/<id>/<attempt>/<nonce>"));
        };
        names::validate_queue(queue).map_err(|_| bad("invalid queue name"))?;
        names::validate_execution_id(id).map_err(|_| bad("invalid execution id"))?;
        let attempt: u32 = attempt
            .parse()
            .map_err(|_| bad("attempt is not a number"))?;
        if attempt == 0 {
            return Err(bad("attempt numbers start at 1"));
        }
        if nonce.is_empty() || nonce.len() > 64 || !nonce.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad("nonce must be 1 to 64 hex digits"));
        }
        Ok(Self {
            queue: queue.to_owned(),
            id: id.to_owned(),
            attempt,
            nonce: nonce.to_owned(),
        })
    }
}

impl TryFrom<String> for AttemptToken {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<AttemptToken> for String {
    fn from(t: AttemptToken) -> String {
        t.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let t = AttemptToken {
            queue: "emails".into(),
            id: "e-1".into(),
            attempt: 3,
            nonce: AttemptToken::fresh_nonce(),
        };
        let parsed: AttemptToken = t.to_string().parse().unwrap();
        assert_eq!(parsed, t);
        for bad in [
            "",
            "a/b/c",
            "a/b/0/ff",
            "a/b/x/ff",
            "a/b/1/zz",
            "a b/c/1/ff",
            "a/b/1/ff/x",
        ] {
            assert!(bad.parse::<AttemptToken>().is_err(), "{bad:?} accepted");
        }
    }
}
