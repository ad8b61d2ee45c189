//! What happened to each heartbeat that went through a worker's batcher
//! (`crate::runner::coalesce`): handed over, sent in which call, replied. Recorded for a
//! namespace while a [`BeatLog`] of it lives, so tests can check when beats left.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::error::Result;
use crate::ledger::{AttemptToken, HeartbeatReply, Ledger};
use crate::runner::coalesce::Call;

/// Longest a batcher means to hold a beat for company.
pub const MAX_HOLD: std::time::Duration = crate::runner::coalesce::MAX_HOLD;

/// One beat that went through a coalescer.
#[derive(Debug, Clone)]
pub struct BeatRecord {
    pub queue: String,
    pub execution_id: String,
    pub attempt: u32,
    /// When its attempt handed it over.
    pub handed: Instant,
    /// When the batcher meant the call carrying it to leave (it waits for company at most
    /// its hold: 5 ms, or a tenth of its interval).
    pub planned: Instant,
    /// When that call was sent.
    pub sent: Instant,
    /// When that call's replies came back.
    pub replied: Instant,
    /// Which call carried it (numbered from 1 across the process), and how many beats
    /// that call carried.
    pub call: u64,
    pub batch: usize,
    /// The reply was `Ok` (cancel requested or not).
    pub ok: bool,
}

static LOGS: Mutex<Option<HashMap<String, Vec<BeatRecord>>>> = Mutex::new(None);
/// Logs alive: the dispatcher looks at the map only when some test asked.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);

fn logs() -> MutexGuard<'static, Option<HashMap<String, Vec<BeatRecord>>>> {
    LOGS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Records the beats of `ledger`'s namespace until dropped.
pub struct BeatLog {
    namespace: String,
}

impl BeatLog {
    pub fn start(ledger: &Ledger) -> Self {
        let namespace = ledger.config().namespace.clone();
        logs()
            .get_or_insert_with(HashMap::new)
            .insert(namespace.clone(), Vec::new());
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Self { namespace }
    }

    /// Every beat recorded so far, in the order their replies came.
    pub fn records(&self) -> Vec<BeatRecord> {
        logs()
            .as_ref()
            .and_then(|m| m.get(&self.namespace))
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for BeatLog {
    fn drop(&mut self) {
        if let Some(map) = logs().as_mut() {
            map.remove(&self.namespace);
        }
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(crate) fn record(
    ledger: &Ledger,
    token: &AttemptToken,
    handed: tokio::time::Instant,
    call: &Call,
    result: &Result<HeartbeatReply>,
) {
    if ACTIVE.load(Ordering::SeqCst) == 0 {
        return;
    }
    let mut logs = logs();
    let Some(log) = logs
        .as_mut()
        .and_then(|m| m.get_mut(&ledger.config().namespace))
    else {
        return;
    };
    log.push(BeatRecord {
        queue: token.queue().to_owned(),
        execution_id: token.execution_id().to_owned(),
        attempt: token.attempt(),
        handed: handed.into_std(),
        planned: call.planned.into_std(),
        sent: call.sent.into_std(),
        replied: call.replied.into_std(),
        call: call.number,
        batch: call.size,
        ok: matches!(result, Ok(HeartbeatReply::Ok { .. })),
    });
}
