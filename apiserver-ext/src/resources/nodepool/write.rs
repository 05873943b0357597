//! NodePool writes: the prepared, validated object (see `strategy`) becomes
//! orchestrator calls; the side store keeps what the orchestrator cannot.

use std::collections::BTreeMap;

use orchestrator::model::{CreateSksNodepool, SksNodepool};
use serde_json::{Value, json};
use sks_rest::status::{ApiError, ApiResult};
use sks_rest::storage::{Context, DeleteOptions, Transform};
use uuid::Uuid;

use super::convert::{self, NodePoolSpec};
use super::strategy::spec_from;
use super::{NodePools, key};
use crate::resources::metadata::ObjectMeta;
use crate::resources::timestamp_now as now;

fn map_of(obj: &Value, field: &str) -> BTreeMap<String, String> {
    serde_json::from_value(obj["metadata"][field].clone()).unwrap_or_default()
}

fn finalizers_of(obj: &Value) -> Vec<String> {
    serde_json::from_value(obj["metadata"]["finalizers"].clone()).unwrap_or_default()
}

impl NodePools {
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
            sks_rest::strategy::keep(&mut out["metadata"], &obj["metadata"], field);
        }
        out
    }

    pub(super) async fn create_object(&self, ctx: &Context, obj: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let name = obj["metadata"]["name"].as_str().unwrap_or("").to_owned();
        if self.cache.get(&key(&name)).is_some() {
            return Err(ApiError::already_exists(self.def.group_resource(), &name));
        }
        let spec = spec_from(&obj)?;
        if ctx.dry_run {
            return Ok(self.preview(None, &name, &spec, &obj));
        }
        let types = self.types();
        let body = CreateSksNodepool {
            spec: convert::orchestrator_spec(&name, &spec, &map_of(&obj, "labels"), &types),
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
                annotations: map_of(&obj, "annotations"),
                finalizers: finalizers_of(&obj),
                generation: 1,
                autoscaling: spec.autoscaling,
                ..ObjectMeta::default()
            };
            self.save_meta(&uid.to_string(), meta).await?;
        }
        self.refresh_after_write(&name).await;
        self.cache
            .get(&key(&name))
            .map(|o| (*o).clone())
            .ok_or_else(|| ApiError::timeout(format!("nodepool {name} was created but is not visible yet")))
    }

    pub(super) async fn update_object(&self, ctx: &Context, name: &str, transform: Transform<'_>) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (current, np) = self.current(name)?;
        let new = transform(&current)?;
        self.apply(ctx, name, &current, &np, new).await
    }

    /// Makes the orchestrator's nodepool what `new` (prepared and valid) says,
    /// and stores the metadata it cannot hold. Callers hold the write lock.
    pub(super) async fn apply(
        &self,
        ctx: &Context,
        name: &str,
        current: &Value,
        np: &SksNodepool,
        new: Value,
    ) -> ApiResult<Value> {
        let spec = spec_from(&new)?;
        if ctx.dry_run {
            return Ok(self.preview(Some(current), name, &spec, &new));
        }
        let types = self.types();
        let old_labels = np.spec.labels.clone().unwrap_or_default();
        let old = convert::orchestrator_spec(name, &convert::spec_of(np, &types), &old_labels, &types);
        let wanted = convert::orchestrator_spec(name, &spec, &map_of(&new, "labels"), &types);
        if let Some(body) = convert::update_body(&old, &wanted) {
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
        let uid = np.id.to_string();
        let mut meta = self.meta(&uid);
        if convert::spec_hash(&spec) != convert::spec_hash(&convert::full_spec(np, &meta, &types)) {
            meta.generation += 1;
            meta.spec_hash = convert::spec_hash(&spec);
        }
        meta.autoscaling = spec.autoscaling;
        let finalizers = finalizers_of(&new);
        let finalized = meta.deletion_timestamp.is_some() && finalizers.is_empty();
        meta.annotations = map_of(&new, "annotations");
        meta.finalizers = finalizers;
        self.save_meta(&uid, meta).await?;
        if finalized {
            self.destroy(name, np).await?;
        }
        self.refresh_after_write(name).await;
        Ok(self.cache.get(&key(name)).map_or_else(|| current.clone(), |o| (*o).clone()))
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

    pub(super) async fn delete_object(&self, ctx: &Context, name: &str, opts: DeleteOptions) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (current, np) = self.current(name)?;
        opts.check(&self.def, &current)?;
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
            return Ok(self.cache.get(&key(name)).map_or_else(|| (*current).clone(), |o| (*o).clone()));
        }
        self.destroy(name, &np).await
    }
}
