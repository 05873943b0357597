//! Instance pools.

use orchestrator::model::{
    CreateInstancePool, EvictRequest, InstancePool, InstancePoolList, InstancePoolState, ManagerType, ScaleRequest,
    UpdateInstancePool,
};
use serde_json::Value;
use uuid::Uuid;

use super::{json, refs};
use crate::app::{ApiError, ApiResult, App};
use crate::http::Call;
use crate::lifecycle;
use crate::world::{Completion, Target, Tx};

fn link(id: Uuid) -> Option<(Uuid, String)> {
    Some((id, format!("/instance-pool/{id}")))
}

pub fn create(app: &App, call: &Call) -> ApiResult<Value> {
    let body: CreateInstancePool = call.body()?;
    app.write(|tx| {
        refs::pool(app, tx.world(), &call.zone, &body.spec)?;
        let pool = InstancePool {
            id: Uuid::new_v4(),
            state: InstancePoolState::Creating,
            size: body.size,
            instances: Vec::new(),
            manager: None,
            spec: body.spec.clone(),
        };
        let id = pool.id;
        tx.put(&call.zone, pool);
        lifecycle::reconcile_pool(tx, &app.config, &call.zone, id);
        let completion = Completion::Activate(Target::Pool(id));
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), completion))
    })
}

pub fn list(app: &App, call: &Call) -> ApiResult<Value> {
    let instance_pools = app.read(|w| w.zone(&call.zone).pools.values().cloned().collect());
    json(InstancePoolList { instance_pools })
}

pub fn get(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance pool")?;
    app.read(|w| w.zone(&call.zone).pools.get(&id).cloned())
        .map_or_else(|| Err(ApiError::not_found("instance pool", id)), json)
}

/// The pool, if it exists and the caller may change it: a nodepool's pool
/// belongs to SKS and changes only through the nodepool.
fn writable_pool(tx: &Tx<'_>, zone: &str, id: Uuid) -> ApiResult<InstancePool> {
    let pool = tx.get::<InstancePool>(zone, id).cloned().ok_or_else(|| ApiError::not_found("instance pool", id))?;
    if let Some(m) = &pool.manager
        && m.kind == ManagerType::SksNodepool
    {
        return Err(ApiError::forbidden(format!(
            "instance pool {id} is managed by SKS nodepool {}: change the nodepool instead",
            m.id
        )));
    }
    if pool.state == InstancePoolState::Destroying {
        return Err(ApiError::conflict(format!("instance pool {id} is being deleted")));
    }
    Ok(pool)
}

/// Changes a pool (after `writable_pool`) and reconciles its members.
pub fn change_pool(
    app: &App,
    tx: &mut Tx<'_>,
    zone: &str,
    command: &str,
    mut pool: InstancePool,
    change: impl FnOnce(&mut InstancePool) -> ApiResult<Completion>,
) -> ApiResult<Value> {
    let completion = change(&mut pool)?;
    let id = pool.id;
    tx.put(zone, pool);
    lifecycle::reconcile_pool(tx, &app.config, zone, id);
    json(lifecycle::start_operation(tx, &app.config, zone, command, link(id), completion))
}

pub fn update(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateInstancePool = call.body()?;
    let id = call.id("id", "instance pool")?;
    app.write(|tx| {
        let pool = writable_pool(tx, &call.zone, id)?;
        refs::pool(app, tx.world(), &call.zone, &body)?;
        change_pool(app, tx, &call.zone, &call.operation, pool, |p| {
            merge_spec(&mut p.spec, body);
            Ok(Completion::Nothing)
        })
    })
}

/// Applies a partial update: every field present replaces the stored one.
pub fn merge_spec(spec: &mut orchestrator::model::InstancePoolSpec, body: UpdateInstancePool) {
    macro_rules! take {
        ($($f:ident),*) => { $(if body.$f.is_some() { spec.$f = body.$f; })* };
    }
    take!(
        description,
        labels,
        anti_affinity_groups,
        security_groups,
        private_networks,
        elastic_ips,
        deploy_target,
        instance_prefix,
        ipv6_enabled,
        public_ip_assignment,
        ssh_key,
        ssh_keys,
        user_data,
        min_available,
        name,
        instance_type,
        template,
        disk_size,
        application_consistent_snapshot_enabled
    );
}

pub fn delete(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance pool")?;
    app.write(|tx| {
        let pool = writable_pool(tx, &call.zone, id)?;
        change_pool(app, tx, &call.zone, &call.operation, pool, |p| {
            p.state = InstancePoolState::Destroying;
            Ok(Completion::Remove(Target::Pool(p.id)))
        })
    })
}

pub fn scale(app: &App, call: &Call) -> ApiResult<Value> {
    let body: ScaleRequest = call.body()?;
    let id = call.id("id", "instance pool")?;
    app.write(|tx| {
        let pool = writable_pool(tx, &call.zone, id)?;
        change_pool(app, tx, &call.zone, &call.operation, pool, |p| {
            p.size = body.size;
            Ok(Completion::Nothing)
        })
    })
}

/// Checks that `body` names distinct members of the pool.
fn check_evict(pool: Uuid, members: &[Uuid], body: &EvictRequest) -> ApiResult<()> {
    if body.instances.is_empty() {
        return Err(ApiError::bad_request("instances: at least one instance is required"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for id in &body.instances {
        if !members.contains(id) {
            return Err(ApiError::bad_request(format!("instances: {id} is not a member of instance pool {pool}")));
        }
        if !seen.insert(id) {
            return Err(ApiError::bad_request(format!("instances: {id} is listed twice")));
        }
    }
    Ok(())
}

pub fn evict(app: &App, call: &Call) -> ApiResult<Value> {
    let body: EvictRequest = call.body()?;
    let id = call.id("id", "instance pool")?;
    app.write(|tx| {
        let pool = writable_pool(tx, &call.zone, id)?;
        evict_from(app, tx, &call.zone, pool, &body)?;
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), Completion::Nothing))
    })
}

/// Removes exactly `body.instances` from `pool` and shrinks it by their number;
/// the caller records the operation (on the pool, or on its nodepool).
pub fn evict_from(
    app: &App,
    tx: &mut Tx<'_>,
    zone: &str,
    mut pool: InstancePool,
    body: &EvictRequest,
) -> ApiResult<()> {
    check_evict(pool.id, &lifecycle::pool_members(tx, zone, pool.id), body)?;
    for instance in &body.instances {
        tx.remove::<crate::world::InstanceRec>(zone, *instance);
    }
    pool.size -= body.instances.len() as i64;
    let id = pool.id;
    tx.put(zone, pool);
    lifecycle::reconcile_pool(tx, &app.config, zone, id);
    Ok(())
}

pub fn reset_field(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance pool")?;
    let field = call.param("field").to_owned();
    app.write(|tx| {
        let pool = writable_pool(tx, &call.zone, id)?;
        change_pool(app, tx, &call.zone, &call.operation, pool, |p| {
            let s = &mut p.spec;
            match field.as_str() {
                "anti-affinity-groups" => s.anti_affinity_groups = None,
                "description" => s.description = None,
                "labels" => s.labels = None,
                "security-groups" => s.security_groups = None,
                "elastic-ips" => s.elastic_ips = None,
                "private-networks" => s.private_networks = None,
                "ssh-key" => s.ssh_key = None,
                "user-data" => s.user_data = None,
                "deploy-target" => s.deploy_target = None,
                "ipv6-enabled" => s.ipv6_enabled = None,
                other => return Err(ApiError::bad_request(format!("field: cannot reset {other:?}"))),
            }
            Ok(Completion::Nothing)
        })
    })
}
