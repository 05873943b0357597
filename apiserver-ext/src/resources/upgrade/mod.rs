//! Upgrades: every change of the cluster's version, requested or automatic, as
//! an object with its progress. The orchestrator runs the control-plane part
//! (and keeps its history); this server follows it, rolls the nodepools when
//! asked, and keeps each Upgrade in its side store so the history and a roll
//! in progress survive restarts.
//!
//! Replicas share the side store. Only the one holding the upgrades Lease (see
//! `sks_lease`; without a cluster there is one replica and it leads) follows the
//! orchestrator's records, records automatic upgrades and rolls nodes. Every
//! replica re-reads the store each tick and before admitting a request, so any
//! of them serves, and watches, the current Upgrades. Nothing acts before the
//! store has been read once.

pub mod def;
pub mod progress;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::model::{InstanceFilter, ManagerType, SksCluster, SksClusterState};
use orchestrator::nodepool::grow_then_evict;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use self::progress::{Member, Pool, Replacement, RollStep, UpgradeSpec, UpgradeStatus, phase};
use crate::resources::errors::from_orchestrator;
use crate::resources::inspection::Inspection;
use crate::resources::metadata::{MetadataStore, ObjectMeta};
use crate::resources::nodepool::NodeReadiness;
use crate::resources::timestamp_now;
use sks_rest::cache::{Key, ObjectCache};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Creater, Storage};
use sks_rest::strategy::Strategy;

/// An Upgrade as kept in the side store.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    name: String,
    uid: String,
    creation_timestamp: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    spec: UpgradeSpec,
    status: UpgradeStatus,
}

/// Why an upgrade cannot start now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Not a version the cluster may move to.
    Invalid(Cause),
    /// Another upgrade runs.
    Busy(String),
}

fn key(name: &str) -> Key {
    (String::new(), name.to_owned())
}

/// How long a requested upgrade may wait for the orchestrator's record of it
/// before it counts as never started (its requester stopped between storing it
/// and asking the orchestrator).
const UNSTARTED_AFTER: Duration = Duration::from_secs(300);

/// The Upgrade storage of one cluster.
pub struct Upgrades {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    client: orchestrator::Client,
    cluster: Uuid,
    store: Arc<dyn MetadataStore>,
    nodes: Option<Arc<dyn NodeReadiness>>,
    replacement_timeout: Duration,
    upgrades: Mutex<BTreeMap<String, Stored>>,
    writing: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    leading: tokio::sync::watch::Receiver<bool>,
}

impl Upgrades {
    /// The upgrades of `cluster`, kept in `store`; `nodes` tells Node readiness
    /// for rolls (without it a roll counts running instances as ready).
    /// `leading` says whether this replica follows and rolls upgrades.
    pub fn new(
        client: orchestrator::Client,
        cluster: Uuid,
        store: Arc<dyn MetadataStore>,
        nodes: Option<Arc<dyn NodeReadiness>>,
        replacement_timeout: Duration,
        leading: tokio::sync::watch::Receiver<bool>,
    ) -> Self {
        Upgrades {
            def: def::definition(),
            cache: Arc::new(ObjectCache::new(ObjectCache::random_epoch(), 1_000)),
            client,
            cluster,
            store,
            nodes,
            replacement_timeout,
            upgrades: Mutex::new(BTreeMap::new()),
            writing: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            leading,
        }
    }

