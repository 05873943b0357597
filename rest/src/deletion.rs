//! What a DELETE does to a stored object, as k8s.io/apiserver's `BeforeDelete`
//! and its store's `Delete` decide it: an object with finalizers (or given
//! some by `propagationPolicy`: `orphan`, `foregroundDeletion`) or deleted
//! gracefully (a kind whose strategy says so, Pods) is kept with a
//! `deletionTimestamp`; a later DELETE may only shorten a pending grace
//! period; anything else is removed at once. Pure: the storage stores what
//! this decides.

use serde_json::{Value, json};

use super::storage::{DeleteOptions, Propagation};

/// The finalizer that makes the garbage collector orphan the dependents.
pub const ORPHAN: &str = "orphan";
/// The finalizer that makes the garbage collector delete the dependents first.
pub const FOREGROUND: &str = "foregroundDeletion";

/// What to do with the object.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    /// Remove it now.
    Remove,
    /// Store this version: it goes once its finalizers are gone and its grace period is over.
    Mark(Value),
    /// A deletion is already under way and this one changes nothing: answer the object as it is.
    Pending,
}

fn finalizers(obj: &Value) -> Vec<String> {
    obj["metadata"]["finalizers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_owned))
        .collect()
}

/// The finalizers `propagation` asks for (`deletionFinalizersForGarbageCollection`).
fn with_propagation(mut list: Vec<String>, propagation: Option<Propagation>) -> Vec<String> {
    let (add, remove): (&[&str], &[&str]) = match propagation {
        None => (&[], &[]),
        Some(Propagation::Background) => (&[], &[ORPHAN, FOREGROUND]),
        Some(Propagation::Orphan) => (&[ORPHAN], &[FOREGROUND]),
        Some(Propagation::Foreground) => (&[FOREGROUND], &[ORPHAN]),
    };
    list.retain(|f| !remove.contains(&f.as_str()));
    for f in add {
        if !list.iter().any(|x| x == f) {
            list.push((*f).to_owned());
        }
    }
    list
}

fn stamp(t: jiff::Timestamp) -> String {
    jiff::Timestamp::from_second(t.as_second()).unwrap_or(t).to_string()
}

/// Decides a DELETE of `current` with `opts` at `now`; `graceful` is the
/// kind's grace period for it (its strategy's `check_graceful_delete`).
pub fn plan(current: &Value, opts: &DeleteOptions, graceful: Option<i64>, now: jiff::Timestamp) -> Deletion {
    let meta = &current["metadata"];
    // A negative grace period is one second (BeforeDelete).
    let requested = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
    let has_finalizers = !finalizers(current).is_empty();
    if let Some(deleting) = meta["deletionTimestamp"].as_str() {
        let pending = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if graceful.is_none() || pending <= 0 {
            return if has_finalizers { Deletion::Pending } else { Deletion::Remove };
        }
        // Only a shorter grace period may be given.
        let Some(shorter) = requested.filter(|r| *r < pending) else { return Deletion::Pending };
        if shorter == 0 && !has_finalizers {
            return Deletion::Remove;
        }
        let Ok(at) = deleting.parse::<jiff::Timestamp>() else { return Deletion::Pending };
        let mut marked = current.clone();
        let new_at = at.checked_add(jiff::SignedDuration::from_secs(shorter - pending)).unwrap_or(at);
        marked["metadata"]["deletionTimestamp"] = json!(stamp(new_at));
        marked["metadata"]["deletionGracePeriodSeconds"] = json!(shorter);
        return Deletion::Mark(marked);
    }
    let list = with_propagation(finalizers(current), opts.propagation);
    let period = graceful.unwrap_or(0);
    if period <= 0 && list.is_empty() {
        return Deletion::Remove;
    }
    let mut marked = current.clone();
    let at = now.checked_add(jiff::SignedDuration::from_secs(period.max(0))).unwrap_or(now);
    marked["metadata"]["deletionTimestamp"] = json!(stamp(at));
    marked["metadata"]["deletionGracePeriodSeconds"] = json!(period.max(0));
    if !list.is_empty() || !meta["finalizers"].is_null() {
        marked["metadata"]["finalizers"] = json!(list);
    }
    if graceful.is_some()
        && let Some(generation) = meta["generation"].as_i64().filter(|g| *g > 0)
    {
        marked["metadata"]["generation"] = json!(generation + 1);
    }
    Deletion::Mark(marked)
}

/// Whether an update that leaves `new` in place of `old` deletes the object:
/// its last finalizer removed while it is being deleted with no grace period
/// left (the store's `shouldDeleteDuringUpdate`).
pub fn deletes_on_update(old: &Value, new: &Value) -> bool {
    !new["metadata"]["deletionTimestamp"].is_null()
        && finalizers(new).is_empty()
        && !finalizers(old).is_empty()
        && new["metadata"]["deletionGracePeriodSeconds"].as_i64().unwrap_or(0) <= 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> jiff::Timestamp {
        jiff::Timestamp::from_second(NOW).unwrap()
    }

    fn at(secs: i64) -> String {
        jiff::Timestamp::from_second(NOW + secs).unwrap().to_string()
    }

    fn opts(grace: Option<i64>, propagation: Option<Propagation>) -> DeleteOptions {
        DeleteOptions { grace_period_seconds: grace, propagation, ..DeleteOptions::default() }
    }

    fn marked(d: Deletion) -> Value {
        match d {
            Deletion::Mark(v) => v,
            other => panic!("expected a marked object, got {other:?}"),
        }
    }

    #[test]
    fn plain_kinds_go_at_once_unless_finalized() {
        let obj = json!({"metadata": {"name": "a", "generation": 1}});
        assert_eq!(plan(&obj, &opts(None, None), None, now()), Deletion::Remove);
        let held = json!({"metadata": {"name": "a", "finalizers": ["example.com/x"]}});
        let m = marked(plan(&held, &opts(None, None), None, now()));
        assert_eq!(m["metadata"]["deletionTimestamp"], at(0));
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 0);
        assert_eq!(plan(&m, &opts(None, None), None, now()), Deletion::Pending, "already being deleted");
    }

    #[test]
    fn propagation_policies_become_finalizers() {
        let obj = json!({"metadata": {"name": "web", "finalizers": ["orphan"]}});
        let m = marked(plan(&obj, &opts(None, Some(Propagation::Foreground)), None, now()));
        assert_eq!(m["metadata"]["finalizers"], json!(["foregroundDeletion"]));
        let m = marked(plan(&json!({"metadata": {}}), &opts(None, Some(Propagation::Orphan)), None, now()));
        assert_eq!(m["metadata"]["finalizers"], json!(["orphan"]));
        assert_eq!(plan(&obj, &opts(None, Some(Propagation::Background)), None, now()), Deletion::Remove);
    }

    #[test]
    fn graceful_deletion_waits_and_may_only_be_shortened() {
        let pod = json!({"metadata": {"name": "p", "generation": 1}});
        let m = marked(plan(&pod, &opts(None, None), Some(30), now()));
        assert_eq!(m["metadata"]["deletionTimestamp"], at(30), "the time it is expected to be gone");
        assert_eq!(m["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(m["metadata"]["generation"], 2);
        assert_eq!(plan(&m, &opts(Some(60), None), Some(60), now()), Deletion::Pending, "longer: ignored");
        assert_eq!(plan(&m, &opts(None, None), Some(30), now()), Deletion::Pending);
        let shorter = marked(plan(&m, &opts(Some(10), None), Some(10), now()));
        assert_eq!(shorter["metadata"]["deletionTimestamp"], at(10));
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
        assert_eq!(plan(&m, &opts(Some(0), None), Some(0), now()), Deletion::Remove, "grace 0 finishes it");
        assert_eq!(plan(&pod, &opts(Some(0), None), Some(0), now()), Deletion::Remove);
        assert_eq!(
            marked(plan(&pod, &opts(Some(-5), None), Some(1), now()))["metadata"]["deletionGracePeriodSeconds"],
            1
        );
    }

    #[test]
    fn only_removing_the_last_finalizer_deletes_on_update() {
        let deleting =
            json!({"metadata": {"deletionTimestamp": at(0), "deletionGracePeriodSeconds": 0, "finalizers": ["a/b"]}});
        let mut done = deleting.clone();
        done["metadata"]["finalizers"] = json!([]);
        assert!(deletes_on_update(&deleting, &done));
        let graceful = json!({"metadata": {"deletionTimestamp": at(30), "deletionGracePeriodSeconds": 30}});
        assert!(!deletes_on_update(&graceful, &graceful), "a status write during a grace period keeps the pod");
    }
}
