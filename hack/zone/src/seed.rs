//! The seeded cluster and nodepool of the local stack, created through the
//! same handlers as API calls so the seed cannot drift from the API's rules.

use anyhow::Context as _;
use serde_json::json;

use crate::app::App;
use crate::catalog;
use crate::handlers;
use crate::http::Call;

fn call(
    app: &App,
    operation: &str,
    params: Vec<(String, String)>,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let call = Call {
        zone: app.config.zones[0].clone(),
        operation: operation.to_owned(),
        params,
        query: Vec::new(),
        body: Some(body),
    };
    tokio::task::block_in_place(|| handlers::dispatch(app, &call))
        .map_err(|e| anyhow::anyhow!("{operation}: {} {}", e.status, e.message))
}

/// Creates cluster `cluster` with nodepool `nodepool` of `size` nodes unless the cluster exists.
pub fn ensure(app: &App, cluster: &str, nodepool: &str, size: i64) -> anyhow::Result<()> {
    let zone = app.config.zones[0].clone();
    let exists = app.read(|w| w.zone(&zone).clusters.values().any(|c| c.cluster.spec.name.as_deref() == Some(cluster)));
    if exists {
        tracing::info!(cluster, "seed cluster already exists");
        return Ok(());
    }
    let version = catalog::DEFAULT_VERSIONS[0];
    let op = call(
        app,
        "create-sks-cluster",
        vec![],
        json!({"name": cluster, "level": "pro", "version": version, "cni": "calico"}),
    )?;
    let id = op["reference"]["id"].as_str().context("create-sks-cluster: no reference id")?.to_owned();
    let (family, size_name) = catalog::default_instance_type();
    let instance_type = catalog::instance_type_id(&format!("{family}.{size_name}"));
    call(
        app,
        "create-sks-nodepool",
        vec![("id".into(), id.clone())],
        json!({"name": nodepool, "size": size, "disk-size": 50, "instance-type": {"id": instance_type}}),
    )?;
    tracing::info!(cluster, cluster_id = %id, nodepool, size, "seeded SKS cluster and nodepool");
    Ok(())
}
