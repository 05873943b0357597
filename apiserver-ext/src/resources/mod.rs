//! Orchestrator-backed storages, one per kind.

pub mod cluster;
pub mod errors;
pub mod inspection;
pub mod kube_metadata;
pub mod kubeconfig;
pub mod metadata;
pub mod nodepool;
pub mod nodes;
pub mod upgrade;

/// Now, to the second, as Kubernetes writes timestamps (RFC 3339, `Z`).
pub fn timestamp_now() -> String {
    jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now is representable").to_string()
}
