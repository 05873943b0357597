//! Label selectors of workloads and budgets (`spec.selector`): matching, by
//! the one copy of apimachinery's rules in `sks_autoscaler::selector`, and
//! the text kubectl prints and a Scale's `status.selector` carries
//! (`metav1.FormatLabelSelector`).

use serde::Deserialize as _;
use serde_json::Value;
use sks_autoscaler::Labels;
use sks_autoscaler::selector::{LabelSelector, Operator, pdb_covers};

/// The labels of an object's `labels` map (none when absent or malformed).
pub fn labels(map: &Value) -> Labels {
    Labels::deserialize(map).unwrap_or_default()
}

/// A parsed `spec.selector`: `None` for a null or malformed one, which selects nothing.
pub fn parse(selector: &Value) -> Option<LabelSelector> {
    if selector.is_null() {
        return None;
    }
    LabelSelector::deserialize(selector).ok()
}

/// Whether `selector` (JSON) selects an object labelled `labels` (JSON);
/// an empty selector selects everything, a null one nothing.
pub fn matches(selector: &Value, labels_of: &Value) -> bool {
    Selector::new(selector).selects(labels_of)
}

/// A selector read once, to match many objects.
pub struct Selector(Option<LabelSelector>);

impl Selector {
    /// Reads `spec.selector` (null or malformed selects nothing).
    pub fn new(selector: &Value) -> Self {
        Selector(parse(selector))
    }

    /// Whether it selects an object labelled `labels_of` (JSON).
    pub fn selects(&self, labels_of: &Value) -> bool {
        self.0.as_ref().is_some_and(|s| pdb_covers(s, &labels(labels_of)))
    }
}

/// `metav1.FormatLabelSelector` without its `<none>`: requirements sorted by
/// key, `k=v`, `k in (a,b)`, `k notin (a)`, `k`, `!k`; "" for a null or empty one.
pub fn format(selector: &Value) -> String {
    let Some(s) = parse(selector) else { return String::new() };
    let mut parts: Vec<(String, String)> =
        s.match_labels.iter().map(|(k, v)| (k.to_owned(), format!("{k}={v}"))).collect();
    for r in &s.match_expressions {
        let mut values: Vec<&str> = r.values.iter().map(|v| &**v).collect();
        values.sort_unstable();
        let key = &*r.key;
        let text = match r.operator {
            Operator::In => format!("{key} in ({})", values.join(",")),
            Operator::NotIn => format!("{key} notin ({})", values.join(",")),
            Operator::Exists => key.to_owned(),
            Operator::DoesNotExist => format!("!{key}"),
            Operator::Gt => format!("{key}>{}", values.join(",")),
            Operator::Lt => format!("{key}<{}", values.join(",")),
            Operator::Unknown => continue,
        };
        parts.push((key.to_owned(), text));
    }
    parts.sort_by(|a, b| a.0.cmp(&b.0));
    parts.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

/// `labels.FormatLabels` without its `<none>`: `k=v` sorted by key, joined with commas.
pub fn format_labels(map: &Value) -> String {
    labels(map).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_and_print_as_apimachinery() {
        let s = json!({"matchLabels": {"app": "web", "tier": "fe"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}, {"key": "canary", "operator": "DoesNotExist"}]});
        assert_eq!(format(&s), "app=web,!canary,env in (dev,prod),tier=fe", "sorted by key");
        assert!(matches(&s, &json!({"app": "web", "tier": "fe", "env": "dev"})));
        assert!(!matches(&s, &json!({"app": "web", "tier": "fe", "env": "dev", "canary": "1"})));
        assert!(matches(&json!({}), &json!({"x": "y"})), "empty selects everything");
        assert!(!matches(&Value::Null, &json!({"x": "y"})), "null selects nothing");
        assert_eq!(format(&Value::Null), "");
        assert_eq!(format_labels(&json!({"b": "2", "a": "1"})), "a=1,b=2");
    }
}
