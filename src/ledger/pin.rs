//! Pinning: an execution retention never removes, whatever its state and age.

use super::{Ledger, State};
use crate::error::{Error, Result};
use crate::names;
use crate::scripts::PIN;

impl Ledger {
    /// Pins an execution: retention (time to live and the queue's cap) never removes it.
    /// Any state; pinning twice is the same as once. Returns its state.
    ///
    /// # Errors
    /// [`Error::NotFound`] (also once retention removed it), [`Error::InvalidName`],
    /// [`Error::Redis`].
    pub async fn pin(&self, queue: &str, id: &str) -> Result<State> {
        self.set_pin(queue, id, true).await
    }

    /// Unpins an execution: retention applies to it again (when it is past its retention,
    /// the next prune removes it). Returns its state.
    ///
    /// # Errors
    /// As [`pin`](Self::pin).
    pub async fn unpin(&self, queue: &str, id: &str) -> Result<State> {
        self.set_pin(queue, id, false).await
    }

    async fn set_pin(&self, queue: &str, id: &str, pin: bool) -> Result<State> {
        names::validate_queue(queue)?;
        names::validate_execution_id(id)?;
        let k = &self.keys;
        let reply = PIN
            .key(k.execution(queue, id))
            .arg(if pin { "1" } else { "0" })
            .arg(k.finished(queue, ""))
            .arg(id)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => reply.state(1),
            "missing" => Err(Error::NotFound {
                queue: queue.into(),
                id: id.into(),
            }),
            _ => Err(reply.unexpected()),
        }
    }
}
