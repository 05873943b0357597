//! NodePools: the cluster's SKS nodepools as a Kubernetes resource.
//!
//! One refresh loop keeps a cache of every nodepool (one cluster GET and one
//! instance list per refresh, however many clients and watches there are);
//! reads and watches are served from it; writes go to the orchestrator and
//! refresh the cache before they answer.

pub mod convert;
pub mod def;
pub mod validate;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use orchestrator::model::{CreateSksNodepool, Instance, InstanceFilter, ManagerType, SksNodepool};
use serde_json::{Value, json};
use uuid::Uuid;

use self::convert::{InstanceTypes, NodePoolSpec, Observed};
use crate::resources::errors::from_orchestrator;
use crate::resources::metadata::{MetadataStore, ObjectMeta};
use crate::resources::timestamp_now as now;
use sks_rest::cache::{Key, ObjectCache};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, DeleteOptions, Storage};

/// Largest total size of an object's annotations, as kube-apiserver allows.
const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// A Node as rolls see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// Name.
    pub name: String,
    /// Ready condition True.
    pub ready: bool,
    /// Initialized by sks-ccm: a providerID and no uninitialized taint.
    pub initialized: bool,
}

/// Ready Nodes per nodepool id, when the cluster's Nodes are visible.
pub trait NodeReadiness: Send + Sync {
    /// Ready Node counts by nodepool id; `None` when not known (yet).
    fn ready_by_nodepool(&self) -> Option<HashMap<String, i64>>;

    /// Every Node of a nodepool; `None` when not known (yet).
    fn node_states(&self) -> Option<Vec<NodeState>> {
        None
    }
}

/// The NodePool storage of one cluster.
pub struct NodePools {
    def: ResourceDef,
    cache: Arc<ObjectCache>,
    client: orchestrator::Client,
    cluster: Uuid,
    types: RwLock<InstanceTypes>,
    store: Arc<dyn MetadataStore>,
    metas: Mutex<BTreeMap<String, ObjectMeta>>,
    nodepools: Mutex<BTreeMap<String, SksNodepool>>,
    nodes: Option<Arc<dyn NodeReadiness>>,
    refreshing: tokio::sync::Mutex<()>,
    writing: tokio::sync::Mutex<()>,
    ready: AtomicBool,
}

fn key(name: &str) -> Key {
    (String::new(), name.to_owned())
}

fn labels_of(obj: &Value) -> ApiResult<BTreeMap<String, String>> {
    match &obj["metadata"]["labels"] {
        Value::Null => Ok(BTreeMap::new()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("metadata.labels: {e}"))),
    }
}

fn annotations_of(obj: &Value) -> ApiResult<BTreeMap<String, String>> {
    match &obj["metadata"]["annotations"] {
        Value::Null => Ok(BTreeMap::new()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("metadata.annotations: {e}"))),
    }
}

fn finalizers_of(obj: &Value) -> ApiResult<Vec<String>> {
    match &obj["metadata"]["finalizers"] {
        Value::Null => Ok(Vec::new()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("metadata.finalizers: {e}"))),
    }
}

fn spec_from(obj: &Value) -> ApiResult<NodePoolSpec> {
    match &obj["spec"] {
        Value::Null => Ok(NodePoolSpec::default()),
        v => serde_json::from_value(v.clone()).map_err(|e| ApiError::bad_request(format!("spec: {e}"))),
    }
}

fn check_metadata(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    finalizers: &[String],
) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (k, v) in labels {
        if k.is_empty()
            || k.len() > 316
            || v.len() > 63
            || !v.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            causes.push(Cause::invalid(
                &format!("metadata.labels[{k}]"),
                &json!(v),
                "a valid label value must be at most 63 characters of alphanumerics, '-', '_' or '.'",
            ));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_ANNOTATIONS_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            message: format!("Too long: must have at most {MAX_ANNOTATIONS_BYTES} bytes"),
            field: "metadata.annotations".into(),
        });
    }
    for (i, f) in finalizers.iter().enumerate() {
        if f.is_empty() || f.len() > 316 {
            causes.push(Cause::invalid(&format!("metadata.finalizers[{i}]"), &json!(f), "must be a qualified name"));
        }
    }
    causes
}

