//! The nodepool autoscaler's decisions, with no I/O: decode Pods and Nodes
//! into slim types, simulate kube-scheduler's filters on existing, upcoming
//! and template nodes, plan scale-ups (which pools grow, by how much, and why
//! a pod cannot be helped) and scale-downs (which nodes are unneeded, which may
//! go now, and why the others stay), and format the events cluster-autoscaler
//! users know. The controller in `sks-apiserver` is the shell: it watches,
//! batches, calls the orchestrator, writes events and performs removals.

pub mod binpack;
pub mod drain;
pub mod events;
pub mod expander;
pub mod labels;
pub mod messages;
pub mod meta;
pub mod node;
pub mod pdb;
pub mod pod;
pub mod predicates;
pub mod quantity;
pub mod reserve;
pub mod resources;
pub mod scale_down;
pub mod scale_up;
pub mod selector;
mod slim;
pub mod snapshot;
pub mod taints;
pub mod template;
pub mod unneeded;
pub mod utilization;
mod wire;

#[cfg(test)]
pub(crate) mod fixtures;
#[cfg(test)]
mod properties;

pub use labels::Labels;
pub use meta::Owner;
pub use node::{NodeInfo, Replacement, SlimNode};
pub use pdb::PdbInfo;
pub use pod::{DaemonSetPod, Phase, PodInfo, SlimPod};
pub use predicates::{NodeView, Unfit, fits};
pub use reserve::allocatable;
pub use resources::Resources;
pub use scale_down::{ScaleDown, ScaleDownOptions, Unremovable, plan_scale_down};
pub use scale_up::{ScaleUp, ScaleUpOptions, plan_scale_up};
pub use slim::Slim;
pub use snapshot::ClusterSnapshot;
pub use template::{Template, TemplateSpec};
pub use unneeded::UnneededTracker;
