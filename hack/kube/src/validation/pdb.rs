//! policy/v1 PodDisruptionBudgets: `ValidatePodDisruptionBudget` (and its
//! status update): `minAvailable` or `maxUnavailable`, each a non-negative
//! integer or a percentage up to 100%, the selector, the unhealthy pod
//! eviction policy.

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::Causes;

const UNHEALTHY_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];
const PERCENT_ERROR: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// ValidatePodDisruptionBudget.
pub fn create(pdb: &Value) -> Causes {
    let s = &pdb["spec"];
    let mut out = Vec::new();
    if !s["minAvailable"].is_null() && !s["maxUnavailable"].is_null() {
        out.push(Cause::invalid("spec", s, "minAvailable and maxUnavailable cannot be both set"));
    }
    for field in ["minAvailable", "maxUnavailable"] {
        out.extend(int_or_percent(&s[field], &format!("spec.{field}")));
    }
    if !s["selector"].is_null() {
        out.extend(super::apps::label_selector(&s["selector"], "spec.selector"));
    }
    if let Some(p) = s["unhealthyPodEvictionPolicy"].as_str().filter(|p| !UNHEALTHY_POLICIES.contains(p)) {
        out.push(Cause::not_supported("spec.unhealthyPodEvictionPolicy", &json!(p), UNHEALTHY_POLICIES));
    }
    out
}

/// ValidatePodDisruptionBudgetStatusUpdate: counts are not negative.
pub fn status(pdb: &Value) -> Causes {
    ["disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods"]
        .iter()
        .filter_map(|f| {
            let n = pdb["status"][f].as_i64().filter(|n| *n < 0)?;
            Some(Cause::invalid(&format!("status.{f}"), &json!(n), "must be greater than or equal to 0"))
        })
        .collect()
}

/// ValidatePositiveIntOrPercent and IsNotMoreThan100Percent.
fn int_or_percent(v: &Value, path: &str) -> Causes {
    match v {
        Value::Null => Vec::new(),
        Value::Number(n) => match n.as_i64() {
            Some(i) if i < 0 => vec![Cause::invalid(path, v, "must be greater than or equal to 0")],
            _ => Vec::new(),
        },
        Value::String(s) => match percent(s) {
            None => vec![Cause::invalid(path, v, PERCENT_ERROR)],
            Some(p) if p > 100 => vec![Cause::invalid(path, v, "must not be greater than 100%")],
            Some(_) => Vec::new(),
        },
        other => vec![Cause::invalid(path, other, "must be an integer or percentage (e.g '5%')")],
    }
}

/// The number of a `[0-9]+%` string.
pub fn percent(s: &str) -> Option<u64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().or(Some(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn budgets_are_counts_or_percentages() {
        let ok = json!({"spec": {"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(create(&ok), []);
        let bad = json!({"spec": {"maxUnavailable": "50", "unhealthyPodEvictionPolicy": "Never"}});
        assert_eq!(
            messages(create(&bad)),
            [
                format!("spec.maxUnavailable: Invalid value: \"50\": {PERCENT_ERROR}"),
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"".to_owned(),
            ]
        );
        assert_eq!(
            messages(create(&json!({"spec": {"minAvailable": -1}}))),
            ["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        assert_eq!(
            messages(create(&json!({"spec": {"minAvailable": "150%"}}))),
            ["spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        assert_eq!(create(&json!({"spec": {"minAvailable": 1, "maxUnavailable": 1}})).len(), 1);
    }
}