impl NodePools {
    /// A storage of `cluster`'s nodepools; call [`NodePools::run`] to keep it current.
    pub fn new(
        client: orchestrator::Client,
        cluster: Uuid,
        store: Arc<dyn MetadataStore>,
        nodes: Option<Arc<dyn NodeReadiness>>,
    ) -> Self {
        NodePools {
            def: def::definition(),
            cache: Arc::new(ObjectCache::new(ObjectCache::random_epoch(), 10_000)),
            client,
            cluster,
            types: RwLock::new(InstanceTypes::default()),
            store,
            metas: Mutex::new(BTreeMap::new()),
            nodepools: Mutex::new(BTreeMap::new()),
            nodes,
            refreshing: tokio::sync::Mutex::new(()),
            writing: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
        }
    }

    fn invalid(&self, name: &str, causes: Vec<Cause>) -> ApiError {
        ApiError::invalid(self.def.kind, self.def.group, self.def.plural, name, causes)
    }

    fn orchestrator_error(&self, e: &orchestrator::Error, name: &str) -> ApiError {
        from_orchestrator(e, self.def.group_resource(), name)
    }

    /// Refreshes the cache every `period` until the process ends.
    pub async fn run(self: Arc<Self>, period: Duration) {
        let mut failures = 0u32;
        loop {
            match self.refresh().await {
                Ok(()) => failures = 0,
                Err(e) => {
                    failures += 1;
                    tracing::warn!(error = %e, failures, "refreshing nodepools failed; serving the last known state");
                }
            }
            // Back off while the orchestrator fails, but never wait longer than the period.
            let wait = if failures == 0 {
                period
            } else {
                (Duration::from_millis(500) * 2u32.pow(failures.min(6))).min(period)
            };
            tokio::time::sleep(wait).await;
        }
    }

    async fn load_types(&self) -> Result<(), orchestrator::Error> {
        let types = self.client.list_instance_types().await?;
        *self.types.write().unwrap_or_else(|e| e.into_inner()) = InstanceTypes::new(types);
        Ok(())
    }

