//! Ready Nodes per nodepool, from a watch of the cluster's Nodes.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::runtime::{WatchStreamExt as _, reflector, watcher};

use crate::resources::nodepool::{NodeReadiness, NodeState};
use sks_keys::label::NODEPOOL_ID as NODEPOOL_ID_LABEL;

/// A reflector of Nodes carrying the nodepool label.
pub struct NodeWatch {
    store: reflector::Store<Node>,
    synced: Arc<std::sync::atomic::AtomicBool>,
}

impl NodeWatch {
    /// Starts watching the Nodes of the cluster behind `client`.
    pub fn start(client: kube::Client) -> Arc<Self> {
        let (store, writer) = reflector::store();
        let nodes: Api<Node> = Api::all(client);
        let config = watcher::Config::default().labels(NODEPOOL_ID_LABEL);
        let synced = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = synced.clone();
        // Backoff: an unreachable API must cost a retry now and then, not a hot loop.
        let stream = reflector(writer, watcher(nodes, config).default_backoff());
        tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(watcher::Event::InitDone) => flag.store(true, std::sync::atomic::Ordering::SeqCst),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "watching Nodes failed; retrying"),
                }
            }
        });
        Arc::new(NodeWatch { store, synced })
    }
}

fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl NodeReadiness for NodeWatch {
    fn ready_by_nodepool(&self) -> Option<HashMap<String, i64>> {
        if !self.synced.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let mut out = HashMap::new();
        for node in self.store.state() {
            if let Some(id) = node.metadata.labels.as_ref().and_then(|l| l.get(NODEPOOL_ID_LABEL))
                && ready(&node)
            {
                *out.entry(id.clone()).or_insert(0) += 1;
            }
        }
        Some(out)
    }

    fn node_states(&self) -> Option<Vec<NodeState>> {
        if !self.synced.load(std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        Some(
            self.store
                .state()
                .iter()
                .map(|n| NodeState {
                    name: n.metadata.name.clone().unwrap_or_default(),
                    ready: ready(n),
                    initialized: initialized(n),
                })
                .collect(),
        )
    }
}

fn initialized(node: &Node) -> bool {
    let spec = node.spec.as_ref();
    spec.and_then(|s| s.provider_id.as_ref()).is_some()
        && !spec
            .and_then(|s| s.taints.as_ref())
            .is_some_and(|ts| ts.iter().any(|t| t.key == sks_keys::taint::UNINITIALIZED))
}
