//! The `eviction` subresource: remove chosen nodes from a nodepool (it
//! shrinks by as many), by node name.

use orchestrator::model::{InstanceFilter, ManagerType};
use serde_json::{Value, json};
use sks_rest::status::{ApiResult, Cause, success_message};
use sks_rest::storage::Context;

use super::{NodePools, convert};

impl NodePools {
    /// Evicts the nodes listed in `body` (`{"nodes": [...]}`) from nodepool `name`.
    pub(super) async fn evict(&self, ctx: &Context, name: &str, body: Value) -> ApiResult<Value> {
        let _w = self.writing.lock().await;
        let (_, np) = self.current(name)?;
        let gr = self.def.group_resource();
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
            return Ok(success_message(gr, name, format!("would evict {} node(s)", ids.len())));
        }
        self.client
            .evict_sks_nodepool_members(self.cluster, np.id, ids.clone())
            .await
            .map_err(|e| self.orchestrator_error(&e, name))?;
        let uid = np.id.to_string();
        let mut meta = self.meta(&uid);
        meta.generation += 1;
        let mut spec = convert::full_spec(&np, &meta, &self.types());
        spec.replicas = Some(np.size - ids.len() as i64);
        meta.spec_hash = convert::spec_hash(&spec);
        self.save_meta(&uid, meta).await?;
        self.refresh_after_write(name).await;
        Ok(success_message(gr, name, format!("evicted {} node(s) from nodepool {name}", ids.len())))
    }
}
