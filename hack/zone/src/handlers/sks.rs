//! SKS clusters, nodepools, versions, kubeconfigs and certificate authorities.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use orchestrator::model::{
    ActiveTemplate, Authority, AuthorityCert, CreateSksCluster, CreateSksNodepool, EvictRequest, InstancePool,
    InstancePoolSpec, InstancePoolState, KubeconfigRequest, KubeconfigResponse, Manager, ManagerType, Ref,
    ScaleRequest, SksCluster, SksClusterLevel, SksClusterList, SksClusterState, SksClusterVersions, SksNodepool,
    SksNodepoolState, UpdateSksCluster, UpdateSksNodepool, UpgradeSksCluster,
};
use serde_json::{Value, json as j};
use uuid::Uuid;

use super::{json, pools, refs};
use crate::app::{ApiError, ApiResult, App};
use crate::catalog;
use crate::control_plane;
use crate::http::Call;
use crate::lifecycle;
use crate::upgrades;
use crate::world::{ClusterPki, ClusterRec, Completion, NodepoolRec, Target, Tx, World};
use sks_pki::CertificateAuthority;

/// The longest kubeconfig certificate the zone issues, as SKS does.
pub const MAX_KUBECONFIG_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

fn cluster_link(id: Uuid) -> Option<(Uuid, String)> {
    Some((id, format!("/sks-cluster/{id}")))
}

fn nodepool_link(cluster: Uuid, id: Uuid) -> Option<(Uuid, String)> {
    Some((id, format!("/sks-cluster/{cluster}/nodepool/{id}")))
}

fn state_while(app: &App, pending: SksClusterState) -> SksClusterState {
    if app.config.operation_delay.is_zero() { SksClusterState::Running } else { pending }
}

/// A nodepool as the API shows it: its size is its instance pool's.
pub fn render_nodepool(world: &World, zone: &str, rec: &NodepoolRec) -> SksNodepool {
    let mut np = rec.nodepool.clone();
    if let Some(pool) = np.instance_pool.and_then(|p| world.zone(zone).pools.get(&p.id)) {
        np.size = pool.size;
    }
    np
}

/// A cluster as the API shows it: nodepools embedded, write-only fields dropped.
pub fn render_cluster(world: &World, zone: &str, rec: &ClusterRec) -> SksCluster {
    let mut cluster = rec.cluster.clone();
    let mut nodepools: Vec<SksNodepool> = world
        .zone(zone)
        .nodepools
        .values()
        .filter(|n| n.cluster_id == cluster.id)
        .map(|n| render_nodepool(world, zone, n))
        .collect();
    nodepools.sort_by(|a, b| (a.created_at, &a.spec.name).cmp(&(b.created_at, &b.spec.name)));
    cluster.nodepools = nodepools;
    if let Some(audit) = &mut cluster.spec.audit {
        audit.bearer_token = None;
    }
    cluster
}

fn cluster_rec(tx: &Tx<'_>, zone: &str, id: Uuid) -> ApiResult<ClusterRec> {
    tx.get::<ClusterRec>(zone, id).cloned().ok_or_else(|| ApiError::not_found("SKS cluster", id))
}

fn live_cluster(tx: &Tx<'_>, zone: &str, id: Uuid) -> ApiResult<ClusterRec> {
    let rec = cluster_rec(tx, zone, id)?;
    if rec.cluster.state == SksClusterState::Deleting {
        return Err(ApiError::conflict(format!("SKS cluster {id} is being deleted")));
    }
    Ok(rec)
}

