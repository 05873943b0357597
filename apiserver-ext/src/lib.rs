//! sks-apiserver: an aggregated API server for SKS resources. `resources`
//! holds one orchestrator-backed storage per kind; the generic API machinery
//! they plug into is the `sks-rest` crate.

pub mod app;
pub mod autoscaler;
pub mod resources;
