//! Services: `ValidateService`, `ValidateServiceUpdate` and
//! `ValidateServiceStatusUpdate` for what the project writes: ports, types,
//! traffic policies, node ports, load-balancer class and status.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_json::{Value, json};
use sks_rest::status::Cause;

use super::meta;
use super::names;
use super::{Causes, duplicate, invalid_str, items, quoted, str_at};

const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];
const AFFINITIES: &[&str] = &["ClientIP", "None"];
const TRAFFIC_POLICIES: &[&str] = &["Cluster", "Local"];
/// The kubelet's port, which a LoadBalancer may not expose.
const KUBELET_PORT: i64 = 10250;

fn type_of(svc: &Value) -> &str {
    str_at(svc, "/spec/type")
}

/// Whether the Service has nodePorts (NodePort and LoadBalancer types).
pub fn needs_node_ports(svc: &Value) -> bool {
    matches!(type_of(svc), "NodePort" | "LoadBalancer")
}

/// Whether the Service needs a healthCheckNodePort (a Local LoadBalancer).
pub fn needs_health_check(svc: &Value) -> bool {
    type_of(svc) == "LoadBalancer" && str_at(svc, "/spec/externalTrafficPolicy") == "Local"
}

/// Whether traffic from outside the cluster reaches the Service (where externalTrafficPolicy applies).
pub fn externally_accessible(svc: &Value) -> bool {
    needs_node_ports(svc) || (type_of(svc) == "ClusterIP" && !items(svc, "/spec/externalIPs").is_empty())
}

fn headless(svc: &Value) -> bool {
    let ips = items(svc, "/spec/clusterIPs");
    ips.len() == 1 && ips[0] == "None"
}

