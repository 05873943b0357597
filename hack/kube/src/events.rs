//! core/v1 and events.k8s.io/v1 Events are one resource seen through two
//! APIs, as in kube-apiserver: one store of core/v1 Events, and a view that
//! converts to and from events.k8s.io/v1 (kubernetes' `pkg/apis/events/v1`
//! conversion: note = message, regarding = involvedObject, reportingController
//! = reportingComponent, deprecatedSource/FirstTimestamp/LastTimestamp/Count =
//! source/firstTimestamp/lastTimestamp/count). An Event written through either
//! is read, listed and watched through both with the same name, uid and
//! resourceVersion.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Map, Value, json};
use sks_rest::cache::{ObjectCache, Sequence, key_of, rv_of};
use sks_rest::memory::{Hooks, MemStorage};
use sks_rest::resource::ResourceDef;
use sks_rest::status::{ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context, Creater, DeleteOptions, Deleter, Storage, Transform, Updater};
use sks_rest::strategy::{self, Strategy};
use sks_rest::validation::{self, NameRule};

use crate::validation::event;

/// The counter part of a resourceVersion (`epoch << 40 | counter`, see the cache's docs).
const COUNTER_MASK: u64 = (1 << 40) - 1;

/// Fields named alike in both APIs; absent when empty (Go's `omitempty`).
const SHARED: &[&str] = &["reason", "type", "series", "action", "related", "reportingInstance"];

fn copy(from: &Value, to: &mut Map<String, Value>, from_field: &str, to_field: &str) {
    match &from[from_field] {
        Value::Null => {}
        Value::String(s) if s.is_empty() => {}
        Value::Number(n) if n.as_i64() == Some(0) => {}
        v => {
            to.insert(to_field.to_owned(), v.clone());
        }
    }
}

/// The core/v1 form of an Event given in either form, with the fields
/// kube-apiserver always writes (`source: {}`, null timestamps, empty
/// reporting fields) and nothing it does not know.
pub fn core_form(ev: &Value, v1: bool) -> Value {
    let name = |core: &'static str, v1_name: &'static str| if v1 { v1_name } else { core };
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("v1"));
    out.insert("kind".into(), json!("Event"));
    out.insert("metadata".into(), ev["metadata"].clone());
    for f in SHARED {
        copy(ev, &mut out, f, f);
    }
    copy(ev, &mut out, name("message", "note"), "message");
    copy(ev, &mut out, name("count", "deprecatedCount"), "count");
    let or = |v: &Value, default: Value| if v.is_null() { default } else { v.clone() };
    out.insert("involvedObject".into(), or(&ev[name("involvedObject", "regarding")], json!({})));
    out.insert("source".into(), or(&ev[name("source", "deprecatedSource")], json!({})));
    out.insert("firstTimestamp".into(), ev[name("firstTimestamp", "deprecatedFirstTimestamp")].clone());
    out.insert("lastTimestamp".into(), ev[name("lastTimestamp", "deprecatedLastTimestamp")].clone());
    out.insert("eventTime".into(), ev["eventTime"].clone());
    let reporting = ev[name("reportingComponent", "reportingController")].as_str().unwrap_or("");
    out.insert("reportingComponent".into(), json!(reporting));
    out.insert("reportingInstance".into(), json!(ev["reportingInstance"].as_str().unwrap_or("")));
    Value::Object(out)
}

/// An Event as core/v1 shows it.
pub fn to_core(v1: &Value) -> Value {
    core_form(v1, true)
}

/// An Event as events.k8s.io/v1 shows it.
pub fn to_v1(core: &Value) -> Value {
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!("events.k8s.io/v1"));
    out.insert("kind".into(), json!("Event"));
    out.insert("metadata".into(), core["metadata"].clone());
    for f in SHARED {
        copy(core, &mut out, f, f);
    }
    copy(core, &mut out, "message", "note");
    copy(core, &mut out, "count", "deprecatedCount");
    copy(core, &mut out, "reportingComponent", "reportingController");
    let or = |v: &Value| if v.is_null() { json!({}) } else { v.clone() };
    out.insert("regarding".into(), or(&core["involvedObject"]));
    out.insert("deprecatedSource".into(), or(&core["source"]));
    out.insert("deprecatedFirstTimestamp".into(), core["firstTimestamp"].clone());
    out.insert("deprecatedLastTimestamp".into(), core["lastTimestamp"].clone());
    out.insert("eventTime".into(), core["eventTime"].clone());
    Value::Object(out)
}

