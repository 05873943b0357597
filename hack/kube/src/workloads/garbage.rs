//! The garbage collector (kubernetes' `pkg/controller/garbagecollector`),
//! over every stored kind: an object none of whose owners exists any more
//! (by uid; owners of kinds the stand-in does not serve are taken to exist)
//! is deleted; references to owners that are gone are removed while another
//! owner remains. An owner deleted with `propagationPolicy: Orphan` keeps
//! the `orphan` finalizer until its dependents' references to it are
//! removed; one deleted with `Foreground` keeps `foregroundDeletion` until
//! its dependents that block its deletion are gone (they are deleted, each
//! in the background: a dependent's own dependents are not waited for).
//! Deleting a Deployment thus removes its ReplicaSets, then their pods.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use sks_rest::deletion::{FOREGROUND, ORPHAN};
use sks_rest::memory::MemStorage;
use sks_rest::storage::Storage as _;

use super::{Cluster, deleting, log_failure, namespace, uid};

/// How often the collector looks.
const PERIOD: Duration = Duration::from_secs(1);

/// What an owner reference points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// A kind the stand-in does not serve: assumed to exist.
    Unknown,
    /// Not found (or found with another uid).
    Absent,
    /// Exists; `true` when it is being deleted in the foreground.
    Present(bool),
}

/// What to do with a dependent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    Keep,
    /// Delete it: every owner is gone, or one is deleted in the foreground.
    Delete,
    /// Remove the references with these owner uids.
    RemoveReferences(Vec<String>),
}

/// Decides for `dependent`, knowing what each of its owner references points at.
pub fn decide(dependent: &Value, owner_of: impl Fn(&Value) -> Owner) -> Action {
    let refs = dependent["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or_default();
    if refs.is_empty() || deleting(dependent) {
        return Action::Keep;
    }
    let mut absent = Vec::new();
    let (mut alive, mut foreground) = (0, false);
    for r in refs {
        match owner_of(r) {
            Owner::Unknown => alive += 1,
            Owner::Absent => absent.push(r["uid"].as_str().unwrap_or("").to_owned()),
            Owner::Present(in_foreground) => {
                alive += 1;
                foreground |= in_foreground;
            }
        }
    }
    if alive == 0 || foreground {
        Action::Delete
    } else if !absent.is_empty() {
        Action::RemoveReferences(absent)
    } else {
        Action::Keep
    }
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(Value::as_str).collect()
}

/// An object referring to an owner, with the store it is in.
type Dependent<'a> = (&'a Arc<MemStorage>, Arc<Value>);

/// The group of an `apiVersion` ("" for core).
fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// Runs the collector. Never returns.
pub async fn run(cluster: Cluster) {
    let mut tick = tokio::time::interval(PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        pass(&cluster).await;
    }
}

async fn pass(cluster: &Cluster) {
    let kinds: BTreeMap<(&str, &str), &Arc<MemStorage>> =
        cluster.all.iter().map(|s| ((s.def().group, s.def().kind), s)).collect();
    let snapshot: Vec<(&Arc<MemStorage>, Vec<Arc<Value>>)> = cluster.all.iter().map(|s| (s, s.all())).collect();
    let owner_of = |r: &Value, dependent_ns: &str| -> (Owner, Option<Arc<Value>>) {
        let key = (group_of(r["apiVersion"].as_str().unwrap_or("")), r["kind"].as_str().unwrap_or(""));
        let Some(store) = kinds.get(&key) else { return (Owner::Unknown, None) };
        let ns = if store.def().namespaced { dependent_ns } else { "" };
        let name = r["name"].as_str().unwrap_or("").to_owned();
        match store.cache().get(&(ns.to_owned(), name)) {
            Some(o) if o["metadata"]["uid"] == r["uid"] => {
                let fg = deleting(&o) && finalizers(&o).contains(&FOREGROUND);
                (Owner::Present(fg), Some(o))
            }
            _ => (Owner::Absent, None),
        }
    };
    // Owners still referenced by a dependent that blocks their deletion, by uid.
    let mut blocking: BTreeSet<String> = BTreeSet::new();
    let mut referenced: BTreeMap<String, Vec<Dependent<'_>>> = BTreeMap::new();
    for (store, objects) in &snapshot {
        for obj in objects {
            let refs = obj["metadata"]["ownerReferences"].as_array().map(Vec::as_slice).unwrap_or_default();
            for r in refs {
                let owner_uid = r["uid"].as_str().unwrap_or("").to_owned();
                if r["blockOwnerDeletion"] == true {
                    blocking.insert(owner_uid.clone());
                }
                referenced.entry(owner_uid).or_default().push((store, obj.clone()));
            }
            match decide(obj, |r| owner_of(r, namespace(obj)).0) {
                Action::Keep => {}
                Action::Delete => {
                    log_failure("collecting a dependent", super::delete(store, obj, None).await);
                }
                Action::RemoveReferences(gone) => {
                    super::release(store, obj, gone, "removing dangling owner references").await;
                }
            }
        }
    }
    // Owners waiting on the collector: orphaning and foreground deletion.
    for (store, objects) in &snapshot {
        for owner in objects.iter().filter(|o| deleting(o)) {
            let held = finalizers(owner);
            let owner_uid = uid(owner).to_owned();
            let dependents = referenced.get(&owner_uid).map(Vec::as_slice).unwrap_or_default();
            let release = if held.contains(&ORPHAN) {
                for (dep_store, dep) in dependents {
                    super::release(dep_store, dep, vec![owner_uid.clone()], "orphaning a dependent").await;
                }
                Some(ORPHAN)
            } else if held.contains(&FOREGROUND) && !blocking.contains(&owner_uid) {
                Some(FOREGROUND)
            } else {
                None
            };
            if let Some(finalizer) = release {
                let released = super::update(store, owner, None, move |o| {
                    let kept: Vec<Value> =
                        finalizers(o).into_iter().filter(|f| *f != finalizer).map(|f| json!(f)).collect();
                    o["metadata"]["finalizers"] = json!(kept);
                });
                log_failure("removing a garbage collector finalizer", released.await);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dependent(refs: Value) -> Value {
        json!({"metadata": {"name": "d", "ownerReferences": refs}})
    }

    #[test]
    fn dependents_go_with_their_last_owner() {
        let two = dependent(json!([{"uid": "a"}, {"uid": "b"}]));
        let gone = |r: &Value| if r["uid"] == "a" { Owner::Absent } else { Owner::Present(false) };
        assert_eq!(decide(&two, gone), Action::RemoveReferences(vec!["a".into()]));
        assert_eq!(decide(&two, |_| Owner::Absent), Action::Delete);
        assert_eq!(decide(&two, |_| Owner::Unknown), Action::Keep, "owners of kinds not served are assumed to exist");
        assert_eq!(
            decide(&two, |_| Owner::Present(true)),
            Action::Delete,
            "a foreground deletion takes its dependents"
        );
        assert_eq!(decide(&dependent(json!([])), |_| Owner::Absent), Action::Keep);
    }
}
