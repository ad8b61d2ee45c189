//! What operators see and do with resources (the list, one resource, force-release), and
//! the release that follows every attempt-ending call of the library.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use redis::AsyncCommands;

use super::super::{AttemptToken, Ledger};
use super::{Holder, MAX_RELEASE_REASON, Resource};
use crate::error::{Error, Result};
use crate::scripts::{RESOURCE_EVENT, RESOURCE_FREE_ENDED};
use crate::state::ms_to_time;

/// A unit the fenced release freed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Freed {
    pub(crate) resource: String,
    pub(crate) attempt: u32,
    pub(crate) since: DateTime<Utc>,
}

impl Ledger {
    /// Every resource held now, by name, with its capacity and holders (a resource
    /// nobody holds is not stored: its capacity is set again by the next acquire). Reads
    /// only: one round trip for the names, one pipelined for the resources.
    ///
    /// # Errors
    /// [`Error::Redis`] and the like.
    pub async fn resources(&self) -> Result<Vec<Resource>> {
        let mut conn = self.conn.clone();
        let mut names: Vec<String> = conn.smembers(self.keys.resource_names()).await?;
        names.sort();
        let mut pipe = redis::pipe();
        for name in &names {
            pipe.hgetall(self.keys.resource(name));
        }
        let all: Vec<HashMap<String, String>> = if names.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn).await?
        };
        let now = Utc::now();
        names
            .into_iter()
            .zip(all)
            .filter(|(_, fields)| !fields.is_empty())
            .map(|(name, fields)| parse_resource(name, &fields, now))
            .collect()
    }

    /// One resource with its holders; `None` when nobody holds it.
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad name.
    pub async fn resource(&self, name: &str) -> Result<Option<Resource>> {
        crate::names::validate_resource(name)?;
        let fields: HashMap<String, String> =
            self.conn.clone().hgetall(self.keys.resource(name)).await?;
        if fields.is_empty() {
            return Ok(None);
        }
        parse_resource(name.to_owned(), &fields, Utc::now()).map(Some)
    }

    /// An operator frees the unit of `resource` that execution `queue`/`id` holds,
    /// whatever its attempt, with a reason recorded in a `resource_force_released` event.
    /// Returns the attempt that held it; `None` when it held none (nothing written).
    ///
    /// # Errors
    /// [`Error::InvalidName`] for a bad resource, queue or id; [`Error::InvalidArgument`]
    /// for an empty reason or one longer than [`MAX_RELEASE_REASON`] bytes (nothing
    /// written).
    pub async fn force_release(
        &self,
        resource: &str,
        queue: &str,
        id: &str,
        reason: &str,
    ) -> Result<Option<u32>> {
        crate::names::validate_resource(resource)?;
        crate::names::validate_queue(queue)?;
        crate::names::validate_execution_id(id)?;
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_RELEASE_REASON {
            return Err(Error::InvalidArgument {
                name: "reason".into(),
                value: reason.chars().take(80).collect(),
                expected: format!("1 to {MAX_RELEASE_REASON} bytes saying why"),
            });
        }
        let freed = self.release_units(queue, id, None, resource).await?;
        let Some(unit) = freed.first() else {
            return Ok(None);
        };
        let detail = format!("{resource} force-released by an operator: {reason}");
        self.resource_event(queue, id, unit.attempt, "resource_force_released", &detail)
            .await?;
        Ok(Some(unit.attempt))
    }

    /// After an attempt script: frees the attempt's units unless the script refused the
    /// call with the attempt still current (a token never issued, bad input).
    pub(crate) async fn free_if_ended(
        &self,
        reply: &crate::scripts::Reply,
        token: &AttemptToken,
        how: &str,
    ) -> Result<()> {
        let status = reply.status();
        let refused = ["mismatch", "missing", "too_long", "not_requested"].contains(&status)
            || status.starts_with("bad_");
        if refused {
            return Ok(());
        }
        self.free_after_attempt(token, how).await
    }

    /// Frees every unit the attempt `token` names still holds, once the attempt ended
    /// (`how` says how, for the event). Never fails the call that ended the attempt: an
    /// error is logged and the unit left to the watchdog's sweep.
    pub(crate) async fn free_after_attempt(&self, token: &AttemptToken, how: &str) -> Result<()> {
        let (maxlen, _) = self.limits();
        let ended = [(token.queue.as_str(), token.id.as_str(), token.attempt)];
        free_ended(&self.conn, &self.keys, maxlen, &ended, how).await;
        Ok(())
    }
}

