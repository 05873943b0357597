//! Node lifecycle (`cloud-node-lifecycle`): an instance that is gone deletes
//! its Node, a stopped one taints it; nothing happens on an orchestrator
//! error. A Node whose instance an auto-heal replacement evicted goes only
//! once its nodepool is back to the size recorded before the eviction.

use k8s_openapi::api::core::v1::{Node, Taint};
use kube::ResourceExt as _;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use orchestrator::model::{Instance, InstanceState};
use serde_json::json;
use sks_keys::taint;

use super::{heal, ready};
use crate::context::Context;
use crate::reconcile::Error;
use crate::superseded::Writes;
use sks_kubeclient::events::EventType;

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
    if !stopped && tainted && instance.state == InstanceState::Running && ready::is_ready(node) {
        return Action::Taints(taints.into_iter().filter(|t| t.key != taint::SHUTDOWN).collect());
    }
    Action::Keep
}

/// Whether the Node is still there after [`follow`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followed {
    /// It stays (tainted, untainted or untouched).
    Kept,
    /// It was deleted.
    Deleted,
}

/// Applies [`decide`] to an initialized Node.
pub async fn follow(
    ctx: &Context,
    node: &Node,
    lookup: &Result<Option<Instance>, String>,
    writes: &Writes,
) -> Result<Followed, Error> {
    let name = node.name_any();
    let nodes: Api<Node> = Api::all(ctx.client.clone());
    match decide(node, lookup) {
        Action::Delete => {
            if let Some((nodepool, size)) = heal::pending_replacement(node) {
                restore_size(ctx, nodepool, size).await?;
            }
            tracing::info!(node = %name, "the node's instance is gone; deleting the node");
            let note = format!("instance of node {name} no longer exists");
            ctx.events.about(node, EventType::Normal, "DeletingNode", note).await;
            nodes.delete(&name, &DeleteParams::default()).await?;
            return Ok(Followed::Deleted);
        }
        Action::Taints(taints) => {
            let patch =
                json!({"metadata": {"resourceVersion": node.metadata.resource_version}, "spec": {"taints": taints}});
            writes.answered(&nodes.patch(&name, &PatchParams::default(), &Patch::Merge(patch)).await?);
        }
        Action::Keep => {}
    }
    Ok(Followed::Kept)
}

/// Finishes an auto-heal replacement whose instance was evicted but whose
/// nodepool may not have been scaled back: grows it back to `size` (never
/// shrinks it; a nodepool deleted meanwhile needs nothing).
async fn restore_size(ctx: &Context, nodepool: uuid::Uuid, size: i64) -> Result<(), Error> {
    let client = ctx.cloud.client();
    let current = match client.get_sks_nodepool(ctx.cloud.cluster(), nodepool).await {
        Ok(np) => np.size,
        Err(e) if e.is_not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if current < size {
        tracing::warn!(%nodepool, from = current, to = size, "an auto-heal replacement left its nodepool smaller; restoring its size");
        client.scale_sks_nodepool(ctx.cloud.cluster(), nodepool, size).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn instance(state: &str) -> Instance {
        serde_json::from_value(
            json!({"id": Uuid::nil(), "name": "n", "state": state, "instance-type": {"id": Uuid::nil()}}),
        )
        .unwrap()
    }

    fn node(taints: &[&str], ready: &str) -> Node {
        let taints: Vec<_> = taints.iter().map(|k| json!({"key": k, "effect": "NoSchedule"})).collect();
        serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}))
        .unwrap()
    }

    fn keys(action: &Action) -> Option<Vec<&str>> {
        match action {
            Action::Taints(t) => Some(t.iter().map(|t| t.key.as_str()).collect()),
            _ => None,
        }
    }

    #[test]
    fn only_a_confirmed_404_deletes_and_an_error_never_acts() {
        for n in [node(&[], "True"), node(&[taint::SHUTDOWN], "False")] {
            assert_eq!(decide(&n, &Ok(None)), Action::Delete);
            assert_eq!(decide(&n, &Err("503".into())), Action::Keep);
        }
    }

    #[test]
    fn the_shutdown_taint_follows_the_instance() {
        const S: &str = taint::SHUTDOWN;
        // Why, the Node's taints, its Ready status, the instance's state, the taints to set.
        type Case<'a> = (&'a str, &'a [&'a str], &'a str, &'a str, Option<Vec<&'a str>>);
        let cases: [Case; 10] = [
            ("stopped: tainted, others kept", &["a"], "True", "stopped", Some(vec!["a", S])),
            ("stopping: tainted", &[], "False", "stopping", Some(vec![S])),
            ("stopped and tainted: kept", &[S], "False", "stopped", None),
            ("running and Ready: untainted, others kept", &["a", S, "b"], "True", "running", Some(vec!["a", "b"])),
            ("running, not Ready yet: still tainted", &[S], "False", "running", None),
            ("running, Ready unknown: still tainted", &[S], "Unknown", "running", None),
            ("starting and Ready: still tainted", &[S], "True", "starting", None),
            ("running and untainted: nothing", &["a"], "True", "running", None),
            ("rebooting, untainted: nothing", &[], "False", "starting", None),
            ("destroying, untainted: nothing", &[], "False", "destroying", None),
        ];
        for (why, taints, ready, state, want) in cases {
            let action = decide(&node(taints, ready), &Ok(Some(instance(state))));
            assert_eq!(keys(&action), want, "{why}");
            if want.is_none() {
                assert_eq!(action, Action::Keep, "{why}");
            }
        }
    }

    #[test]
    fn the_added_shutdown_taint_is_no_schedule() {
        let Action::Taints(t) = decide(&node(&[], "True"), &Ok(Some(instance("stopped")))) else { panic!("no taint") };
        assert_eq!(
            (t[0].key.as_str(), t[0].effect.as_str(), t[0].value.as_deref()),
            (taint::SHUTDOWN, "NoSchedule", None)
        );
    }
}
