//! The supervisor in the worker registry: its heartbeats, and what their replies ask of
//! it (tier 1 of worker remediation: restart, drain).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::records::Records;
use crate::error::Error;
use crate::ledger::{Ledger, WorkerRequest};
use crate::runner::worker::Identity;

/// How the registry task passes on what the watchdog asks (tier 1).
pub(super) struct Requested {
    /// Stops everything: a restart request.
    pub(super) stop: CancellationToken,
    /// Stops claiming only: a drain request.
    pub(super) claiming: CancellationToken,
    /// The first request seen.
    pub(super) asked: Arc<std::sync::Mutex<Option<WorkerRequest>>>,
}

impl Requested {
    fn honour(&self, request: WorkerRequest, worker: &str) {
        let mut asked = self
            .asked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if asked.is_some() {
            return;
        }
        *asked = Some(request);
        tracing::warn!(%worker, %request, "the watchdog asks this supervisor to {request}");
        match request {
            WorkerRequest::Restart => self.stop.cancel(),
            WorkerRequest::Drain => self.claiming.cancel(),
        }
    }
}

/// Tells the worker registry the supervisor is alive and which executions it runs, and
/// honours what the reply asks (restart, drain). If the registry forgot it (judged gone
/// after a long pause), it registers again under a fresh id, as the Rust runner does.
pub(super) async fn beat_registry(
    ledger: Ledger,
    identity: Arc<Identity>,
    records: Arc<Records>,
    interval: Duration,
    stop: CancellationToken,
    requested: Requested,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let worker_id = identity.worker_id();
        match ledger.worker_beat(&worker_id, &records.running()).await {
            Ok(beat) => {
                if let Some(request) = beat.request {
                    requested.honour(request, &worker_id);
                }
            }
            Err(Error::UnknownWorker { .. }) => {
                let fresh = identity.renewal();
                match ledger.register_worker(&fresh).await {
                    Ok(_) => {
                        tracing::warn!(old = %worker_id, new = %fresh.worker_id, "the worker registry forgot this supervisor; registered again");
                        identity.adopt(fresh.worker_id);
                    }
                    Err(e) => {
                        tracing::warn!(worker = %worker_id, error = %e, "re-registration failed")
                    }
                }
            }
            Err(e) => tracing::warn!(worker = %worker_id, error = %e, "worker heartbeat failed"),
        }
    }
}
