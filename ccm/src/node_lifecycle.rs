//! Node lifecycle decisions: an instance that is gone deletes its Node, a
//! stopped one taints it; nothing happens on an orchestrator error.

use k8s_openapi::api::core::v1::{Node, Taint};
use orchestrator::model::{Instance, InstanceState};
use sks_keys::taint;

/// What to do with an initialized Node.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Nothing.
    Keep,
    /// Delete the Node: the orchestrator answered 404 for its instance.
    Delete,
    /// Set these taints (the shutdown taint added or removed).
    Taints(Vec<Taint>),
}

/// Whether the Node reports Ready=True.
pub fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Decides from the instance lookup: `Ok(None)` is a confirmed 404; errors never act.
pub fn decide(node: &Node, lookup: &Result<Option<Instance>, String>) -> Action {
    let instance = match lookup {
        Err(_) => return Action::Keep,
        Ok(None) => return Action::Delete,
        Ok(Some(i)) => i,
    };
    let taints: Vec<Taint> = node.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default();
    let tainted = taints.iter().any(|t| t.key == taint::SHUTDOWN);
    let stopped = matches!(instance.state, InstanceState::Stopped | InstanceState::Stopping);
    if stopped && !tainted {
        let mut t = taints;
        t.push(Taint { key: taint::SHUTDOWN.into(), value: None, effect: "NoSchedule".into(), time_added: None });
        return Action::Taints(t);
    }
    if !stopped && tainted && instance.state == InstanceState::Running && is_ready(node) {
        return Action::Taints(taints.into_iter().filter(|t| t.key != taint::SHUTDOWN).collect());
    }
    Action::Keep
}
