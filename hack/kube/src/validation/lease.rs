//! Leases: `ValidateLease` and `ValidateLeaseUpdate`.

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::Causes;

/// Coordinated leader election strategies kube-apiserver knows.
const STRATEGIES: &[&str] = &["OldestEmulationVersion"];

/// ValidateLease.
pub fn create(lease: &Value) -> Causes {
    let mut out = Vec::new();
    out.extend(spec(&lease["spec"]));
    out
}

/// ValidateLeaseUpdate.
pub fn update(new: &Value) -> Causes {
    let mut out = Vec::new();
    out.extend(spec(&new["spec"]));
    out
}

/// ValidateLeaseSpec; holderIdentity and the times take any value.
fn spec(s: &Value) -> Causes {
    let mut out = Vec::new();
    if let Some(d) = s["leaseDurationSeconds"].as_i64().filter(|d| *d <= 0) {
        out.push(Cause::invalid("spec.leaseDurationSeconds", &json!(d), "must be greater than 0"));
    }
    if let Some(t) = s["leaseTransitions"].as_i64().filter(|t| *t < 0) {
        out.push(Cause::invalid("spec.leaseTransitions", &json!(t), "must be greater than or equal to 0"));
    }
    let strategy = s["strategy"].as_str();
    if let Some(st) = strategy {
        // kube-apiserver names the field twice in this path.
        let path = "spec.strategy.strategy";
        if st.contains('/') {
            out.extend(super::invalid_str(path, st, super::names::qualified_name(st)));
        } else if !STRATEGIES.contains(&st) {
            out.push(Cause::not_supported(path, &json!(st), STRATEGIES));
        }
    }
    if s["preferredHolder"].as_str().is_some_and(|h| !h.is_empty()) && strategy.unwrap_or("").is_empty() {
        out.push(Cause::forbidden("spec.preferredHolder", "may only be specified if `strategy` is defined"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_transitions() {
        let ok = json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}});
        assert_eq!(create(&ok), []);
        let bad = json!({"metadata": {"name": "n1", "namespace": "kube-node-lease"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        let got: Vec<String> = create(&bad).into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect();
        assert_eq!(
            got,
            [
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0"
            ]
        );
    }
}
