//! Orchestrator-backed storages, one per kind.

pub mod errors;
pub mod kube_metadata;
pub mod metadata;
pub mod nodepool;
pub mod nodes;
