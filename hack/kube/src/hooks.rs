//! What kube-apiserver's storage and kube-controller-manager do when objects
//! are stored, as far as tests need it: Services get a clusterIP and
//! nodePorts, kubelet-serving CSRs are signed once approved. Defaults and
//! validation are the kinds' strategies (`strategies`).

use std::collections::BTreeSet;
use std::time::Duration;

use base64::Engine as _;
use rand::Rng as _;
use serde_json::{Value, json};
use sks_pki::CertificateAuthority;
use sks_rest::memory::{Hooks, MemStorage};
use sks_rest::status::{ApiError, ApiResult, Cause};
use sks_rest::storage::Context;

use crate::validation::service;

/// The nodePort range, as kube-apiserver's default `--service-node-port-range`.
pub const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

/// Service allocations: a clusterIP and node ports.
pub struct ServiceHooks;

fn used_ports(store: &MemStorage, except: Option<&Value>) -> BTreeSet<i64> {
    let mut used = BTreeSet::new();
    for svc in store.all() {
        if except.is_some_and(|e| e["metadata"]["uid"] == svc["metadata"]["uid"]) {
            continue;
        }
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                used.insert(n);
            }
        }
        if let Some(h) = svc["spec"]["healthCheckNodePort"].as_i64() {
            used.insert(h);
        }
    }
    used
}

fn allocate(used: &mut BTreeSet<i64>) -> ApiResult<i64> {
    let free = (*NODE_PORTS.end() - *NODE_PORTS.start() + 1) as usize - used.len();
    if free == 0 {
        return Err(ApiError::internal("no free nodePort left in 30000-32767"));
    }
    let mut rng = rand::rng();
    loop {
        let p = rng.random_range(NODE_PORTS);
        if used.insert(p) {
            return Ok(p);
        }
    }
}

fn invalid(svc: &Value, causes: Vec<Cause>) -> ApiError {
    ApiError::invalid("Service", "", "services", svc["metadata"]["name"].as_str().unwrap_or(""), causes)
}

/// Hands out node ports: a port's own (unless taken), the one it had in `old`, or a free one.
fn assign_ports(svc: &mut Value, old: Option<&Value>, used: &mut BTreeSet<i64>) -> ApiResult<()> {
    if !service::needs_node_ports(svc) {
        return Ok(());
    }
    let old_ports: Vec<Value> = old.and_then(|o| o["spec"]["ports"].as_array().cloned()).unwrap_or_default();
    let mut causes = Vec::new();
    for (i, p) in svc["spec"]["ports"].as_array_mut().into_iter().flatten().enumerate() {
        match p["nodePort"].as_i64() {
            Some(n) if old_ports.iter().any(|o| o["nodePort"].as_i64() == Some(n)) => {}
            Some(n) if !NODE_PORTS.contains(&n) => causes.push(Cause::invalid(
                &format!("spec.ports[{i}].nodePort"),
                &json!(n),
                "provided port is not in the valid range. The range of valid ports is 30000-32767",
            )),
            Some(n) if !used.insert(n) => causes.push(Cause::invalid(
                &format!("spec.ports[{i}].nodePort"),
                &json!(n),
                "provided port is already allocated",
            )),
            Some(_) => {}
            None => {
                let same = old_ports
                    .iter()
                    .find(|o| o["port"] == p["port"] && o["protocol"] == p["protocol"])
                    .and_then(|o| o["nodePort"].as_i64());
                p["nodePort"] = json!(match same {
                    Some(n) => n,
                    None => allocate(used)?,
                });
            }
        }
    }
    if !causes.is_empty() {
        return Err(invalid(svc, causes));
    }
    if service::needs_health_check(svc) && svc["spec"]["healthCheckNodePort"].is_null() {
        let keep =
            old.filter(|o| service::needs_health_check(o)).and_then(|o| o["spec"]["healthCheckNodePort"].as_i64());
        svc["spec"]["healthCheckNodePort"] = json!(match keep {
            Some(n) => n,
            None => allocate(used)?,
        });
    }
    Ok(())
}

impl Hooks for ServiceHooks {
    fn on_create(&self, _ctx: &Context, svc: &mut Value, store: &MemStorage) -> ApiResult<()> {
        if svc["spec"]["clusterIP"].as_str().unwrap_or("").is_empty() && svc["spec"]["type"] != "ExternalName" {
            let taken: BTreeSet<String> =
                store.all().iter().filter_map(|s| s["spec"]["clusterIP"].as_str().map(str::to_owned)).collect();
            let ip =
                (1..65_000u32).map(|n| format!("10.96.{}.{}", n / 250, n % 250 + 1)).find(|ip| !taken.contains(ip));
            let ip = ip.ok_or_else(|| ApiError::internal("no free clusterIP left"))?;
            svc["spec"]["clusterIP"] = json!(ip);
        }
        if let Some(ip) = svc["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty())
            && svc["spec"]["clusterIPs"].is_null()
        {
            svc["spec"]["clusterIPs"] = json!([ip]);
        }
        let mut used = used_ports(store, None);
        assign_ports(svc, None, &mut used)?;
        svc["status"] = json!({"loadBalancer": {}});
        Ok(())
    }

    fn on_update(&self, old: &Value, new: &mut Value, store: &MemStorage) -> ApiResult<()> {
        if new["spec"] == old["spec"] {
            return Ok(()); // A status or metadata write: nothing to allocate.
        }
        let mut used = used_ports(store, Some(old));
        assign_ports(new, Some(old), &mut used)
    }
}

/// CSRs: kubelet-serving requests signed once approved, as kube-controller-manager's signer.
pub struct CsrHooks {
    /// Signs `kubernetes.io/kubelet-serving` certificates.
    pub kubelet_ca: CertificateAuthority,
}

impl Hooks for CsrHooks {
    fn on_subresource(&self, sub: &str, csr: &mut Value) -> ApiResult<()> {
        if sub != "approval"
            || csr["spec"]["signerName"] != "kubernetes.io/kubelet-serving"
            || csr["status"]["certificate"].is_string()
        {
            return Ok(());
        }
        let conditions = csr["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let is = |t: &str| conditions.iter().any(|c| c["type"] == t && c["status"] != "False");
        if !is("Approved") || is("Denied") || is("Failed") {
            return Ok(());
        }
        let pem = base64::engine::general_purpose::STANDARD
            .decode(csr["spec"]["request"].as_str().unwrap_or(""))
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| ApiError::bad_request("spec.request is not a base64 PEM certificate request"))?;
        let secs = csr["spec"]["expirationSeconds"].as_u64().unwrap_or(365 * 86400).max(600);
        match self.kubelet_ca.sign_csr(&pem, Duration::from_secs(secs)) {
            Ok(cert) => csr["status"]["certificate"] = json!(base64::engine::general_purpose::STANDARD.encode(cert)),
            Err(e) => {
                // As kube-controller-manager's signer: a request it cannot sign is Failed, not an API error.
                let mut conds = conditions;
                conds.push(json!({"type": "Failed", "status": "True", "reason": "SignerValidationFailure", "message": e.to_string(), "lastUpdateTime": jiff::Timestamp::now().to_string()}));
                csr["status"]["conditions"] = json!(conds);
            }
        }
        Ok(())
    }
}
