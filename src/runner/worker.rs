//! Who a worker is in the worker registry, and which attempts a runner holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use super::job::AttemptState;
use tokio_util::sync::CancellationToken;

use crate::ledger::{WorkerRegistration, WorkerRequest};
use crate::names::MAX_NAME_LEN;

/// The runner's registration; the pump renews it under a fresh id when the registry
/// forgets the worker.
pub(crate) struct Identity {
    registration: WorkerRegistration,
    current: Mutex<Current>,
    renewals: AtomicU32,
    /// What the watchdog asked in a registry heartbeat reply (the first request wins).
    request: Mutex<Option<WorkerRequest>>,
    /// Fires once a request came.
    asked: CancellationToken,
}

/// The id in use, and a signal that fires when a renewal replaces it.
struct Current {
    worker_id: String,
    replaced: CancellationToken,
}

impl Identity {
    pub(crate) fn new(registration: WorkerRegistration) -> Self {
        Self {
            current: Mutex::new(Current {
                worker_id: registration.worker_id.clone(),
                replaced: CancellationToken::new(),
            }),
            registration,
            renewals: AtomicU32::new(0),
            request: Mutex::new(None),
            asked: CancellationToken::new(),
        }
    }

    /// Records what a registry heartbeat reply asked; the first request wins.
    pub(crate) fn ask(&self, request: WorkerRequest) {
        let mut current = self.request.lock().unwrap_or_else(PoisonError::into_inner);
        if current.is_none() {
            tracing::warn!(worker = %self.worker_id(), %request, "the watchdog asks this worker to {request}");
            *current = Some(request);
            self.asked.cancel();
        }
    }

    /// What the watchdog asked, if anything.
    pub(crate) fn request(&self) -> Option<WorkerRequest> {
        *self.request.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fires once the watchdog asked something.
    pub(crate) fn asked(&self) -> &CancellationToken {
        &self.asked
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The id to claim and heartbeat under now.
    pub(crate) fn worker_id(&self) -> String {
        self.current().worker_id.clone()
    }

    /// The id to claim under now, and a signal that fires once it is replaced: a long
    /// poll waiting under an id the registry forgot must end, or what it claims would be
    /// held by a worker the watchdog counts as gone.
    pub(crate) fn claiming_as(&self) -> (String, CancellationToken) {
        let current = self.current();
        (current.worker_id.clone(), current.replaced.clone())
    }

    /// The next fresh registration: the first id with `.r<n>` appended, never used before
    /// as long as the first one was unique.
    pub(crate) fn renewal(&self) -> WorkerRegistration {
        let n = self.renewals.fetch_add(1, Ordering::SeqCst) + 1;
        let suffix = format!(".r{n}");
        let base = &self.registration.worker_id;
        // Worker ids are ASCII (validated at registration), so any byte index is a boundary.
        let keep = base.len().min(MAX_NAME_LEN - suffix.len());
        WorkerRegistration {
            worker_id: format!("{}{suffix}", &base[..keep]),
            ..self.registration.clone()
        }
    }

    pub(crate) fn adopt(&self, worker_id: String) {
        let old = std::mem::replace(
            &mut *self.current(),
            Current {
                worker_id,
                replaced: CancellationToken::new(),
            },
        );
        old.replaced.cancel();
    }
}

/// The attempts the runner holds, by token text. Listed in worker heartbeats until their
/// outcome is recorded, so the watchdog never takes an execution the runner still works on.
#[derive(Default)]
pub(crate) struct InFlight(Mutex<HashMap<String, Arc<AttemptState>>>);

impl InFlight {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<AttemptState>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn insert(&self, attempt: Arc<AttemptState>) {
        self.map().insert(attempt.token.to_string(), attempt);
    }

    pub(crate) fn remove(&self, attempt: &AttemptState) {
        self.map().remove(&attempt.token.to_string());
    }

    pub(crate) fn all(&self) -> Vec<Arc<AttemptState>> {
        self.map().values().cloned().collect()
    }

    /// `(queue, id)` of every attempt still ours, for the worker heartbeat.
    pub(crate) fn running(&self) -> Vec<(String, String)> {
        let mut running: Vec<(String, String)> = self
            .map()
            .values()
            .filter(|a| !a.is_lost())
            .map(|a| {
                (
                    a.token.queue().to_owned(),
                    a.token.execution_id().to_owned(),
                )
            })
            .collect();
        running.sort();
        running.dedup();
        running
    }
}
