//! The slim types as kube's `Api<K>`, watcher and reflector want them, as
//! `sks-ccm`'s cached Node is: what the simulation reads plus the metadata kube
//! keys objects on, claiming the full type's group, version, kind and URL.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Deserializer};

/// A Pod or Node for kube's `Api` and watcher: the slim form plus its name,
/// namespace, uid and resourceVersion (kube needs an `ObjectMeta`; nothing
/// else is kept in it).
#[derive(Debug, Clone, PartialEq)]
pub struct Slim<T> {
    /// Name, namespace, uid and resourceVersion only.
    pub metadata: ObjectMeta,
    /// What the simulation reads.
    pub info: T,
}

/// Decodes an API object into the metadata kube keys it on and its slim form.
pub(crate) trait FromObject: Sized {
    fn from_object<'de, D: Deserializer<'de>>(d: D) -> Result<(ObjectMeta, Self), D::Error>;
}

impl<'de, T: FromObject> Deserialize<'de> for Slim<T> {
    /// From the object's JSON.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (metadata, info) = T::from_object(d)?;
        Ok(Slim { metadata, info })
    }
}

/// The metadata kube keys an object on, and nothing else.
pub(crate) fn key_metadata(
    namespace: Option<String>,
    name: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
) -> ObjectMeta {
    ObjectMeta { namespace, name, uid, resource_version, ..ObjectMeta::default() }
}

/// Implements `Resource`, `ListableResource` and `Metadata` for `$slim` (a
/// [`Slim`]) as the API type `$full`.
macro_rules! slim_resource {
    ($slim:ty, $full:ty) => {
        impl k8s_openapi::Resource for $slim {
            const API_VERSION: &'static str = <$full as k8s_openapi::Resource>::API_VERSION;
            const GROUP: &'static str = <$full as k8s_openapi::Resource>::GROUP;
            const KIND: &'static str = <$full as k8s_openapi::Resource>::KIND;
            const VERSION: &'static str = <$full as k8s_openapi::Resource>::VERSION;
            const URL_PATH_SEGMENT: &'static str = <$full as k8s_openapi::Resource>::URL_PATH_SEGMENT;
            type Scope = <$full as k8s_openapi::Resource>::Scope;
        }

        impl k8s_openapi::ListableResource for $slim {
            const LIST_KIND: &'static str = <$full as k8s_openapi::ListableResource>::LIST_KIND;
        }

        impl k8s_openapi::Metadata for $slim {
            type Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

            fn metadata(&self) -> &Self::Ty {
                &self.metadata
            }

            fn metadata_mut(&mut self) -> &mut Self::Ty {
                &mut self.metadata
            }
        }
    };
}

pub(crate) use slim_resource;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{SlimNode, SlimPod};
    use serde_json::json;

    #[test]
    fn slim_objects_keep_only_the_keys_kube_needs() {
        let object = json!({"metadata": {"namespace": "a", "name": "p", "uid": "u", "resourceVersion": "42",
            "labels": {"x": "y"}, "managedFields": [{"manager": "m"}], "finalizers": ["f"]}});
        let keys = |namespace: Option<&str>| ObjectMeta {
            namespace: namespace.map(str::to_owned),
            name: Some("p".into()),
            uid: Some("u".into()),
            resource_version: Some("42".into()),
            ..Default::default()
        };
        let pod: SlimPod = serde_json::from_value(object.clone()).unwrap();
        assert_eq!(pod.metadata, keys(Some("a")));
        assert_eq!(pod.info.labels.get("x"), Some("y"));
        let node: SlimNode = serde_json::from_value(object).unwrap();
        assert_eq!(node.metadata, keys(None), "nodes have no namespace");
        assert_eq!(node.info.labels.get("x"), Some("y"));
        assert_eq!(<SlimPod as k8s_openapi::Resource>::KIND, "Pod");
        assert_eq!(<SlimPod as k8s_openapi::ListableResource>::LIST_KIND, "PodList");
        assert_eq!(<SlimNode as k8s_openapi::Resource>::KIND, "Node");
        assert_eq!(<SlimNode as k8s_openapi::Resource>::URL_PATH_SEGMENT, "nodes");
    }
}
