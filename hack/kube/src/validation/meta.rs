//! The metadata rules the core API adds to apimachinery's (which the shared
//! write pipeline applies to every kind).

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::Causes;

/// Finalizers of the core API that need no domain prefix.
const STANDARD_FINALIZERS: &[&str] = &["kubernetes", "orphan", "foregroundDeletion"];

/// The core API's finalizer rule: an unprefixed finalizer must be a standard one.
pub fn core_finalizers(obj: &Value) -> Causes {
    let finalizers = obj["metadata"]["finalizers"].as_array().into_iter().flatten().filter_map(Value::as_str);
    finalizers
        .filter(|f| !f.contains('/') && !STANDARD_FINALIZERS.contains(f))
        .map(|f| {
            Cause::invalid(
                "metadata.finalizers",
                &json!(f),
                "name is neither a standard finalizer name nor is it fully qualified",
            )
        })
        .collect()
}

/// `ValidateLabels` of a JSON map (also for selectors): keys are qualified names, values label values.
pub fn labels(labels: &Value, field: &str) -> Causes {
    let map = labels
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
        .collect();
    sks_rest::validation::labels(&map, field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unprefixed_finalizers_must_be_standard() {
        let obj = json!({"metadata": {"finalizers": ["kubernetes", "example.com/hold", "hold"]}});
        let fields: Vec<String> = core_finalizers(&obj).into_iter().map(|c| c.message).collect();
        assert_eq!(
            fields,
            ["Invalid value: \"hold\": name is neither a standard finalizer name nor is it fully qualified"]
        );
    }
}
