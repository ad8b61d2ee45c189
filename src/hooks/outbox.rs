//! The hook outbox in Redis: calls kept under their idempotency key, claimed by one
//! replica at a time for a visibility timeout, settled once (`lua/hook_*.lua`).

use std::time::Duration;

use crate::error::Result;
use crate::ledger::Ledger;
use crate::scripts::{HOOK_CLAIM, HOOK_COMPLETE, HOOK_ENQUEUE};

/// How long a settled call's key is remembered: the same key enqueued again within it is
/// not called again.
pub(crate) const KEY_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// One call a replica claimed.
#[derive(Debug, Clone)]
pub(crate) struct ClaimedCall {
    /// The idempotency key.
    pub(crate) key: String,
    pub(crate) hook: String,
    /// The event JSON.
    pub(crate) body: String,
    /// 1 for the first delivery, more when an earlier claim lapsed.
    pub(crate) delivery: u32,
}

/// A call to add to the outbox.
#[derive(Debug, Clone)]
pub(crate) struct NewCall {
    /// The idempotency key.
    pub(crate) key: String,
    pub(crate) hook: String,
    /// The event JSON.
    pub(crate) body: String,
    /// For an execution's terminate call: `<partition>|<queue>/<id>|<attempt>|<n>|<base
    /// key>`; empty otherwise.
    pub(crate) terminate: String,
}

/// The outbox of a namespace.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    ledger: Ledger,
}

impl Outbox {
    pub(crate) fn new(ledger: Ledger) -> Self {
        Self { ledger }
    }

    /// Adds calls (a key already known is skipped) and records `cursor` (field, value)
    /// in the same script. Returns how many were added.
    ///
    /// # Errors
    /// [`crate::Error::Redis`].
    pub(crate) async fn enqueue(
        &self,
        calls: &[NewCall],
        cursor: Option<(&str, &str)>,
    ) -> Result<u64> {
        let k = &self.ledger.keys;
        let mut call = HOOK_ENQUEUE.call();
        call.key(k.hooks_pending()).key(k.hooks_cursor());
        let (field, value) = cursor.unwrap_or(("", ""));
        call.arg(k.hook_call_prefix()).arg(field).arg(value);
        for c in calls {
            call.arg(&c.key).arg(&c.hook).arg(&c.body).arg(&c.terminate);
        }
        let reply = call.run(&mut self.ledger.conn.clone()).await?;
        match reply.status() {
            "ok" => reply.u64(1),
            _ => Err(reply.unexpected()),
        }
    }

    /// Claims up to `n` calls for `visibility` under `token`, lapsed claims first.
    ///
    /// # Errors
    /// [`crate::Error::Redis`].
    pub(crate) async fn claim(
        &self,
        n: usize,
        visibility: Duration,
        token: &str,
    ) -> Result<Vec<ClaimedCall>> {
        let k = &self.ledger.keys;
        let reply = HOOK_CLAIM
            .key(k.hooks_pending())
            .key(k.hooks_running())
            .key(k.hooks_settled())
            .arg(k.hook_call_prefix())
            .arg(visibility.as_millis() as u64)
            .arg(n)
            .arg(token)
            .arg(KEY_RETENTION.as_millis() as u64)
            .run(&mut self.ledger.conn.clone())
            .await?;
        if reply.status() != "ok" || (reply.len() - 2) % 4 != 0 {
            return Err(reply.unexpected());
        }
        let lapsed = reply.u64(1)?;
        if lapsed > 0 {
            tracing::warn!(lapsed, "hook calls whose claim lapsed are delivered again");
        }
        (2..reply.len())
            .step_by(4)
            .map(|i| {
                Ok(ClaimedCall {
                    key: reply.str(i)?.to_owned(),
                    hook: reply.str(i + 1)?.to_owned(),
                    body: reply.str(i + 2)?.to_owned(),
                    delivery: reply.u32(i + 3)?,
                })
            })
            .collect()
    }

    /// Settles a claimed call. False when the claim had lapsed (another replica has the
    /// call now): nothing was recorded.
    ///
    /// # Errors
    /// [`crate::Error::Redis`].
    pub(crate) async fn complete(
        &self,
        call: &ClaimedCall,
        token: &str,
        ok: bool,
        detail: &str,
        actor: &str,
    ) -> Result<bool> {
        let k = &self.ledger.keys;
        let reply = HOOK_COMPLETE
            .key(k.hooks_running())
            .key(k.worker_events())
            .key(k.hooks_settled())
            .arg(k.hook_call_prefix())
            .arg(&call.key)
            .arg(token)
            .arg(if ok { "ok" } else { "failed" })
            .arg(detail)
            .arg(self.ledger.config().events_max_len)
            .arg(actor)
            .arg(k.worker_prefix())
            .arg(k.hooks_terminated_prefix())
            .run(&mut self.ledger.conn.clone())
            .await?;
        match reply.status() {
            "ok" => Ok(true),
            "stale" => Ok(false),
            _ => Err(reply.unexpected()),
        }
    }
}
