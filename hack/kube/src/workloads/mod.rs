//! The subset of kube-controller-manager that workloads need, run inside
//! the stand-in: Deployments, ReplicaSets, DaemonSets, PodDisruptionBudget
//! status (the disruption controller), the garbage collector and pod GC.
//! Each controller is a loop that wakes on a change of the kinds it reads
//! (or a resync period), reads the stores' caches, decides with pure
//! functions, and writes through the same write pipeline clients use (as
//! `system:kube-controller-manager`), so what it writes is defaulted and
//! validated like any request. One pass at a time per controller, so no
//! expectations are needed: a controller's own writes are in the cache
//! when its next pass reads it.

pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod garbage;
pub mod podgc;
pub mod replicaset;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sks_rest::authn::UserInfo;
use sks_rest::cache::ObjectCache;
use sks_rest::memory::MemStorage;
use sks_rest::status::ApiResult;
use sks_rest::storage::{Context, DeleteOptions, Deleter as _, Storage as _};
use sks_rest::write;
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

/// Objects are created in bursts of at most this many per pass (kube-controller-manager's `burstReplicas`).
pub const BURST: usize = 500;

/// The stores the controllers read and write.
#[derive(Clone)]
pub struct Cluster {
    /// Pods.
    pub pods: Arc<MemStorage>,
    /// Nodes.
    pub nodes: Arc<MemStorage>,
    /// apps/v1 Deployments.
    pub deployments: Arc<MemStorage>,
    /// apps/v1 ReplicaSets.
    pub replicasets: Arc<MemStorage>,
    /// apps/v1 DaemonSets.
    pub daemonsets: Arc<MemStorage>,
    /// policy/v1 PodDisruptionBudgets.
    pub budgets: Arc<MemStorage>,
    /// Every stored kind (the garbage collector's view).
    pub all: Vec<Arc<MemStorage>>,
}

/// Who the controllers write as.
pub fn controller_context(namespace: Option<&str>) -> Context {
    Context {
        user: UserInfo {
            name: "system:kube-controller-manager".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        },
        namespace: namespace.map(str::to_owned),
        dry_run: false,
    }
}

/// The `metadata` fields of an object.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// The namespace of an object ("" for cluster-scoped ones).
pub fn namespace(obj: &Value) -> &str {
    obj["metadata"]["namespace"].as_str().unwrap_or("")
}

/// The uid of an object.
pub fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or("")
}

/// Whether the object is being deleted.
pub fn deleting(obj: &Value) -> bool {
    !obj["metadata"]["deletionTimestamp"].is_null()
}

/// The object's controller reference (`ownerReferences` entry with `controller: true`).
pub fn controller_of(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"].as_array()?.iter().find(|r| r["controller"] == true)
}

/// Whether `obj` is controlled by `owner` (by uid).
pub fn controlled_by(obj: &Value, owner: &Value) -> bool {
    controller_of(obj).is_some_and(|r| r["uid"] == owner["metadata"]["uid"])
}

/// The controller reference a controller puts on what it creates.
pub fn controller_ref(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name(owner), "uid": uid(owner), "controller": true, "blockOwnerDeletion": true})
}

