//! The controllers' shells: watch, call the pure decisions, act, record.

use sks_keys::annotation;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::queue::{self, Pending};
use serde_json::json;

use crate::cached_node::CachedNode;
use crate::cloud::Cloud;
use crate::events::{EventType, Publisher};
use crate::{csr, heal, node_init, node_lifecycle, slim};
use orchestrator::model::InstanceState;

/// How old the cloud snapshot may be when a lookup misses.
const MISS_REFRESH: Duration = Duration::from_millis(500);

/// How old a cloud snapshot may be when a NotReady Node is looked at (NotReady
/// Nodes reconciled together share one refresh).
const NOT_READY_FRESHNESS: Duration = Duration::from_secs(5);

/// How old a snapshot may be (at most `cap`) to judge something that happened
/// at `since`: one taken before may not show it. An object created at `since`
/// may have an instance younger than the snapshot (a kubelet registers seconds
/// after its instance is created, or sooner in tests); a Node that turned
/// NotReady at `since` may have lost its instance just before. Kubernetes
/// times are whole seconds, so the event may be up to a second later.
fn fresh_since(since: Option<&Time>, cap: Duration, now: jiff::Timestamp) -> Duration {
    let age = since.map(|t| now.duration_since(t.0) - jiff::SignedDuration::from_secs(1));
    age.and_then(|a| Duration::try_from(a).ok()).unwrap_or(Duration::ZERO).min(cap)
}

/// When `node`'s Ready condition last changed.
fn ready_since(node: &Node) -> Option<&Time> {
    let conditions = node.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref()
}
/// How soon a CSR whose instance is still starting is looked at again.
const CSR_WAIT: Duration = Duration::from_secs(1);
/// How soon a reconcile that lost a write race (409) runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);

/// Per-controller metrics.
#[derive(Clone)]
pub struct Metrics {
    /// `ccm_reconciles_total{controller,result}`.
    pub reconciles: IntCounterVec,
    /// `ccm_reconcile_duration_seconds{controller}`.
    pub latency: HistogramVec,
    /// `ccm_node_initialization_delay_seconds`: from Node creation to initialized.
    pub init_delay: prometheus::Histogram,
    /// `ccm_queue_depth{controller}`: objects changed and not yet picked up.
    pub queue_depth: IntGaugeVec,
}

impl Metrics {
    /// Registers the metrics.
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let reconciles = IntCounterVec::new(
            Opts::new("ccm_reconciles_total", "Reconciles by controller and result"),
            &["controller", "result"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("ccm_reconcile_duration_seconds", "Reconcile latency"),
            &["controller"],
        )?;
        let init_delay = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "ccm_node_initialization_delay_seconds",
                "Time from Node registration to initialization",
            )
            .buckets(vec![0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        )?;
        r.register(Box::new(reconciles.clone()))?;
        r.register(Box::new(latency.clone()))?;
        let queue_depth = IntGaugeVec::new(
            Opts::new("ccm_queue_depth", "Objects seen changing that no reconcile has picked up yet"),
            &["controller"],
        )?;
        r.register(Box::new(init_delay.clone()))?;
        r.register(Box::new(queue_depth.clone()))?;
        Ok(Metrics { reconciles, latency, init_delay, queue_depth })
    }
}

/// What the controllers share.
pub struct Ctx {
    /// Kubernetes client.
    pub client: kube::Client,
    /// The cloud cache.
    pub cloud: Arc<Cloud>,
    /// Event publisher.
    pub events: Arc<Publisher>,
    /// Metrics.
    pub metrics: Metrics,
    /// How often initialized Nodes are re-checked.
    pub sync_period: Duration,
    /// Auto-healing thresholds.
    pub heal: heal::Config,
    /// When a foreign Node was last reported, so events do not repeat every retry.
    warned: Mutex<HashMap<String, Instant>>,
    node_queue: Pending,
    csr_queue: Pending,
}

