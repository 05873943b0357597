//! The stand-in kinds' write rules, as kube-apiserver's registry strategies:
//! the spec/status discipline of kinds with a status subresource, each kind's
//! defaults, and its validation (`validation`). Names, preconditions and
//! apimachinery's metadata rules are the shared write pipeline's
//! (`sks_rest::write`).

use std::collections::BTreeSet;

use serde_json::{Value, json};
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context};
use sks_rest::strategy::{self, Strategy};
use sks_rest::validation::{self, NameRule};

use crate::defaults;
use crate::events;
use crate::validation::apps::{self, Workload};
use crate::validation::{csr, event, lease, meta, node, pdb, pod, service};

/// Behaviour of a kind that differs between kinds in kube-apiserver.
#[derive(Debug, Clone, Copy, Default)]
pub struct KindOptions {
    /// Has a `status` subresource: writes to the object ignore `.status`.
    pub status_subresource: bool,
    /// `.status` sent at create is kept (Nodes, whose kubelet creates them with status).
    pub keep_status_on_create: bool,
}

/// One stand-in kind's strategy.
pub struct KindStrategy {
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    opts: KindOptions,
}

impl KindStrategy {
    /// The strategy of the kind `group`/`plural` (named `kind`).
    pub fn new(group: &'static str, plural: &'static str, kind: &'static str, opts: KindOptions) -> Self {
        KindStrategy { group, plural, kind, opts }
    }

    /// The apps/v1 workload this strategy is for, if any.
    fn workload(&self) -> Option<Workload> {
        match (self.group, self.plural) {
            ("apps", "deployments") => Some(Workload::Deployment),
            ("apps", "replicasets") => Some(Workload::ReplicaSet),
            ("apps", "daemonsets") => Some(Workload::DaemonSet),
            _ => None,
        }
    }

    /// Decodes the resource quantities of the pod spec at `pointer` (400 when one is malformed).
    fn decode_quantities(&self, obj: &mut Value, pointer: &str) -> ApiResult<()> {
        let Some(spec) = obj.pointer_mut(pointer) else { return Ok(()) };
        pod::decode_quantities(spec).map_err(|e| {
            ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: {e}",
                kind = self.kind
            ))
        })
    }

    /// Decoding and defaults of a pod or a workload, as every write of one gets them.
    fn pod_defaults(&self, obj: &mut Value) -> ApiResult<()> {
        if (self.group, self.plural) == ("", "pods") {
            self.decode_quantities(obj, "/spec")?;
            defaults::pod(obj);
        } else if self.workload().is_some() {
            self.decode_quantities(obj, "/spec/template/spec")?;
            defaults::workload(self.kind, obj);
        }
        Ok(())
    }

    fn prepare_create(&self, ctx: &Context, obj: &mut Value) -> ApiResult<()> {
        if self.opts.status_subresource
            && !self.opts.keep_status_on_create
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        self.pod_defaults(obj)?;
        match (self.group, self.plural) {
            ("", "services") => default_service(obj),
            ("", "events") => *obj = events::core_form(obj, false),
            ("", "pods") => {
                defaults::admit_pod(obj)?;
                defaults::initial_status(obj);
            }
            ("certificates.k8s.io", _) => record_requester(ctx, obj),
            _ => {}
        }
        Ok(())
    }
}

/// kube-apiserver's defaults for a Service (SetDefaults_Service): what every write gets.
fn default_service(svc: &mut Value) {
    let spec = &mut svc["spec"];
    if spec["type"].is_null() {
        spec["type"] = json!("ClusterIP");
    }
    if spec["sessionAffinity"].is_null() {
        spec["sessionAffinity"] = json!("None");
    }
    if spec["sessionAffinity"] == "ClientIP" && spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"].is_null() {
        spec["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"] = json!(10800);
    }
    for p in spec["ports"].as_array_mut().into_iter().flatten() {
        if p["protocol"].is_null() {
            p["protocol"] = json!("TCP");
        }
        if matches!(&p["targetPort"], Value::Null) || p["targetPort"] == 0 || p["targetPort"] == "" {
            p["targetPort"] = p["port"].clone();
        }
    }
    if matches!(spec["type"].as_str(), Some("ClusterIP" | "NodePort" | "LoadBalancer"))
        && spec["internalTrafficPolicy"].is_null()
    {
        spec["internalTrafficPolicy"] = json!("Cluster");
    }
    if spec["type"] == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"].is_null() {
        spec["allocateLoadBalancerNodePorts"] = json!(true);
    }
    if service::externally_accessible(svc) && svc["spec"]["externalTrafficPolicy"].is_null() {
        svc["spec"]["externalTrafficPolicy"] = json!("Cluster");
    }
    for ing in svc["status"]["loadBalancer"]["ingress"].as_array_mut().into_iter().flatten() {
        if ing["ip"].as_str().is_some_and(|ip| !ip.is_empty()) && ing["ipMode"].is_null() {
            ing["ipMode"] = json!("VIP");
        }
    }
}

