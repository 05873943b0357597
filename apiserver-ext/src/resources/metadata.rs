//! Metadata the orchestrator cannot hold (annotations, finalizers, generation,
//! deletion time), kept in a side store so `kubectl apply` and finalizers work.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use sks_rest::storage::BoxFuture;

/// The side-stored part of an object's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// Annotations (including `kubectl.kubernetes.io/last-applied-configuration`).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Finalizers.
    #[serde(default)]
    pub finalizers: Vec<String>,
    /// `metadata.generation`.
    #[serde(default)]
    pub generation: i64,
    /// Hash of the spec `generation` was counted for.
    #[serde(default)]
    pub spec_hash: String,
    /// When deletion was requested while finalizers remained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_timestamp: Option<String>,
    /// The whole object, for kinds the orchestrator does not hold at all (upgrades).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<serde_json::Value>,
    /// A NodePool's autoscaling bounds (`spec.autoscaling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<crate::resources::nodepool::convert::Autoscaling>,
    /// What the autoscaler last did to a NodePool (`status.autoscaling`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling_status: Option<AutoscalingStatus>,
}

/// One change of a nodepool's size by the autoscaler.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleChange {
    /// When (RFC 3339).
    pub time: String,
    /// Size before.
    pub from: i64,
    /// Size after.
    pub to: i64,
    /// Why, in words.
    pub reason: String,
}

/// What the autoscaler last did to a nodepool, and whether pods wait for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingStatus {
    /// The last scale-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_up: Option<ScaleChange>,
    /// The last scale-down.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scale_down: Option<ScaleChange>,
    /// Set while pods wait because the nodepool is at its maximum: the message of `ScalingLimited`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limited: Option<String>,
}

/// Where side-stored metadata lives, keyed by object uid.
pub trait MetadataStore: Send + Sync {
    /// Everything stored.
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, ObjectMeta>, String>>;
    /// Stores one object's metadata.
    fn save<'a>(&'a self, uid: &'a str, meta: &'a ObjectMeta) -> BoxFuture<'a, Result<(), String>>;
    /// Stores several objects' metadata; stores that can do it in one write override this.
    fn save_many<'a>(&'a self, items: &'a [(String, ObjectMeta)]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            for (uid, meta) in items {
                self.save(uid, meta).await?;
            }
            Ok(())
        })
    }
    /// Forgets one object.
    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), String>>;
}

/// A JSON file, replaced atomically on every change: for a single replica.
pub struct FileStore {
    path: PathBuf,
    lock: tokio::sync::Mutex<()>,
}

impl FileStore {
    /// A store in `path` (created on first write).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into(), lock: tokio::sync::Mutex::new(()) }
    }

    async fn read(&self) -> Result<BTreeMap<String, ObjectMeta>, String> {
        match tokio::fs::read(&self.path).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    async fn write(&self, all: &BTreeMap<String, ObjectMeta>) -> Result<(), String> {
        let tmp = self.path.with_extension("tmp");
        let bytes = serde_json::to_vec(all).map_err(|e| e.to_string())?;
        if let Some(dir) = self.path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(|e| e.to_string())?;
        }
        let write = async {
            use tokio::io::AsyncWriteExt as _;
            let mut f = tokio::fs::File::create(&tmp).await?;
            f.write_all(&bytes).await?;
            f.sync_all().await?;
            tokio::fs::rename(&tmp, &self.path).await
        };
        write.await.map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl MetadataStore for FileStore {
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, ObjectMeta>, String>> {
        Box::pin(async move {
            let _g = self.lock.lock().await;
            self.read().await
        })
    }

    fn save<'a>(&'a self, uid: &'a str, meta: &'a ObjectMeta) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.save_many(&[(uid.to_owned(), meta.clone())]).await })
    }

    fn save_many<'a>(&'a self, items: &'a [(String, ObjectMeta)]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let _g = self.lock.lock().await;
            let mut all = self.read().await?;
            all.extend(items.iter().cloned());
            self.write(&all).await
        })
    }

    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let _g = self.lock.lock().await;
            let mut all = self.read().await?;
            if all.remove(uid).is_some() {
                self.write(&all).await?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_store_round_trips_and_survives_reopening() {
        let path = std::env::temp_dir().join(format!("meta-{}.json", uuid::Uuid::new_v4()));
        let store = FileStore::new(&path);
        assert!(store.load().await.unwrap().is_empty());
        let meta = ObjectMeta { finalizers: vec!["x/y".into()], generation: 3, ..Default::default() };
        store.save("u1", &meta).await.unwrap();
        store.save_many(&[("u2".into(), meta.clone()), ("u3".into(), meta.clone())]).await.unwrap();
        assert_eq!(store.load().await.unwrap().len(), 3);
        store.remove("u2").await.unwrap();
        store.remove("u3").await.unwrap();
        assert_eq!(FileStore::new(&path).load().await.unwrap().get("u1"), Some(&meta));
        store.remove("u1").await.unwrap();
        assert!(store.load().await.unwrap().is_empty());
        let _ = std::fs::remove_file(path);
    }
}
