//! `acquire` and `release`: a worker takes and gives back a unit of a resource for the
//! attempt its token names.

use std::time::Duration;

use tokio::time::Instant;

use super::super::attempt::refusal;
use super::super::{AttemptToken, Ledger};
use super::{Acquire, AcquireOutcome, Holder, MAX_RESOURCE_CAPACITY, MAX_RESOURCE_TTL};
use crate::error::{Error, Result};
use crate::keys::Keyspace;
use crate::scripts::{RESOURCE_ACQUIRE, RESOURCE_EVENT, RESOURCE_RELEASE, Reply};
use crate::state::ms_to_time;

/// How often a waiting acquire asks again, at first and at most (doubling in between).
const POLL_FIRST: Duration = Duration::from_millis(20);
const POLL_MAX: Duration = Duration::from_millis(250);

/// What one try of the acquire script answered.
enum Try {
    Done(AcquireOutcome),
    Busy(Error),
}

impl Ledger {
    /// Takes one unit of `acquire.resource` for the attempt `token` names. The unit is
    /// held until [`release`](Self::release), its ttl, or the end of the attempt (any end:
    /// complete, fail, snooze, await, cancel, a watchdog remediation, a crash), whichever
    /// comes first. Acquiring again in the same attempt refreshes the ttl; a later attempt
    /// of the same execution takes over the unit of an earlier one. When every unit is
    /// held it waits up to `acquire.wait` (asking again every 20–250 ms), then refuses
    /// with who holds them. Three round trips: the token check on the execution's
    /// partition, the acquire on the resources' hash tag, the event (which checks again
    /// that the attempt is current; if it ended in between, the unit is released and the
    /// refusal returned).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad resource name; [`Error::InvalidArgument`] for a
    /// capacity of 0 or above [`MAX_RESOURCE_CAPACITY`], a ttl of 0, of a fraction of a
    /// millisecond or above [`MAX_RESOURCE_TTL`], a wait above
    /// [`MAX_CLAIM_WAIT`](super::super::MAX_CLAIM_WAIT) (nothing written);
    /// [`Error::ResourceBusy`] when every unit is held (after the wait);
    /// [`Error::ResourceCapacity`] for a different capacity while units are held;
    /// [`Error::NotFound`], [`Error::TokenMismatch`].
    pub async fn acquire(&self, token: &AttemptToken, acquire: Acquire) -> Result<AcquireOutcome> {
        crate::names::validate_resource(&acquire.resource)?;
        if let Some(c) = acquire.capacity
            && !(1..=MAX_RESOURCE_CAPACITY).contains(&c)
        {
            return Err(Error::InvalidArgument {
                name: "capacity".into(),
                value: c.to_string(),
                expected: format!("an integer from 1 to {MAX_RESOURCE_CAPACITY}"),
            });
        }
        let ttl = match acquire.ttl {
            None => 0,
            Some(d) => {
                let ms = crate::timings::millis::ms(d);
                if ms == 0 || d > MAX_RESOURCE_TTL || !d.subsec_nanos().is_multiple_of(1_000_000) {
                    return Err(Error::InvalidArgument {
                        name: "ttl".into(),
                        value: crate::error::format_duration(d),
                        expected: "a whole number of milliseconds from 1ms to 24h".into(),
                    });
                }
                ms
            }
        };
        if acquire.wait > super::super::MAX_CLAIM_WAIT {
            return Err(Error::InvalidArgument {
                name: "wait".into(),
                value: crate::error::format_duration(acquire.wait),
                expected: "at most 30s".into(),
            });
        }
        if let Some(refused) = self.resource_check(token, "", "").await? {
            return Ok(refused);
        }
        let deadline = Instant::now() + acquire.wait;
        let mut pause = POLL_FIRST;
        loop {
            match self.try_acquire(token, &acquire, ttl).await? {
                Try::Done(outcome) => return Ok(outcome),
                Try::Busy(busy) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(busy);
                    }
                    tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
            }
        }
    }

    async fn try_acquire(&self, token: &AttemptToken, acquire: &Acquire, ttl: u64) -> Result<Try> {
        let k = &self.keys;
        let partition = k.partition_of(&token.queue);
        let member = Keyspace::member(&token.queue, &token.id);
        let reply = RESOURCE_ACQUIRE
            .key(k.resource(&acquire.resource))
            .key(k.resource_names())
            .key(k.resources_of(&token.queue, &token.id))
            .key(k.resource_holders(partition))
            .arg(&acquire.resource)
            .arg(&member)
            .arg(token.attempt)
            .arg(acquire.capacity.map(|c| c.to_string()).unwrap_or_default())
            .arg(ttl)
            .arg(partition)
            .arg(k.resource_holders_prefix())
            .arg(k.resources_of_prefix())
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" => {}
            "busy" => {
                return Ok(Try::Busy(Error::ResourceBusy {
                    resource: acquire.resource.clone(),
                    capacity: reply.u32(1)?,
                    holders: holders(&reply, 3)?,
                }));
            }
            "capacity" => {
                return Err(Error::ResourceCapacity {
                    resource: acquire.resource.clone(),
                    capacity: reply.u32(1)?,
                    requested: acquire.capacity.unwrap_or(1),
                    held: reply.u32(2)?,
                });
            }
            "newer" => {
                return Err(Error::TokenMismatch {
                    queue: token.queue.clone(),
                    id: token.id.clone(),
                    current_attempt: reply.u32(1)?,
                });
            }
            _ => return Err(reply.unexpected()),
        }
        let capacity = reply.u32(1)?;
        let held = reply.u32(2)?;
        let expires_at = match reply.i64(3)? {
            0 => None,
            ms => Some(ms_to_time(ms)?),
        };
        let detail = format!(
            "{} ({} of {capacity} held{})",
            acquire.resource,
            held,
            match expires_at {
                Some(at) => format!(", ttl until {}", at.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
                None => String::new(),
            }
        );
        // The event, which checks once more that the attempt is current: if it ended
        // since the first check, the unit goes back at once.
        if let Some(refused) = self
            .resource_check(token, "resource_acquired", &detail)
            .await?
        {
            self.release_units(
                &token.queue,
                &token.id,
                Some(token.attempt),
                &acquire.resource,
            )
            .await?;
            return Ok(Try::Done(refused));
        }
        Ok(Try::Done(AcquireOutcome::Acquired {
            resource: acquire.resource.clone(),
            capacity,
            held,
            expires_at,
        }))
    }

    /// Gives back the unit of `resource` the attempt `token` names holds. Fenced: frees
    /// only a unit held by exactly that attempt, so the release of an attempt that is
    /// over never frees the unit a later attempt holds. Idempotent: `false` when the
    /// attempt held none (never acquired, released already, or freed when it ended). Two
    /// round trips (the release, then the token check and event on the partition).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad resource name; [`Error::NotFound`],
    /// [`Error::TokenMismatch`] (nothing freed).
    pub async fn release(&self, token: &AttemptToken, resource: &str) -> Result<bool> {
        crate::names::validate_resource(resource)?;
        // A token that was never issued frees nothing; one whose attempt is over may
        // free what that attempt still holds (it is not current: freeing it is right).
        let _: Option<AcquireOutcome> = self.resource_check(token, "", "").await?;
        let freed = self
            .release_units(&token.queue, &token.id, Some(token.attempt), resource)
            .await?;
        if freed.is_empty() {
            return Ok(false);
        }
        let detail = format!("{resource} released by its holder");
        self.resource_event(
            &token.queue,
            &token.id,
            token.attempt,
            "resource_released",
            &detail,
        )
        .await?;
        Ok(true)
    }

    /// Checks `token` on the execution's partition and, with a `reason`, records that
    /// resource event there. `Some` refusal when the attempt is over.
    pub(super) async fn resource_check(
        &self,
        token: &AttemptToken,
        reason: &str,
        detail: &str,
    ) -> Result<Option<AcquireOutcome>> {
        let (maxlen, _) = self.limits();
        let reply = RESOURCE_EVENT
            .key(self.keys.execution(&token.queue, &token.id))
            .key(self.keys.queue_events(&token.queue))
            .arg(token.attempt)
            .arg(&token.nonce)
            .arg(reason)
            .arg(detail)
            .arg(maxlen)
            .run(&mut self.conn.clone())
            .await?;
        if let Some(refused) = refusal(&reply, token)? {
            return Ok(Some(refused));
        }
        match reply.status() {
            "ok" => Ok(None),
            _ => Err(reply.unexpected()),
        }
    }

    /// Records a resource event in the execution's partition without a token check (the
    /// sweep, an operator, the release after an attempt's end). An execution that is
    /// gone records nothing.
    pub(crate) async fn resource_event(
        &self,
        queue: &str,
        id: &str,
        attempt: u32,
        reason: &str,
        detail: &str,
    ) -> Result<()> {
        let (maxlen, _) = self.limits();
        let reply = RESOURCE_EVENT
            .key(self.keys.execution(queue, id))
            .key(self.keys.queue_events(queue))
            .arg(attempt)
            .arg("")
            .arg(reason)
            .arg(detail)
            .arg(maxlen)
            .run(&mut self.conn.clone())
            .await?;
        match reply.status() {
            "ok" | "gone" => Ok(()),
            _ => Err(reply.unexpected()),
        }
    }

    /// Runs the fenced release: `attempt` `Some(n)` frees units held by exactly attempt
    /// n, `None` whatever attempt holds them; `resource` `""` means every resource the
    /// execution holds. Returns what was freed.
    pub(crate) async fn release_units(
        &self,
        queue: &str,
        id: &str,
        attempt: Option<u32>,
        resource: &str,
    ) -> Result<Vec<super::Freed>> {
        self.release_units_mode(queue, id, attempt, resource, false)
            .await
    }

    pub(crate) async fn release_units_mode(
        &self,
        queue: &str,
        id: &str,
        attempt: Option<u32>,
        resource: &str,
        expired_only: bool,
    ) -> Result<Vec<super::Freed>> {
        let k = &self.keys;
        let mode = match (attempt, expired_only) {
            (None, _) => "any",
            (Some(_), true) => "expired",
            (Some(_), false) => "exact",
        };
        let reply = RESOURCE_RELEASE
            .key(k.resources_of(queue, id))
            .key(k.resource_names())
            .key(k.resource_holders(k.partition_of(queue)))
            .arg(k.resource_prefix())
            .arg(Keyspace::member(queue, id))
            .arg(attempt.map(|a| a.to_string()).unwrap_or_default())
            .arg(mode)
            .arg(resource)
            .run(&mut self.conn.clone())
            .await?;
        if reply.status() != "ok" {
            return Err(reply.unexpected());
        }
        let n = reply.usize(1)?;
        (0..n)
            .map(|i| {
                Ok(super::Freed {
                    resource: reply.str(2 + 3 * i)?.to_owned(),
                    attempt: reply.u32(3 + 3 * i)?,
                    since: reply.time(4 + 3 * i)?,
                })
            })
            .collect()
    }
}

/// The holders in a reply from word `from` on: member, attempt, since, expires.
fn holders(reply: &Reply, from: usize) -> Result<Vec<Holder>> {
    let mut out = Vec::new();
    let mut i = from;
    while i + 3 < reply.len() {
        let (queue, id) = reply
            .str(i)?
            .split_once('/')
            .ok_or_else(|| reply.unexpected())?;
        let expires = reply.i64(i + 3)?;
        out.push(Holder {
            queue: queue.to_owned(),
            id: id.to_owned(),
            attempt: reply.u32(i + 1)?,
            since: reply.time(i + 2)?,
            expires_at: if expires == 0 {
                None
            } else {
                Some(ms_to_time(expires)?)
            },
        });
        i += 4;
    }
    out.sort_by_key(|h| h.since);
    Ok(out)
}
