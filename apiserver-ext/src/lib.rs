//! sks-apiserver: an aggregated API server for SKS resources. `rest` is the
//! generic API machinery (it knows no resource); `resources` holds one
//! orchestrator-backed storage per kind.

pub mod resources;
pub mod rest;
