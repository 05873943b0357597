//! The CSR approval controller (`node-csr-approval`): watches undecided
//! kubelet serving CSRs, decides each with [`super::decide`] against the cloud
//! cache, and writes the decision through the approval subresource.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use orchestrator::model::InstanceState;
use serde_json::json;

use super::{CsrFacts, Decision, decide};
use crate::cloud::{MISS_REFRESH, fresh_since};
use crate::context::Context;
use crate::queue::{self, Pending};
use crate::reconcile::{self, Error, measured};
use crate::slim;
use crate::superseded::{Superseded, Writes};
use sks_kubeclient::events::EventType;

/// How soon a CSR whose instance is still starting is looked at again.
const CSR_WAIT: Duration = Duration::from_secs(1);

/// The CSR approval controller, built once and run while this replica leads.
pub struct Csrs {
    ctx: Arc<Context>,
    workers: u16,
    queue: Pending,
    superseded: Superseded,
}

impl Csrs {
    /// A controller with `workers` concurrent reconciles.
    pub fn new(ctx: Arc<Context>, workers: u16) -> Self {
        let queue = Pending::new(ctx.metrics.queue_depth.with_label_values(&["csr"]));
        Csrs { ctx, workers, queue, superseded: Superseded::default() }
    }

    /// Runs until the future is dropped.
    pub async fn run(self: Arc<Self>) {
        let api: Api<CertificateSigningRequest> = Api::all(self.ctx.client.clone());
        let (store, changes) = queue::watched(api, watcher::Config::default(), self.queue.clone(), slim::csr);
        let workers = self.workers;
        Controller::for_stream(changes, store)
            .with_config(kube::runtime::controller::Config::default().concurrency(workers))
            .run(reconcile, reconcile::retry, self)
            .for_each(|_| async {})
            .await;
    }

    /// Approves or denies one kubelet serving CSR, with one write: the
    /// decision through the approval subresource, guarded by the version read
    /// (it appends a condition to the whole list, and another approver may
    /// decide at the same moment). Its answer is decided, so the cache drops
    /// it ([`slim::csr`]): it is never read or reconciled again.
    async fn step(&self, c: &CertificateSigningRequest, writes: &Writes) -> Result<Action, Error> {
        let ctx = &*self.ctx;
        let facts = facts(c);
        if facts.signer != sks_keys::KUBELET_SERVING_SIGNER || facts.decided {
            return Ok(Action::await_change());
        }
        let node = facts.username.strip_prefix("system:node:").unwrap_or("").to_lowercase();
        // A cached instance that is missing or not running may only be stale (the
        // kubelet asks once its instance runs), so look again before deciding.
        if ctx.cloud.snapshot().by_name(&node).is_none_or(|i| i.state != InstanceState::Running) {
            let created = c.metadata.creation_timestamp.as_ref();
            ctx.cloud.ensure_fresh(fresh_since(created, MISS_REFRESH, jiff::Timestamp::now())).await?;
        }
        let snapshot = ctx.cloud.snapshot();
        let decision = decide(&facts, |name| snapshot.by_name(name).cloned());
        let (type_, reason, message) = match &decision {
            Decision::Ignore => return Ok(Action::await_change()),
            Decision::Wait(why) => {
                tracing::debug!(csr = %c.name_any(), %why, "kubelet serving CSR not decidable yet");
                return Ok(Action::requeue(CSR_WAIT));
            }
            Decision::Approve => (
                "Approved",
                "SKSCCMApproved",
                "approved by sks-ccm: requester, subject and every SAN match a running instance of this cluster"
                    .to_owned(),
            ),
            Decision::Deny(why) => ("Denied", "SKSCCMDenied", format!("denied by sks-ccm: {why}")),
        };
        let name = c.name_any();
        let now = jiff::Timestamp::now().to_string();
        let mut conditions: Vec<serde_json::Value> = c
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| cs.iter().map(|x| serde_json::to_value(x).unwrap_or_default()).collect())
            .unwrap_or_default();
        conditions.push(json!({"type": type_, "status": "True", "reason": reason, "message": message, "lastUpdateTime": now, "lastTransitionTime": now}));
        let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
        let patch =
            json!({"metadata": {"resourceVersion": c.metadata.resource_version}, "status": {"conditions": conditions}});
        writes
            .answered(&api.patch_subresource("approval", &name, &PatchParams::default(), &Patch::Merge(patch)).await?);
        let severity = if type_ == "Approved" { EventType::Normal } else { EventType::Warning };
        tracing::info!(csr = %name, decision = type_, %message, "decided kubelet serving CSR");
        ctx.events.about(c, severity, reason, message).await;
        Ok(Action::await_change())
    }
}

/// What the decision reads of a CSR.
fn facts(c: &CertificateSigningRequest) -> CsrFacts {
    let decided = slim::decided(c);
    let request_pem = String::from_utf8(c.spec.request.0.clone()).unwrap_or_default();
    CsrFacts {
        signer: c.spec.signer_name.clone(),
        username: c.spec.username.clone().unwrap_or_default(),
        groups: c.spec.groups.clone().unwrap_or_default(),
        usages: c.spec.usages.clone().unwrap_or_default(),
        request_pem,
        decided,
    }
}

/// One reconcile of a CSR, measured as the `csr` controller's, unless the
/// cached version is one its own approval replaced.
async fn reconcile(c: Arc<CertificateSigningRequest>, csrs: Arc<Csrs>) -> Result<Action, Error> {
    csrs.queue.started(c.as_ref());
    if let Some(skip) = reconcile::skip_superseded(&csrs.ctx.metrics, "csr", &csrs.superseded, c.as_ref()) {
        return Ok(skip);
    }
    let writes = Writes::default();
    let result = measured(&csrs.ctx.metrics, "csr", csrs.step(&c, &writes)).await;
    csrs.superseded.record(c.as_ref(), writes);
    result
}