/// What a type change leaves behind that the new type does not use, when the
/// update did not touch it (kube-apiserver's dropTypeDependentFields).
fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let node_ports = |s: &Value| -> BTreeSet<i64> {
        s["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_i64()).collect()
    };
    if service::needs_node_ports(old) && !service::needs_node_ports(new) && node_ports(new).is_subset(&node_ports(old))
    {
        for p in new["spec"]["ports"].as_array_mut().into_iter().flatten() {
            if let Some(m) = p.as_object_mut() {
                m.remove("nodePort");
            }
        }
    }
    let same = |f: &str| old["spec"][f] == new["spec"][f];
    let mut drop = Vec::new();
    if service::needs_health_check(old) && !service::needs_health_check(new) && same("healthCheckNodePort") {
        drop.push("healthCheckNodePort");
    }
    if old["spec"]["type"] == "LoadBalancer" && new["spec"]["type"] != "LoadBalancer" {
        drop.extend(["allocateLoadBalancerNodePorts", "loadBalancerClass"].into_iter().filter(|f| same(f)));
    }
    if service::externally_accessible(old) && !service::externally_accessible(new) && same("externalTrafficPolicy") {
        drop.push("externalTrafficPolicy");
    }
    if let Some(spec) = new["spec"].as_object_mut() {
        for f in drop {
            spec.remove(f);
        }
    }
}

/// A new or changed condition gets `lastUpdateTime` and `lastTransitionTime`
/// when the writer left them out, as kube-apiserver's CSR strategies do.
fn stamp_conditions(new: &mut Value, old: &Value) {
    let now = jiff::Timestamp::from_second(jiff::Timestamp::now().as_second()).expect("now").to_string();
    let before = old["status"]["conditions"].as_array().cloned().unwrap_or_default();
    for c in new["status"]["conditions"].as_array_mut().into_iter().flatten() {
        let previous = before.iter().find(|o| o["type"] == c["type"]);
        if previous == Some(c) {
            continue;
        }
        if c["lastUpdateTime"].is_null() {
            c["lastUpdateTime"] = json!(now);
        }
        if c["lastTransitionTime"].is_null() {
            c["lastTransitionTime"] = match previous {
                Some(p) if p["status"] == c["status"] && !p["lastTransitionTime"].is_null() => {
                    p["lastTransitionTime"].clone()
                }
                _ => json!(now),
            };
        }
    }
}

/// Who asked is what the API server saw, never what the client claims.
fn record_requester(ctx: &Context, csr: &mut Value) {
    csr["spec"]["username"] = json!(ctx.user.name);
    csr["spec"]["groups"] = json!(ctx.user.groups);
    let spec = csr["spec"].as_object_mut();
    if let Some(spec) = spec {
        match &ctx.user.uid {
            Some(uid) => {
                spec.insert("uid".into(), json!(uid));
            }
            None => {
                spec.remove("uid");
            }
        }
        if ctx.user.extra.is_empty() {
            spec.remove("extra");
        } else {
            spec.insert("extra".into(), json!(ctx.user.extra));
        }
    }
}

/// Kinds whose unprefixed finalizers must be the core API's standard ones.
fn core_metadata(group: &str, plural: &str) -> bool {
    match group {
        "" => plural != "events",
        "certificates.k8s.io" => true,
        _ => false,
    }
}

impl Strategy for KindStrategy {
    fn name_rule(&self) -> NameRule {
        match (self.group, self.plural) {
            ("", "namespaces") => validation::name_is_dns_label,
            ("", "services") => validation::name_is_dns1035_label,
            ("", "events") | ("certificates.k8s.io", _) | ("apiregistration.k8s.io", _) => {
                validation::name_is_path_segment
            }
            _ => validation::name_is_dns_subdomain,
        }
    }