pub fn create_cluster(app: &App, call: &Call) -> ApiResult<Value> {
    let body: CreateSksCluster = call.body()?;
    let name = body.spec.name.clone().unwrap_or_default();
    let pki = ClusterPki {
        control_plane: ca(&format!("{name} control-plane CA"))?,
        aggregation: ca(&format!("{name} aggregation CA"))?,
        kubelet: ca(&format!("{name} kubelet CA"))?,
    };
    app.write(|tx| {
        let available = upgrades::versions(tx.world());
        if !available.contains(&body.version) {
            return Err(ApiError::bad_request(format!(
                "version: {:?} is not an available version; available: {}",
                body.version,
                available.join(", ")
            )));
        }
        if tx.zone(&call.zone).clusters.values().any(|c| c.cluster.spec.name.as_deref() == Some(&name)) {
            return Err(ApiError::conflict(format!("name: an SKS cluster named {name:?} already exists")));
        }
        let id = Uuid::new_v4();
        let endpoint =
            app.config.cluster_endpoint.clone().unwrap_or_else(|| format!("https://{id}.sks-{}.exo.io:443", call.zone));
        let cluster = SksCluster {
            id,
            state: state_while(app, SksClusterState::Creating),
            version: body.version.clone(),
            level: body.level.clone(),
            // Without `cni`, SKS deploys none.
            cni: body.cni.clone(),
            endpoint: Some(endpoint),
            default_security_group_id: body.create_default_security_group.unwrap_or(false).then(Uuid::new_v4),
            nodepools: Vec::new(),
            created_at: Some(lifecycle::now()),
            spec: body.spec.clone(),
        };
        let control_plane = control_plane::at_version(&cluster.version);
        tx.put(
            &call.zone,
            ClusterRec { cluster, pki: pki.clone(), control_plane, upgrades: Vec::new(), fail_next_upgrade: None },
        );
        let completion = Completion::Activate(Target::Cluster(id));
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, cluster_link(id), completion))
    })
}

fn ca(name: &str) -> ApiResult<CertificateAuthority> {
    CertificateAuthority::generate(name).map_err(|e| ApiError::internal(format!("generating {name}: {e}")))
}

pub fn list_clusters(app: &App, call: &Call) -> ApiResult<Value> {
    let sks_clusters = app
        .read(|w| w.zone(&call.zone).clusters.values().map(|c| render_cluster(w, &call.zone, c)).collect::<Vec<_>>());
    json(SksClusterList { sks_clusters })
}

pub fn get_cluster(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    app.read(|w| w.zone(&call.zone).clusters.get(&id).map(|c| render_cluster(w, &call.zone, c)))
        .map_or_else(|| Err(ApiError::not_found("SKS cluster", id)), json)
}

/// Changes a cluster and records an operation referencing it.
fn change_cluster(
    app: &App,
    call: &Call,
    f: impl FnOnce(&mut Tx<'_>, &mut ClusterRec) -> ApiResult<Completion>,
) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    app.write(|tx| {
        let mut rec = live_cluster(tx, &call.zone, id)?;
        let completion = f(tx, &mut rec)?;
        tx.put(&call.zone, rec);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, cluster_link(id), completion))
    })
}

pub fn update_cluster(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateSksCluster = call.body()?;
    change_cluster(app, call, |_, rec| {
        let s = &mut rec.cluster.spec;
        macro_rules! take {
            ($($f:ident),*) => { $(if body.$f.is_some() { s.$f = body.$f.clone(); })* };
        }
        take!(name, description, labels, auto_upgrade, addons, feature_gates, oidc, audit, enable_operators_ca);
        Ok(Completion::Nothing)
    })
}

pub fn delete_cluster(app: &App, call: &Call) -> ApiResult<Value> {
    change_cluster(app, call, |_, rec| {
        rec.cluster.state = SksClusterState::Deleting;
        Ok(Completion::Remove(Target::Cluster(rec.cluster.id)))
    })
}

pub fn upgrade_cluster(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpgradeSksCluster = call.body()?;
    let id = call.id("id", "SKS cluster")?;
    app.write(|tx| {
        let (_, op) = upgrades::start(
            tx,
            &app.config,
            &call.zone,
            id,
            &body.version,
            upgrades::Trigger::Manual,
            &call.operation,
        )?;
        json(op)
    })
}

pub fn upgrade_service_level(app: &App, call: &Call) -> ApiResult<Value> {
    change_cluster(app, call, |_, rec| {
        if rec.cluster.level == SksClusterLevel::Pro {
            return Err(ApiError::bad_request("level: the cluster is already pro"));
        }
        rec.cluster.level = SksClusterLevel::Pro;
        Ok(Completion::Nothing)
    })
}

