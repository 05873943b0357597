//! The Service controller's shell: for each LoadBalancer Service of our class,
//! parse, find, decide (pure modules) and apply; record Events, the `id`
//! annotation and the ingress IP.
//!
//! Orchestrator reads come from one cached list of NLBs, refreshed once per
//! drift period (and when a write's outcome is unknown), so steady state costs
//! one list call per period and no writes; Nodes are not watched for NLB
//! changes at all (NLBs target instance pools), only their nodepool labels are
//! read for pool inference.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::ResourceExt as _;
use kube::api::{Api, Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt as _, watcher};
use orchestrator::model::{LoadBalancer, Protocol};
use serde_json::json;
use uuid::Uuid;

use super::annotations::{self, LbConfig, PREFIX};
use super::desired::{self, Options, ServiceFacts};
use super::node_pools::NodePools;
use super::owner::{self, Found};
use super::plan::{self, Step};
use super::pool;
use crate::cloud::Cloud;
use crate::context::Context;
use crate::fresh::Fresh;
use crate::metrics::Metrics;
use crate::queue::{self, Pending};
use crate::reconcile::{Error, measured, skip_superseded};
use crate::slim;
use crate::superseded::{Superseded, Writes};
use sks_keys::annotation::lb;
use sks_keys::finalizer::LB_CLEANUP as FINALIZER;
use sks_keys::label::NODEPOOL_ID as NODEPOOL_ID_LABEL;
use sks_kubeclient::events::{EventType, Publisher};

/// `spec.loadBalancerClass` served here (Services without a class are served too).
pub const CLASS: &str = "exoscale.net/nlb";

/// The controller's settings.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// How often every NLB is compared with its Service (one list call).
    pub drift_period: Duration,
    /// Health-check choices.
    pub options: Options,
    /// Concurrent reconciles.
    pub workers: u16,
}

/// What reconciles share.
struct Ctx {
    client: kube::Client,
    cloud: Arc<Cloud>,
    events: Arc<Publisher>,
    metrics: Metrics,
    nlbs: Fresh<HashMap<Uuid, LoadBalancer>>,
    nodes: NodePools,
    config: Config,
    queue: Pending,
    superseded: Superseded,
}

impl Ctx {
    async fn fresh_nlbs(&self, max_age: Duration) -> Result<Arc<HashMap<Uuid, LoadBalancer>>, Error> {
        let client = self.cloud.client();
        self.nlbs
            .ensure_fresh(max_age, || async {
                let all = client.list_load_balancers().await?;
                Ok::<_, orchestrator::Error>(all.into_iter().map(|lb| (lb.id, lb)).collect())
            })
            .await?;
        Ok(self.nlbs.get())
    }

    async fn warn(&self, svc: &Service, reason: &str, note: String) {
        tracing::warn!(service = %key(svc), reason, "{note}");
        self.events.about(svc, EventType::Warning, reason, note).await;
    }
}

fn key(svc: &Service) -> String {
    format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any())
}

/// Whether this controller serves `svc`: type LoadBalancer, no class or ours.
pub fn served(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_deref()).is_none_or(|c| c == CLASS)
}

fn has_finalizer(svc: &Service) -> bool {
    svc.finalizers().iter().any(|f| f == FINALIZER)
}

/// One reconcile of a Service, unless the cached version is one its own
/// writes replaced (a finalizer, `id` annotation or status the watch has not
/// delivered yet would otherwise be written again).
async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    ctx.queue.started(svc.as_ref());
    if let Some(skip) = skip_superseded(&ctx.metrics, "service", &ctx.superseded, svc.as_ref()) {
        return Ok(skip);
    }
    let writes = Writes::default();
    let result = measured(&ctx.metrics, "service", step(&svc, &ctx, &writes)).await;
    ctx.superseded.record(svc.as_ref(), writes);
    result
}

