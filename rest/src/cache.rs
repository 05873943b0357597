//! An object cache with a resourceVersion sequence, a bounded event history
//! and a fan-out of events to watchers.
//!
//! resourceVersions are `epoch << 40 | counter`. The epoch is random per
//! process (or 0 for a single long-lived store), so a resourceVersion issued by
//! another replica or before a restart is recognised as foreign and answered
//! with 410 Expired: clients then relist instead of silently missing events.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::broadcast;

use super::entry::{Entry, Memo};

const COUNTER_BITS: u32 = 40;

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// It appeared.
    Added,
    /// It changed.
    Modified,
    /// It is gone.
    Deleted,
}

impl EventType {
    /// The watch event `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, with the object before it (for selector transitions).
#[derive(Debug, Clone)]
pub struct Event {
    /// What happened.
    pub kind: EventType,
    /// The object after the change (for deletes: its last state, with the delete's RV).
    pub object: Arc<Value>,
    /// The encodings of `object`.
    pub memo: Arc<Memo>,
    /// The object before the change.
    pub previous: Option<Arc<Value>>,
    /// The change's resourceVersion.
    pub rv: u64,
}

impl Event {
    /// The changed object with its encodings.
    pub fn entry(&self) -> Entry {
        Entry { object: self.object.clone(), memo: self.memo.clone() }
    }
}

/// Key of an object: namespace ("" when cluster-scoped) and name.
pub type Key = (String, String);

/// The missed events and the receiver of later ones.
pub type Subscription = (Vec<Arc<Event>>, broadcast::Receiver<Arc<Event>>);

/// Why a watch cannot start from a resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expired(pub String);

struct Inner {
    objects: BTreeMap<Key, Entry>,
    history: VecDeque<Arc<Event>>,
    /// The newest resourceVersion dropped from the history: watches from before it cannot be served.
    compacted: u64,
    /// Every entry in key order, shared by the reads that come before the next change.
    listing: Option<Arc<[Entry]>>,
}

/// A resourceVersion sequence; share one between caches for a single global
/// sequence across kinds, as etcd's revision is for kube-apiserver.
pub type Sequence = Arc<AtomicU64>;

/// The cache. Cheap to share behind an `Arc`.
pub struct ObjectCache {
    epoch: u64,
    history_limit: usize,
    counter: Sequence,
    inner: Mutex<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

/// The key of `obj` from its metadata.
pub fn key_of(obj: &Value) -> Key {
    let meta = &obj["metadata"];
    (meta["namespace"].as_str().unwrap_or("").to_owned(), meta["name"].as_str().unwrap_or("").to_owned())
}

/// The object's resourceVersion as a number (0 when absent or foreign-looking).
pub fn rv_of(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// Whether two objects differ in anything but their resourceVersion (compared in place, without copies).
fn same_but_rv(a: &Value, b: &Value) -> bool {
    let (Value::Object(a), Value::Object(b)) = (a, b) else { return a == b };
    // Maps iterate in key order, so equal maps yield equal sequences.
    fn without_rv(m: &serde_json::Map<String, Value>) -> impl Iterator<Item = (&String, &Value)> {
        m.iter().filter(|(k, _)| k.as_str() != "resourceVersion")
    }
    a.len() == b.len()
        && a.iter().zip(b.iter()).all(|((ka, va), (kb, vb))| {
            ka == kb
                && match (ka.as_str(), va, vb) {
                    ("metadata", Value::Object(ma), Value::Object(mb)) => without_rv(ma).eq(without_rv(mb)),
                    _ => va == vb,
                }
        })
}

impl ObjectCache {
    /// A cache whose resourceVersions carry `epoch` (use `random_epoch()` for
    /// replicated or restartable servers), keeping `history_limit` events for watch resumption.
    pub fn new(epoch: u64, history_limit: usize) -> Self {
        Self::with_sequence(epoch, history_limit, Sequence::default())
    }

    /// A cache drawing resourceVersions from `counter`, shared with other caches.
    pub fn with_sequence(epoch: u64, history_limit: usize, counter: Sequence) -> Self {
        let (events, _) = broadcast::channel(history_limit.clamp(16, 100_000));
        ObjectCache {
            epoch: epoch & ((1 << (63 - COUNTER_BITS)) - 1),
            history_limit,
            counter,
            inner: Mutex::new(Inner {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                listing: None,
            }),
            events,
        }
    }

    fn next_counter(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    fn counter_now(&self) -> u64 {
        self.counter.load(Ordering::SeqCst)
    }

    /// A random non-zero epoch.
    pub fn random_epoch() -> u64 {
        rand::random_range(1..(1u64 << (63 - COUNTER_BITS)))
    }

    fn rv(&self, counter: u64) -> u64 {
        (self.epoch << COUNTER_BITS) | counter
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current resourceVersion (of the last change, or the start).
    pub fn current_rv(&self) -> u64 {
        let _inner = self.lock();
        self.rv(self.counter_now())
    }

    /// One object.
    pub fn get(&self, key: &Key) -> Option<Arc<Value>> {
        self.lock().objects.get(key).map(|e| e.object.clone())
    }

    /// One object with its encodings.
    pub fn get_entry(&self, key: &Key) -> Option<Entry> {
        self.lock().objects.get(key).cloned()
    }

    /// Every object, in key order, and the resourceVersion they are current at.
    pub fn snapshot(&self) -> (Vec<Arc<Value>>, u64) {
        let inner = self.lock();
        (inner.objects.values().map(|e| e.object.clone()).collect(), self.rv(self.counter_now()))
    }

    /// Every object with its encodings, in key order, and the resourceVersion
    /// they are current at. Reads between two changes share one listing.
    pub fn snapshot_entries(&self) -> (Arc<[Entry]>, u64) {
        let mut inner = self.lock();
        (Self::listing(&mut inner), self.rv(self.counter_now()))
    }

    fn listing(inner: &mut Inner) -> Arc<[Entry]> {
        let Inner { objects, listing, .. } = inner;
        listing.get_or_insert_with(|| objects.values().cloned().collect()).clone()
    }

    fn record(&self, inner: &mut Inner, kind: EventType, entry: Entry, previous: Option<Arc<Value>>, rv: u64) {
        let event = Arc::new(Event { kind, object: entry.object, memo: entry.memo, previous, rv });
        inner.history.push_back(event.clone());
        while inner.history.len() > self.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }

    /// Stores `obj` with a new resourceVersion and announces it; an object
    /// equal to the stored one (resourceVersion aside) is left as it is.
    pub fn upsert(&self, obj: Value) -> Arc<Value> {
        let mut inner = self.lock();
        self.upsert_locked(&mut inner, obj)
    }

    fn upsert_locked(&self, inner: &mut Inner, mut obj: Value) -> Arc<Value> {
        let key = key_of(&obj);
        let previous = inner.objects.get(&key).map(|e| e.object.clone());
        if let Some(prev) = &previous
            && same_but_rv(prev, &obj)
        {
            return prev.clone();
        }
        let rv = self.rv(self.next_counter());
        obj["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let entry = Entry::new(Arc::new(obj));
        let obj = entry.object.clone();
        inner.objects.insert(key, entry.clone());
        inner.listing = None;
        let kind = if previous.is_some() { EventType::Modified } else { EventType::Added };
        self.record(inner, kind, entry, previous, rv);
        obj
    }

    /// Stores `obj` only if the stored object still has `expected_rv`
    /// (`None`: only if absent); the compare-and-swap behind updates.
    /// On failure, returns the stored object, if any.
    pub fn upsert_if(&self, obj: Value, expected_rv: Option<u64>) -> Result<Arc<Value>, Option<Arc<Value>>> {
        let key = key_of(&obj);
        let mut inner = self.lock();
        let current = inner.objects.get(&key).map(|e| e.object.clone());
        let ok = match (&current, expected_rv) {
            (None, None) => true,
            (Some(c), Some(rv)) => rv_of(c) == rv,
            _ => false,
        };
        if !ok {
            return Err(current);
        }
        Ok(self.upsert_locked(&mut inner, obj))
    }

    /// Removes an object and announces its deletion with a new resourceVersion.
    pub fn remove(&self, key: &Key) -> Option<Arc<Value>> {
        let mut inner = self.lock();
        let previous = inner.objects.remove(key)?.object;
        inner.listing = None;
        let rv = self.rv(self.next_counter());
        let mut last = (*previous).clone();
        last["metadata"]["resourceVersion"] = Value::String(rv.to_string());
        let last = Entry::new(Arc::new(last));
        let object = last.object.clone();
        self.record(&mut inner, EventType::Deleted, last, Some(previous), rv);
        Some(object)
    }

    /// Events after `rv` and a receiver of later ones, without gap or overlap.
    /// `rv` of another epoch, older than the history, or newer than now is Expired.
    pub fn subscribe_after(&self, rv: u64) -> Result<Subscription, Expired> {
        let inner = self.lock();
        let current = self.rv(self.counter_now());
        if rv >> COUNTER_BITS != self.epoch {
            return Err(Expired(format!("too old resource version: {rv} ({current})")));
        }
        if rv > current {
            return Err(Expired(format!("too large resource version: {rv}, current: {current}")));
        }
        // Every event after `rv` must still be in the history.
        if rv < inner.compacted {
            return Err(Expired(format!("too old resource version: {rv} ({current})")));
        }
        let backlog = inner.history.iter().filter(|e| e.rv > rv).cloned().collect();
        Ok((backlog, self.events.subscribe()))
    }

    /// The current objects and a receiver of every later event.
    pub fn subscribe_now(&self) -> (Arc<[Entry]>, u64, broadcast::Receiver<Arc<Event>>) {
        let mut inner = self.lock();
        (Self::listing(&mut inner), self.rv(self.counter_now()), self.events.subscribe())
    }

    /// A resourceVersion a watcher may be told it has seen (a bookmark): the
    /// current one, but only when `rx` has nothing pending, so no queued event
    /// is skipped by a client resuming from it.
    pub fn bookmark_rv(&self, rx: &broadcast::Receiver<Arc<Event>>) -> Option<u64> {
        let _inner = self.lock();
        rx.is_empty().then(|| self.rv(self.counter_now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(name: &str, v: i64) -> Value {
        json!({"metadata": {"name": name}, "spec": {"v": v}})
    }

    #[test]
    fn rvs_increase_and_identical_writes_are_no_ops() {
        let c = ObjectCache::new(7, 100);
        let a = c.upsert(obj("a", 1));
        let a2 = c.upsert(obj("a", 1));
        assert_eq!(rv_of(&a), rv_of(&a2), "an identical write is not a change");
        let b = c.upsert(obj("a", 2));
        assert!(rv_of(&b) > rv_of(&a));
        assert_eq!(c.current_rv(), rv_of(&b));
        assert_eq!(rv_of(&a) >> 40, 7);
    }

    #[test]
    fn subscribe_after_replays_exactly_the_missed_events() {
        let c = ObjectCache::new(1, 100);
        let first = rv_of(&c.upsert(obj("a", 1)));
        c.upsert(obj("b", 1));
        c.remove(&("".into(), "a".into()));
        let (backlog, _rx) = c.subscribe_after(first).unwrap();
        let kinds: Vec<_> = backlog.iter().map(|e| (e.kind, key_of(&e.object).1)).collect();
        assert_eq!(kinds, vec![(EventType::Added, "b".to_string()), (EventType::Deleted, "a".to_string())]);
    }

    #[test]
    fn foreign_old_and_future_rvs_expire() {
        let c = ObjectCache::new(1, 2);
        let first = rv_of(&c.upsert(obj("a", 1)));
        for i in 2..6 {
            c.upsert(obj("a", i));
        }
        assert!(c.subscribe_after(first).is_err(), "history no longer covers it");
        assert!(c.subscribe_after(c.current_rv() - 1).is_ok());
        assert!(c.subscribe_after(c.current_rv()).is_ok());
        let other = ObjectCache::new(2, 10);
        assert!(other.subscribe_after(c.current_rv()).is_err(), "another epoch's rv");
        assert!(c.subscribe_after(c.current_rv() + 5).is_err());
    }

    #[test]
    fn only_rv_differences_are_ignored() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1", "labels": {"x": "y"}}, "spec": {"v": 1}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("2");
        assert!(same_but_rv(&a, &b));
        b["metadata"].as_object_mut().unwrap().remove("resourceVersion");
        assert!(same_but_rv(&a, &b), "an absent resourceVersion is no difference either");
        let mut c = a.clone();
        c["metadata"]["labels"]["x"] = json!("z");
        assert!(!same_but_rv(&a, &c));
        let mut d = a.clone();
        d["metadata"]["uid"] = json!("u");
        assert!(!same_but_rv(&a, &d), "a new metadata field");
        let mut e = a.clone();
        e["status"] = json!({});
        assert!(!same_but_rv(&a, &e), "a new top-level field");
        assert!(!same_but_rv(&e, &a));
    }

    #[test]
    fn encodings_belong_to_one_version() {
        let c = ObjectCache::new(1, 100);
        let (_, _, mut rx) = c.subscribe_now();
        c.upsert(obj("a", 1));
        let key = ("".to_string(), "a".to_string());
        let first = c.get_entry(&key).unwrap();
        let event = rx.try_recv().unwrap();
        assert!(Arc::ptr_eq(&event.memo, &first.memo), "the event shares the stored version's memo");
        assert_eq!(serde_json::from_slice::<Value>(first.json()).unwrap(), *first.object);
        assert_eq!(
            serde_json::from_slice::<Value>(first.metadata_json()).unwrap(),
            super::super::entry::partial_metadata(&first.object)
        );
        c.upsert(obj("a", 1));
        assert!(Arc::ptr_eq(&c.get_entry(&key).unwrap().memo, &first.memo), "no change, same version");
        c.upsert(obj("a", 2));
        let second = c.get_entry(&key).unwrap();
        assert!(!Arc::ptr_eq(&second.memo, &first.memo));
        assert_eq!(serde_json::from_slice::<Value>(second.json()).unwrap()["spec"]["v"], 2);
        c.remove(&key);
        assert!(c.get_entry(&key).is_none());
        assert!(c.snapshot_entries().0.is_empty());
    }

    #[test]
    fn compare_and_swap() {
        let c = ObjectCache::new(1, 10);
        let a = c.upsert_if(obj("a", 1), None).unwrap();
        assert!(c.upsert_if(obj("a", 2), None).is_err(), "already exists");
        assert!(c.upsert_if(obj("a", 2), Some(rv_of(&a) + 1)).is_err(), "stale");
        assert!(c.upsert_if(obj("a", 2), Some(rv_of(&a))).is_ok());
    }
}
