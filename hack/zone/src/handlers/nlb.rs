//! Network load balancers and their services, stored and returned exactly as
//! sent: a CCM compares them field by field and would rewrite on any injected default.
//! The one addition is `healthcheck-status`, rendered from the data plane's
//! checks on the way out (never stored).

use orchestrator::model::{
    AddLoadBalancerService, CreateLoadBalancer, LoadBalancer, LoadBalancerList, LoadBalancerService,
    LoadBalancerServiceSpec, LoadBalancerServiceState, LoadBalancerState, UpdateLoadBalancer,
    UpdateLoadBalancerService,
};
use serde_json::Value;
use uuid::Uuid;

use super::json;
use crate::app::{ApiError, ApiResult, App};
use crate::dataplane;
use crate::http::Call;
use crate::ipam;
use crate::lifecycle;
use crate::world::{Completion, Target, Tx, ZoneState};

fn link(id: Uuid) -> Option<(Uuid, String)> {
    Some((id, format!("/load-balancer/{id}")))
}

fn transitional(app: &App) -> bool {
    !app.config.operation_delay.is_zero()
}

pub fn create(app: &App, call: &Call) -> ApiResult<Value> {
    let body: CreateLoadBalancer = call.body()?;
    app.write(|tx| {
        let n = {
            let meta = tx.meta_mut();
            meta.next_ip += 1;
            meta.next_ip - 1
        };
        let lb = LoadBalancer {
            id: Uuid::new_v4(),
            state: Some(if transitional(app) { LoadBalancerState::Creating } else { LoadBalancerState::Running }),
            ip: Some(ipam::ipv4(n)),
            services: Vec::new(),
            created_at: Some(lifecycle::now()),
            spec: body,
        };
        let id = lb.id;
        tx.put(&call.zone, lb);
        let completion = Completion::Activate(Target::LoadBalancer(id));
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), completion))
    })
}

/// An NLB as answered: as stored, plus each service's `healthcheck-status`
/// when the data plane runs.
fn rendered(app: &App, zone: &ZoneState, lb: &LoadBalancer) -> LoadBalancer {
    let mut lb = lb.clone();
    if app.config.nlb_dataplane {
        dataplane::decorate(&mut lb, zone, &app.health);
    }
    lb
}

/// The NLB `id` as answered, if it exists.
fn find(app: &App, zone: &str, id: Uuid) -> Option<LoadBalancer> {
    app.read(|w| {
        let zone = w.zone(zone);
        zone.load_balancers.get(&id).map(|lb| rendered(app, zone, lb))
    })
}

pub fn list(app: &App, call: &Call) -> ApiResult<Value> {
    let load_balancers = app.read(|w| {
        let zone = w.zone(&call.zone);
        zone.load_balancers.values().map(|lb| rendered(app, zone, lb)).collect()
    });
    json(LoadBalancerList { load_balancers })
}

pub fn get(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "load balancer")?;
    find(app, &call.zone, id).map_or_else(|| Err(ApiError::not_found("load balancer", id)), json)
}

fn existing(tx: &Tx<'_>, zone: &str, id: Uuid) -> ApiResult<LoadBalancer> {
    let lb = tx.get::<LoadBalancer>(zone, id).cloned().ok_or_else(|| ApiError::not_found("load balancer", id))?;
    if lb.state == Some(LoadBalancerState::Deleting) {
        return Err(ApiError::conflict(format!("load balancer {id} is being deleted")));
    }
    Ok(lb)
}

/// Changes an NLB in one transaction and records an operation referencing it.
fn change(
    app: &App,
    call: &Call,
    f: impl FnOnce(&mut Tx<'_>, &mut LoadBalancer) -> ApiResult<Completion>,
) -> ApiResult<Value> {
    let id = call.id("id", "load balancer")?;
    app.write(|tx| {
        let mut lb = existing(tx, &call.zone, id)?;
        let completion = f(tx, &mut lb)?;
        tx.put(&call.zone, lb);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), completion))
    })
}

pub fn update(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateLoadBalancer = call.body()?;
    change(app, call, |_, lb| {
        if body.name.is_some() {
            lb.spec.name = body.name;
        }
        if body.description.is_some() {
            lb.spec.description = body.description;
        }
        if body.labels.is_some() {
            lb.spec.labels = body.labels;
        }
        Ok(Completion::Nothing)
    })
}

pub fn delete(app: &App, call: &Call) -> ApiResult<Value> {
    change(app, call, |_, lb| {
        lb.state = Some(LoadBalancerState::Deleting);
        Ok(Completion::Remove(Target::LoadBalancer(lb.id)))
    })
}

