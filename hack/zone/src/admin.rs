//! Endpoints that are not part of the orchestrator API but serve the local
//! stack (signed like every other call): handing a cluster's CAs to whatever
//! plays its control plane.

use axum::http::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::app::{ApiError, ApiResult, App};

/// Serves `/admin/<rest>`.
pub fn handle(app: &App, method: &Method, rest: &str, query: &[(String, String)]) -> ApiResult<Value> {
    let zone =
        query.iter().find(|(k, _)| k == "zone").map(|(_, v)| v.clone()).unwrap_or_else(|| app.config.zones[0].clone());
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
        _ => Err(ApiError::not_found("admin endpoint", rest)),
    }
}
