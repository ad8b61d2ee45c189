//! Resource leases: one unit of a named resource (a tool, a worktree, an API key) held by
//! one attempt of one execution, given back by the holder or freed when its attempt ends
//! (`lua/resource_acquire.lua`, `lua/resource_release.lua`, `lua/resource_event.lua`).
//!
//! # Layout
//! - `mod.rs`: the types ([`Acquire`], [`Holder`], [`Resource`], [`AcquireOutcome`]).
//! - `acquire.rs`: [`Ledger::acquire`] and [`Ledger::release`] (worker calls).
//! - `view.rs`: [`Ledger::resources`], [`Ledger::resource`], [`Ledger::force_release`] and
//!   the release that follows an attempt's end (operator and library calls).
//! - the watchdog's sweep: `src/watchdog/resources.rs`.
//!
//! Resources live under their own hash tag (`{<namespace>:resources}`), not a partition's:
//! a resource is shared by executions of many queues. So every operation is two fenced
//! scripts — one on the resource tag, one on the execution's partition (the token check
//! and the event) — and a unit whose attempt ended between the two is freed by the release
//! that follows every attempt-ending call or, failing that (a crash, a watchdog
//! remediation), by the watchdog's sweep within one round.

mod acquire;
mod view;

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::attempt::{Refusals, attempt_outcome, next_claim};
use super::{AttemptRefused, State, StopReason};

pub(crate) use view::{Freed, free_ended};

/// Longest ttl of a unit: a day. A holder that needs longer re-acquires (which refreshes
/// its ttl) or takes none: its unit is freed when its attempt ends anyway.
pub const MAX_RESOURCE_TTL: Duration = Duration::from_secs(24 * 3600);

/// Largest capacity of a resource.
pub const MAX_RESOURCE_CAPACITY: u32 = 10_000;

/// Longest reason of a force-release, in bytes.
pub const MAX_RELEASE_REASON: usize = 1024;

/// What [`Ledger::acquire`](super::Ledger::acquire) asks for: a unit of `resource`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquire {
    /// The resource's name (queue-name rules).
    pub resource: String,
    /// Units the resource has: sets it when nobody holds it; while held, a different
    /// capacity is refused ([`Error::ResourceCapacity`](crate::Error::ResourceCapacity)).
    /// `None`: as set, or 1 for a resource nobody holds.
    pub capacity: Option<u32>,
    /// The unit is freed this long after the acquire even if the attempt goes on; `None`:
    /// held until released or the attempt ends.
    pub ttl: Option<Duration>,
    /// How long to wait for a unit when all are held (0: answer at once).
    pub wait: Duration,
}

impl Acquire {
    /// One unit of `resource`, capacity as set (1 for a new resource), no ttl, no wait.
    pub fn new(resource: impl Into<String>) -> Self {
        Self {
            resource: resource.into(),
            capacity: None,
            ttl: None,
            wait: Duration::ZERO,
        }
    }

    /// Sets the capacity (see [`Acquire::capacity`](Self#structfield.capacity)).
    #[must_use]
    pub fn capacity(mut self, units: u32) -> Self {
        self.capacity = Some(units);
        self
    }

    /// Frees the unit after `ttl` whatever the attempt does.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Waits up to `wait` for a unit when all are held.
    #[must_use]
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
}

/// Who holds a unit of a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Holder {
    /// The queue of the holding execution.
    pub queue: String,
    /// The holding execution.
    pub id: String,
    /// Its attempt that holds the unit.
    pub attempt: u32,
    /// When the unit was acquired.
    pub since: DateTime<Utc>,
    /// When the unit is freed whatever the attempt does (its ttl); absent: no ttl.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// A resource and its holders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "server", derive(utoipa::ToSchema))]
pub struct Resource {
    /// Its name.
    pub resource: String,
    /// Units it has.
    pub capacity: u32,
    /// Units held now (units past their ttl not counted).
    pub held: u32,
    /// Who holds them, oldest first.
    pub holders: Vec<Holder>,
}

attempt_outcome! {
    /// The outcome of [`Ledger::acquire`](super::Ledger::acquire).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum AcquireOutcome {
        /// The attempt holds a unit (acquired now, or again: its ttl refreshed).
        Acquired {
            /// The resource.
            resource: String,
            /// Its capacity.
            capacity: u32,
            /// Units held now, this one included.
            held: u32,
            /// When the unit's ttl ends; `None`: no ttl.
            expires_at: Option<DateTime<Utc>>,
        },
    }
}

impl Refusals for AcquireOutcome {
    fn stale(current_attempt: u32, state: State) -> Self {
        AcquireOutcome::StaleAttempt {
            current_attempt,
            state,
        }
    }
    fn terminal(state: State, stop_reason: StopReason) -> Self {
        AcquireOutcome::AlreadyTerminal { state, stop_reason }
    }
}

impl AcquireOutcome {
    /// The refusal, when the call was refused because the attempt is over.
    pub fn refusal(&self) -> Option<AttemptRefused> {
        match self {
            AcquireOutcome::StaleAttempt {
                current_attempt,
                state,
            } => Some(AttemptRefused::Stale {
                current_attempt: *current_attempt,
                state: *state,
            }),
            AcquireOutcome::AlreadyTerminal { state, stop_reason } => {
                Some(AttemptRefused::Terminal {
                    state: *state,
                    stop_reason: stop_reason.clone(),
                })
            }
            AcquireOutcome::Acquired { .. } => None,
        }
    }

    /// For a stale attempt whose retry waits in the queue, the attempt its claim gives.
    pub fn next_attempt(&self) -> Option<u32> {
        match self {
            AcquireOutcome::StaleAttempt {
                current_attempt,
                state,
            } => next_claim(*current_attempt, *state),
            _ => None,
        }
    }
}
