//! Queue depth of a controller: the objects seen changing that no reconcile
//! has picked up yet. kube-rs' scheduler does not expose its queue, so the
//! watch stream feeding the controller marks objects pending and the reconcile
//! wrapper clears them; like the scheduler, an object is pending at most once.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use futures::{Stream, TryStreamExt as _};
use k8s_openapi::serde::de::DeserializeOwned;
use kube::Resource;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use prometheus::IntGauge;

/// The pending objects of one controller, exported as a gauge.
#[derive(Clone)]
pub struct Pending {
    keys: Arc<Mutex<HashSet<String>>>,
    gauge: IntGauge,
}

fn key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default()
    )
}

impl Pending {
    /// Pending objects counted in `gauge`.
    pub fn new(gauge: IntGauge) -> Self {
        Pending { keys: Arc::default(), gauge }
    }

    fn set(&self, change: impl FnOnce(&mut HashSet<String>)) {
        let mut keys = self.keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut keys);
        self.gauge.set(keys.len() as i64);
    }

    /// `obj` changed: a reconcile is due.
    pub fn observed<K: Resource>(&self, obj: &K) {
        self.set(|k| {
            k.insert(key(obj));
        });
    }

    /// A reconcile of `obj` started.
    pub fn started<K: Resource>(&self, obj: &K) {
        self.set(|k| {
            k.remove(&key(obj));
        });
    }
}

/// The cache and the change stream a controller runs on, marking every
/// changed object pending (watch errors are retried with backoff). `prune`
/// strips each object to what the controller reads before it is cached, and
/// says whether anything is left to do for it: an object with nothing left
/// (a decided CSR) is forgotten, as if deleted, so the cache holds only work.
pub fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
    pending: Pending,
    prune: fn(&mut K) -> bool,
) -> (Store<K>, impl Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let relevant = watcher(api, config).default_backoff().try_filter_map(move |event| {
        futures::future::ready(Ok(match event {
            watcher::Event::Apply(mut obj) => {
                Some(if prune(&mut obj) { watcher::Event::Apply(obj) } else { watcher::Event::Delete(obj) })
            }
            watcher::Event::InitApply(mut obj) => prune(&mut obj).then_some(watcher::Event::InitApply(obj)),
            other => Some(other),
        }))
    });
    let stream = reflector::reflector(writer, relevant)
        .inspect_ok(move |event| match event {
            watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => pending.observed(obj),
            // A deleted object leaves the cache, so no reconcile will pick it up.
            watcher::Event::Delete(obj) => pending.started(obj),
            watcher::Event::Init | watcher::Event::InitDone => {}
        })
        .touched_objects();
    (store, stream)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Node;
    use kube::api::ObjectMeta;

    use super::*;

    fn node(name: &str) -> Node {
        Node { metadata: ObjectMeta { name: Some(name.into()), ..Default::default() }, ..Default::default() }
    }

    #[test]
    fn counts_each_object_once_until_its_reconcile_starts() {
        let gauge = IntGauge::new("depth", "d").unwrap();
        let p = Pending::new(gauge.clone());
        p.observed(&node("a"));
        p.observed(&node("a"));
        p.observed(&node("b"));
        assert_eq!(gauge.get(), 2);
        p.started(&node("a"));
        assert_eq!(gauge.get(), 1);
        p.started(&node("a"));
        assert_eq!(gauge.get(), 1);
    }
}
