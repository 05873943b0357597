//! When a pod that did not fit is tried again: after a change of the
//! cluster that could make room (a Node added or changed, a pod deleted or
//! ended) or of the pod itself, once its backoff (1 s, doubling per
//! failure, at most 10 s: kube-scheduler's) has passed; and whatever
//! happened, at least every 5 s (kube-scheduler flushes its unschedulable
//! pods after 5 minutes; the stand-in retries sooner so tests and the local
//! stack do not wait on a missed event).

use std::time::{Duration, Instant};

/// First backoff after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// Longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A failed pod is tried again at least this often.
pub const FLUSH: Duration = Duration::from_secs(5);

/// The last failed attempt to schedule a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Failures in a row.
    pub count: u32,
    /// When the last one was.
    pub at: Instant,
    /// The cluster's change count then.
    pub cluster: u64,
    /// The pod's resourceVersion after the failure was recorded on it.
    pub pod_version: String,
    /// The message recorded (its condition and event).
    pub message: String,
}

/// The backoff after `count` failures.
pub fn backoff(count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(8);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// Whether to try the pod again at `now`, the cluster's change count being `cluster`.
pub fn due(f: &Failure, now: Instant, cluster: u64, pod_version: &str) -> bool {
    let waited = now.saturating_duration_since(f.at);
    if waited >= FLUSH {
        return true;
    }
    let moved = cluster != f.cluster || pod_version != f.pod_version;
    moved && waited >= backoff(f.count)
}

/// When the pod is next due at the latest, if nothing moves.
pub fn next_flush(f: &Failure) -> Instant {
    f.at + FLUSH
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_pods_wait_for_a_change_and_their_backoff_or_the_flush() {
        assert_eq!(
            (backoff(1), backoff(2), backoff(4), backoff(30)),
            (Duration::from_secs(1), Duration::from_secs(2), Duration::from_secs(8), MAX_BACKOFF)
        );
        let t0 = Instant::now();
        let f = Failure { count: 2, at: t0, cluster: 7, pod_version: "9".into(), message: String::new() };
        assert!(!due(&f, t0 + Duration::from_secs(1), 7, "9"), "nothing changed");
        assert!(!due(&f, t0 + Duration::from_secs(1), 8, "9"), "a change, but still backing off");
        assert!(due(&f, t0 + Duration::from_secs(2), 8, "9"));
        assert!(due(&f, t0 + Duration::from_secs(2), 7, "10"), "the pod itself changed");
        assert!(due(&f, t0 + FLUSH, 7, "9"), "flushed");
    }
}