/// An integer field of `obj` at `pointer`, 0 when absent.
pub fn int(obj: &Value, pointer: &str) -> i64 {
    obj.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// Pods by namespace, read once per pass.
pub fn pods_by_namespace(pods: &MemStorage) -> BTreeMap<String, Vec<Arc<Value>>> {
    let mut out: BTreeMap<String, Vec<Arc<Value>>> = BTreeMap::new();
    for p in pods.all() {
        out.entry(namespace(&p).to_owned()).or_default().push(p);
    }
    out
}

/// Creates `obj` in `store` through the write pipeline, as a controller.
pub async fn create(store: &MemStorage, obj: Value) -> ApiResult<Value> {
    let ctx = controller_context(Some(namespace(&obj)).filter(|n| !n.is_empty()));
    write::create(store.def(), store, &ctx, obj).await
}

/// Changes `obj` (or its `sub`resource) in `store` with `change`, applied to the current version.
pub async fn update(
    store: &MemStorage,
    obj: &Value,
    sub: Option<&str>,
    change: impl FnOnce(&mut Value) + Send,
) -> ApiResult<Value> {
    let ctx = controller_context(Some(namespace(obj)).filter(|n| !n.is_empty()));
    let uid = uid(obj).to_owned();
    write::update(store.def(), store, &ctx, name(obj), sub, move |current| {
        if current["metadata"]["uid"] != uid.as_str() {
            // Deleted and created again since it was read: leave the new one alone.
            return Err(sks_rest::status::ApiError::conflict(store.def().group_resource(), name(current)));
        }
        let mut next = current.clone();
        change(&mut next);
        Ok(next)
    })
    .await
}

/// Deletes `obj` from `store` (its uid as precondition), with `grace` seconds when given.
pub async fn delete(store: &MemStorage, obj: &Value, grace: Option<i64>) -> ApiResult<Value> {
    let ctx = controller_context(Some(namespace(obj)).filter(|n| !n.is_empty()));
    let opts =
        DeleteOptions { uid: Some(uid(obj).to_owned()), grace_period_seconds: grace, ..DeleteOptions::default() };
    store.delete(&ctx, name(obj), opts).await
}

/// Adds `reference` (a controller reference) to `obj`'s owners: `what` for the log.
pub async fn adopt(store: &MemStorage, obj: &Value, reference: Value, what: &str) {
    let adopted = update(store, obj, None, move |o| {
        let mut refs = o["metadata"]["ownerReferences"].as_array().cloned().unwrap_or_default();
        refs.push(reference);
        o["metadata"]["ownerReferences"] = json!(refs);
    });
    log_failure(what, adopted.await);
}

/// Removes from `obj` its references to the owners with these `uids`: `what` for the log.
pub async fn release(store: &MemStorage, obj: &Value, uids: Vec<String>, what: &str) {
    let released = update(store, obj, None, move |o| {
        if let Some(refs) = o.pointer_mut("/metadata/ownerReferences").and_then(Value::as_array_mut) {
            refs.retain(|r| !uids.iter().any(|u| r["uid"] == u.as_str()));
        }
    });
    log_failure(what, released.await);
}

/// Logs a failed write of a controller: the next pass tries again.
pub fn log_failure<T>(what: &str, result: ApiResult<T>) -> Option<T> {
    match result {
        Ok(v) => Some(v),
        Err(e) if e.code == 404 || e.code == 409 => {
            tracing::debug!(error = %e, "{what}: the object changed meanwhile; next pass");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "{what} failed; next pass");
            None
        }
    }
}

/// Wakes a controller when any of the caches it watches changes, or after a resync period.
pub struct Wake {
    notify: Arc<Notify>,
}

impl Wake {
    /// Wakes on every change of `caches`.
    pub fn on(caches: &[&Arc<ObjectCache>]) -> Wake {
        let notify = Arc::new(Notify::new());
        for cache in caches {
            let (_, _, mut rx) = cache.subscribe_now();
            let notify = notify.clone();
            tokio::spawn(async move {
                // Every change (or a missed one) wakes the controller; a closed channel ends the watch.
                while let Ok(_) | Err(RecvError::Lagged(_)) = rx.recv().await {
                    notify.notify_one();
                }
            });
        }
        Wake { notify }
    }

    /// Waits for a change, at most `period`.
    pub async fn next(&self, period: Duration) {
        tokio::select! {
            () = self.notify.notified() => {}
            () = tokio::time::sleep(period) => {}
        }
    }
}

/// fnv-1a (32 bits) of `bytes`: the hash kube's `ComputeHash` uses.
pub fn fnv32a(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// `rand.SafeEncodeString` of the decimal `n`: the form of kube's template hashes.
pub fn safe_encode(n: u32) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    n.to_string().bytes().map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char).collect()
}

/// A pod template's hash (label `pod-template-hash`, `controller-revision-hash`):
/// fnv-1a of its JSON (keys sorted) and the collision count, encoded as kube
/// encodes its own. The same shape as kube-controller-manager's hashes, not
/// the same values (it hashes Go structures).
pub fn template_hash(template: &Value, collision_count: i64) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if collision_count > 0 {
        bytes.extend_from_slice(&collision_count.to_le_bytes());
    }
    safe_encode(fnv32a(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_look_like_kubes() {
        assert_eq!(fnv32a(b""), 0x811c_9dc5);
        assert_eq!(fnv32a(b"a"), 0xe40c_292c);
        let h = template_hash(&json!({"metadata": {"labels": {"app": "web"}}}), 0);
        assert!(h.len() <= 10 && h.bytes().all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)), "{h}");
        assert_ne!(
            h,
            template_hash(&json!({"metadata": {"labels": {"app": "web"}}}), 1),
            "a collision count changes it"
        );
    }
}
