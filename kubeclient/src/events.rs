//! Events (`events.k8s.io/v1`) on the objects a controller acts on, with
//! repeats within six minutes folded into a series, as client-go and kube-rs'
//! `Recorder` do: a repeat is one merge patch of the first event's series, not
//! a new Event. kube-rs' recorder caches every whole Event it sent (about
//! 3.5 KiB each); one approval event per kubelet CSR made that the largest
//! part of sks-ccm's memory, so this cache keeps a hash and the event's name.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash as _, Hasher as _};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
pub use kube::runtime::events::EventType;
use serde_json::json;

/// How long a repeat still joins the first event's series (client-go's value).
const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// How often expired series are swept from the cache.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Publishes events as one reporting controller instance.
pub struct Publisher {
    client: kube::Client,
    controller: String,
    instance: String,
    cache: Mutex<Cache>,
}

#[derive(Default)]
struct Cache {
    series: HashMap<u64, Series>,
    swept: Option<Instant>,
}

/// What a repeat needs of the event it repeats.
struct Series {
    name: Box<str>,
    count: i32,
    last: Instant,
}

/// What to publish next for an event: a new one, or a repeat of `name`.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Create,
    Repeat { name: String, count: i32 },
}

impl Cache {
    /// Decides, and forgets series older than the window now and then.
    fn next(&mut self, key: u64, now: Instant) -> Next {
        if self.swept.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            self.series.retain(|_, s| now.duration_since(s.last) < SERIES_WINDOW);
            self.swept = Some(now);
        }
        match self.series.get(&key) {
            Some(s) if now.duration_since(s.last) < SERIES_WINDOW => {
                Next::Repeat { name: s.name.to_string(), count: s.count + 1 }
            }
            _ => Next::Create,
        }
    }

    fn record(&mut self, key: u64, name: &str, count: i32, now: Instant) {
        self.series.insert(key, Series { name: name.into(), count, last: now });
    }
}

fn key(type_: EventType, reason: &str, regarding: &ObjectReference, note: &str) -> u64 {
    let mut h = DefaultHasher::new();
    (matches!(type_, EventType::Warning), reason, note).hash(&mut h);
    (&regarding.kind, &regarding.namespace, &regarding.name, &regarding.uid).hash(&mut h);
    h.finish()
}

impl Publisher {
    /// A publisher reporting as `controller` (instance `instance`).
    pub fn new(client: kube::Client, controller: &str, instance: &str) -> Self {
        Publisher {
            client,
            controller: controller.to_owned(),
            instance: instance.to_owned(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Publishes an event about `regarding`; a repeat of the same type, reason
    /// and note within six minutes raises the first event's series count.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        type_: EventType,
        reason: &str,
        note: &str,
    ) -> Result<(), kube::Error> {
        let key = key(type_, reason, regarding, note);
        let next = self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next(key, Instant::now());
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let now = MicroTime(jiff::Timestamp::now());
        let (name, count) = match next {
            Next::Repeat { name, count } => {
                let series = json!({"series": {"count": count, "lastObservedTime": now}});
                events.patch(&name, &PatchParams::default(), &Patch::Merge(series)).await?;
                (name, count)
            }
            Next::Create => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.as_deref().unwrap_or(&self.controller),
                    jiff::Timestamp::now().as_nanosecond()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(namespace.to_owned()),
                        ..Default::default()
                    },
                    event_time: Some(now),
                    action: Some(reason.to_owned()),
                    reason: Some(reason.to_owned()),
                    note: Some(note.to_owned()),
                    type_: Some(if matches!(type_, EventType::Warning) { "Warning" } else { "Normal" }.to_owned()),
                    regarding: Some(regarding.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                };
                events.create(&PostParams::default(), &event).await?;
                (name, 1)
            }
        };
        self.cache.lock().unwrap_or_else(std::sync::PoisonError::into_inner).record(key, &name, count, Instant::now());
        Ok(())
    }

    /// Publishes an event about `obj`, as [`Publisher::publish`]; a failure is
    /// logged, never fatal: an event explains an action, it is not one.
    pub async fn about(
        &self,
        obj: &impl kube::Resource<DynamicType = ()>,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        if let Err(e) = self.publish(&obj.object_ref(&()), type_, reason, &note).await {
            tracing::warn!(error = %e, reason, "publishing an event failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regarding(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Node".into()),
            name: Some(name.into()),
            uid: Some("u".into()),
            ..Default::default()
        }
    }

    #[test]
    fn a_repeat_within_the_window_joins_the_series_and_a_different_note_does_not() {
        let mut cache = Cache::default();
        let t0 = Instant::now();
        let k = key(EventType::Warning, "R", &regarding("n1"), "why");
        assert_eq!(cache.next(k, t0), Next::Create);
        cache.record(k, "n1.abc", 1, t0);
        assert_eq!(cache.next(k, t0 + Duration::from_secs(60)), Next::Repeat { name: "n1.abc".into(), count: 2 });
        cache.record(k, "n1.abc", 2, t0 + Duration::from_secs(60));
        assert_ne!(k, key(EventType::Warning, "R", &regarding("n1"), "another reason"));
        assert_ne!(k, key(EventType::Normal, "R", &regarding("n1"), "why"));
        assert_ne!(k, key(EventType::Warning, "R", &regarding("n2"), "why"));
        // Six minutes after the last repeat, it starts a new event, and the sweep forgets the old one.
        let later = t0 + Duration::from_secs(60) + SERIES_WINDOW;
        assert_eq!(cache.next(k, later), Next::Create);
        assert!(cache.series.is_empty());
    }
}
