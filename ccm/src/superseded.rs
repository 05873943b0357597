//! Cached versions that sks-ccm's own writes have replaced. A write answers
//! with the object's new resourceVersion, but until the watch delivers that
//! version the cache still holds the one the write was made from, and a
//! reconcile of it (one queued while the write ran, say) would write again:
//! a 409 when the write is guarded, a redundant write when it is not. On a
//! real kube-apiserver such reconciles were most of the 0.87 conflicts per
//! Node of a 1,000-Node burst. So a controller records, per object, the
//! version it reconciled and every version its writes produced but the last,
//! and skips a reconcile of any of them: the watch is about to deliver the
//! last one, which reconciles as any change does.
//!
//! Versions are only compared for equality (kube-apiserver's resourceVersions
//! are opaque), so nothing is skipped that was not seen or written here: a
//! change by anyone else is a version this memory never holds. An entry ends
//! when a reconcile sees a version it does not hold (the watch moved past it),
//! and is ignored once [`FORGET_AFTER`] old, so a watch that never delivers
//! costs a reconcile of the old version after that long, never a lost one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::Resource;

/// How long a recorded write keeps its versions skipped (and how soon a
/// skipped reconcile looks again, should the watch not deliver meanwhile).
pub const FORGET_AFTER: Duration = Duration::from_secs(30);
/// How often entries of objects that were never seen again are dropped.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What one reconcile wrote: the resourceVersion of every answer, in order.
#[derive(Debug, Default)]
pub struct Writes(Mutex<Vec<Option<String>>>);

impl Writes {
    /// Records a write's answer (the object as it now is).
    pub fn answered<K: Resource>(&self, obj: &K) {
        self.lock().push(obj.meta().resource_version.clone());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Option<String>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The versions of each object a controller's writes superseded.
#[derive(Debug, Default)]
pub struct Superseded(Mutex<Table>);

#[derive(Debug, Default)]
struct Table {
    entries: HashMap<String, Entry>,
    swept: Option<Instant>,
}

#[derive(Debug)]
struct Entry {
    versions: Vec<String>,
    at: Instant,
}

/// The key of an object: namespace/name.
pub fn key<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    format!("{}/{}", meta.namespace.as_deref().unwrap_or_default(), meta.name.as_deref().unwrap_or_default())
}

impl Superseded {
    /// Whether `obj`, as cached, is a version this controller's own writes
    /// replaced (then its reconcile is skipped).
    pub fn holds<K: Resource>(&self, obj: &K) -> bool {
        self.holds_at(&key(obj), obj.meta().resource_version.as_deref(), Instant::now())
    }

    /// Records that a reconcile of `obj` (as cached) wrote `writes`: the
    /// cached version and every answer but the last are superseded.
    pub fn record<K: Resource>(&self, obj: &K, writes: Writes) {
        let written = writes.0.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        self.record_at(&key(obj), obj.meta().resource_version.as_deref(), written, Instant::now());
    }

    fn holds_at(&self, key: &str, version: Option<&str>, now: Instant) -> bool {
        let mut table = self.lock();
        let Some(entry) = table.entries.get(key) else { return false };
        let held = now.duration_since(entry.at) < FORGET_AFTER
            && version.is_some_and(|v| entry.versions.iter().any(|x| x == v));
        if !held {
            table.entries.remove(key);
        }
        held
    }

    fn record_at(&self, key: &str, read: Option<&str>, mut written: Vec<Option<String>>, now: Instant) {
        // The last answer is the version the watch will bring: that one reconciles.
        if written.pop().is_none() {
            return;
        }
        let versions: Vec<String> = read.map(str::to_owned).into_iter().chain(written.into_iter().flatten()).collect();
        let mut table = self.lock();
        if table.swept.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY) {
            table.entries.retain(|_, e| now.duration_since(e.at) < FORGET_AFTER);
            table.swept = Some(now);
        }
        table.entries.insert(key.to_owned(), Entry { versions, at: now });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Objects with a recorded write (for tests and memory checks).
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no write is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn the_version_read_and_intermediate_answers_are_skipped_until_the_last_arrives() {
        let s = Superseded::default();
        let t0 = Instant::now();
        // Reconciled version 5; the status write answered 6, the spec write 7.
        s.record_at("/n1", Some("5"), vec![v("6"), v("7")], t0);
        assert!(s.holds_at("/n1", Some("5"), t0), "the version the writes were made from");
        assert!(s.holds_at("/n1", Some("6"), t0), "an intermediate answer of our own");
        assert!(!s.holds_at("/n2", Some("5"), t0), "another object");
        assert!(!s.holds_at("/n1", Some("7"), t0), "the last answer reconciles");
        assert!(!s.holds_at("/n1", Some("5"), t0), "and ends the entry: the watch moved past");
        assert!(s.is_empty());
    }

    #[test]
    fn a_version_written_by_anyone_else_is_never_skipped() {
        let s = Superseded::default();
        let t0 = Instant::now();
        s.record_at("/n1", Some("5"), vec![v("6"), v("8")], t0);
        assert!(!s.holds_at("/n1", Some("7"), t0), "a kubelet's write between ours");
        assert!(!s.holds_at("/n1", None, t0));
    }

    #[test]
    fn a_reconcile_without_writes_records_nothing_and_old_entries_expire() {
        let s = Superseded::default();
        let t0 = Instant::now();
        s.record_at("/n1", Some("5"), vec![], t0);
        assert!(s.is_empty(), "nothing written: nothing superseded");
        s.record_at("/n1", Some("5"), vec![v("6")], t0);
        assert!(!s.holds_at("/n1", Some("5"), t0 + FORGET_AFTER), "a watch that never delivered");
        // Entries of objects never seen again (deleted) are swept by a later write.
        s.record_at("/gone", Some("1"), vec![v("2")], t0);
        s.record_at("/n3", Some("1"), vec![v("2")], t0 + SWEEP_EVERY);
        assert_eq!(s.len(), 1);
    }
}
