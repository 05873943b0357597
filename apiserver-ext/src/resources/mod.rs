//! Orchestrator-backed storages, one per kind.

pub mod errors;
pub mod metadata;
pub mod nodepool;
