//! Side-stored metadata in the cluster itself, one ConfigMap per object, so
//! every replica of sks-apiserver sees the same annotations, finalizers and
//! generations, and they survive restarts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta as KubeMeta, PostParams};

use crate::resources::metadata::{MetadataStore, ObjectMeta};
use sks_rest::storage::BoxFuture;

/// Label marking the ConfigMaps of this store, with the kind as value.
pub const LABEL: &str = "sks.exoscale.net/metadata-of";

/// ConfigMaps `<prefix>-<uid>` in one namespace.
pub struct ConfigMapStore {
    api: Api<ConfigMap>,
    kind: String,
}

impl ConfigMapStore {
    /// A store for objects of `kind` (e.g. `nodepools`) in `namespace`.
    pub fn new(client: kube::Client, namespace: &str, kind: &str) -> Self {
        ConfigMapStore { api: Api::namespaced(client, namespace), kind: kind.to_owned() }
    }

    fn name(&self, uid: &str) -> String {
        format!("sks-{}-{uid}", self.kind.trim_end_matches('s'))
    }

    fn object(&self, uid: &str, meta: &ObjectMeta, resource_version: Option<String>) -> Result<ConfigMap, String> {
        Ok(ConfigMap {
            metadata: KubeMeta {
                name: Some(self.name(uid)),
                labels: Some(BTreeMap::from([(LABEL.to_owned(), self.kind.clone())])),
                annotations: Some(BTreeMap::from([("sks.exoscale.net/uid".to_owned(), uid.to_owned())])),
                resource_version,
                ..Default::default()
            },
            data: Some(BTreeMap::from([(
                "metadata".to_owned(),
                serde_json::to_string(meta).map_err(|e| e.to_string())?,
            )])),
            ..Default::default()
        })
    }
}

impl MetadataStore for ConfigMapStore {
    fn load(&self) -> BoxFuture<'_, Result<BTreeMap<String, ObjectMeta>, String>> {
        Box::pin(async move {
            let list = self
                .api
                .list(&ListParams::default().labels(&format!("{LABEL}={}", self.kind)))
                .await
                .map_err(|e| e.to_string())?;
            let mut out = BTreeMap::new();
            for cm in list.items {
                let uid = cm.metadata.annotations.as_ref().and_then(|a| a.get("sks.exoscale.net/uid")).cloned();
                let meta = cm.data.as_ref().and_then(|d| d.get("metadata")).and_then(|m| serde_json::from_str(m).ok());
                if let (Some(uid), Some(meta)) = (uid, meta) {
                    out.insert(uid, meta);
                }
            }
            Ok(out)
        })
    }

    fn save<'a>(&'a self, uid: &'a str, meta: &'a ObjectMeta) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            // Optimistic concurrency with other replicas: replace on the read version, retry on conflict.
            for _ in 0..5 {
                let current = self.api.get_opt(&self.name(uid)).await.map_err(|e| e.to_string())?;
                let result = match current {
                    Some(cm) => {
                        let obj = self.object(uid, meta, cm.metadata.resource_version)?;
                        self.api.replace(&self.name(uid), &PostParams::default(), &obj).await
                    }
                    None => self.api.create(&PostParams::default(), &self.object(uid, meta, None)?).await,
                };
                match result {
                    Ok(_) => return Ok(()),
                    Err(kube::Error::Api(e)) if e.code == 409 => continue,
                    Err(e) => return Err(e.to_string()),
                }
            }
            Err(format!("storing metadata of {uid}: too many conflicting writers"))
        })
    }

    fn remove<'a>(&'a self, uid: &'a str) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            match self.api.delete(&self.name(uid), &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                Err(e) => Err(e.to_string()),
            }
        })
    }
}