    fn types(&self) -> InstanceTypes {
        self.types.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the cluster's nodepools and their instances once and updates the cache.
    pub async fn refresh(&self) -> Result<(), orchestrator::Error> {
        let _one = self.refreshing.lock().await;
        if self.types().is_empty() {
            self.load_types().await?;
        }
        let cluster = self.client.get_sks_cluster(self.cluster).await?;
        let filter = InstanceFilter { manager_type: Some(ManagerType::InstancePool), ..Default::default() };
        let instances = self.client.list_instances(&filter).await?;
        let mut by_pool: HashMap<Uuid, Vec<Instance>> = HashMap::new();
        for i in instances {
            if let Some(m) = &i.manager {
                by_pool.entry(m.id).or_default().push(i);
            }
        }
        match self.store.load().await {
            Ok(stored) => *self.metas.lock().unwrap_or_else(|e| e.into_inner()) = stored,
            Err(e) => tracing::warn!(error = %e, "reading the metadata store failed; using the last known metadata"),
        }
        let types = self.types();
        let ready_nodes = self.nodes.as_ref().and_then(|n| n.ready_by_nodepool());
        let stamp = now();
        let mut seen = BTreeSet::new();
        let mut current = BTreeMap::new();
        let mut changed = Vec::new();
        for np in cluster.nodepools {
            let name = np.spec.name.clone().unwrap_or_default();
            let uid = np.id.to_string();
            let hash = convert::spec_hash(&convert::spec_of(&np, &types));
            let meta = {
                let mut metas = self.metas.lock().unwrap_or_else(|e| e.into_inner());
                let meta = metas.entry(uid.clone()).or_default();
                if meta.spec_hash != hash {
                    // Changed behind our back (or first seen): a new generation.
                    meta.generation =
                        if meta.spec_hash.is_empty() { meta.generation.max(1) } else { meta.generation + 1 };
                    meta.spec_hash = hash;
                    Some(meta.clone())
                } else {
                    None
                }
            };
            if let Some(meta) = meta {
                changed.push((uid.clone(), meta));
            }
            let meta = self.metas.lock().unwrap_or_else(|e| e.into_inner()).get(&uid).cloned().unwrap_or_default();
            let members = np.instance_pool.and_then(|p| by_pool.get(&p.id)).map(Vec::as_slice).unwrap_or(&[]);
            let previous = self.cache.get(&key(&name));
            let seen_now = Observed {
                members,
                ready_nodes: ready_nodes.as_ref().map(|r| r.get(&uid).copied().unwrap_or(0)),
                previous: previous.as_deref(),
                now: &stamp,
            };
            self.cache.upsert(convert::to_object(&np, &meta, &types, &seen_now));
            seen.insert(name.clone());
            current.insert(name, np);
        }
        // One store write for every generation bump of this refresh (1,000 on a first start).
        if !changed.is_empty()
            && let Err(e) = self.store.save_many(&changed).await
        {
            tracing::warn!(error = %e, nodepools = changed.len(), "saving nodepool metadata failed");
        }
        let (objects, _) = self.cache.snapshot();
        for obj in objects {
            let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_owned();
            if !seen.contains(&name) {
                self.cache.remove(&key(&name));
                if let Some(uid) = obj["metadata"]["uid"].as_str() {
                    self.metas.lock().unwrap_or_else(|e| e.into_inner()).remove(uid);
                    let _ = self.store.remove(uid).await;
                }
            }
        }
        *self.nodepools.lock().unwrap_or_else(|e| e.into_inner()) = current;
        self.ready.store(true, Ordering::SeqCst);
        Ok(())
    }

    async fn refresh_after_write(&self, name: &str) {
        if let Err(e) = self.refresh().await {
            tracing::warn!(error = %e, nodepool = name, "refresh after a write failed");
        }
    }

    fn current(&self, name: &str) -> ApiResult<(Arc<Value>, SksNodepool)> {
        let obj = self.cache.get(&key(name)).ok_or_else(|| ApiError::not_found(self.def.group_resource(), name))?;
        let np = self
            .nodepools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(self.def.group_resource(), name))?;
        Ok((obj, np))
    }

    async fn save_meta(&self, uid: &str, meta: ObjectMeta) -> ApiResult<()> {
        self.store.save(uid, &meta).await.map_err(|e| ApiError::unavailable(format!("storing metadata: {e}")))?;
        self.metas.lock().unwrap_or_else(|e| e.into_inner()).insert(uid.to_owned(), meta);
        Ok(())
    }

    fn meta(&self, uid: &str) -> ObjectMeta {
        self.metas.lock().unwrap_or_else(|e| e.into_inner()).get(uid).cloned().unwrap_or_default()
    }

    /// The would-be object of a write that was only validated.
    fn preview(&self, base: Option<&Value>, name: &str, spec: &NodePoolSpec, obj: &Value) -> Value {
        let mut out = base.cloned().unwrap_or_else(|| {
            json!({
                "apiVersion": self.def.api_version(),
                "kind": self.def.kind,
                "metadata": {"name": name, "uid": Uuid::new_v4().to_string(), "generation": 1, "creationTimestamp": now()},
                "status": {"phase": "Creating", "replicas": 0, "readyReplicas": 0, "updatedReplicas": 0},
            })
        });
        out["spec"] = serde_json::to_value(spec).expect("specs serialise");
        for field in ["labels", "annotations", "finalizers"] {
            match &obj["metadata"][field] {
                Value::Null => {
                    if let Some(m) = out["metadata"].as_object_mut() {
                        m.remove(field);
                    }
                }
                v => out["metadata"][field] = v.clone(),
            }
        }
        out
    }