pub fn rotate(app: &App, call: &Call) -> ApiResult<Value> {
    change_cluster(app, call, |_, _| Ok(Completion::Nothing))
}

pub fn list_versions(app: &App) -> ApiResult<Value> {
    json(SksClusterVersions { sks_cluster_versions: app.read(upgrades::versions) })
}

pub fn kubeconfig(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    let req: KubeconfigRequest = call.body()?;
    if req.user.trim().is_empty() {
        return Err(ApiError::bad_request("user: must not be empty"));
    }
    let ttl = match req.ttl {
        None | Some(0) => MAX_KUBECONFIG_TTL,
        Some(secs) if secs < 0 || secs as u64 > MAX_KUBECONFIG_TTL.as_secs() => {
            return Err(ApiError::bad_request(format!(
                "ttl: must be between 1 and {} seconds (30 days), got {secs}",
                MAX_KUBECONFIG_TTL.as_secs()
            )));
        }
        Some(secs) => Duration::from_secs(secs as u64),
    };
    let rec = app
        .read(|w| w.zone(&call.zone).clusters.get(&id).cloned())
        .ok_or_else(|| ApiError::not_found("SKS cluster", id))?;
    let ca = &rec.pki.control_plane;
    let cert = ca
        .issue_client(&req.user, &req.groups, ttl)
        .map_err(|e| ApiError::internal(format!("issuing the client certificate: {e}")))?;
    let name = rec.cluster.spec.name.clone().unwrap_or_else(|| id.to_string());
    let server = rec.cluster.endpoint.clone().unwrap_or_default();
    let yaml = sks_pki::render_kubeconfig(&name, &server, &ca.cert_pem, &req.user, &cert);
    json(KubeconfigResponse { kubeconfig: B64.encode(yaml) })
}

pub fn authority_cert(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    let authority: Authority = call.param("authority").parse().unwrap_or_else(|never| match never {});
    let rec = app
        .read(|w| w.zone(&call.zone).clusters.get(&id).cloned())
        .ok_or_else(|| ApiError::not_found("SKS cluster", id))?;
    let ca = match authority {
        Authority::ControlPlane => &rec.pki.control_plane,
        Authority::Aggregation => &rec.pki.aggregation,
        Authority::Kubelet => &rec.pki.kubelet,
        Authority::Unknown(other) => return Err(ApiError::not_found("authority", other)),
    };
    json(AuthorityCert { cacert: B64.encode(&ca.cert_pem) })
}

pub fn deprecated_resources(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    if !app.read(|w| w.zone(&call.zone).clusters.contains_key(&id)) {
        return Err(ApiError::not_found("SKS cluster", id));
    }
    Ok(j!([]))
}

/// The cluster's control plane, component by component, and its upgrades,
/// newest first (the shape is documented in README.md's sks-zone section).
pub fn inspection(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "SKS cluster")?;
    let (rec, nodepools) = app
        .read(|w| {
            let z = w.zone(&call.zone);
            z.clusters.get(&id).map(|c| (c.clone(), z.nodepools.values().filter(|n| n.cluster_id == id).count()))
        })
        .ok_or_else(|| ApiError::not_found("SKS cluster", id))?;
    Ok(j!({
        "cluster-id": rec.cluster.id,
        "state": rec.cluster.state.as_str(),
        "version": rec.cluster.version,
        "nodepools": nodepools,
        "control-plane": {"components": rec.control_plane},
        "upgrades": rec.upgrades,
    }))
}

pub fn active_template(call: &Call) -> ApiResult<Value> {
    let template = catalog::nodepool_template(call.param("kube-version"), call.param("variant"));
    json(ActiveTemplate { active_template: Some(template) })
}

fn nodepool_ids(call: &Call) -> ApiResult<(Uuid, Uuid)> {
    Ok((call.id("id", "SKS cluster")?, call.id("sks-nodepool-id", "SKS nodepool")?))
}

