//! The resource lease metrics: units held by resource (sampled from the resources' keys)
//! and units acquired and freed by resource and how, counted from the events by the
//! replica holding the event's partition (so summing over processes counts each once).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::metrics::Labels;
use crate::events::Event;
use crate::ledger::Ledger;

pub(crate) struct ResourceMetrics {
    held: Family<Labels, Gauge>,
    capacity: Family<Labels, Gauge>,
    acquisitions: Family<Labels, Counter>,
    releases: Family<Labels, Counter>,
}

impl ResourceMetrics {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let held = Family::<Labels, Gauge>::default();
        registry.register(
            "resource_units_held",
            "Units of each resource held now (resource leases; sampled)",
            held.clone(),
        );
        let capacity = Family::<Labels, Gauge>::default();
        registry.register(
            "resource_capacity",
            "Capacity of each resource held now (sampled)",
            capacity.clone(),
        );
        let acquisitions = Family::<Labels, Counter>::default();
        registry.register(
            "resource_acquisitions",
            "Units of a resource acquired (resource_acquired events, a refresh included)",
            acquisitions.clone(),
        );
        let releases = Family::<Labels, Counter>::default();
        registry.register(
            "resource_releases",
            "Units of a resource freed, by how: released (by the holder), attempt_ended \
             (after the attempt's end), swept (by the watchdog's sweep), forced (an operator)",
            releases.clone(),
        );
        Self {
            held,
            capacity,
            acquisitions,
            releases,
        }
    }

    /// Counts one resource event (its detail starts with the resource's name).
    pub(super) fn observe(&self, e: &Event) {
        let resource = e.detail.split(' ').next().unwrap_or("").to_owned();
        let how = match e.reason.as_str() {
            "resource_acquired" => {
                self.acquisitions
                    .get_or_create(&vec![("resource", resource)])
                    .inc();
                return;
            }
            "resource_released" => "released",
            "resource_freed" if e.detail.contains("sweep") => "swept",
            "resource_freed" => "attempt_ended",
            "resource_force_released" => "forced",
            _ => return,
        };
        self.releases
            .get_or_create(&vec![("resource", resource), ("how", how.to_owned())])
            .inc();
    }

    /// Samples the units held; a resource no longer held reads 0.
    pub(super) async fn sample(&self, ledger: &Ledger) {
        let Ok(resources) = ledger.resources().await else {
            return;
        };
        self.held.clear();
        self.capacity.clear();
        for r in resources {
            let labels = vec![("resource", r.resource.clone())];
            self.held.get_or_create(&labels).set(i64::from(r.held));
            self.capacity
                .get_or_create(&labels)
                .set(i64::from(r.capacity));
        }
    }
}
