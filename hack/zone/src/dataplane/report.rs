//! `healthcheck-status` in API answers: the one thing the zone adds to an NLB
//! service as stored. It is rendered, never stored, so the stored service
//! stays exactly as sent and health changes cost no disk writes.

use orchestrator::model::{BackendStatus, HealthStatus, LoadBalancer};

use super::health::HealthBoard;
use super::plan;
use crate::world::ZoneState;

/// Sets `healthcheck-status` on every service of `lb` that listens: one entry
/// per backend (running pool member), `success` when it passes its checks,
/// `failure` otherwise (including not checked yet). Services that do not
/// listen (NLB not running, service being created or deleted) get none.
pub fn decorate(lb: &mut LoadBalancer, zone: &ZoneState, board: &HealthBoard) {
    for i in 0..lb.services.len() {
        let Some(plan) = plan::service_plan(zone, lb, &lb.services[i]) else { continue };
        let statuses = plan
            .route
            .backends
            .iter()
            .map(|b| BackendStatus {
                public_ip: Some(b.ip),
                status: Some(if board.is_healthy(plan.route.service, b.instance) {
                    HealthStatus::Success
                } else {
                    HealthStatus::Failure
                }),
            })
            .collect();
        lb.services[i].healthcheck_status = Some(statuses);
    }
}