/// The events.k8s.io/v1 view of the stored Events: a cache that repeats
/// every committed change, converted, at the same resourceVersion.
pub struct Mirror {
    cache: Arc<ObjectCache>,
    /// The view's own counter: the resourceVersion of the last change shown,
    /// so its lists and bookmarks never claim a change it has not shown yet.
    counter: Sequence,
}

impl Mirror {
    /// An empty view for a store drawing resourceVersions from `global` with `epoch`.
    pub fn new(epoch: u64, history: usize, global: &Sequence) -> Self {
        let counter = Arc::new(AtomicU64::new(global.load(Ordering::SeqCst)));
        Mirror { cache: Arc::new(ObjectCache::with_sequence(epoch, history, counter.clone())), counter }
    }

    /// Shows a change committed to the store (called in commit order).
    fn show(&self, core: &Value, deleted: bool) {
        let counter = rv_of(core) & COUNTER_MASK;
        if counter <= self.counter.load(Ordering::SeqCst) {
            return; // A write that changed nothing: its version is already shown.
        }
        // The cache gives the next change the next counter value: make that this change's.
        self.counter.store(counter - 1, Ordering::SeqCst);
        if deleted {
            self.cache.remove(&key_of(core));
        } else {
            self.cache.upsert(to_v1(core));
        }
    }
}

/// What the store of core/v1 Events does besides storing: shows every change through the view.
pub struct EventHooks {
    /// The events.k8s.io/v1 view.
    pub mirror: Arc<Mirror>,
}

impl Hooks for EventHooks {
    fn committed(&self, obj: &Value, deleted: bool) {
        self.mirror.show(obj, deleted);
    }
}

/// events.k8s.io/v1 Events: reads from the view, writes converted to the
/// core/v1 store (after events.k8s.io/v1's own, stricter validation).
pub struct EventsV1 {
    def: ResourceDef,
    core: Arc<MemStorage>,
    mirror: Arc<Mirror>,
}

impl EventsV1 {
    /// The events.k8s.io/v1 API of `core`, shown through `mirror` (the one `core`'s hooks feed).
    pub fn new(def: ResourceDef, core: Arc<MemStorage>, mirror: Arc<Mirror>) -> Self {
        EventsV1 { def, core, mirror }
    }
}

impl Storage for EventsV1 {
    fn def(&self) -> &ResourceDef {
        &self.def
    }

    fn cache(&self) -> &Arc<ObjectCache> {
        &self.mirror.cache
    }

    fn creater(&self) -> Option<&dyn Creater> {
        Some(self)
    }

    fn updater(&self) -> Option<&dyn Updater> {
        Some(self)
    }

    fn deleter(&self) -> Option<&dyn Deleter> {
        Some(self)
    }
}

impl Strategy for EventsV1 {
    fn name_rule(&self) -> NameRule {
        validation::name_is_dns_subdomain
    }

    // The objects are core/v1 Events, and kube-apiserver's errors name that kind.
    fn error_kind(&self) -> Option<(&'static str, &'static str)> {
        Some(("", "Event"))
    }

    // The rules read the stored (core/v1) form and name events.k8s.io/v1's fields.
    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        event::strict_create(&to_core(obj))
    }

    fn prepare_for_update(&self, _ctx: &Context, _sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
        new["metadata"]["generation"] = json!(strategy::next_generation(new, old));
        Ok(())
    }

    fn validate_update(&self, _ctx: &Context, _sub: Option<&str>, new: &Value, old: &Value) -> Vec<Cause> {
        event::strict_update(&to_core(new), &to_core(old))
    }
}

impl Creater for EventsV1 {
    fn create_strategy(&self) -> Option<&dyn Strategy> {
        Some(self)
    }