    fn prepare_for_create<'a>(&'a self, ctx: &'a Context, obj: &'a mut Value) -> BoxFuture<'a, ApiResult<()>> {
        Box::pin(std::future::ready(self.prepare_create(ctx, obj)))
    }

    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        let mut causes = if core_metadata(self.group, self.plural) { meta::core_finalizers(obj) } else { Vec::new() };
        causes.extend(match (self.group, self.plural) {
            ("", "services") => service::create(obj),
            ("", "nodes") => node::create(obj),
            ("", "events") => event::legacy(obj),
            ("", "pods") => pod::create(obj),
            ("policy", "poddisruptionbudgets") => pdb::create(obj),
            ("coordination.k8s.io", "leases") => lease::create(obj),
            ("certificates.k8s.io", _) => csr::create(obj),
            _ => self.workload().map(|w| apps::create(w, obj)).unwrap_or_default(),
        });
        causes
    }

    fn prepare_for_update(&self, _ctx: &Context, sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
        match sub {
            // An approval changes the conditions, and nothing else.
            Some("approval") => {
                let conditions = new["status"]["conditions"].take();
                *new = old.clone();
                new["status"]["conditions"] = conditions;
            }
            // A Scale is a view: the storage changes the object with it, through this strategy again.
            Some("scale") => return Ok(()),
            _ if self.opts.status_subresource => strategy::status_discipline(sub, new, old),
            _ => new["metadata"]["generation"] = json!(strategy::next_generation(new, old)),
        }
        match (self.group, self.plural) {
            ("", "services") => {
                default_service(new);
                if sub.is_none() && new["spec"]["clusterIP"].as_str().unwrap_or("").is_empty() {
                    new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
                    new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
                }
                drop_type_dependent_fields(old, new);
            }
            ("", "events") => *new = events::core_form(new, false),
            ("certificates.k8s.io", _) => {
                new["spec"] = old["spec"].clone();
                stamp_conditions(new, old);
            }
            _ if sub.is_none() => self.pod_defaults(new)?,
            _ => {}
        }
        Ok(())
    }

    fn validate_update(&self, _ctx: &Context, sub: Option<&str>, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = if core_metadata(self.group, self.plural) { meta::core_finalizers(new) } else { Vec::new() };
        causes.extend(match ((self.group, self.plural), sub) {
            (("", "services"), None) => {
                let mut causes = Vec::new();
                if new["spec"]["clusterIP"] != old["spec"]["clusterIP"] {
                    causes.push(Cause::invalid("spec.clusterIP", &new["spec"]["clusterIP"], "field is immutable"));
                }
                causes.extend(service::update(new, old));
                causes
            }
            (("", "services"), Some(_)) => service::status_update(new),
            (("", "nodes"), _) => node::update(new, old),
            (("", "events"), _) => event::legacy(new),
            (("coordination.k8s.io", "leases"), _) => lease::update(new),
            (("", "pods"), None) => pod::update(new, old),
            (("policy", "poddisruptionbudgets"), None) => pdb::create(new),
            (("policy", "poddisruptionbudgets"), Some(_)) => pdb::status(new),
            (_, Some("scale")) => match new["spec"]["replicas"].as_i64() {
                Some(n) if n < 0 => {
                    vec![Cause::invalid("spec.replicas", &json!(n), "must be greater than or equal to 0")]
                }
                _ => Vec::new(),
            },
            (("certificates.k8s.io", _), sub) => {
                let write = match sub {
                    Some("approval") => csr::Write::Approval,
                    Some(_) => csr::Write::Status,
                    None => csr::Write::Object,
                };
                csr::update(new, old, write)
            }
            (_, None) => self.workload().map(|w| apps::update(w, new, old)).unwrap_or_default(),
            (_, Some(_)) => self.workload().map(|w| apps::status(w, new)).unwrap_or_default(),
        });
        causes
    }

    /// Pods are deleted gracefully (the pod strategy's CheckGracefulDelete):
    /// after the grace period asked for or their own, at once when not bound
    /// to a node or already ended.
    fn check_graceful_delete(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        if (self.group, self.plural) != ("", "pods") {
            return None;
        }
        let own = || obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(0);
        let mut period = requested.map_or_else(own, |r| if r < 0 { 1 } else { r });
        let bound = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let ended = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        if !bound || ended {
            period = 0;
        }
        Some(if period < 0 { 1 } else { period })
    }
}
