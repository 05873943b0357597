//! The stand-in kinds' write rules, as kube-apiserver's registry strategies:
//! the spec/status discipline of kinds with a status subresource, each kind's
//! defaults, and its validation. Names, preconditions and metadata rules are
//! the shared write pipeline's (`sks_rest::write`).

use serde_json::{Value, json};
use sks_rest::status::{ApiResult, Cause};
use sks_rest::storage::{BoxFuture, Context};
use sks_rest::strategy::{self, Strategy};
use sks_rest::validation::{self, NameRule};

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
    opts: KindOptions,
}

impl KindStrategy {
    /// The strategy of the kind `group`/`plural`.
    pub fn new(group: &'static str, plural: &'static str, opts: KindOptions) -> Self {
        KindStrategy { group, plural, opts }
    }

    fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(svc["spec"]["type"].as_str(), Some("NodePort") | Some("LoadBalancer"))
}

/// Service defaults, as kube-apiserver's defaulting.
fn default_service(svc: &mut Value) {
    if svc["spec"]["type"].is_null() {
        svc["spec"]["type"] = json!("ClusterIP");
    }
    if svc["spec"]["sessionAffinity"].is_null() {
        svc["spec"]["sessionAffinity"] = json!("None");
    }
    if needs_node_ports(svc) && svc["spec"]["externalTrafficPolicy"].is_null() {
        svc["spec"]["externalTrafficPolicy"] = json!("Cluster");
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

fn validate_csr(csr: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if csr["spec"]["signerName"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("spec.signerName"));
    }
    if csr["spec"]["request"].as_str().unwrap_or("").is_empty() {
        causes.push(Cause::required("spec.request"));
    }
    causes
}

impl Strategy for KindStrategy {
    fn name_rule(&self) -> NameRule {
        match (self.group, self.plural) {
            ("", "namespaces") => validation::name_is_dns_label,
            ("", "services") => validation::name_is_dns1035_label,
            _ => validation::name_is_dns_subdomain,
        }
    }

    fn prepare_for_create<'a>(&'a self, ctx: &'a Context, obj: &'a mut Value) -> BoxFuture<'a, ApiResult<()>> {
        if self.opts.status_subresource
            && !self.opts.keep_status_on_create
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if self.is("", "services") {
            default_service(obj);
        }
        if self.is("certificates.k8s.io", "certificatesigningrequests") {
            record_requester(ctx, obj);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn validate(&self, _ctx: &Context, obj: &Value) -> Vec<Cause> {
        if self.is("certificates.k8s.io", "certificatesigningrequests") {
            return validate_csr(obj);
        }
        Vec::new()
    }

    fn prepare_for_update(&self, _ctx: &Context, sub: Option<&str>, new: &mut Value, old: &Value) -> ApiResult<()> {
        match sub {
            // An approval changes the conditions, and nothing else.
            Some("approval") => {
                let conditions = new["status"]["conditions"].take();
                *new = old.clone();
                new["status"]["conditions"] = conditions;
            }
            _ if self.opts.status_subresource => strategy::status_discipline(sub, new, old),
            _ => new["metadata"]["generation"] = json!(strategy::next_generation(new, old)),
        }
        if self.is("", "services") && sub.is_none() {
            if new["spec"]["clusterIP"].as_str().unwrap_or("").is_empty() {
                new["spec"]["clusterIP"] = old["spec"]["clusterIP"].clone();
                new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
            }
            default_service(new);
        }
        if self.is("certificates.k8s.io", "certificatesigningrequests") {
            new["spec"] = old["spec"].clone();
        }
        Ok(())
    }

    fn validate_update(&self, _ctx: &Context, sub: Option<&str>, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        if self.is("", "services") && sub.is_none() && new["spec"]["clusterIP"] != old["spec"]["clusterIP"] {
            causes.push(Cause::invalid("spec.clusterIP", &new["spec"]["clusterIP"], "field is immutable"));
        }
        causes
    }
}