fn nodepool_rec(tx: &Tx<'_>, zone: &str, cluster: Uuid, id: Uuid) -> ApiResult<NodepoolRec> {
    live_cluster(tx, zone, cluster)?;
    let rec = tx
        .get::<NodepoolRec>(zone, id)
        .filter(|n| n.cluster_id == cluster)
        .cloned()
        .ok_or_else(|| ApiError::not_found("SKS nodepool", id))?;
    if rec.nodepool.state == SksNodepoolState::Deleting {
        return Err(ApiError::conflict(format!("SKS nodepool {id} is being deleted")));
    }
    Ok(rec)
}

fn check_unique_name(tx: &Tx<'_>, zone: &str, cluster: Uuid, name: Option<&str>, own: Option<Uuid>) -> ApiResult<()> {
    let taken = tx
        .zone(zone)
        .nodepools
        .values()
        .any(|n| n.cluster_id == cluster && Some(n.nodepool.id) != own && n.nodepool.spec.name.as_deref() == name);
    if taken {
        return Err(ApiError::conflict(format!(
            "name: a nodepool named {:?} already exists in SKS cluster {cluster}",
            name.unwrap_or_default()
        )));
    }
    Ok(())
}

/// The instance pool fields a nodepool decides.
fn pool_spec_of(np: &orchestrator::model::SksNodepoolSpec, template: Uuid, name: String) -> InstancePoolSpec {
    InstancePoolSpec {
        name: Some(name),
        description: None,
        instance_type: np.instance_type,
        template: Some(Ref { id: template }),
        disk_size: np.disk_size,
        instance_prefix: Some(np.instance_prefix.clone().unwrap_or_else(|| "pool".to_owned())),
        anti_affinity_groups: np.anti_affinity_groups.clone(),
        security_groups: np.security_groups.clone(),
        private_networks: np.private_networks.clone(),
        deploy_target: np.deploy_target,
        public_ip_assignment: np.public_ip_assignment.clone(),
        ..InstancePoolSpec::default()
    }
}

pub fn create_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    let body: CreateSksNodepool = call.body()?;
    let cluster_id = call.id("id", "SKS cluster")?;
    app.write(|tx| {
        refs::nodepool(app, tx.world(), &call.zone, &body.spec)?;
        let cluster = live_cluster(tx, &call.zone, cluster_id)?.cluster;
        check_unique_name(tx, &call.zone, cluster_id, body.spec.name.as_deref(), None)?;
        let (id, pool_id) = (Uuid::new_v4(), Uuid::new_v4());
        let template = catalog::nodepool_template(&cluster.version, "standard");
        let name = body.spec.name.clone().unwrap_or_default();
        tx.put(
            &call.zone,
            InstancePool {
                id: pool_id,
                state: InstancePoolState::Running,
                size: body.size,
                instances: Vec::new(),
                manager: Some(Manager { id, kind: ManagerType::SksNodepool }),
                spec: pool_spec_of(&body.spec, template, format!("nodepool-{name}-{id}")),
            },
        );
        lifecycle::reconcile_pool(tx, &app.config, &call.zone, pool_id);
        let nodepool = SksNodepool {
            id,
            state: if app.config.operation_delay.is_zero() {
                SksNodepoolState::Running
            } else {
                SksNodepoolState::Creating
            },
            size: body.size,
            version: Some(cluster.version.clone()),
            template: Some(Ref { id: template }),
            instance_pool: Some(Ref { id: pool_id }),
            addons: body.addons.clone(),
            created_at: Some(lifecycle::now()),
            spec: body.spec.clone(),
        };
        tx.put(&call.zone, NodepoolRec { cluster_id, nodepool });
        let completion = Completion::Activate(Target::Nodepool(id));
        let link = nodepool_link(cluster_id, id);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link, completion))
    })
}

