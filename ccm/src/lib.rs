//! sks-ccm: the cloud controller manager of SKS clusters. Each controller is a
//! pure decision over typed inputs (`decide` functions, testable without a
//! network) and a thin shell that observes and acts.

pub mod cached_node;
pub mod cloud;
pub mod controllers;
pub mod csr;
pub mod events;
pub mod fresh;
pub mod heal;
pub mod lb;
pub mod node_init;
pub mod node_lifecycle;
pub mod queue;
pub mod serve;
pub mod slim;
