//! What every controller's reconcile shares: its error, the latency and
//! result it records, and how a failure is retried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::controller::Action;

use crate::metrics::Metrics;
use crate::superseded::{FORGET_AFTER, Superseded};

/// How soon a reconcile that lost a write race (409) runs again.
const CONFLICT_RETRY: Duration = Duration::from_millis(200);
/// How soon a failed Node or CSR reconcile runs again.
const FAILURE_RETRY: Duration = Duration::from_secs(2);

/// Why a reconcile failed; it is retried with backoff.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The orchestrator failed.
    #[error("orchestrator: {0}")]
    Cloud(#[from] orchestrator::Error),
    /// The Kubernetes API failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

/// kube-apiserver's whole answer to a JSON patch that does not apply to the
/// object as it now is (a `test` that fails, a path that is gone): 422 Invalid
/// with this message and no detail. Validation errors are 422s with another.
const PATCH_NOT_APPLICABLE: &str = "the server rejected our request due to an error in our request";

impl Error {
    /// A write that lost a race: a 409 Conflict (a resourceVersion guard), or a
    /// JSON patch whose `test` no longer holds (the guarded field changed).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Kube(kube::Error::Api(s)) if s.code == 409 || (s.code == 422 && s.message == PATCH_NOT_APPLICABLE))
    }
}

/// A reconcile of `obj` skipped because its cached version is one the
/// controller's own writes replaced ([`Superseded`]): counted as
/// `result="superseded"`, and looked at again after [`FORGET_AFTER`] unless
/// the watch brings the newer version first (that change reconciles at once).
pub fn skip_superseded<K: Resource>(
    metrics: &Metrics,
    controller: &str,
    superseded: &Superseded,
    obj: &K,
) -> Option<Action> {
    superseded.holds(obj).then(|| {
        metrics.reconciles.with_label_values(&[controller, "superseded"]).inc();
        Action::requeue(FORGET_AFTER)
    })
}

/// Runs one reconcile of `controller`, recording its latency and result.
pub async fn measured(
    metrics: &Metrics,
    controller: &str,
    step: impl std::future::Future<Output = Result<Action, Error>>,
) -> Result<Action, Error> {
    let started = Instant::now();
    let result = step.await;
    metrics.latency.with_label_values(&[controller]).observe(started.elapsed().as_secs_f64());
    metrics.reconciles.with_label_values(&[controller, outcome(&result)]).inc();
    result
}

/// The `result` label of a reconcile: a lost write race (409, usually a
/// reconcile of a cached version the watch has not replaced yet) is routine
/// and retried at once, so it is told apart from failures.
fn outcome(result: &Result<Action, Error>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(e) if e.is_conflict() => "conflict",
        Err(_) => "error",
    }
}

/// The Node and CSR controllers' error policy: a conflict soon, anything else
/// after [`FAILURE_RETRY`].
pub fn retry<K, C>(_obj: Arc<K>, e: &Error, _ctx: Arc<C>) -> Action {
    // A conflict only means the object moved on (a kubelet status update, say):
    // the watch is about to deliver the new version, so look again soon.
    if e.is_conflict() {
        tracing::debug!(error = %e, "conflict; retrying on the newer version");
        return Action::requeue(CONFLICT_RETRY);
    }
    tracing::warn!(error = %e, "reconcile failed; retrying");
    Action::requeue(FAILURE_RETRY)
}