impl Ctx {
    /// A context.
    pub fn new(
        client: kube::Client,
        cloud: Arc<Cloud>,
        events: Arc<Publisher>,
        metrics: Metrics,
        sync_period: Duration,
        heal: heal::Config,
    ) -> Self {
        let node_queue = Pending::new(metrics.queue_depth.with_label_values(&["node"]));
        let csr_queue = Pending::new(metrics.queue_depth.with_label_values(&["csr"]));
        Ctx {
            client,
            cloud,
            events,
            metrics,
            sync_period,
            heal,
            warned: Mutex::new(HashMap::new()),
            node_queue,
            csr_queue,
        }
    }
}

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The orchestrator failed.
    #[error("orchestrator: {0}")]
    Cloud(#[from] orchestrator::Error),
    /// The Kubernetes API failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// Publishes an Event about `obj`; a failure is logged, never fatal.
pub(crate) async fn event(
    events: &Publisher,
    obj: &impl kube::Resource<DynamicType = ()>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    if let Err(e) = events.publish(&obj.object_ref(&()), type_, reason, &note).await {
        tracing::warn!(error = %e, reason, "publishing an event failed");
    }
}

/// Runs one reconcile of `controller`, recording its latency and result.
pub(crate) async fn measured(
    metrics: &Metrics,
    controller: &str,
    step: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = step.await;
    metrics.latency.with_label_values(&[controller]).observe(started.elapsed().as_secs_f64());
    metrics.reconciles.with_label_values(&[controller, outcome(&result)]).inc();
    result
}

/// The `result` label of a reconcile: a lost write race (409, usually a
/// reconcile of a cached version the watch has not replaced yet) is routine
/// and retried at once, so it is told apart from failures.
fn outcome(result: &Result<Action, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_conflict() => "conflict",
        Err(_) => "error",
    }
}

impl Error {
    /// A 409 Conflict from the Kubernetes API.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409)
    }
}

/// Initializes new Nodes and keeps initialized ones current.
async fn reconcile_node(node: Arc<CachedNode>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.node_queue.started(node.as_ref());
    measured(&ctx.metrics, "node", node_step(&node.to_node(), &ctx)).await
}

async fn node_step(node: &Node, ctx: &Ctx) -> Result<Action, Error> {
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let mut snapshot = ctx.cloud.snapshot();
    // A Node that turned NotReady may have lost its instance (a scale-down):
    // decide on a recent look, not one up to a sync period old. NotReady Nodes
    // reconciled together share one refresh.
    let lost = !node_init::uninitialized(node) && !node_lifecycle::is_ready(node);
    let now = jiff::Timestamp::now();
    if node_init::instance_for(node, &snapshot).is_none() {
        ctx.cloud.ensure_fresh(fresh_since(node.metadata.creation_timestamp.as_ref(), MISS_REFRESH, now)).await?;
        snapshot = ctx.cloud.snapshot();
    } else if lost {
        ctx.cloud.ensure_fresh(fresh_since(ready_since(node), NOT_READY_FRESHNESS, now)).await?;
        snapshot = ctx.cloud.snapshot();
    }
    let found = node_init::instance_for(node, &snapshot).cloned();
    if node_init::uninitialized(node) {
        let Some(instance) = found else {
            let first = {
                let mut warned = ctx.warned.lock().unwrap_or_else(|e| e.into_inner());
                let fresh = warned.get(&name).is_none_or(|t| t.elapsed() > Duration::from_secs(300));
                if fresh {
                    warned.insert(name.clone(), Instant::now());
                }
                fresh
            };
            if first {
                let why = format!(
                    "no instance of this cluster's nodepools matches node {name} (by providerID, system UUID or name); it stays tainted {}",
                    sks_keys::taint::UNINITIALIZED
                );
                tracing::warn!(node = %name, "{why}");
                event(&ctx.events, node, EventType::Warning, "NodeNotInCluster", why).await;
            }
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        let Some(nodepool) = snapshot.nodepool_of(&instance).cloned() else {
            return Ok(Action::requeue(Duration::from_secs(30)));
        };
        let type_name = ctx.cloud.type_name(instance.instance_type.id).unwrap_or_default();
        // Both writes are guarded, so a concurrent change makes one a 409 and a
        // retry; the second is guarded by the version the first produced, which
        // still describes the Node read here.
        let mut guard = node.metadata.resource_version.clone();
        if let Some(status) = node_init::address_patch(node, &instance) {
            guard = nodes
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
                .await?
                .metadata
                .resource_version;
        }
        let patch = node_init::init_patch(node, guard.as_deref(), &instance, &nodepool, &type_name, &ctx.cloud.zone);
        nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        if let Some(created) = node.metadata.creation_timestamp.as_ref() {
            let delay = jiff::Timestamp::now().duration_since(created.0).as_secs_f64();
            ctx.metrics.init_delay.observe(delay.max(0.0));
        }
        tracing::info!(node = %name, instance = %instance.id, nodepool = %nodepool.id, "initialized node");
        return Ok(Action::requeue(ctx.sync_period));
    }
    // Initialized: keep addresses and labels current, and follow the instance's lifecycle.
    let lookup = match (&found, node_init::provider_id(node)) {
        (Some(i), _) => Ok(Some(i.clone())),
        (None, Some(id)) => match ctx.cloud.client().get_instance(id).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.to_string()),
        },
        (None, None) => return Ok(Action::requeue(ctx.sync_period)),
    };
    match node_lifecycle::decide(node, &lookup) {
        node_lifecycle::Action::Delete => {
            if let Some((nodepool, size)) = heal::pending_replacement(node) {
                restore_size(ctx, nodepool, size).await?;
            }
            tracing::info!(node = %name, "the node's instance is gone; deleting the node");
            event(
                &ctx.events,
                node,
                EventType::Normal,
                "DeletingNode",
                format!("instance of node {name} no longer exists"),
            )
            .await;
            nodes.delete(&name, &DeleteParams::default()).await?;
            return Ok(Action::await_change());
        }
        node_lifecycle::Action::Taints(taints) => {
            let patch =
                json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        }
        node_lifecycle::Action::Keep => {}
    }
    if let Ok(Some(instance)) = &lookup
        && let Some(nodepool) = snapshot.nodepool_of(instance)
    {
        auto_heal(node, instance, nodepool, ctx).await?;
    }
    if let Ok(Some(instance)) = &lookup {
        if let Some(status) = node_init::address_patch(node, instance) {
            nodes.patch_status(&name, &PatchParams::default(), &Patch::Merge(status)).await?;
        }
        if let Some(nodepool) = snapshot.nodepool_of(instance) {
            let type_name = ctx.cloud.type_name(instance.instance_type.id).unwrap_or_default();
            if let Some(patch) = node_init::label_drift(node, instance, nodepool, &type_name, &ctx.cloud.zone) {
                nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            }
        }
    }
    Ok(Action::requeue(ctx.sync_period))
}

