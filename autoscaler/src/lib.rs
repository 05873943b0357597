//! The nodepool autoscaler's decisions, with no I/O: decode Pods and Nodes
//! into slim types, simulate kube-scheduler's filters on existing, upcoming
//! and template nodes, plan scale-ups (which pools grow, by how much, and why
//! a pod cannot be helped) and scale-downs (which nodes are unneeded, which may
//! go now, and why the others stay), and format the events cluster-autoscaler
//! users know. The controller in `sks-apiserver` is the shell: it watches,
//! batches, calls the orchestrator, writes events and performs removals.

pub mod labels;
pub mod node;
pub mod pod;
pub mod quantity;
pub mod reserve;
pub mod resources;
pub mod selector;
mod slim;
pub mod taints;

pub use labels::Labels;
pub use node::{NodeInfo, Replacement, SlimNode};
pub use pod::{DaemonSetPod, Owner, Phase, PodInfo, SlimPod};
pub use reserve::allocatable;
pub use resources::Resources;
