//! NodePool validation: every problem becomes a 422 cause with its field path.

use serde_json::{Value, json};
use uuid::Uuid;

use super::convert::{Autoscaling, InstanceTypes, NodePoolSpec};
use sks_rest::status::Cause;
use sks_rest::validation;

/// Disk size when the spec sets none.
pub const DEFAULT_DISK_SIZE: i64 = 50;
/// Public IP assignment when the spec sets none, as the orchestrator defaults it.
pub const DEFAULT_PUBLIC_IP_ASSIGNMENT: &str = "inet4";
/// Most nodes an anti-affinity group can hold.
pub const MAX_ANTI_AFFINITY_REPLICAS: i64 = 8;
/// Least memory of a node's instance type.
pub const MIN_MEMORY_BYTES: i64 = 2 << 30;

/// Validates a NodePool's spec against what the orchestrator accepts (the
/// name is the write pipeline's: a DNS-1123 label).
pub fn validate(spec: &NodePoolSpec, types: &InstanceTypes) -> Vec<Cause> {
    let mut causes = Vec::new();
    let replicas = spec.replicas.unwrap_or(0);
    if replicas < 0 {
        causes.push(Cause::invalid("spec.replicas", &json!(replicas), "must be greater than or equal to 0"));
    }
    let aag = spec.anti_affinity_groups.as_ref().is_some_and(|g| !g.is_empty());
    if aag && replicas > MAX_ANTI_AFFINITY_REPLICAS {
        causes.push(Cause::invalid(
            "spec.replicas",
            &json!(replicas),
            format!("must be at most {MAX_ANTI_AFFINITY_REPLICAS} when spec.antiAffinityGroups is set"),
        ));
    }
    match spec.instance_type.as_deref() {
        None | Some("") => causes.push(Cause::required("spec.instanceType")),
        Some(t) => match types.by_name(t) {
            None if !types.is_empty() => {
                let known: Vec<String> = types.names();
                let known: Vec<&str> = known.iter().map(String::as_str).collect();
                causes.push(Cause::not_supported("spec.instanceType", &json!(t), &known));
            }
            Some(it) if it.memory < MIN_MEMORY_BYTES => causes.push(Cause::invalid(
                "spec.instanceType",
                &json!(t),
                format!("nodes need at least 2 GiB of memory; {t} has {} MiB", it.memory >> 20),
            )),
            _ => {}
        },
    }
    if let Some(d) = spec.disk_size
        && !(20..=51200).contains(&d)
    {
        causes.push(Cause::invalid("spec.diskSize", &json!(d), "must be between 20 and 51200 (GiB)"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, t) in spec.taints.iter().flatten().enumerate() {
        let field = |f: &str| format!("spec.taints[{i}].{f}");
        let key_errors = validation::qualified_name(&t.key);
        let key_ok = key_errors.is_empty();
        causes.extend(key_errors.into_iter().map(|e| Cause::invalid(&field("key"), &json!(t.key), e)));
        if key_ok && !seen.insert(t.key.clone()) {
            causes.push(Cause::invalid(&field("key"), &json!(t.key), "taint keys must be unique"));
        }
        if t.value.is_empty() || t.value.chars().count() > 255 {
            causes.push(Cause::invalid(&field("value"), &json!(t.value), "must be 1 to 255 characters"));
        }
        if !matches!(t.effect.as_str(), "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
            causes.push(Cause::not_supported(
                &field("effect"),
                &json!(t.effect),
                &["NoExecute", "NoSchedule", "PreferNoSchedule"],
            ));
        }
    }
    for (field, list) in [
        ("spec.antiAffinityGroups", &spec.anti_affinity_groups),
        ("spec.securityGroups", &spec.security_groups),
        ("spec.privateNetworks", &spec.private_networks),
    ] {
        for (i, id) in list.iter().flatten().enumerate() {
            if Uuid::parse_str(id).is_err() {
                causes.push(Cause::invalid(&format!("{field}[{i}]"), &json!(id), "must be a UUID"));
            }
        }
    }
    if let Some(d) = &spec.deploy_target
        && Uuid::parse_str(d).is_err()
    {
        causes.push(Cause::invalid("spec.deployTarget", &json!(d), "must be a UUID"));
    }
    if let Some(p) = &spec.instance_prefix
        && (p.len() > 30 || !validation::dns1123_label(p).is_empty())
    {
        causes.push(Cause::invalid(
            "spec.instancePrefix",
            &json!(p),
            "must be a lowercase RFC 1123 label of 1 to 30 characters",
        ));
    }
    if let Some(d) = &spec.description
        && d.chars().count() > 255
    {
        causes.push(Cause::invalid(
            "spec.description",
            &Value::String(format!("{}...", d.chars().take(20).collect::<String>())),
            "must be at most 255 characters",
        ));
    }
    if let Some(a) = &spec.autoscaling {
        causes.extend(validate_autoscaling(a, aag));
    }
    if let Some(p) = &spec.public_ip_assignment
        && !matches!(p.as_str(), "inet4" | "dual")
    {
        causes.push(Cause::not_supported("spec.publicIpAssignment", &json!(p), &["dual", "inet4"]));
    }
    causes
}

/// `spec.autoscaling`: non-negative bounds, min <= max, max within the pool's hard limit.
fn validate_autoscaling(a: &Autoscaling, anti_affinity: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    if a.min_replicas < 0 {
        causes.push(Cause::invalid(
            "spec.autoscaling.minReplicas",
            &json!(a.min_replicas),
            "must be greater than or equal to 0",
        ));
    }
    if a.max_replicas < 1 {
        causes.push(Cause::invalid(
            "spec.autoscaling.maxReplicas",
            &json!(a.max_replicas),
            "must be greater than or equal to 1",
        ));
    } else if a.max_replicas < a.min_replicas {
        causes.push(Cause::invalid(
            "spec.autoscaling.maxReplicas",
            &json!(a.max_replicas),
            format!("must be greater than or equal to spec.autoscaling.minReplicas ({})", a.min_replicas),
        ));
    }
    if anti_affinity && a.max_replicas > MAX_ANTI_AFFINITY_REPLICAS {
        causes.push(Cause::invalid(
            "spec.autoscaling.maxReplicas",
            &json!(a.max_replicas),
            format!("must be at most {MAX_ANTI_AFFINITY_REPLICAS} when spec.antiAffinityGroups is set"),
        ));
    }
    causes
}

/// `spec.replicas` outside `spec.autoscaling`'s bounds, as a cause.
pub fn replicas_outside(spec: &NodePoolSpec) -> Option<Cause> {
    let (a, replicas) = (spec.autoscaling?, spec.replicas?);
    (replicas < a.min_replicas || replicas > a.max_replicas).then(|| {
        Cause::invalid(
            "spec.replicas",
            &json!(replicas),
            format!(
                "must be within spec.autoscaling [{}, {}] (change spec.autoscaling to go beyond)",
                a.min_replicas, a.max_replicas
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use orchestrator::model::{InstanceType, InstanceTypeFamily, InstanceTypeSize};

    fn types() -> InstanceTypes {
        let t = |size: InstanceTypeSize, mem: i64| InstanceType {
            id: Uuid::new_v4(),
            family: InstanceTypeFamily::Standard,
            size,
            cpus: 2,
            gpus: None,
            memory: mem,
            authorized: Some(true),
            zones: None,
        };
        InstanceTypes::new(vec![t(InstanceTypeSize::Medium, 4 << 30), t(InstanceTypeSize::Tiny, 1 << 30)])
    }

    fn fields(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.field.as_str()).collect()
    }

    #[test]
    fn a_good_spec_passes() {
        let spec =
            NodePoolSpec { replicas: Some(3), instance_type: Some("standard.medium".into()), ..Default::default() };
        assert!(validate(&spec, &types()).is_empty());
    }

    #[test]
    fn every_bad_field_is_named() {
        let spec = NodePoolSpec {
            replicas: Some(9),
            instance_type: Some("standard.tiny".into()),
            disk_size: Some(10),
            anti_affinity_groups: Some(vec![Uuid::new_v4().to_string(), "nope".into()]),
            taints: Some(vec![
                super::super::convert::Taint { key: "ok".into(), value: "".into(), effect: "Sometimes".into() },
                super::super::convert::Taint { key: "-bad".into(), value: "v".into(), effect: "NoSchedule".into() },
            ]),
            public_ip_assignment: Some("ipv6".into()),
            ..Default::default()
        };
        let causes = validate(&spec, &types());
        assert_eq!(
            fields(&causes),
            vec![
                "spec.replicas",
                "spec.instanceType",
                "spec.diskSize",
                "spec.taints[0].value",
                "spec.taints[0].effect",
                "spec.taints[1].key",
                "spec.antiAffinityGroups[1]",
                "spec.publicIpAssignment"
            ]
        );
        assert!(causes[1].message.contains("at least 2 GiB"), "{}", causes[1].message);
        let unknown =
            validate(&NodePoolSpec { instance_type: Some("huge.thing".into()), ..Default::default() }, &types());
        assert_eq!(unknown[0].reason, "FieldValueNotSupported");
        assert!(validate(&NodePoolSpec::default(), &types()).iter().any(|c| c.reason == "FieldValueRequired"));
    }

    #[test]
    fn autoscaling_bounds() {
        let spec = |min: i64, max: i64, replicas: i64, aag: bool| NodePoolSpec {
            replicas: Some(replicas),
            instance_type: Some("standard.medium".into()),
            anti_affinity_groups: aag.then(|| vec![Uuid::new_v4().to_string()]),
            autoscaling: Some(Autoscaling { min_replicas: min, max_replicas: max }),
            ..Default::default()
        };
        assert!(validate(&spec(1, 10, 3, false), &types()).is_empty());
        let messages = |s: &NodePoolSpec| -> Vec<String> {
            validate(s, &types()).iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
        };
        assert_eq!(
            messages(&spec(5, 2, 3, false)),
            [
                "spec.autoscaling.maxReplicas: Invalid value: 2: must be greater than or equal to spec.autoscaling.minReplicas (5)"
            ]
        );
        assert_eq!(
            messages(&spec(-1, 0, 0, false)),
            [
                "spec.autoscaling.minReplicas: Invalid value: -1: must be greater than or equal to 0",
                "spec.autoscaling.maxReplicas: Invalid value: 0: must be greater than or equal to 1"
            ]
        );
        assert_eq!(
            messages(&spec(1, 9, 3, true)),
            ["spec.autoscaling.maxReplicas: Invalid value: 9: must be at most 8 when spec.antiAffinityGroups is set"]
        );
        assert!(replicas_outside(&spec(1, 10, 3, false)).is_none());
        let outside = replicas_outside(&spec(4, 10, 3, false)).expect("3 < 4");
        assert_eq!(outside.field, "spec.replicas");
        assert!(replicas_outside(&NodePoolSpec { replicas: Some(3), ..Default::default() }).is_none());
    }
}