/// Finishes an auto-heal replacement whose instance was evicted but whose
/// nodepool may not have been scaled back: grows it back to `size` (never
/// shrinks it; a nodepool deleted meanwhile needs nothing).
async fn restore_size(ctx: &Ctx, nodepool: uuid::Uuid, size: i64) -> Result<(), Error> {
    let client = ctx.cloud.client();
    let current = match client.get_sks_nodepool(ctx.cloud.cluster(), nodepool).await {
        Ok(np) => np.size,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if current < size {
        tracing::warn!(%nodepool, from = current, to = size, "an auto-heal replacement left its nodepool smaller; restoring its size");
        client.scale_sks_nodepool(ctx.cloud.cluster(), nodepool, size).await?;
    }
    Ok(())
}

/// Reboots, then replaces, a Node's instance that stays NotReady.
async fn auto_heal(
    node: &Node,
    instance: &orchestrator::model::Instance,
    nodepool: &orchestrator::model::SksNodepool,
    ctx: &Ctx,
) -> Result<(), Error> {
    let annotated =
        |n: &Node| n.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(annotation::AUTO_HEAL_REBOOTED_AT));
    if !ctx.heal.enabled || (node_lifecycle::is_ready(node) && !annotated(node)) {
        return Ok(());
    }
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    let all = nodes.list(&kube::api::ListParams::default().labels(sks_keys::label::NODEPOOL_ID)).await?;
    let pool_id = nodepool.id.to_string();
    let others = all.items.iter().filter(|n| n.name_any() != name && annotated(n));
    let in_nodepool = others.clone().filter(|n| n.labels().get(sks_keys::label::NODEPOOL_ID) == Some(&pool_id)).count();
    let budget = heal::Budget { in_nodepool, in_cluster: others.count(), cluster_nodes: all.items.len() };
    match heal::decide(node, instance, nodepool, jiff::Timestamp::now(), &ctx.heal, budget) {
        heal::Heal::Nothing => {}
        heal::Heal::Reboot => {
            ctx.cloud.client().reboot_instance(instance.id).await?;
            let patch = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REBOOTED_AT: jiff::Timestamp::now().to_string()}}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            let note = format!(
                "node {name} has been NotReady for over {:?} while instance {} runs: rebooted it",
                ctx.heal.reboot_after, instance.id
            );
            tracing::warn!(node = %name, "{note}");
            event(&ctx.events, node, EventType::Warning, "AutoHealReboot", note).await;
        }
        heal::Heal::Replace => {
            let client = ctx.cloud.client();
            // Write-ahead: the size to restore is on the Node before the eviction
            // shrinks the pool, so a failed restore is finished before the Node
            // goes. A retry keeps the recorded size: the pool may be smaller now.
            let size = match heal::pending_replacement(node) {
                Some((recorded, size)) if recorded == nodepool.id => size,
                _ => {
                    let size = client.get_sks_nodepool(ctx.cloud.cluster(), nodepool.id).await?.size;
                    let record = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REPLACING: heal::replacing(nodepool.id, size)}}});
                    nodes.patch(&name, &PatchParams::default(), &Patch::Merge(record)).await?;
                    size
                }
            };
            orchestrator::nodepool::evict_then_scale(client, ctx.cloud.cluster(), nodepool.id, vec![instance.id], size)
                .await?;
            let done = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REPLACING: null}}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(done)).await?;
            let note = format!(
                "node {name} stayed NotReady {:?} after a reboot: replaced instance {} with a fresh one in nodepool {}",
                ctx.heal.replace_after, instance.id, nodepool.id
            );
            tracing::warn!(node = %name, "{note}");
            event(&ctx.events, node, EventType::Warning, "AutoHealReplace", note).await;
        }
        heal::Heal::Clear => {
            let patch = json!({"metadata": {"annotations": {annotation::AUTO_HEAL_REBOOTED_AT: null}}});
            nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?;
            event(&ctx.events, node, EventType::Normal, "AutoHealRecovered", format!("node {name} is Ready again"))
                .await;
        }
    }
    Ok(())
}

