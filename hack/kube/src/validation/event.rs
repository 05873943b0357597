//! Events, validated in their core/v1 shape (the one kube-apiserver stores):
//! every write gets the legacy checks, writes through events.k8s.io/v1 also
//! the strict ones (`ValidateEventCreate`, `ValidateEventUpdate`). Paths name
//! core/v1 fields (`involvedObject`, `message`) whichever API was used, as
//! kube-apiserver's do.

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::names;
use super::{Causes, invalid_str, str_at};

const REPORTING_INSTANCE_MAX: usize = 128;
const ACTION_MAX: usize = 128;
const REASON_MAX: usize = 128;
const NOTE_MAX: usize = 1024;

/// Whether a field is set (not null, not an empty string).
fn set(v: &Value) -> bool {
    !v.is_null() && v.as_str() != Some("")
}

/// The checks every Event write gets (`legacyValidateEvent`).
pub fn legacy(ev: &Value) -> Causes {
    let mut out = Vec::new();
    let namespace = str_at(ev, "/metadata/namespace");
    let involved_ns = str_at(ev, "/involvedObject/namespace");
    let mismatch = || Cause::invalid("involvedObject.namespace", &json!(involved_ns), "does not match event.namespace");
    if !set(&ev["eventTime"]) {
        // An old-style event: its namespace is its object's (or "default" for cluster-scoped ones).
        if (involved_ns.is_empty() && !namespace.is_empty() && namespace != "default")
            || (!involved_ns.is_empty() && namespace != involved_ns)
        {
            out.push(mismatch());
        }
    } else {
        if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
            out.push(mismatch());
        }
        let controller = str_at(ev, "/reportingComponent");
        if controller.is_empty() {
            out.push(Cause::required("reportingController"));
        }
        out.extend(invalid_str("reportingController", controller, names::qualified_name(controller)));
        let instance = str_at(ev, "/reportingInstance");
        if instance.is_empty() {
            out.push(Cause::required("reportingInstance"));
        }
        if instance.len() > REPORTING_INSTANCE_MAX {
            out.push(too_many("reportingInstance", REPORTING_INSTANCE_MAX));
        }
        for (field, max) in [("action", ACTION_MAX), ("reason", REASON_MAX)] {
            let v = str_at(ev, &format!("/{field}"));
            if v.is_empty() {
                out.push(Cause::required(field));
            }
            if v.len() > max {
                out.push(too_many(field, max));
            }
        }
        if str_at(ev, "/message").len() > NOTE_MAX {
            out.push(too_many("message", NOTE_MAX));
        }
    }
    out.extend(invalid_str("namespace", namespace, names::dns1123_subdomain(namespace)));
    out
}

fn too_many(field: &str, max: usize) -> Cause {
    Cause::invalid(field, &json!(""), format!("can have at most {max} characters"))
}

/// ValidateEventCreate for a write through events.k8s.io/v1.
pub fn strict_create(ev: &Value) -> Causes {
    let mut out = legacy(ev);
    out.extend(series(ev));
    if !set(&ev["eventTime"]) {
        out.push(Cause::required("eventTime"));
    }
    let type_ = str_at(ev, "/type");
    if type_ != "Normal" && type_ != "Warning" {
        out.push(Cause::invalid("type", &json!(""), format!("has invalid value: {type_}")));
    }
    for field in ["firstTimestamp", "lastTimestamp"] {
        if set(&ev[field]) {
            out.push(Cause::invalid(field, &json!(""), "needs to be unset"));
        }
    }
    if ev["count"].as_i64().unwrap_or(0) != 0 {
        out.push(Cause::invalid("count", &json!(""), "needs to be unset"));
    }
    if set(&ev["source"]["component"]) || set(&ev["source"]["host"]) {
        out.push(Cause::invalid("source", &json!(""), "needs to be unset"));
    }
    out
}

/// ValidateEventUpdate for a write through events.k8s.io/v1: only the series may change.
pub fn strict_update(new: &Value, old: &Value) -> Causes {
    let mut out = legacy(new);
    if new["series"] != old["series"] {
        out.extend(series(new));
    }
    for field in [
        "involvedObject",
        "reason",
        "message",
        "source",
        "firstTimestamp",
        "lastTimestamp",
        "count",
        "reason",
        "type",
        "eventTime",
        "action",
        "related",
        "reportingComponent",
        "reportingInstance",
    ] {
        if new[field] != old[field] {
            // The internal field name, as kube-apiserver's path has it.
            let path = if field == "reportingComponent" { "reportingController" } else { field };
            // Go's zero values; structs are shown as their JSON here, not as kube-apiserver's Go types.
            let value = match (&new[field], field) {
                (Value::Null, "count") => json!(0),
                (
                    Value::Null,
                    "involvedObject" | "source" | "related" | "firstTimestamp" | "lastTimestamp" | "eventTime",
                ) => Value::Null,
                (Value::Null, _) => json!(""),
                (v, _) => v.clone(),
            };
            out.push(Cause::invalid(path, &value, "field is immutable"));
        }
    }
    out
}

/// validateV1EventSeries.
fn series(ev: &Value) -> Causes {
    let mut out = Vec::new();
    let s = &ev["series"];
    if s.is_object() {
        if s["count"].as_i64().unwrap_or(0) < 2 {
            out.push(Cause::invalid("series.count", &json!(""), "should be at least 2"));
        }
        if !set(&s["lastObservedTime"]) {
            out.push(Cause::required("series.lastObservedTime"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    fn event() -> Value {
        json!({"metadata": {"name": "web.1", "namespace": "default"}, "involvedObject": {"kind": "Service", "name": "web", "namespace": "default"},
            "reason": "EnsuringLoadBalancer", "message": "m", "type": "Normal", "eventTime": "2026-01-01T00:00:00.000000Z",
            "action": "EnsuringLoadBalancer", "reportingComponent": "sks-ccm", "reportingInstance": "sks-ccm-1"})
    }

    #[test]
    fn strict_events_need_their_fields() {
        assert_eq!(strict_create(&event()), []);
        let mut e = event();
        e["reportingComponent"] = json!("");
        e["type"] = json!("Info");
        let got = messages(strict_create(&e));
        assert_eq!(got[0], "reportingController: Required value");
        assert_eq!(got[1], "reportingController: Invalid value: \"\": name part must be non-empty");
        assert_eq!(got[3], "type: Invalid value: \"\": has invalid value: Info");
        let mut old_style = event();
        old_style["eventTime"] = Value::Null;
        assert_eq!(legacy(&old_style), []);
        assert_eq!(messages(strict_create(&old_style)), ["eventTime: Required value"]);
    }

    #[test]
    fn only_the_series_changes() {
        let old = event();
        let mut new = event();
        new["series"] = json!({"count": 2, "lastObservedTime": "2026-01-01T00:01:00.000000Z"});
        assert_eq!(strict_update(&new, &old), []);
        new["reason"] = json!("Other");
        assert_eq!(
            messages(strict_update(&new, &old)),
            [
                "reason: Invalid value: \"Other\": field is immutable",
                "reason: Invalid value: \"Other\": field is immutable"
            ]
        );
    }
}
