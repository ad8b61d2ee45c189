//! `retry`: run a finished execution again, as a new execution linked to it
//! (`lua/retry.lua`). Terminal executions never change; the new one carries the
//! original's payload, timings and last checkpoint, and names it as `retry_of`.

use redis::AsyncCommands;

use super::{Enqueued, Ledger, State};
use crate::error::{Error, Result};
use crate::keys::{Keyspace, Timer};
use crate::names;
use crate::scripts::RETRY;

impl Ledger {
    /// Queues a new execution that runs the finished (failed, dead, timed_out or
    /// cancelled) execution `queue`/`id` again, with its payload, resolved timings and
    /// last checkpoint; the new one's `retry_of` names the original, whose `retries` list
    /// it joins. `new_id` defaults to `<id>.retry<n>`. Idempotent on the new id: the same
    /// retry again returns it (`created` false). `why` is recorded in the event.
    ///
    /// # Errors
    /// [`Error::NotFound`]; [`Error::InvalidTransition`] when the execution has not
    /// finished, or finished `succeeded`, or `new_id` names another execution;
    /// [`Error::InvalidName`].
    pub async fn retry(
        &self,
        queue: &str,
        id: &str,
        new_id: Option<&str>,
        why: &str,
    ) -> Result<Enqueued> {
        names::validate_queue(queue)?;
        names::validate_execution_id(id)?;
        let k = &self.keys;
        let new_id = match new_id {
            Some(n) => n.to_owned(),
            None => {
                let made: usize = self.conn.clone().zcard(k.retries(queue, id)).await?;
                let base: String = id.chars().take(names::MAX_NAME_LEN - 12).collect();
                format!("{base}.retry{}", made + 1)
            }
        };
        names::validate_execution_id(&new_id)?;
        self.check_size("reason", why.len())?;
        let (maxlen, hist) = self.limits();
        let reply = RETRY
            .key(k.execution(queue, id))
            .key(k.retries(queue, id))
            .key(k.execution(queue, &new_id))
            .key(k.pending(queue))
            .key(k.queue_timer(queue, Timer::Deadline))
            .key(k.queue_events(queue))
            .key(k.queues(k.partition_of(queue)))
            .arg(queue)
            .arg(&new_id)
            .arg(Keyspace::member(queue, &new_id))
            .arg(Keyspace::member(queue, id))
            .arg(maxlen)
            .arg(hist)
            .arg(why)
            .run(&mut self.conn.clone())
            .await?;
        let refuse = |reason: String| Error::InvalidTransition {
            operation: "retry",
            queue: queue.into(),
            id: id.into(),
            reason,
        };
        let created = match reply.status() {
            "ok" => true,
            "exists" => false,
            "missing" => {
                return Err(Error::NotFound {
                    queue: queue.into(),
                    id: id.into(),
                });
            }
            "not_finished" => {
                let state = reply.str(1)?;
                return Err(refuse(if state == State::Succeeded.as_str() {
                    "it succeeded; only failed, dead, timed_out or cancelled executions are retried"
                        .into()
                } else {
                    format!("it is {state}, not finished; retry runs finished executions again")
                }));
            }
            "taken" => {
                return Err(refuse(format!(
                    "the new id {new_id:?} names another execution"
                )));
            }
            _ => return Err(reply.unexpected()),
        };
        let (state, attempt) = if created {
            (State::Queued, 0)
        } else {
            (reply.state(2)?, reply.u32(3)?)
        };
        Ok(Enqueued {
            queue: queue.into(),
            id: new_id,
            created,
            conflict: false,
            state,
            attempt,
            created_at: reply.time(1)?,
        })
    }
}