fn facts(c: &CertificateSigningRequest) -> csr::CsrFacts {
    let decided = slim::decided(c);
    let request_pem = String::from_utf8(c.spec.request.0.clone()).unwrap_or_default();
    csr::CsrFacts {
        signer: c.spec.signer_name.clone(),
        username: c.spec.username.clone().unwrap_or_default(),
        groups: c.spec.groups.clone().unwrap_or_default(),
        usages: c.spec.usages.clone().unwrap_or_default(),
        request_pem,
        decided,
    }
}

/// Approves or denies kubelet serving CSRs.
async fn reconcile_csr(c: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.csr_queue.started(c.as_ref());
    measured(&ctx.metrics, "csr", csr_step(&c, &ctx)).await
}

async fn csr_step(c: &CertificateSigningRequest, ctx: &Ctx) -> Result<Action, Error> {
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
    let decision = csr::decide(&facts, |name| snapshot.by_name(name).cloned());
    let (type_, reason, message) = match &decision {
        csr::Decision::Ignore => return Ok(Action::await_change()),
        csr::Decision::Wait(why) => {
            tracing::debug!(csr = %c.name_any(), %why, "kubelet serving CSR not decidable yet");
            return Ok(Action::requeue(CSR_WAIT));
        }
        csr::Decision::Approve => (
            "Approved",
            "SKSCCMApproved",
            "approved by sks-ccm: requester, subject and every SAN match a running instance of this cluster".to_owned(),
        ),
        csr::Decision::Deny(why) => ("Denied", "SKSCCMDenied", format!("denied by sks-ccm: {why}")),
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
    api.patch_subresource("approval", &name, &PatchParams::default(), &Patch::Merge(patch)).await?;
    let severity = if type_ == "Approved" { EventType::Normal } else { EventType::Warning };
    tracing::info!(csr = %name, decision = type_, %message, "decided kubelet serving CSR");
    event(&ctx.events, c, severity, reason, message).await;
    Ok(Action::await_change())
}

fn error_policy<K>(_obj: Arc<K>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    // A conflict only means the object moved on (a kubelet status update, say):
    // the watch is about to deliver the new version, so look again soon.
    if e.is_conflict() {
        tracing::debug!(error = %e, "conflict; retrying on the newer version");
        return Action::requeue(CONFLICT_RETRY);
    }
    tracing::warn!(error = %e, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(2))
}

/// Runs the node controller until the future is dropped.
pub async fn run_nodes(ctx: Arc<Ctx>, workers: u16) {
    let (store, changes) = queue::watched(
        Api::<CachedNode>::all(ctx.client.clone()),
        watcher::Config::default(),
        ctx.node_queue.clone(),
        CachedNode::prune,
    );
    Controller::for_stream(changes, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(workers))
        .run(reconcile_node, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Runs the CSR approval controller until the future is dropped.
pub async fn run_csrs(ctx: Arc<Ctx>, workers: u16) {
    let api: Api<CertificateSigningRequest> = Api::all(ctx.client.clone());
    let (store, changes) = queue::watched(api, watcher::Config::default(), ctx.csr_queue.clone(), slim::csr);
    Controller::for_stream(changes, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(workers))
        .run(reconcile_csr, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_must_be_younger_than_what_it_judges() {
        let now: jiff::Timestamp = "2026-11-22T00:01:00Z".parse().unwrap();
        let at = |s: &str| Time(s.parse().unwrap());
        let cap = Duration::from_secs(5);
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:01:00Z")), cap, now), Duration::ZERO, "just now: a new look");
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:00:58Z")), cap, now), Duration::from_secs(1), "1 s margin");
        assert_eq!(fresh_since(Some(&at("2026-11-22T00:00:00Z")), cap, now), cap, "long ago: the cap");
        assert_eq!(fresh_since(None, cap, now), Duration::ZERO, "unknown: a new look");
    }
}
