//! What the autoscaler watches, each kind listed and watched once, kept in
//! only the fields the simulation reads: Pods that are not finished (the
//! numerous kind: decoded straight into `SlimPod`), Nodes (`SlimNode`),
//! DaemonSets (as the pod each would run on a new node) and
//! PodDisruptionBudgets. A pod turning unschedulable, and any Node change,
//! wakes the loop at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use sks_autoscaler::{PdbInfo, PodInfo, SlimNode, SlimPod};
use tokio::sync::Notify;

/// The watched objects.
pub struct Cache {
    pods: Store<SlimPod>,
    nodes: Store<SlimNode>,
    daemonsets: Store<DaemonSet>,
    pdbs: Store<PodDisruptionBudget>,
    changed: Arc<Notify>,
    synced: [Arc<AtomicBool>; 4],
}

/// Keeps `writer` current from a watch of `api`, calling `wake` with each
/// changed object; marks `synced` once the first list is in.
fn follow<K>(
    api: Api<K>,
    config: watcher::Config,
    synced: Arc<AtomicBool>,
    wake: impl Fn(&K) -> bool + Send + 'static,
    changed: Arc<Notify>,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
    tokio::spawn(async move {
        let mut events = stream.boxed();
        while let Some(event) = events.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    synced.store(true, Ordering::SeqCst);
                    changed.notify_one();
                }
                Ok(watcher::Event::Apply(obj)) if wake(&obj) => changed.notify_one(),
                Ok(watcher::Event::Delete(_)) => changed.notify_one(),
                Ok(_) => {}
                Err(e) => tracing::debug!(error = %e, "autoscaler watch failed; retrying"),
            }
        }
    });
    store
}

impl Cache {
    /// Starts the watches.
    pub fn start(client: &kube::Client) -> Cache {
        let changed = Arc::new(Notify::new());
        let synced: [Arc<AtomicBool>; 4] = Default::default();
        // As cluster-autoscaler: finished pods hold nothing.
        let live = watcher::Config::default().fields("status.phase!=Succeeded,status.phase!=Failed");
        let pods = follow(
            Api::<SlimPod>::all(client.clone()),
            live,
            synced[0].clone(),
            |p: &SlimPod| p.info.is_unschedulable(),
            changed.clone(),
        );
        let nodes = follow(
            Api::<SlimNode>::all(client.clone()),
            watcher::Config::default(),
            synced[1].clone(),
            |_| true,
            changed.clone(),
        );
        let daemonsets = follow(
            Api::<DaemonSet>::all(client.clone()),
            watcher::Config::default(),
            synced[2].clone(),
            |_| false,
            changed.clone(),
        );
        let pdbs = follow(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default(),
            synced[3].clone(),
            |_| false,
            changed.clone(),
        );
        Cache { pods, nodes, daemonsets, pdbs, changed, synced }
    }

    /// Whether every kind has been listed once.
    pub fn synced(&self) -> bool {
        self.synced.iter().all(|s| s.load(Ordering::SeqCst))
    }

    /// Resolves when something the loop reacts to changed.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// Every live pod.
    pub fn pods(&self) -> Vec<Arc<SlimPod>> {
        self.pods.state()
    }

    /// Every Node.
    pub fn nodes(&self) -> Vec<Arc<SlimNode>> {
        self.nodes.state()
    }

    /// The pod each DaemonSet would run on a new node (those that cannot be read are skipped).
    pub fn daemonset_pods(&self) -> Vec<PodInfo> {
        self.daemonsets
            .state()
            .iter()
            .filter_map(|ds| serde_json::to_value(&**ds).ok())
            .filter_map(|v| serde_json::from_value::<sks_autoscaler::DaemonSetPod>(v).ok())
            .map(|ds| ds.0)
            .collect()
    }

    /// Every PodDisruptionBudget.
    pub fn pdbs(&self) -> Vec<PdbInfo> {
        self.pdbs
            .state()
            .iter()
            .filter_map(|p| serde_json::to_value(&**p).ok())
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect()
    }
}
