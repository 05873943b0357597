//! sks-ccm: the cloud controller manager of SKS clusters. Each controller is a
//! pure decision over typed inputs (`decide` functions, testable without a
//! network) and a thin shell that observes and acts; what they share is in
//! [`context`], which of them run and when is [`manager`]'s.

pub mod cloud;
pub mod context;
pub mod csr;
pub mod flags;
pub mod fresh;
pub mod lb;
pub mod manager;
pub mod metrics;
pub mod node;
pub mod queue;
pub mod reconcile;
pub mod serve;
pub mod slim;
pub mod superseded;