    fn create<'a>(&'a self, ctx: &'a Context, obj: Value) -> BoxFuture<'a, ApiResult<Value>> {
        // Validated as events.k8s.io/v1 already: stored as core/v1, past that kind's own strategy.
        Box::pin(async move { Ok(to_v1(&self.core.create(ctx, to_core(&obj)).await?)) })
    }
}

impl Updater for EventsV1 {
    fn update_strategy(&self) -> &dyn Strategy {
        self
    }

    fn update<'a>(
        &'a self,
        ctx: &'a Context,
        name: &'a str,
        sub: Option<&'a str>,
        transform: Transform<'a>,
    ) -> BoxFuture<'a, ApiResult<Value>> {
        let in_core: Transform<'a> = Box::new(move |core: &Value| Ok(to_core(&transform(&to_v1(core))?)));
        Box::pin(async move { Ok(to_v1(&self.core.update(ctx, name, sub, in_core).await?)) })
    }
}

impl Deleter for EventsV1 {
    fn delete<'a>(&'a self, ctx: &'a Context, name: &'a str, opts: DeleteOptions) -> BoxFuture<'a, ApiResult<Value>> {
        Box::pin(async move { Ok(to_v1(&self.core.delete(ctx, name, opts).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_round_trips_and_fills_what_kube_apiserver_writes() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e", "namespace": "default"},
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "sks-ccm", "reportingInstance": "i", "action": "A",
            "reason": "R", "regarding": {"kind": "Service", "name": "web", "namespace": "default"}, "note": "n", "type": "Normal",
            "series": {"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"}});
        let core = to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "web");
        assert_eq!(core["message"], "n");
        assert_eq!(core["reportingComponent"], "sks-ccm");
        assert_eq!((core["source"].clone(), core["firstTimestamp"].clone()), (json!({}), Value::Null));
        assert!(core.as_object().unwrap().contains_key("lastTimestamp") && core.get("count").is_none());
        let mut back = to_v1(&core);
        assert_eq!(back["deprecatedSource"], json!({}));
        for k in ["deprecatedSource", "deprecatedFirstTimestamp", "deprecatedLastTimestamp"] {
            back.as_object_mut().unwrap().remove(k);
        }
        assert_eq!(back, v1);
        let old_style = json!({"metadata": {"name": "o", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "n1"},
            "reason": "Rebooted", "message": "m", "source": {"component": "kubelet", "host": "n1"}, "count": 3,
            "firstTimestamp": "2026-01-01T00:00:00Z", "lastTimestamp": "2026-01-01T00:05:00Z", "bogus": 1});
        let stored = core_form(&old_style, false);
        assert!(stored.get("bogus").is_none() && stored["eventTime"].is_null() && stored["reportingComponent"] == "");
        let v1 = to_v1(&stored);
        assert_eq!((v1["deprecatedCount"].as_i64(), v1["deprecatedSource"]["host"].as_str()), (Some(3), Some("n1")));
        assert_eq!(to_core(&v1), stored);
    }

    #[test]
    fn the_view_shows_changes_at_their_resource_versions() {
        let global = Sequence::default();
        let store = ObjectCache::with_sequence(1, 10, global.clone());
        let mirror = Mirror::new(1, 10, &global);
        let e = |n: &str| core_form(&json!({"metadata": {"name": n, "namespace": "default"}, "reason": "R"}), false);
        let a = store.upsert(e("a"));
        mirror.show(&a, false);
        let unchanged = store.upsert(e("a"));
        mirror.show(&unchanged, false);
        let b = store.upsert(e("b"));
        mirror.show(&b, false);
        let seen = mirror.cache.get(&key_of(&b)).unwrap();
        assert_eq!(
            (seen["metadata"]["resourceVersion"].clone(), seen["apiVersion"].clone()),
            (b["metadata"]["resourceVersion"].clone(), json!("events.k8s.io/v1"))
        );
        assert_eq!(mirror.cache.current_rv(), rv_of(&b));
        let gone = store.remove(&key_of(&a)).unwrap();
        mirror.show(&gone, true);
        assert!(mirror.cache.get(&key_of(&a)).is_none());
        assert_eq!(mirror.cache.current_rv(), rv_of(&gone));
    }
}