/// Frees, in one script call, the units the `ended` attempts (queue, id, attempt) still
/// hold, and records a `resource_freed` event for each; `how` ends the event's detail. An
/// error is logged, not returned: the attempts did end, and the watchdog's sweep frees
/// what this could not.
pub(crate) async fn free_ended(
    conn: &crate::conn::Connection,
    keys: &crate::keys::Keyspace,
    maxlen: &str,
    ended: &[(&str, &str, u32)],
    how: &str,
) {
    if ended.is_empty() {
        return;
    }
    let mut call = RESOURCE_FREE_ENDED.key(keys.resource_names());
    call.arg(keys.resource_prefix())
        .arg(keys.resources_of_prefix())
        .arg(keys.resource_holders_prefix());
    for (queue, id, attempt) in ended {
        call.arg(crate::keys::Keyspace::member(queue, id))
            .arg(*attempt)
            .arg(keys.partition_of(queue));
    }
    let freed = async {
        let reply = call.run(&mut conn.clone()).await?;
        if reply.status() != "ok" {
            return Err(reply.unexpected());
        }
        let n = reply.usize(1)?;
        let mut units = Vec::with_capacity(n);
        for i in 0..n {
            let at = 2 + 4 * i;
            let (queue, id) = reply
                .str(at)?
                .split_once('/')
                .ok_or_else(|| reply.unexpected())?;
            units.push((
                queue.to_owned(),
                id.to_owned(),
                reply.str(at + 1)?.to_owned(),
                reply.u32(at + 2)?,
            ));
        }
        Ok(units)
    }
    .await;
    let units = match freed {
        Ok(units) => units,
        Err(error) => {
            tracing::warn!(%error, "freeing the resources of ended attempts failed; the watchdog's sweep will");
            return;
        }
    };
    for (queue, id, resource, attempt) in units {
        let detail = format!("{resource} freed: its attempt {how}");
        let emitted = RESOURCE_EVENT
            .key(keys.execution(&queue, &id))
            .key(keys.queue_events(&queue))
            .arg(attempt)
            .arg("")
            .arg("resource_freed")
            .arg(&detail)
            .arg(maxlen)
            .run(&mut conn.clone())
            .await;
        if let Err(error) = emitted {
            tracing::warn!(%error, queue, id, "recording a resource_freed event failed");
        }
    }
}

/// A resource hash read back: `cap`, then `<queue>/<id>` → `<attempt>|<since>|<expires>|
/// <partition>`. Units past their ttl are left out (they count as free).
fn parse_resource(
    name: String,
    fields: &HashMap<String, String>,
    now: DateTime<Utc>,
) -> Result<Resource> {
    let bad = |detail: String| Error::Protocol {
        script: "resource_acquire",
        detail,
    };
    let capacity = fields
        .get("cap")
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad(format!("resource {name} has no capacity")))?;
    let mut holders = Vec::new();
    for (member, value) in fields {
        let Some((queue, id)) = member.split_once('/') else {
            continue;
        };
        let parts: Vec<&str> = value.split('|').collect();
        let [attempt, since, expires, _partition] = parts[..] else {
            return Err(bad(format!("holder {member} of {name}: {value:?}")));
        };
        let num = |s: &str| {
            s.parse::<i64>()
                .map_err(|_| bad(format!("holder {member} of {name}: {value:?}")))
        };
        let expires_at = match num(expires)? {
            0 => None,
            ms => Some(ms_to_time(ms)?),
        };
        if expires_at.is_some_and(|at| at <= now) {
            continue;
        }
        holders.push(Holder {
            queue: queue.to_owned(),
            id: id.to_owned(),
            attempt: u32::try_from(num(attempt)?)
                .map_err(|_| bad(format!("holder {member} of {name}: {value:?}")))?,
            since: ms_to_time(num(since)?)?,
            expires_at,
        });
    }
    holders.sort_by(|a, b| a.since.cmp(&b.since).then(a.id.cmp(&b.id)));
    Ok(Resource {
        resource: name,
        capacity,
        held: u32::try_from(holders.len()).unwrap_or(u32::MAX),
        holders,
    })
}