    async fn create_object(&self, ctx: &Context, mut obj: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let mut name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if name.is_empty()
            && let Some(prefix) = obj["metadata"]["generateName"].as_str()
        {
            name = format!("{prefix}{}", &Uuid::new_v4().simple().to_string()[..5]);
            obj["metadata"]["name"] = json!(name);
        }
        if self.cache.get(&key(&name)).is_some() {
            return Err(ApiError::already_exists(self.def.group_resource(), &name));
        }
        let mut spec = spec_from(&obj)?;
        spec.replicas = Some(spec.replicas.unwrap_or(1));
        spec.disk_size = Some(spec.disk_size.unwrap_or(validate::DEFAULT_DISK_SIZE));
        let (labels, annotations, finalizers) = (labels_of(&obj)?, annotations_of(&obj)?, finalizers_of(&obj)?);
        if self.types().by_name(spec.instance_type.as_deref().unwrap_or("")).is_none() {
            // A type published since we loaded the catalog is still accepted.
            let _ = self.load_types().await;
        }
        let types = self.types();
        let mut causes = validate::validate(&name, &spec, &types);
        if spec.replicas == Some(0) {
            causes.push(Cause::invalid(
                "spec.replicas",
                &json!(0),
                "must be at least 1 when creating a nodepool; scale it to 0 afterwards",
            ));
        }
        causes.extend(check_metadata(&labels, &annotations, &finalizers));
        if !causes.is_empty() {
            return Err(self.invalid(&name, causes));
        }
        if ctx.dry_run {
            return Ok(self.preview(None, &name, &spec, &obj));
        }
        let body = CreateSksNodepool {
            spec: convert::orchestrator_spec(&name, &spec, &labels, &types),
            size: spec.replicas.unwrap_or(1),
            addons: None,
        };
        let op = self
            .client
            .create_sks_nodepool(self.cluster, &body)
            .await
            .map_err(|e| self.orchestrator_error(&e, &name))?;
        if let Some(uid) = op.reference_id() {
            let meta = ObjectMeta {
                annotations,
                finalizers,
                generation: 1,
                spec_hash: String::new(),
                deletion_timestamp: None,
                object: None,
            };
            self.save_meta(&uid.to_string(), meta).await?;
        }
        self.refresh_after_write(&name).await;
        self.cache
            .get(&key(&name))
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::timeout(format!("nodepool {name} was created but is not visible yet")))
    }

    async fn update_object(&self, ctx: &Context, name: &str, obj: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (current, np) = self.current(name)?;
        let gr = self.def.group_resource();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str()
            && rv != current["metadata"]["resourceVersion"].as_str().unwrap_or("")
        {
            return Err(ApiError::conflict(gr, name));
        }
        let mut causes = Vec::new();
        for field in ["uid", "creationTimestamp"] {
            let given = &obj["metadata"][field];
            if !given.is_null() && given != &current["metadata"][field] {
                causes.push(Cause::invalid(&format!("metadata.{field}"), given, "field is immutable"));
            }
        }
        let mut spec = spec_from(&obj)?;
        spec.replicas = Some(spec.replicas.unwrap_or(np.size));
        spec.disk_size = Some(spec.disk_size.unwrap_or(validate::DEFAULT_DISK_SIZE));
        let (labels, annotations, finalizers) = (labels_of(&obj)?, annotations_of(&obj)?, finalizers_of(&obj)?);
        let types = self.types();
        causes.extend(validate::validate(name, &spec, &types));
        causes.extend(check_metadata(&labels, &annotations, &finalizers));
        let uid = np.id.to_string();
        let mut meta = self.meta(&uid);
        if meta.deletion_timestamp.is_some() && finalizers.iter().any(|f| !meta.finalizers.contains(f)) {
            causes.push(Cause::forbidden(
                "metadata.finalizers",
                "no new finalizers can be added if the object is being deleted",
            ));
        }
        if !causes.is_empty() {
            return Err(self.invalid(name, causes));
        }
        if ctx.dry_run {
            return Ok(self.preview(Some(&current), name, &spec, &obj));
        }
        let old_labels = np.spec.labels.clone().unwrap_or_default();
        let old = convert::orchestrator_spec(name, &convert::spec_of(&np, &types), &old_labels, &types);
        let new = convert::orchestrator_spec(name, &spec, &labels, &types);
        if let Some(body) = convert::update_body(&old, &new) {
            self.client
                .update_sks_nodepool(self.cluster, np.id, &body)
                .await
                .map_err(|e| self.orchestrator_error(&e, name))?;
        }
        if spec.replicas != Some(np.size) {
            let size = spec.replicas.unwrap_or(np.size);
            self.client
                .scale_sks_nodepool(self.cluster, np.id, size)
                .await
                .map_err(|e| self.orchestrator_error(&e, name))?;
        }
        let spec_changed = convert::spec_hash(&spec) != convert::spec_hash(&convert::spec_of(&np, &types));
        if spec_changed {
            meta.generation += 1;
            meta.spec_hash = convert::spec_hash(&spec);
        }
        let finalized = meta.deletion_timestamp.is_some() && finalizers.is_empty();
        meta.annotations = annotations;
        meta.finalizers = finalizers;
        self.save_meta(&uid, meta).await?;
        if finalized {
            self.destroy(name, &np).await?;
        }
        self.refresh_after_write(name).await;
        Ok(self.cache.get(&key(name)).map(|o| (*o).clone()).unwrap_or_else(|| (*current).clone()))
    }

    /// Deletes the nodepool in the orchestrator, announcing `deletionTimestamp` first.
    async fn destroy(&self, name: &str, np: &SksNodepool) -> ApiResult<Value> {
        let mut marked =
            (*self.cache.get(&key(name)).ok_or_else(|| ApiError::not_found(self.def.group_resource(), name))?).clone();
        if marked["metadata"]["deletionTimestamp"].is_null() {
            marked["metadata"]["deletionTimestamp"] = json!(now());
            marked["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        marked["status"]["phase"] = json!("Deleting");
        let marked = self.cache.upsert(marked);
        match self.client.delete_sks_nodepool(self.cluster, np.id).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(self.orchestrator_error(&e, name)),
        }
        self.refresh_after_write(name).await;
        Ok((*marked).clone())
    }

    async fn delete_object(&self, ctx: &Context, name: &str, opts: DeleteOptions) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (current, np) = self.current(name)?;
        let gr = self.def.group_resource();
        if opts.uid.as_deref().is_some_and(|u| u != current["metadata"]["uid"].as_str().unwrap_or("")) {
            return Err(ApiError::conflict_message(
                gr,
                name,
                "Precondition failed: UID in precondition does not match the object",
            ));
        }
        if opts
            .resource_version
            .as_deref()
            .is_some_and(|rv| rv != current["metadata"]["resourceVersion"].as_str().unwrap_or(""))
        {
            return Err(ApiError::conflict(gr, name));
        }
        if ctx.dry_run {
            let mut out = (*current).clone();
            out["metadata"]["deletionTimestamp"] = json!(now());
            return Ok(out);
        }
        let uid = np.id.to_string();
        let mut meta = self.meta(&uid);
        if !meta.finalizers.is_empty() {
            if meta.deletion_timestamp.is_none() {
                meta.deletion_timestamp = Some(now());
                self.save_meta(&uid, meta).await?;
                self.refresh_after_write(name).await;
            }
            return Ok(self.cache.get(&key(name)).map(|o| (*o).clone()).unwrap_or_else(|| (*current).clone()));
        }
        self.destroy(name, &np).await
    }

    fn scale_of(obj: &Value) -> Value {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {
                "name": obj["metadata"]["name"],
                "uid": obj["metadata"]["uid"],
                "resourceVersion": obj["metadata"]["resourceVersion"],
                "creationTimestamp": obj["metadata"]["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"]["replicas"]},
            "status": {"replicas": obj["status"]["replicas"], "selector": obj["status"]["selector"]},
        })
    }

    async fn scale(&self, ctx: &Context, name: &str, scale: Value) -> ApiResult<Value> {
        let mut obj = (*self.current(name)?.0).clone();
        if let Some(rv) = scale["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && rv != obj["metadata"]["resourceVersion"].as_str().unwrap_or("")
        {
            return Err(ApiError::conflict(self.def.group_resource(), name));
        }
        let Some(replicas) = scale["spec"]["replicas"].as_i64() else {
            return Err(self.invalid(name, vec![Cause::required("spec.replicas")]));
        };
        obj["spec"]["replicas"] = json!(replicas);
        let updated = self.update_object(ctx, name, obj).await?;
        Ok(Self::scale_of(&updated))
    }

    async fn evict(&self, ctx: &Context, name: &str, body: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (_, np) = self.current(name)?;
        let nodes: Vec<String> = match &body["nodes"] {
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect(),
            _ => Vec::new(),
        };
        if nodes.is_empty() {
            return Err(self.invalid(name, vec![Cause::required("nodes")]));
        }
        let pool = np.instance_pool.map(|p| p.id).unwrap_or_default();
        let filter = InstanceFilter {
            manager_id: Some(pool),
            manager_type: Some(ManagerType::InstancePool),
            ..Default::default()
        };
        let members = self.client.list_instances(&filter).await.map_err(|e| self.orchestrator_error(&e, name))?;
        let mut ids = Vec::new();
        let mut causes = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            match members.iter().find(|m| m.name.eq_ignore_ascii_case(node)) {
                Some(m) if !ids.contains(&m.id) => ids.push(m.id),
                Some(_) => causes.push(Cause::invalid(&format!("nodes[{i}]"), &json!(node), "listed twice")),
                None => causes.push(Cause::invalid(
                    &format!("nodes[{i}]"),
                    &json!(node),
                    format!("not a node of nodepool {name}"),
                )),
            }
        }
        if !causes.is_empty() {
            return Err(self.invalid(name, causes));
        }
        if ctx.dry_run {
            return Ok(
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "message": format!("would evict {} node(s)", ids.len())}),
            );
        }
        self.client
            .evict_sks_nodepool_members(self.cluster, np.id, ids.clone())
            .await
            .map_err(|e| self.orchestrator_error(&e, name))?;
        let uid = np.id.to_string();
        let mut meta = self.meta(&uid);
        meta.generation += 1;
        let mut spec = convert::spec_of(&np, &self.types());
        spec.replicas = Some(np.size - ids.len() as i64);
        meta.spec_hash = convert::spec_hash(&spec);
        self.save_meta(&uid, meta).await?;
        self.refresh_after_write(name).await;
        Ok(json!({
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Success",
            "message": format!("evicted {} node(s) from nodepool {name}", ids.len()),
            "details": {"name": name, "group": def::GROUP, "kind": "nodepools"},
        }))
    }
}

impl Storage for NodePools {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.cache
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.create_object(ctx, obj))
    }

    fn update<'a>(&'a self, ctx: &'a Context, name: &'a str, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.update_object(ctx, name, obj))
    }

    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(self.delete_object(ctx, name, opts))
    }

    fn get_subresource<'a>(
        &'a self,
        _ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            let obj = self.current(name)?.0;
            match sub {
                "scale" => Ok(Self::scale_of(&obj)),
                "status" => Ok((*obj).clone()),
                _ => Err(ApiError::no_route()),
            }
        })
    }

    fn update_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            match sub {
                "scale" => self.scale(ctx, name, obj).await,
                _ => Err(ApiError::method_not_allowed("update", self.def.group_resource())),
            }
        })
    }

    fn create_subresource<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: &'a str,
        obj: Value,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move {
            match sub {
                "eviction" => self.evict(ctx, name, obj).await,
                _ => Err(ApiError::method_not_allowed("create", self.def.group_resource())),
            }
        })
    }

    fn ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}