pub fn get_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    let (cluster, id) = nodepool_ids(call)?;
    app.read(|w| {
        let z = w.zone(&call.zone);
        if !z.clusters.contains_key(&cluster) {
            return Err(ApiError::not_found("SKS cluster", cluster));
        }
        z.nodepools
            .get(&id)
            .filter(|n| n.cluster_id == cluster)
            .map(|n| render_nodepool(w, &call.zone, n))
            .ok_or_else(|| ApiError::not_found("SKS nodepool", id))
    })
    .and_then(json)
}

/// Changes a nodepool and its instance pool together, and records an operation.
fn change_nodepool(
    app: &App,
    call: &Call,
    f: impl FnOnce(&mut Tx<'_>, &mut NodepoolRec, &mut InstancePool) -> ApiResult<Completion>,
) -> ApiResult<Value> {
    let (cluster, id) = nodepool_ids(call)?;
    app.write(|tx| {
        let mut rec = nodepool_rec(tx, &call.zone, cluster, id)?;
        let pool_id = rec.nodepool.instance_pool.map(|p| p.id).unwrap_or_default();
        let mut pool = tx
            .get::<InstancePool>(&call.zone, pool_id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("SKS nodepool {id} has lost its instance pool {pool_id}")))?;
        let completion = f(tx, &mut rec, &mut pool)?;
        tx.put(&call.zone, pool);
        tx.put(&call.zone, rec);
        lifecycle::reconcile_pool(tx, &app.config, &call.zone, pool_id);
        let link = nodepool_link(cluster, id);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link, completion))
    })
}

pub fn update_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateSksNodepool = call.body()?;
    change_nodepool(app, call, |tx, rec, pool| {
        refs::nodepool(app, tx.world(), &call.zone, &body)?;
        check_unique_name(
            tx,
            &call.zone,
            rec.cluster_id,
            body.name.as_deref().or(rec.nodepool.spec.name.as_deref()),
            Some(rec.nodepool.id),
        )?;
        let s = &mut rec.nodepool.spec;
        macro_rules! take {
            ($($f:ident),*) => { $(if body.$f.is_some() { s.$f = body.$f.clone(); })* };
        }
        take!(
            name,
            description,
            instance_type,
            disk_size,
            labels,
            taints,
            anti_affinity_groups,
            security_groups,
            private_networks,
            deploy_target,
            instance_prefix,
            kubelet_image_gc,
            public_ip_assignment,
            nvidia_mig_profiles
        );
        // New members get the new settings; existing ones keep theirs, as on SKS.
        let template = pool.spec.template.map(|t| t.id).unwrap_or_default();
        let name = pool.spec.name.clone().unwrap_or_default();
        pool.spec = pool_spec_of(s, template, name);
        Ok(Completion::Nothing)
    })
}

pub fn delete_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    change_nodepool(app, call, |_, rec, pool| {
        rec.nodepool.state = SksNodepoolState::Deleting;
        pool.state = InstancePoolState::Destroying;
        Ok(Completion::Remove(Target::Nodepool(rec.nodepool.id)))
    })
}

pub fn scale_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    let body: ScaleRequest = call.body()?;
    let transitional = !app.config.operation_delay.is_zero();
    change_nodepool(app, call, |_, rec, pool| {
        pool.size = body.size;
        if transitional {
            rec.nodepool.state = SksNodepoolState::Scaling;
        }
        Ok(Completion::Activate(Target::Nodepool(rec.nodepool.id)))
    })
}

pub fn evict_nodepool(app: &App, call: &Call) -> ApiResult<Value> {
    let body: EvictRequest = call.body()?;
    let (cluster, id) = nodepool_ids(call)?;
    app.write(|tx| {
        let rec = nodepool_rec(tx, &call.zone, cluster, id)?;
        let pool_id = rec.nodepool.instance_pool.map(|p| p.id).unwrap_or_default();
        let pool = tx
            .get::<InstancePool>(&call.zone, pool_id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("SKS nodepool {id} has lost its instance pool {pool_id}")))?;
        pools::evict_from(app, tx, &call.zone, pool, &body)?;
        // The operation clients wait on references the nodepool, not its pool.
        let link = nodepool_link(cluster, id);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link, Completion::Nothing))
    })
}