fn int_at(v: &Value, pointer: &str) -> i64 {
    v.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// ValidateService.
pub fn create(svc: &Value) -> Causes {
    let mut out = Vec::new();
    out.extend(spec(svc));
    out
}

/// ValidateServiceUpdate: the load-balancer class and the healthCheckNodePort
/// may not change, then every rule of a new Service.
pub fn update(new: &Value, old: &Value) -> Causes {
    let mut out = Vec::new();
    if type_of(old) == "LoadBalancer"
        && type_of(new) == "LoadBalancer"
        && old["spec"]["loadBalancerClass"] != new["spec"]["loadBalancerClass"]
    {
        out.push(Cause::invalid(
            "spec.loadBalancerClass",
            &new["spec"]["loadBalancerClass"],
            "may not change once set",
        ));
    }
    if needs_health_check(old)
        && needs_health_check(new)
        && old["spec"]["healthCheckNodePort"] != new["spec"]["healthCheckNodePort"]
    {
        out.push(Cause::forbidden("spec.healthCheckNodePort", "field is immutable"));
    }
    out.extend(spec(new));
    out
}

/// ValidateServiceStatusUpdate: the load-balancer status.
pub fn status_update(new: &Value) -> Causes {
    let mut out = Vec::new();
    let ingress = items(new, "/status/loadBalancer/ingress");
    if type_of(new) != "LoadBalancer" && !ingress.is_empty() {
        out.push(Cause::forbidden(
            "status.loadBalancer.ingress",
            "may only be used when `spec.type` is 'LoadBalancer'",
        ));
        return out;
    }
    for (i, ing) in ingress.iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        let ip = str_at(ing, "/ip");
        if !ip.is_empty() && ip.parse::<IpAddr>().is_err() {
            out.push(Cause::invalid(
                &format!("{path}.ip"),
                &json!(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            ));
        }
        match ing.get("ipMode").and_then(Value::as_str) {
            None if !ip.is_empty() => {
                out.push(super::required_because(&format!("{path}.ipMode"), "must be specified when `ip` is set"));
            }
            Some(_) if ip.is_empty() => {
                out.push(Cause::forbidden(&format!("{path}.ipMode"), "may not be specified when `ip` is not set"));
            }
            Some(m) if !["Proxy", "VIP"].contains(&m) => {
                out.push(Cause::not_supported(&format!("{path}.ipMode"), &json!(m), &["Proxy", "VIP"]));
            }
            _ => {}
        }
        let host = str_at(ing, "/hostname");
        if !host.is_empty() {
            out.extend(invalid_str(&format!("{path}.hostname"), host, names::dns1123_subdomain(host)));
            if host.parse::<IpAddr>().is_ok() {
                out.push(Cause::invalid(
                    &format!("{path}.hostname"),
                    &json!(host),
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
    out
}

fn spec(svc: &Value) -> Causes {
    let s = &svc["spec"];
    let type_ = type_of(svc);
    let ports = items(svc, "/spec/ports");
    let mut out = Vec::new();
    if ports.is_empty() && !headless(svc) && type_ != "ExternalName" {
        out.push(Cause::required("spec.ports"));
    }
    match type_ {
        "LoadBalancer" | "NodePort" => {
            if type_ == "LoadBalancer" {
                for (i, p) in ports.iter().enumerate() {
                    if int_at(p, "/port") == KUBELET_PORT {
                        out.push(Cause::invalid(
                            &format!("spec.ports[{i}]"),
                            &json!(KUBELET_PORT),
                            format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
                        ));
                    }
                }
            }
            if headless(svc) {
                out.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!("None"),
                    format!("may not be set to 'None' for {type_} services"),
                ));
            }
        }
        "ExternalName" => {
            if !items(svc, "/spec/clusterIPs").is_empty() {
                out.push(Cause::forbidden("spec.clusterIPs", "may not be set for ExternalName services"));
            }
            let cname = str_at(s, "/externalName").trim_end_matches('.');
            if cname.is_empty() {
                out.push(Cause::required("spec.externalName"));
            } else {
                out.extend(invalid_str("spec.externalName", cname, names::dns1123_subdomain(cname)));
            }
        }
        _ => {}
    }
    let mut port_names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        out.extend(port(p, &format!("spec.ports[{i}]"), ports.len() > 1, &mut port_names));
    }
    if s["selector"].is_object() {
        out.extend(meta::labels(&s["selector"], "spec.selector"));
    }
    match str_at(s, "/sessionAffinity") {
        "" => out.push(Cause::required("spec.sessionAffinity")),
        "None" if !s["sessionAffinityConfig"].is_null() => {
            out.push(Cause::forbidden("spec.sessionAffinityConfig", "must not be set when session affinity is None"));
        }
        a if !AFFINITIES.contains(&a) => out.push(Cause::not_supported("spec.sessionAffinity", &json!(a), AFFINITIES)),
        _ => {}
    }
    match type_ {
        "" => out.push(Cause::required("spec.type")),
        t if !TYPES.contains(&t) => out.push(Cause::not_supported("spec.type", &json!(t), TYPES)),
        _ => {}
    }
    if type_ == "ClusterIP" {
        for (i, p) in ports.iter().enumerate() {
            if int_at(p, "/nodePort") != 0 {
                out.push(Cause::forbidden(
                    &format!("spec.ports[{i}].nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            }
        }
    }
    out.extend(duplicate_ports(ports));
    if !items(svc, "/spec/loadBalancerSourceRanges").is_empty() && type_ != "LoadBalancer" {
        out.push(Cause::forbidden("spec.LoadBalancerSourceRanges", "may only be used when `type` is 'LoadBalancer'"));
    }
    if !s["allocateLoadBalancerNodePorts"].is_null() && type_ != "LoadBalancer" {
        out.push(Cause::forbidden(
            "spec.allocateLoadBalancerNodePorts",
            "may only be used when `type` is 'LoadBalancer'",
        ));
    }
    if type_ == "LoadBalancer" && s["allocateLoadBalancerNodePorts"].is_null() {
        // kube-apiserver's path, without its `spec.` prefix.
        out.push(Cause::required("allocateLoadBalancerNodePorts"));
    }
    match s["loadBalancerClass"].as_str() {
        Some(class) if type_ == "LoadBalancer" => {
            out.extend(invalid_str("spec.loadBalancerClass", class, names::qualified_name(class)));
        }
        Some(_) => {
            out.push(Cause::forbidden("spec.loadBalancerClass", "may only be used when `type` is 'LoadBalancer'"));
        }
        None => {}
    }
    out.extend(traffic_policies(svc));
    out
}

/// validateServicePort.
fn port(p: &Value, path: &str, require_name: bool, seen: &mut BTreeSet<String>) -> Causes {
    let mut out = Vec::new();
    let name = str_at(p, "/name");
    if name.is_empty() {
        if require_name {
            out.push(Cause::required(&format!("{path}.name")));
        }
    } else {
        out.extend(invalid_str(&format!("{path}.name"), name, names::dns1123_label(name)));
        if !seen.insert(name.to_owned()) {
            out.push(duplicate(&format!("{path}.name"), &quoted(name), None));
        }
    }
    let number = int_at(p, "/port");
    for msg in names::port_number(number) {
        out.push(Cause::invalid(&format!("{path}.port"), &json!(number), msg));
    }
    match str_at(p, "/protocol") {
        "" => out.push(Cause::required(&format!("{path}.protocol"))),
        proto if !PROTOCOLS.contains(&proto) => {
            out.push(Cause::not_supported(&format!("{path}.protocol"), &json!(proto), PROTOCOLS));
        }
        _ => {}
    }
    let target = format!("{path}.targetPort");
    match &p["targetPort"] {
        Value::String(s) => out.extend(invalid_str(&target, s, names::port_name(s))),
        t => {
            let n = t.as_i64().unwrap_or(0);
            for msg in names::port_number(n) {
                out.push(Cause::invalid(&target, &json!(n), msg));
            }
        }
    }
    if let Some(app) = p["appProtocol"].as_str() {
        out.extend(invalid_str(&format!("{path}.appProtocol"), app, names::qualified_name(app)));
    }
    out
}

/// The same nodePort, or the same port, twice for one protocol.
fn duplicate_ports(ports: &[Value]) -> Causes {
    let mut out = Vec::new();
    let mut node_ports = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let n = int_at(p, "/nodePort");
        if n != 0 && !node_ports.insert((str_at(p, "/protocol"), n)) {
            out.push(duplicate(&format!("spec.ports[{i}].nodePort"), &n.to_string(), None));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let (proto, port) = (str_at(p, "/protocol"), int_at(p, "/port"));
        if !seen.insert((proto, port)) {
            // The key kube-apiserver compares: an internal ServicePort with only these two fields set.
            let key = format!(
                r#"{{"Name":"","Protocol":{},"AppProtocol":null,"Port":{port},"TargetPort":0,"NodePort":0}}"#,
                quoted(proto)
            );
            out.push(duplicate(&format!("spec.ports[{i}]"), &key, None));
        }
    }
    out
}

/// validateServiceExternalTrafficPolicy and the internal traffic policy.
fn traffic_policies(svc: &Value) -> Causes {
    let s = &svc["spec"];
    let mut out = Vec::new();
    let external = str_at(s, "/externalTrafficPolicy");
    if !externally_accessible(svc) {
        if !external.is_empty() {
            out.push(Cause::invalid(
                "spec.externalTrafficPolicy",
                &json!(external),
                "may only be set for externally-accessible services",
            ));
        }
    } else if external.is_empty() {
        out.push(Cause::required("spec.externalTrafficPolicy"));
    } else if !TRAFFIC_POLICIES.contains(&external) {
        out.push(Cause::not_supported("spec.externalTrafficPolicy", &json!(external), TRAFFIC_POLICIES));
    }
    let hc = int_at(s, "/healthCheckNodePort");
    if !needs_health_check(svc) {
        if hc != 0 {
            out.push(Cause::invalid(
                "spec.healthCheckNodePort",
                &json!(hc),
                "may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ));
        }
    } else if hc != 0 {
        // Unset is allocated when the Service is stored (kube-apiserver allocates before
        // it validates, so a Local LoadBalancer never lacks one by then).
        for msg in names::port_number(hc) {
            out.push(Cause::invalid("spec.healthCheckNodePort", &json!(hc), msg));
        }
    }
    match s["internalTrafficPolicy"].as_str() {
        None if matches!(type_of(svc), "ClusterIP" | "NodePort" | "LoadBalancer") => {
            out.push(Cause::required("spec.internalTrafficPolicy"));
        }
        Some(p) if !TRAFFIC_POLICIES.contains(&p) => {
            out.push(Cause::not_supported("spec.internalTrafficPolicy", &json!(p), TRAFFIC_POLICIES));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(spec: Value) -> Value {
        let mut s = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"type": "ClusterIP", "sessionAffinity": "None", "internalTrafficPolicy": "Cluster"}});
        for (k, v) in spec.as_object().unwrap() {
            s["spec"][k] = v.clone();
        }
        s
    }

    fn messages(c: Causes) -> Vec<String> {
        c.into_iter().map(|c| format!("{}: {}", c.field, c.message)).collect()
    }

    #[test]
    fn two_unnamed_ports_need_names() {
        let s = svc(
            json!({"ports": [{"port": 80, "targetPort": 80, "protocol": "TCP"}, {"port": 443, "targetPort": 443, "protocol": "TCP"}]}),
        );
        assert_eq!(messages(create(&s)), ["spec.ports[0].name: Required value", "spec.ports[1].name: Required value"]);
    }

    #[test]
    fn ports_protocols_and_duplicates() {
        let s = svc(json!({"ports": [
            {"name": "a", "port": 80, "targetPort": 80, "protocol": "HTTP"},
            {"name": "a", "port": 0, "targetPort": 70000, "protocol": "TCP"},
            {"name": "c", "port": 53, "targetPort": 53, "protocol": "UDP"},
            {"name": "d", "port": 53, "targetPort": 53, "protocol": "UDP"}]}));
        assert_eq!(
            messages(create(&s)),
            [
                "spec.ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
                "spec.ports[1].name: Duplicate value: \"a\"",
                "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive",
                "spec.ports[1].targetPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
                "spec.ports[3]: Duplicate value: {\"Name\":\"\",\"Protocol\":\"UDP\",\"AppProtocol\":null,\"Port\":53,\"TargetPort\":0,\"NodePort\":0}",
            ]
        );
    }

    #[test]
    fn type_dependent_fields() {
        let s = svc(
            json!({"type": "ClusterIP", "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000, "loadBalancerClass": "x/y",
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 30001}]}),
        );
        assert_eq!(
            messages(create(&s)),
            [
                "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'",
                "spec.loadBalancerClass: Forbidden: may only be used when `type` is 'LoadBalancer'",
                "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services",
                "spec.healthCheckNodePort: Invalid value: 31000: may only be set when `type` is 'LoadBalancer' and `externalTrafficPolicy` is 'Local'",
            ]
        );
        let mut lb = svc(
            json!({"type": "LoadBalancer", "externalTrafficPolicy": "Cluster", "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "a/b",
            "ports": [{"port": 80, "targetPort": 80, "protocol": "TCP", "nodePort": 30001}]}),
        );
        assert_eq!(create(&lb), []);
        let old = lb.clone();
        lb["spec"]["loadBalancerClass"] = json!("c/d");
        assert_eq!(
            messages(update(&lb, &old)),
            ["spec.loadBalancerClass: Invalid value: \"c/d\": may not change once set"]
        );
        lb["spec"]["type"] = json!("Bogus");
        assert!(messages(create(&lb)).iter().any(|m| m == "spec.type: Unsupported value: \"Bogus\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
    }

    #[test]
    fn load_balancer_status() {
        let mut lb = svc(json!({"type": "LoadBalancer"}));
        lb["status"] =
            json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.1", "ipMode": "VIP"}, {"ip": "x", "ipMode": "VIP"}]}});
        assert_eq!(
            messages(status_update(&lb)),
            [
                "status.loadBalancer.ingress[1].ip: Invalid value: \"x\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
            ]
        );
        lb["spec"]["type"] = json!("ClusterIP");
        assert_eq!(
            messages(status_update(&lb)),
            ["status.loadBalancer.ingress: Forbidden: may only be used when `spec.type` is 'LoadBalancer'"]
        );
    }
}
