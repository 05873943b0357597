//! The object metadata the slim types keep: decoded with `wire`'s helpers,
//! the controlling owner reference kept as an [`Owner`].

use k8s_openapi::jiff::Timestamp;
use serde::Deserialize;
use serde::de::Deserializer;

use crate::labels::Labels;
use crate::wire::{FromEntries, from_entries};

/// The controller owning a pod (its `ownerReference` with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Its kind (`ReplicaSet`, `StatefulSet`, `Job`, `DaemonSet`, ...).
    pub kind: Box<str>,
    /// Its name.
    pub name: Box<str>,
}

/// An object's `metadata` as the slim types read it, with the annotations
/// `A` keeps (read by [`FromEntries`]).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", bound(deserialize = "A: FromEntries<'de>"))]
pub(crate) struct MetaWire<A> {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub resource_version: Option<String>,
    #[serde(default)]
    pub creation_timestamp: Option<Timestamp>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default, deserialize_with = "from_entries")]
    pub annotations: A,
    /// The owner reference marked `controller: true`.
    #[serde(default, rename = "ownerReferences", deserialize_with = "controller_of")]
    pub owner: Option<Owner>,
}

fn controller_of<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Owner>, D::Error> {
    #[derive(Deserialize)]
    struct OwnerRef {
        kind: String,
        name: String,
        #[serde(default)]
        controller: Option<bool>,
    }
    let refs = Option::<Vec<OwnerRef>>::deserialize(d)?.unwrap_or_default();
    Ok(refs
        .into_iter()
        .find(|r| r.controller == Some(true))
        .map(|r| Owner { kind: r.kind.into(), name: r.name.into() }))
}