pub fn reset_field(app: &App, call: &Call) -> ApiResult<Value> {
    let field = call.param("field").to_owned();
    change(app, call, |_, lb| {
        match field.as_str() {
            "description" => lb.spec.description = None,
            "labels" => lb.spec.labels = None,
            other => return Err(ApiError::bad_request(format!("field: cannot reset {other:?}"))),
        }
        Ok(Completion::Nothing)
    })
}

/// Rules the spec cannot express: unique names and ports, a pool that exists,
/// an interval no shorter than the timeout.
fn check_service(
    tx: &Tx<'_>,
    zone: &str,
    lb: &LoadBalancer,
    spec: &LoadBalancerServiceSpec,
    own: Option<Uuid>,
) -> ApiResult<()> {
    let others = lb.services.iter().filter(|s| Some(s.id) != own);
    for other in others {
        if spec.name.is_some() && other.spec.name == spec.name {
            return Err(ApiError::conflict(format!(
                "name: service {:?} already exists on load balancer {}",
                spec.name.as_deref().unwrap_or_default(),
                lb.id
            )));
        }
        if spec.port.is_some() && other.spec.port == spec.port && other.spec.protocol == spec.protocol {
            return Err(ApiError::conflict(format!(
                "port: {}/{} is already used by service {} on load balancer {}",
                spec.port.unwrap_or_default(),
                spec.protocol.as_ref().map_or("tcp", orchestrator::model::Protocol::as_str),
                other.id,
                lb.id
            )));
        }
    }
    if let Some(pool) = spec.instance_pool
        && tx.get::<orchestrator::model::InstancePool>(zone, pool.id).is_none()
    {
        return Err(ApiError::bad_request(format!("instance-pool.id: instance pool {} not found", pool.id)));
    }
    if let Some(hc) = &spec.healthcheck
        && let (Some(interval), Some(timeout)) = (hc.interval, hc.timeout)
        && interval < timeout
    {
        return Err(ApiError::bad_request(format!(
            "healthcheck.interval: must be at least healthcheck.timeout ({timeout}), got {interval}"
        )));
    }
    Ok(())
}

pub fn add_service(app: &App, call: &Call) -> ApiResult<Value> {
    let body: AddLoadBalancerService = call.body()?;
    change(app, call, |tx, lb| {
        check_service(tx, &call.zone, lb, &body, None)?;
        let state =
            if transitional(app) { LoadBalancerServiceState::Creating } else { LoadBalancerServiceState::Running };
        let svc = LoadBalancerService { id: Uuid::new_v4(), state: Some(state), healthcheck_status: None, spec: body };
        let completion = Completion::Activate(Target::LoadBalancerService(lb.id, svc.id));
        lb.services.push(svc);
        Ok(completion)
    })
}

fn service_of(lb: &mut LoadBalancer, id: Uuid) -> ApiResult<&mut LoadBalancerService> {
    let lb_id = lb.id;
    lb.services
        .iter_mut()
        .find(|s| s.id == id)
        .ok_or_else(|| ApiError::not_found("load balancer service", format!("{id} of load balancer {lb_id}")))
}

pub fn get_service(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "load balancer")?;
    let sid = call.id("service-id", "load balancer service")?;
    let mut lb = find(app, &call.zone, id).ok_or_else(|| ApiError::not_found("load balancer", id))?;
    json(service_of(&mut lb, sid)?.clone())
}

pub fn update_service(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateLoadBalancerService = call.body()?;
    let sid = call.id("service-id", "load balancer service")?;
    if body.instance_pool.is_some() {
        return Err(ApiError::bad_request("instance-pool: cannot be changed; delete and add the service instead"));
    }
    change(app, call, |tx, lb| {
        let current = service_of(lb, sid)?.spec.clone();
        let mut next = current;
        macro_rules! take {
            ($($f:ident),*) => { $(if body.$f.is_some() { next.$f = body.$f.clone(); })* };
        }
        take!(name, description, protocol, strategy, port, target_port, healthcheck);
        check_service(tx, &call.zone, lb, &next, Some(sid))?;
        service_of(lb, sid)?.spec = next;
        Ok(Completion::Nothing)
    })
}

pub fn delete_service(app: &App, call: &Call) -> ApiResult<Value> {
    let sid = call.id("service-id", "load balancer service")?;
    change(app, call, |_, lb| {
        let svc = service_of(lb, sid)?;
        svc.state = Some(LoadBalancerServiceState::Deleting);
        Ok(Completion::Remove(Target::LoadBalancerService(lb.id, sid)))
    })
}

pub fn reset_service_field(app: &App, call: &Call) -> ApiResult<Value> {
    let sid = call.id("service-id", "load balancer service")?;
    let field = call.param("field").to_owned();
    change(app, call, |_, lb| {
        let svc = service_of(lb, sid)?;
        match field.as_str() {
            "description" => svc.spec.description = None,
            other => return Err(ApiError::bad_request(format!("field: cannot reset {other:?}"))),
        }
        Ok(Completion::Nothing)
    })
}