    /// Whether this replica follows and rolls upgrades now.
    fn leads(&self) -> bool {
        *self.leading.borrow()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Stored>> {
        self.upgrades.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn object(&self, s: &Stored) -> Value {
        let mut status = s.status.clone();
        status.observed_generation = 1;
        json!({
            "apiVersion": self.def.api_version(),
            "kind": self.def.kind,
            "metadata": {
                "name": s.name,
                "uid": s.uid,
                "generation": 1,
                "creationTimestamp": s.creation_timestamp,
                "labels": if s.labels.is_empty() { Value::Null } else { json!(s.labels) },
                "annotations": if s.annotations.is_empty() { Value::Null } else { json!(s.annotations) },
            },
            "spec": s.spec,
            "status": status,
        })
    }

    /// Writes `s` to the side store only.
    async fn persist(&self, s: &Stored) -> ApiResult<()> {
        let meta = ObjectMeta {
            generation: 1,
            object: Some(serde_json::to_value(s).map_err(|e| ApiError::internal(e.to_string()))?),
            ..Default::default()
        };
        self.store.save(&s.uid, &meta).await.map_err(|e| ApiError::unavailable(format!("storing upgrade: {e}")))
    }

    /// Makes `s` what GET, LIST and watches show (a watch event if it changed).
    fn publish(&self, s: Stored) -> Arc<Value> {
        let obj = self.cache.upsert(self.object(&s));
        self.lock().insert(s.uid.clone(), s);
        obj
    }

    /// Persists `s` and publishes it; an unchanged one costs nothing.
    async fn save(&self, s: Stored) -> ApiResult<Arc<Value>> {
        if self.lock().get(&s.uid) == Some(&s) {
            return self.cache.get(&key(&s.name)).ok_or_else(|| ApiError::internal("upgrade cache out of step"));
        }
        self.persist(&s).await?;
        Ok(self.publish(s))
    }

    /// Re-reads the side store (one list) and publishes what changed there,
    /// written by another replica or before a restart; the first success makes
    /// the storage ready. The caller holds `writing`.
    async fn reread(&self) -> Result<(), String> {
        let stored = self.store.load().await?;
        let mut seen = BTreeSet::new();
        for (_, meta) in stored {
            let Some(s) = meta.object.and_then(|o| serde_json::from_value::<Stored>(o).ok()) else { continue };
            seen.insert(s.uid.clone());
            if self.lock().get(&s.uid) != Some(&s) {
                self.publish(s);
            }
        }
        let gone: Vec<Stored> = {
            let mut all = self.lock();
            let uids: Vec<String> = all.keys().filter(|u| !seen.contains(*u)).cloned().collect();
            uids.iter().filter_map(|u| all.remove(u)).collect()
        };
        for s in gone {
            self.cache.remove(&key(&s.name));
        }
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Re-reads the stored upgrades; until the first success the storage is
    /// not ready and nothing is followed, recorded or rolled.
    pub async fn reload(&self) -> Result<(), String> {
        let _w = self.writing.lock().await;
        self.reread().await
    }

    /// Whether an upgrade has not ended; it names it.
    fn in_progress(&self) -> Option<(String, String)> {
        self.lock().values().find(|s| !s.status.ended()).map(|s| (s.name.clone(), s.spec.version.clone()))
    }

    /// The nodepools (by name) an upgrade is rolling or about to roll: their size
    /// belongs to the roll until it is done, so the autoscaler leaves them alone.
    pub fn rolling_nodepools(&self) -> std::collections::BTreeSet<String> {
        self.lock()
            .values()
            .filter(|s| !s.status.ended() && s.spec.roll_nodepools)
            .flat_map(|s| s.status.nodepools.iter())
            .filter(|np| !matches!(np.phase.as_str(), "Done" | "Failed"))
            .map(|np| np.name.clone())
            .collect()
    }

    fn unique_name(&self, base: &str) -> String {
        let taken = |n: &str| self.lock().values().any(|s| s.name == n);
        if !taken(base) {
            return base.to_owned();
        }
        (2..).map(|i| format!("{base}-{i}")).find(|n| !taken(n)).expect("some suffix is free")
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(self.def.kind, self.def.group, self.def.plural, name, causes)
    }

    /// The versions `cluster` may move to now.
    pub async fn allowed(&self, cluster: &SksCluster) -> Result<Vec<String>, orchestrator::Error> {
        let catalog = self.client.list_sks_cluster_versions().await?;
        Ok(orchestrator::versions::upgrade_targets(&catalog, &cluster.version))
    }

    /// Whether `cluster` may start an upgrade to `version` now: a version it
    /// may move to (else an Invalid cause at `field` listing those it may), and
    /// no other upgrade running.
    pub async fn admit(
        &self,
        cluster: &SksCluster,
        version: &str,
        field: &str,
    ) -> Result<Result<(), Refusal>, orchestrator::Error> {
        let allowed = self.allowed(cluster).await?;
        if !allowed.contains(&version.to_owned()) {
            let supported: Vec<&str> = allowed.iter().map(String::as_str).collect();
            let cause = if supported.is_empty() {
                Cause::invalid(
                    field,
                    &json!(version),
                    format!("the cluster runs {}, the newest version it can run", cluster.version),
                )
            } else {
                Cause::not_supported(field, &json!(version), &supported)
            };
            return Ok(Err(Refusal::Invalid(cause)));
        }
        if let Some((running, to)) = self.in_progress() {
            return Ok(Err(Refusal::Busy(format!("upgrade {running} to {to} is in progress; wait for it to end"))));
        }
        if cluster.state == SksClusterState::Upgrading {
            return Ok(Err(Refusal::Busy("the cluster is being upgraded; wait for it to end".into())));
        }
        Ok(Ok(()))
    }

    /// Requests an upgrade to `spec.version` (422 for a version the cluster may
    /// not move to, listing those it may; 409 while another runs). `field` is
    /// where the version came from, for the error's cause.
    pub async fn request(
        &self,
        ctx: &Context,
        name: Option<String>,
        meta: (BTreeMap<String, String>, BTreeMap<String, String>),
        spec: UpgradeSpec,
        field: &str,
    ) -> ApiResult<Value> {
        if !self.ready() {
            return Err(ApiError::unavailable("the stored upgrades are not loaded yet (not ready); retry"));
        }
        let _w = self.writing.lock().await;
        // Current, so "another upgrade runs" sees upgrades requested through other replicas.
        self.reread().await.map_err(|e| ApiError::unavailable(format!("reading the stored upgrades: {e}")))?;
        let gr = self.def.group_resource();
        let name = name.unwrap_or_else(|| self.unique_name(&spec.version));
        if self.lock().values().any(|s| s.name == name) {
            return Err(ApiError::already_exists(gr, &name));
        }
        let cluster = self.client.get_sks_cluster(self.cluster).await.map_err(|e| from_orchestrator(&e, gr, &name))?;
        match self.admit(&cluster, &spec.version, field).await.map_err(|e| from_orchestrator(&e, gr, &name))? {
            Ok(()) => {}
            Err(Refusal::Invalid(cause)) => return Err(self.invalid(&name, vec![cause])),
            Err(Refusal::Busy(why)) => return Err(ApiError::conflict_message(gr, &name, &why)),
        }
        let now = timestamp_now();
        let mut status = UpgradeStatus {
            from: cluster.version.clone(),
            to: spec.version.clone(),
            trigger: "Manual".into(),
            started_at: Some(now.clone()),
            ..Default::default()
        };
        status.running(phase::PENDING, format!("upgrading the control plane to {}", spec.version), &now, 1);
        let stored = Stored {
            name: name.clone(),
            uid: Uuid::new_v4().to_string(),
            creation_timestamp: now,
            labels: meta.0,
            annotations: meta.1,
            spec,
            status,
        };
        if ctx.dry_run {
            return Ok(self.object(&stored));
        }
        // Stored before the orchestrator is asked: the replica following upgrades
        // then attaches the orchestrator's record to it instead of recording another.
        self.persist(&stored).await?;
        if let Err(e) = self.client.start_upgrade_sks_cluster(self.cluster, &stored.spec.version).await {
            if let Err(forget) = self.store.remove(&stored.uid).await {
                tracing::warn!(upgrade = %name, error = %forget, "forgetting an upgrade the orchestrator refused failed");
            }
            return Err(from_orchestrator(&e, gr, &name));
        }
        tracing::info!(upgrade = %name, from = %stored.status.from, to = %stored.spec.version, roll = stored.spec.roll_nodepools, "upgrade requested");
        Ok((*self.publish(stored)).clone())
    }

    /// Follows the orchestrator's upgrade records: attaches them to the
    /// Upgrades that asked for them, makes an Upgrade for each one nobody asked
    /// for (automatic ones), and moves every unfinished one along. Only the
    /// leader does, on the store re-read after `inspection` was taken; other
    /// replicas only re-read. Before the first read of the store it does nothing.
    pub async fn observe(&self, inspection: &Inspection) {
        if !self.ready() {
            return;
        }
        let _w = self.writing.lock().await;
        if let Err(e) = self.reread().await {
            tracing::warn!(error = %e, "reading stored upgrades failed; not following upgrades until it works");
            return;
        }
        if !self.leads() {
            return;
        }
        let now = timestamp_now();
        // Oldest first, so suffixed names follow the order upgrades happened in.
        for record in inspection.upgrades.iter().rev() {
            let attached =
                self.lock().values().find(|s| s.status.orchestrator_upgrade_id.as_deref() == Some(&record.id)).cloned();
            let claimant = attached.or_else(|| {
                self.lock()
                    .values()
                    .filter(|s| {
                        s.status.orchestrator_upgrade_id.is_none() && !s.status.ended() && s.spec.version == record.to
                    })
                    .min_by(|a, b| a.creation_timestamp.cmp(&b.creation_timestamp))
                    .cloned()
            });
            let mut s = match claimant {
                Some(s) => s,
                None => {
                    let trigger = progress::trigger(record);
                    tracing::info!(from = %record.from, to = %record.to, trigger, "recording an upgrade made by the orchestrator");
                    Stored {
                        name: self.unique_name(&record.to),
                        uid: Uuid::new_v4().to_string(),
                        creation_timestamp: record.started_at.clone().unwrap_or_else(|| now.clone()),
                        spec: UpgradeSpec { version: record.to.clone(), roll_nodepools: false },
                        status: UpgradeStatus { trigger: trigger.to_owned(), ..Default::default() },
                        ..Default::default()
                    }
                }
            };
            let spec = s.spec.clone();
            progress::follow(&mut s.status, &spec, record, inspection.components(), &now, 1);
            if let Err(e) = self.save(s).await {
                tracing::warn!(error = %e.message, "saving an upgrade failed");
            }
        }
        // Requested, stored, but the orchestrator never got the request (its requester stopped).
        let at = jiff::Timestamp::now();
        let unstarted: Vec<Stored> =
            self.lock().values().filter(|s| progress::never_started(&s.status, at, UNSTARTED_AFTER)).cloned().collect();
        for mut s in unstarted {
            tracing::warn!(upgrade = %s.name, "the orchestrator never started this upgrade; ending it as failed");
            s.status.end(false, "the orchestrator never started this upgrade".into(), &now, 1);
            if let Err(e) = self.save(s).await {
                tracing::warn!(error = %e.message, "saving an upgrade failed");
            }
        }
    }

    async fn pools(&self) -> Result<Vec<Pool>, orchestrator::Error> {
        let cluster = self.client.get_sks_cluster(self.cluster).await?;
        let filter = InstanceFilter { manager_type: Some(ManagerType::InstancePool), ..Default::default() };
        let instances = self.client.list_instances(&filter).await?;
        let nodes: Option<HashMap<String, bool>> = self
            .nodes
            .as_ref()
            .and_then(|n| n.node_states())
            .map(|all| all.into_iter().map(|n| (n.name.to_lowercase(), n.ready && n.initialized)).collect());
        Ok(cluster
            .nodepools
            .iter()
            .filter_map(|np| {
                let pool = np.instance_pool?.id;
                let members = instances
                    .iter()
                    .filter(|i| i.manager.as_ref().is_some_and(|m| m.id == pool))
                    .map(|i| Member {
                        id: i.id,
                        name: i.name.clone(),
                        up_to_date: np.template.is_some() && i.template == np.template,
                        ready: match &nodes {
                            Some(n) => n.get(&i.name.to_lowercase()).copied().unwrap_or(false),
                            None => i.state == orchestrator::model::InstanceState::Running,
                        },
                    })
                    .collect();
                Some(Pool { id: np.id, name: np.spec.name.clone().unwrap_or_default(), size: np.size, members })
            })
            .collect())
    }

    /// Asks the orchestrator for `r`: grow the pool by one above the recorded size, then evict.
    async fn replace(&self, r: &Replacement) -> Result<(), orchestrator::Error> {
        grow_then_evict(&self.client, self.cluster, r.nodepool, vec![r.instance], r.size).await.map(drop)
    }

    /// One step of every roll in progress (the leader's).
    async fn roll(&self) -> Result<(), orchestrator::Error> {
        let rolling: Vec<Stored> =
            self.lock().values().filter(|s| s.status.phase == phase::NODEPOOLS).cloned().collect();
        for s in rolling {
            let _w = self.writing.lock().await;
            if !self.leads() {
                return Ok(());
            }
            // As stored now, not as listed before the lock.
            let Some(mut s) = self.lock().get(&s.uid).cloned() else { continue };
            let pools = self.pools().await?;
            let now = jiff::Timestamp::now();
            let stamp = timestamp_now();
            let step = progress::roll_step(&mut s.status.nodepools, &pools, now, self.replacement_timeout);
            match step {
                RollStep::Replace(r) => {
                    let np = s
                        .status
                        .nodepools
                        .iter()
                        .find(|p| p.pending_replacement.is_some())
                        .cloned()
                        .unwrap_or_default();
                    tracing::info!(upgrade = %s.name, nodepool = %np.name, node = ?np.replacing, "replacing a node of the previous version");
                    s.status.message = Some(format!(
                        "replacing node {} of nodepool {} ({} of {} replaced)",
                        np.replacing.clone().unwrap_or_default(),
                        np.name,
                        np.replaced,
                        np.total
                    ));
                    // Write-ahead: once stored, the replacement is completed, not chosen again.
                    if let Err(e) = self.save(s.clone()).await {
                        tracing::warn!(error = %e.message, "storing a node replacement failed; not replacing yet");
                        continue;
                    }
                    self.replace(&r).await?;
                }
                RollStep::Restore { nodepool, size } => {
                    tracing::info!(upgrade = %s.name, %nodepool, size, "scaling a nodepool back after an eviction");
                    self.client.scale_sks_nodepool(self.cluster, nodepool, size).await?;
                }
                RollStep::Wait => {}
                RollStep::Done => {
                    let to = s.status.to.clone();
                    s.status.end(true, format!("the control plane and every node run {to}"), &stamp, 1);
                    tracing::info!(upgrade = %s.name, "upgrade complete, nodes rolled");
                }
                RollStep::Failed(why) => {
                    tracing::warn!(upgrade = %s.name, "{why}");
                    s.status.end(false, why, &stamp, 1);
                }
            }
            if let Err(e) = self.save(s).await {
                tracing::warn!(error = %e.message, "saving an upgrade failed");
            }
        }
        Ok(())
    }

    /// Every `tick`: re-reads the stored upgrades and, on the leader, follows
    /// those in progress (the orchestrator is only asked while one runs; the
    /// Cluster's refresh observes new ones) and rolls nodepools.
    pub async fn run(self: Arc<Self>, tick: Duration) {
        while let Err(e) = self.reload().await {
            tracing::warn!(error = %e, "reading stored upgrades failed; retrying");
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        loop {
            tokio::time::sleep(tick).await;
            // An upgrade requested through another replica shows after this tick's read.
            let following = self.leads() && self.in_progress().is_some();
            let inspection = if following {
                match self.client.get_sks_cluster_inspection(self.cluster).await {
                    Ok(v) => Some(Inspection::parse(&v)),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading the cluster inspection failed");
                        None
                    }
                }
            } else {
                None
            };
            match inspection {
                // observe() re-reads the store itself, then follows the records.
                Some(inspection) => self.observe(&inspection).await,
                None => {
                    if let Err(e) = self.reload().await {
                        tracing::warn!(error = %e, "re-reading stored upgrades failed; serving the last read");
                        continue;
                    }
                }
            }
            if following && let Err(e) = self.roll().await {
                tracing::warn!(error = %e, "rolling nodepools failed; retrying");
            }
        }
    }

    async fn create_object(&self, ctx: &Context, obj: Value) -> ApiResult<Value> {
        let name = obj["metadata"]["name"].as_str().map(str::to_owned);
        let spec = spec_of(&obj)?;
        let labels = serde_json::from_value(obj["metadata"]["labels"].clone()).unwrap_or_default();
        let annotations = serde_json::from_value(obj["metadata"]["annotations"].clone()).unwrap_or_default();
        self.request(ctx, name, (labels, annotations), spec, "spec.version").await
    }
}

/// The spec of `obj`; a field of the wrong type is a 400, as decoding is in kube-apiserver.
fn spec_of(obj: &Value) -> ApiResult<UpgradeSpec> {
    serde_json::from_value(obj["spec"].clone()).map_err(|e| ApiError::bad_request(format!("spec: {e}")))
}

impl Strategy for Upgrades {
    fn prepare_for_create<'a>(&'a self, _ctx: &'a Context, obj: &'a mut Value) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(std::future::ready(spec_of(obj).map(|_| ())))
    }

    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        match spec_of(obj) {
            Ok(spec) if spec.version.is_empty() => vec![Cause::required("spec.version")],
            _ => Vec::new(),
        }
    }
}

impl Creater for Upgrades {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        Some(self)
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.create_object(ctx, obj))
    }
}

impl Storage for Upgrades {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    fn creater(&self) -> Option<&dyn Creater> {
        Some(self)
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
