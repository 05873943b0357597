//! Since when each node has been unneeded: the only state scale-down keeps
//! between rounds. A node stays unneeded while every round finds it so; one
//! round where it is needed forgets it, and its time starts again.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Node name → when it was first found unneeded in an unbroken run of rounds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnneededTracker {
    since: BTreeMap<String, Timestamp>,
}

impl UnneededTracker {
    /// An empty tracker.
    pub fn new() -> Self {
        UnneededTracker::default()
    }

    /// Records a round at `now` that found exactly `unneeded` unneeded.
    pub fn update<'a>(&mut self, unneeded: impl IntoIterator<Item = &'a str>, now: Timestamp) {
        let mut next = BTreeMap::new();
        for name in unneeded {
            let since = self.since.get(name).copied().unwrap_or(now);
            next.insert(name.to_owned(), since);
        }
        self.since = next;
    }

    /// When `node` became unneeded, if it is.
    pub fn since(&self, node: &str) -> Option<Timestamp> {
        self.since.get(node).copied()
    }

    /// Whether `node` has been unneeded for at least `time` at `now`.
    pub fn unneeded_for(&self, node: &str, time: Duration, now: Timestamp) -> bool {
        self.since(node).is_some_and(|since| at_least(since, now, time))
    }

    /// Forgets `node` (removed, or its removal abandoned).
    pub fn forget(&mut self, node: &str) {
        self.since.remove(node);
    }

    /// The nodes tracked, by name.
    pub fn nodes(&self) -> impl Iterator<Item = (&str, Timestamp)> {
        self.since.iter().map(|(n, t)| (n.as_str(), *t))
    }
}

/// Whether `time` has passed between `since` and `now`.
pub(crate) fn at_least(since: Timestamp, now: Timestamp, time: Duration) -> bool {
    now.duration_since(since) >= SignedDuration::try_from(time).unwrap_or(SignedDuration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_node_is_unneeded_since_the_first_round_of_an_unbroken_run() {
        let mut t = UnneededTracker::new();
        t.update(["a", "b"], at("2026-01-01T00:00:00Z"));
        t.update(["a", "b", "c"], at("2026-01-01T00:05:00Z"));
        assert_eq!(t.since("a"), Some(at("2026-01-01T00:00:00Z")));
        assert_eq!(t.since("c"), Some(at("2026-01-01T00:05:00Z")));
        t.update(["a", "c"], at("2026-01-01T00:06:00Z"));
        assert_eq!(t.since("b"), None, "needed once: forgotten");
        t.update(["a", "b", "c"], at("2026-01-01T00:07:00Z"));
        assert_eq!(t.since("b"), Some(at("2026-01-01T00:07:00Z")), "and its time starts again");
        let ten = Duration::from_secs(600);
        assert!(t.unneeded_for("a", ten, at("2026-01-01T00:10:00Z")));
        assert!(!t.unneeded_for("c", ten, at("2026-01-01T00:10:00Z")));
        assert!(!t.unneeded_for("z", Duration::ZERO, at("2026-01-01T00:10:00Z")));
        t.forget("a");
        assert_eq!(t.nodes().map(|(n, _)| n).collect::<Vec<_>>(), ["b", "c"]);
    }

    #[test]
    fn durations_beyond_any_timestamp_never_pass() {
        assert!(!at_least(at("2026-01-01T00:00:00Z"), at("2030-01-01T00:00:00Z"), Duration::MAX));
        assert!(at_least(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:00Z"), Duration::ZERO));
    }
}
