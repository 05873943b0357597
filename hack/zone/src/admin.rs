//! Endpoints that are not part of the orchestrator API but serve the local
//! stack and its tests (signed like every other call): handing a cluster's CAs
//! to whatever plays its control plane, the journal of API calls, injecting faults, publishing SKS
//! versions, and switches that make control-plane components unhealthy, the
//! next upgrade fail, or a node's kubelet report NotReady.

use axum::http::Method;
use orchestrator::model::ManagerType;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{ApiError, ApiResult, App};
use crate::control_plane;
use crate::upgrades::{self, FailSwitch};
use crate::world::{ClusterRec, InstanceRec};

pub use crate::faults::Faults;

/// Serves `/admin/<rest>`.
pub fn handle(app: &App, method: &Method, rest: &str, query: &[(String, String)], body: &[u8]) -> ApiResult<Value> {
    let zone = query.iter().find(|(k, _)| k == "zone").map_or_else(|| app.config.zones[0].clone(), |(_, v)| v.clone());
    if !app.config.zones.contains(&zone) {
        return Err(ApiError::not_found("zone", zone));
    }
    let parts: Vec<&str> = rest.split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::GET, ["sks-cluster", id, "pki"]) => {
            let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("SKS cluster", id))?;
            let rec = app
                .read(|w| w.zone(&zone).clusters.get(&id).cloned())
                .ok_or_else(|| ApiError::not_found("SKS cluster", id))?;
            let pair = |ca: &sks_pki::CertificateAuthority| json!({"cert": ca.cert_pem, "key": ca.key_pem()});
            Ok(json!({
                "control-plane": pair(&rec.pki.control_plane),
                "aggregation": pair(&rec.pki.aggregation),
                "kubelet": pair(&rec.pki.kubelet),
            }))
        }
        (&Method::GET, ["faults"]) => {
            let mut out = serde_json::to_value(app.faults()).unwrap_or_default();
            out["counts"] = crate::faults::counts();
            Ok(out)
        }
        (&Method::GET, ["requests"]) => {
            let operations: Option<Vec<&str>> =
                query.iter().find(|(k, _)| k == "operation").map(|(_, v)| v.split(',').collect());
            Ok(json!({"requests": app.journal.list(operations.as_deref()), "kept": crate::journal::KEEP}))
        }
        (&Method::PUT, ["faults"]) => {
            let faults = Faults::parse(body).map_err(ApiError::bad_request)?;
            tracing::warn!(rules = %serde_json::to_string(&faults).unwrap_or_default(), "fault injection changed");
            app.set_faults(faults.clone());
            Ok(serde_json::to_value(faults).unwrap_or_default())
        }
        (&Method::PUT, ["versions"]) => {
            #[derive(serde::Deserialize)]
            struct Body {
                version: String,
            }
            let body: Body = decode("versions", body)?;
            let (versions, auto_upgrades) = app.write(|tx| upgrades::publish(tx, &app.config, &body.version))?;
            Ok(json!({"sks-cluster-versions": versions, "auto-upgrades": auto_upgrades}))
        }
        (&Method::PUT, ["sks-cluster", id, "components", name]) => {
            #[derive(serde::Deserialize)]
            struct Body {
                healthy: bool,
            }
            let body: Body = decode("component", body)?;
            change_cluster(app, &zone, id, |rec| {
                let component = rec
                    .control_plane
                    .iter_mut()
                    .find(|c| c.name == *name)
                    .ok_or_else(|| ApiError::not_found("control-plane component", name))?;
                component.healthy = body.healthy;
                Ok(serde_json::to_value(&*component).unwrap_or_default())
            })
        }
        (&Method::PUT, ["sks-cluster", id, "fail-next-upgrade"]) => {
            let switch: FailSwitch = decode("fail-next-upgrade", body)?;
            if !control_plane::COMPONENTS.contains(&switch.component.as_str()) {
                return Err(ApiError::bad_request(format!(
                    "component: {:?} is not a control-plane component; one of: {}",
                    switch.component,
                    control_plane::COMPONENTS.join(", ")
                )));
            }
            change_cluster(app, &zone, id, |rec| {
                rec.fail_next_upgrade = Some(switch.clone());
                Ok(serde_json::to_value(&switch).unwrap_or_default())
            })
        }
        (&Method::DELETE, ["sks-cluster", id, "fail-next-upgrade"]) => {
            change_cluster(app, &zone, id, |rec| Ok(json!({"disarmed": rec.fail_next_upgrade.take()})))
        }
        (&Method::PUT, ["instance", id, "kubelet"]) => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Body {
                ready: bool,
            }
            let body: Body = decode("kubelet", body)?;
            set_kubelet_ready(app, &zone, id, body.ready)
        }
        _ => Err(ApiError::not_found("admin endpoint", rest)),
    }
}

fn decode<T: serde::de::DeserializeOwned>(what: &str, body: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(body).map_err(|e| ApiError::bad_request(format!("{what}: {e}")))
}

/// Makes the simulated kubelet of instance `id` report its Node Ready or
/// NotReady from now on; only nodepool members run one.
fn set_kubelet_ready(app: &App, zone: &str, id: &str, ready: bool) -> ApiResult<Value> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("instance", id))?;
    app.write(|tx| {
        let mut rec = tx.get::<InstanceRec>(zone, id).cloned().ok_or_else(|| ApiError::not_found("instance", id))?;
        let pool = rec.instance.manager.as_ref().filter(|m| m.kind == ManagerType::InstancePool).map(|m| m.id);
        let member = pool.is_some_and(|p| {
            tx.zone(zone).nodepools.values().any(|n| n.nodepool.instance_pool.is_some_and(|i| i.id == p))
        });
        if !member {
            return Err(ApiError::bad_request(format!(
                "instance {id} runs no kubelet: it is not a member of an SKS nodepool"
            )));
        }
        rec.kubelet_not_ready = !ready;
        tx.put(zone, rec);
        tracing::warn!(instance = %id, ready, "kubelet readiness switched");
        Ok(json!({"instance": id, "kubelet": {"ready": ready}}))
    })
}

/// Changes a cluster's record in one transaction.
fn change_cluster(
    app: &App,
    zone: &str,
    id: &str,
    f: impl FnOnce(&mut ClusterRec) -> ApiResult<Value>,
) -> ApiResult<Value> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found("SKS cluster", id))?;
    app.write(|tx| {
        let mut rec = tx.get::<ClusterRec>(zone, id).cloned().ok_or_else(|| ApiError::not_found("SKS cluster", id))?;
        let out = f(&mut rec)?;
        tx.put(zone, rec);
        Ok(out)
    })
}