async fn step(svc: &Service, ctx: &Ctx, writes: &Writes) -> Result<Action, Error> {
    if svc.metadata.deletion_timestamp.is_some() || !served(svc) {
        if has_finalizer(svc) {
            cleanup(svc, ctx).await?;
            let api: Api<Service> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
            if svc.metadata.deletion_timestamp.is_none() {
                // No longer a LoadBalancer of ours: it keeps no ingress of ours either.
                let status = json!({"status": {"loadBalancer": {"ingress": null}}});
                writes.answered(
                    &api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(status)).await?,
                );
            }
            let rest: Vec<&String> = svc.finalizers().iter().filter(|f| *f != FINALIZER).collect();
            let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": svc.resource_version()}});
            writes.answered(&api.patch(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?);
        }
        return Ok(Action::await_change());
    }
    let cfg = match annotations::parse(svc.annotations()) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in &errors {
                tracing::warn!(service = %key(svc), key = %e.key, value = %e.value, expected = %e.expected, "invalid annotation; the NLB is left as it is");
            }
            let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
            let note = format!("invalid annotations; the load balancer is left as it is: {}", all.join("; "));
            ctx.events.about(svc, EventType::Warning, "SyncLoadBalancerFailed", note).await;
            // Fixing the annotation is a change, and a change reconciles again.
            return Ok(Action::await_change());
        }
    };
    if !has_finalizer(svc) {
        let mut finalizers = svc.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": svc.resource_version()}});
        let api: Api<Service> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
        writes.answered(&api.patch(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    ensure(svc, &cfg, ctx, writes).await
}

/// The NLB `found` says to use, confirming with one GET an `id` the cached list lacks.
async fn locate(ctx: &Ctx, cfg: &LbConfig, uid: &str) -> Result<Found, Error> {
    let cluster = ctx.cloud.cluster();
    let known = ctx.fresh_nlbs(ctx.config.drift_period).await?;
    match owner::find(&known, cfg, cluster, uid) {
        Found::Missing(Some(id)) => match ctx.cloud.client().get_load_balancer(id).await {
            Ok(lb) => {
                let seen = lb.clone();
                ctx.nlbs.update(move |m| {
                    m.insert(seen.id, seen.clone());
                });
                Ok(match owner::usable(&lb, cfg, cluster, uid) {
                    Ok(()) => Found::Nlb(Box::new(lb)),
                    Err(why) => Found::Refused(why),
                })
            }
            Err(e) if e.is_not_found() => {
                let found = owner::after_gone(&known, cfg, cluster, uid, id);
                if let Found::Nlb(lb) = &found {
                    tracing::info!(nlb = %lb.id, gone = %id, "the id annotation names a deleted NLB; using the one labelled for this Service");
                }
                Ok(found)
            }
            Err(e) => Err(e.into()),
        },
        found => Ok(found),
    }
}

async fn ensure(svc: &Service, cfg: &LbConfig, ctx: &Ctx, writes: &Writes) -> Result<Action, Error> {
    let facts = ServiceFacts::of(svc);
    let live = match locate(ctx, cfg, &facts.uid).await? {
        Found::Nlb(lb) => Some(*lb),
        Found::Missing(id) if cfg.external => {
            let which = id.map(|i| i.to_string()).or(cfg.name.clone()).unwrap_or_default();
            let note = format!("external NLB {which} does not exist; {PREFIX}external NLBs are never created");
            ctx.warn(svc, "SyncLoadBalancerFailed", note).await;
            return Ok(Action::requeue(ctx.config.drift_period));
        }
        Found::Missing(id) => {
            if let Some(id) = id {
                // Deleted out of band: recreated below with the same configuration.
                tracing::warn!(service = %key(svc), nlb = %id, "the Service's NLB no longer exists; recreating it");
            }
            None
        }
        Found::Refused(why) => {
            ctx.warn(svc, "SyncLoadBalancerFailed", why).await;
            return Ok(Action::await_change());
        }
    };
    ctx.cloud.ensure_fresh(ctx.config.drift_period).await?;
    let cloud = ctx.cloud.snapshot();
    let node_nodepools = ctx.nodes.nodepools();
    let current = live.as_ref().and_then(|lb| plan::current_pool(lb, cfg.external, &facts.uid));
    let pool = match pool::resolve(cfg, &cloud, ctx.cloud.cluster(), node_nodepools.iter().map(String::as_str), current)
    {
        Ok(pool) => pool,
        Err(why) => {
            ctx.warn(svc, "SyncLoadBalancerFailed", format!("{why}; the load balancer is left as it is")).await;
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
    };
    let want = match desired::desired(&facts, cfg, pool, ctx.cloud.cluster(), ctx.config.options) {
        Ok(want) => want,
        Err(why) => {
            ctx.warn(svc, "SyncLoadBalancerFailed", format!("{why}; the load balancer is left as it is")).await;
            return Ok(Action::await_change());
        }
    };
    let conflicts = plan::port_conflicts(&want, live.as_ref(), &facts.uid);
    if !conflicts.is_empty() {
        let note = format!("{}; the load balancer is left as it is", conflicts.join("; "));
        ctx.warn(svc, "SyncLoadBalancerFailed", note).await;
        return Ok(Action::await_change());
    }
    let steps = plan::converge(&want, live.as_ref(), cfg.external, &facts.uid);
    let changed = !steps.is_empty();
    let lb = if !changed {
        live
    } else {
        let what: Vec<String> = steps.iter().map(Step::describe).collect();
        tracing::info!(service = %key(svc), steps = ?what, "ensuring load balancer");
        ctx.events
            .about(
                svc,
                EventType::Normal,
                "EnsuringLoadBalancer",
                format!("Ensuring load balancer: {}", what.join(", ")),
            )
            .await;
        match apply(ctx, live.as_ref().map(|l| l.id), steps).await {
            Ok(lb) => lb,
            Err(e) => {
                ctx.warn(svc, "SyncLoadBalancerFailed", format!("Error syncing load balancer: {e}")).await;
                return Err(e);
            }
        }
    };
    let Some(lb) = lb else { return Ok(Action::requeue(Duration::from_secs(2))) };
    let api: Api<Service> = Api::namespaced(ctx.client.clone(), &svc.namespace().unwrap_or_default());
    if cfg.id != Some(lb.id) {
        let patch = json!({"metadata": {"annotations": {lb::key(lb::ID): lb.id.to_string()}}});
        writes.answered(&api.patch(&svc.name_any(), &PatchParams::default(), &Patch::Merge(patch)).await?);
    }
    let Some(ip) = lb.ip else {
        // Still being created: its address comes with the next look.
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let ingress = json!([{"ip": ip.to_string(), "ipMode": "VIP"}]);
    let current = svc.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|l| l.ingress.as_ref());
    let new_ingress = current.map(|i| serde_json::to_value(i).unwrap_or_default()) != Some(ingress.clone());
    if new_ingress {
        let status = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        writes.answered(&api.patch_status(&svc.name_any(), &PatchParams::default(), &Patch::Merge(status)).await?);
    }
    if changed || new_ingress {
        let note = format!("Ensured load balancer {} at {ip}", lb.id);
        ctx.events.about(svc, EventType::Normal, "EnsuredLoadBalancer", note).await;
    }
    Ok(Action::await_change())
}

/// Whether `step` failed only because what it removes is gone already: a
/// delete whose first answer was lost (applied, then a 5xx) is retried and
/// finds nothing, which is the outcome it wanted.
fn already_done(step: &Step, e: &orchestrator::Error) -> bool {
    matches!(step, Step::Delete | Step::DeleteService(_)) && e.is_not_found()
}

/// Applies `steps` to NLB `id` (none: the first step creates it), then reads
/// the NLB back into the cache: the cache never holds a guess. An outcome that
/// cannot be read back (a failed create) makes the next lookup list again, so
/// a retry finds an NLB that was created after all instead of duplicating it.
async fn apply(ctx: &Ctx, id: Option<Uuid>, steps: Vec<Step>) -> Result<Option<LoadBalancer>, Error> {
    let client = ctx.cloud.client();
    let mut id = id;
    let mut result: Result<(), orchestrator::Error> = Ok(());
    for step in steps {
        let done = match (&step, id) {
            (Step::Create(spec), _) => client.create_load_balancer(spec).await.map(|op| id = op.reference_id()),
            (_, None) => Ok(()),
            (Step::Update(change), Some(id)) => client.update_load_balancer(id, change).await.map(drop),
            (Step::ResetDescription, Some(id)) => client.reset_load_balancer_field(id, "description").await.map(drop),
            (Step::DeleteService(sid), Some(id)) => client.delete_load_balancer_service(id, *sid).await.map(drop),
            (Step::UpdateService(sid, change), Some(id)) => {
                client.update_load_balancer_service(id, *sid, change).await.map(drop)
            }
            (Step::ResetServiceDescription(sid), Some(id)) => {
                client.reset_load_balancer_service_field(id, *sid, "description").await.map(drop)
            }
            (Step::AddService(spec), Some(id)) => client.add_service_to_load_balancer(id, spec).await.map(drop),
            (Step::Delete, Some(id)) => client.delete_load_balancer(id).await.map(drop),
        };
        if let Err(e) = done.or_else(|e| if already_done(&step, &e) { Ok(()) } else { Err(e) }) {
            result = Err(e);
            break;
        }
    }
    let Some(id) = id else {
        ctx.nlbs.invalidate();
        result?;
        return Ok(None);
    };
    let read = client.get_load_balancer(id).await;
    match &read {
        Ok(lb) => {
            let seen = lb.clone();
            ctx.nlbs.update(move |m| {
                m.insert(id, seen.clone());
            });
        }
        Err(e) if e.is_not_found() => ctx.nlbs.update(move |m| {
            m.remove(&id);
        }),
        Err(_) => ctx.nlbs.invalidate(),
    }
    result?;
    match read {
        Ok(lb) => Ok(Some(lb)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// For cleanup only the NLB's identity matters; invalid annotations elsewhere
/// must not keep a Service from being deleted.
fn identity(svc: &Service) -> LbConfig {
    let wanted = [lb::ID, lb::NAME, lb::EXTERNAL].map(lb::key);
    let subset: BTreeMap<String, String> =
        svc.annotations().iter().filter(|(k, _)| wanted.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    annotations::parse(&subset).or_else(|_| annotations::parse(&BTreeMap::new())).expect("no annotations parse")
}

/// Removes this Service's NLB services, and the NLB when owned and empty.
async fn cleanup(svc: &Service, ctx: &Ctx) -> Result<(), Error> {
    let cfg = identity(svc);
    let facts = ServiceFacts::of(svc);
    let Found::Nlb(lb) = locate(ctx, &cfg, &facts.uid).await? else {
        return Ok(());
    };
    let ports: Vec<(i64, Protocol)> =
        facts.ports.iter().filter_map(|p| Some((i64::from(p.port), desired::protocol(p)?))).collect();
    let steps = plan::teardown(&lb, &ports, cfg.external, &facts.uid);
    if steps.is_empty() {
        return Ok(());
    }
    let deletes_nlb = steps.contains(&Step::Delete);
    ctx.events.about(svc, EventType::Normal, "DeletingLoadBalancer", format!("Deleting load balancer {}", lb.id)).await;
    if let Err(e) = apply(ctx, Some(lb.id), steps).await {
        ctx.warn(svc, "SyncLoadBalancerFailed", format!("Error deleting load balancer {}: {e}", lb.id)).await;
        return Err(e);
    }
    let note = if deletes_nlb {
        format!("Deleted load balancer {}", lb.id)
    } else {
        format!("Deleted this Service's ports from load balancer {} (it is external or serves others)", lb.id)
    };
    ctx.events.about(svc, EventType::Normal, "DeletedLoadBalancer", note).await;
    Ok(())
}

fn error_policy(svc: Arc<Service>, e: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(service = %key(&svc), error = %e, "load balancer reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Runs the Service controller until the future is dropped.
pub async fn run(shared: Arc<Context>, config: Config) {
    let (client, cloud, events) = (shared.client.clone(), shared.cloud.clone(), shared.events.clone());
    let metrics = shared.metrics.clone();
    let nodes = NodePools::default();
    let node_api: Api<PartialObjectMeta<Node>> = Api::all(client.clone());
    let node_labels = watcher(node_api, watcher::Config::default().labels(NODEPOOL_ID_LABEL)).default_backoff();
    // Followed inside this future, not spawned: a spawned follower would
    // outlive a loss of leadership, and each new term would add a watch.
    let follow = nodes.clone().follow(node_labels);
    let queue = Pending::new(metrics.queue_depth.with_label_values(&["service"]));
    let (store, changes) =
        queue::watched(Api::<Service>::all(client.clone()), watcher::Config::default(), queue.clone(), slim::service);
    let ctx = Arc::new(Ctx {
        client,
        cloud,
        events,
        metrics,
        nlbs: Fresh::default(),
        nodes,
        config,
        queue,
        superseded: Superseded::default(),
    });
    let drift = {
        let ctx = ctx.clone();
        futures::stream::unfold(ctx, move |ctx| async move {
            tokio::time::sleep(ctx.config.drift_period).await;
            // One list per period; every Service then compares against it without calls.
            if let Err(e) = ctx.fresh_nlbs(Duration::ZERO).await {
                tracing::warn!(error = %e, "listing NLBs for the drift check failed");
            }
            Some(((), ctx))
        })
    };
    let services = Controller::for_stream(changes, store)
        .with_config(kube::runtime::controller::Config::default().concurrency(config.workers))
        .reconcile_all_on(drift)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {});
    futures::future::join(follow, services).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_deletion_that_finds_nothing_counts_as_done() {
        let gone = || orchestrator::Error::NotFound { operation: "delete-load-balancer", message: "gone".into() };
        let down =
            orchestrator::Error::Unavailable { operation: "delete-load-balancer", status: 503, message: String::new() };
        assert!(already_done(&Step::Delete, &gone()));
        assert!(already_done(&Step::DeleteService(Uuid::nil()), &gone()));
        assert!(!already_done(&Step::Delete, &down));
        assert!(!already_done(&Step::ResetDescription, &gone()));
    }
}
