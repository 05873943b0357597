//! Which nodepools have Nodes in the cluster, for inferring an NLB's instance
//! pool. Only each Node's nodepool label is kept (about 100 bytes a Node, where
//! a cache of Node metadata took over 1 KiB).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt as _;
use kube::core::PartialObjectMeta;
use kube::runtime::watcher;

use sks_keys::label::NODEPOOL_ID as NODEPOOL_ID_LABEL;

/// The nodepool label of every labelled Node, kept current by a watch.
#[derive(Clone, Default)]
pub struct NodePools {
    inner: Arc<RwLock<Labels>>,
}

/// Node name → nodepool label, plus the next state while a (re)list runs.
#[derive(Default)]
struct Labels {
    current: HashMap<Box<str>, Box<str>>,
    relisting: Option<HashMap<Box<str>, Box<str>>>,
}

fn entry(n: &PartialObjectMeta<Node>) -> Option<(Box<str>, Box<str>)> {
    let pool = n.labels().get(NODEPOOL_ID_LABEL)?;
    Some((n.name_any().into(), pool.as_str().into()))
}

impl Labels {
    fn apply(&mut self, event: watcher::Event<PartialObjectMeta<Node>>) {
        match event {
            watcher::Event::Apply(n) => match entry(&n) {
                Some((name, pool)) => {
                    self.current.insert(name, pool);
                }
                None => {
                    self.current.remove(n.name_any().as_str());
                }
            },
            watcher::Event::Delete(n) => {
                self.current.remove(n.name_any().as_str());
            }
            watcher::Event::Init => self.relisting = Some(HashMap::new()),
            watcher::Event::InitApply(n) => {
                if let (Some(next), Some((name, pool))) = (self.relisting.as_mut(), entry(&n)) {
                    next.insert(name, pool);
                }
            }
            watcher::Event::InitDone => {
                if let Some(next) = self.relisting.take() {
                    self.current = next;
                }
            }
        }
    }
}

impl NodePools {
    /// The distinct nodepool labels of the cluster's Nodes.
    pub fn nodepools(&self) -> BTreeSet<String> {
        let labels = self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        labels.current.values().map(std::string::ToString::to_string).collect()
    }

    /// Follows `events` until they end.
    pub async fn follow(
        self,
        events: impl Stream<Item = Result<watcher::Event<PartialObjectMeta<Node>>, watcher::Error>>,
    ) {
        events
            .for_each(|event| {
                match event {
                    Ok(event) => self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner).apply(event),
                    Err(e) => tracing::warn!(error = %e, "watching Node labels failed; retrying"),
                }
                futures::future::ready(())
            })
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, pool: Option<&str>) -> PartialObjectMeta<Node> {
        let mut n: PartialObjectMeta<Node> =
            serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}}))
                .unwrap();
        n.metadata.labels = pool.map(|p| [(NODEPOOL_ID_LABEL.to_owned(), p.to_owned())].into());
        n
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let pools = NodePools::default();
        let apply = |e| pools.inner.write().unwrap().apply(e);
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(node("a", Some("p1"))));
        apply(watcher::Event::InitApply(node("b", Some("p2"))));
        assert!(pools.nodepools().is_empty(), "nothing until the list is complete");
        apply(watcher::Event::InitDone);
        assert_eq!(pools.nodepools(), BTreeSet::from(["p1".to_owned(), "p2".to_owned()]));
        apply(watcher::Event::Apply(node("b", Some("p1"))));
        assert_eq!(pools.nodepools(), BTreeSet::from(["p1".to_owned()]));
        apply(watcher::Event::Apply(node("c", Some("p3"))));
        apply(watcher::Event::Delete(node("c", Some("p3"))));
        apply(watcher::Event::Apply(node("a", None)));
        assert_eq!(pools.nodepools(), BTreeSet::from(["p1".to_owned()]));
        // A relist replaces everything: Nodes deleted while the watch was down are gone.
        apply(watcher::Event::Init);
        apply(watcher::Event::InitApply(node("d", Some("p4"))));
        apply(watcher::Event::InitDone);
        assert_eq!(pools.nodepools(), BTreeSet::from(["p4".to_owned()]));
    }
}
