//! Retention on input: per terminal state, how long finished executions are kept
//! (integer milliseconds or `"7d"`-style text; 0 keeps for ever), and the cap of finished
//! executions per queue. Replies carry the library's [`Retention`].

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::DurationIn;
use crate::retention::Retention;

/// A queue's retention on input; unset fields take the ledger's.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionIn {
    pub succeeded: Option<DurationIn>,
    pub cancelled: Option<DurationIn>,
    pub failed: Option<DurationIn>,
    pub dead: Option<DurationIn>,
    pub timed_out: Option<DurationIn>,
    /// Most finished executions kept (pinned ones not counted); 0: no cap.
    pub max_finished: Option<u64>,
}

impl From<RetentionIn> for Retention {
    fn from(r: RetentionIn) -> Self {
        let d = |v: Option<DurationIn>| v.map(|d| d.0);
        Retention {
            succeeded: d(r.succeeded),
            cancelled: d(r.cancelled),
            failed: d(r.failed),
            dead: d(r.dead),
            timed_out: d(r.timed_out),
            max_finished: r.max_finished,
        }
    }
}
