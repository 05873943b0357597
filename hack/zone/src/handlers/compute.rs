//! Zones, operations, instances and instance types.

use orchestrator::model::{
    CreateInstance, Instance, InstanceList, InstanceState, InstanceTypeList, ResetInstance, ResizeInstanceDisk,
    ScaleInstance, UpdateInstance, Zone, ZoneList,
};
use serde_json::Value;
use uuid::Uuid;

use super::{json, refs};
use crate::app::{ApiError, ApiResult, App};
use crate::catalog;
use crate::http::Call;
use crate::lifecycle::{self, InstanceTemplate};
use crate::world::{Completion, InstanceRec, Target};

pub fn list_zones(app: &App) -> ApiResult<Value> {
    let base = app.config.public_url.trim_end_matches('/');
    let zones = app
        .config
        .zones
        .iter()
        .map(|z| Zone {
            name: z.clone(),
            api_endpoint: Some(format!("{base}/{z}/v2")),
            sos_endpoint: Some(format!("{base}/{z}/sos")),
        })
        .collect();
    json(ZoneList { zones })
}

pub fn get_operation(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "operation")?;
    app.read(|w| w.zone(&call.zone).operations.get(&id).map(|o| o.op.clone()))
        .map_or_else(|| Err(ApiError::not_found("operation", id)), json)
}

pub fn list_instances(app: &App, call: &Call) -> ApiResult<Value> {
    let manager_id = call.query("manager-id").map(|raw| Uuid::parse_str(raw).unwrap_or(Uuid::nil()));
    let manager_type = call.query("manager-type");
    let ip = call.query("ip-address");
    // The label filter's format is undocumented; `k=v[,k2=v2]` is the natural reading.
    let labels: Vec<(&str, &str)> =
        call.query("labels").map(|l| l.split(',').filter_map(|kv| kv.split_once('=')).collect()).unwrap_or_default();
    let instances = app.read(|w| {
        w.zone(&call.zone)
            .instances
            .values()
            .map(|r| &r.instance)
            .filter(|i| manager_id.is_none_or(|id| i.manager.as_ref().is_some_and(|m| m.id == id)))
            .filter(|i| manager_type.is_none_or(|t| i.manager.as_ref().is_some_and(|m| m.kind.as_str() == t)))
            .filter(|i| {
                ip.is_none_or(|ip| {
                    i.public_ip.is_some_and(|a| a.to_string() == ip)
                        || i.ipv6_address.is_some_and(|a| a.to_string() == ip)
                })
            })
            .filter(|i| {
                labels.iter().all(|(k, v)| i.labels.as_ref().is_some_and(|l| l.get(*k).map(String::as_str) == Some(*v)))
            })
            .map(list_item)
            .collect::<Vec<Instance>>()
    });
    json(InstanceList { instances })
}

/// An instance as listed: the list schema is a subset of the full one.
fn list_item(i: &Instance) -> Instance {
    Instance {
        disk_size: None,
        anti_affinity_groups: None,
        elastic_ips: None,
        deploy_target: None,
        secureboot_enabled: None,
        tpm_enabled: None,
        disk_encrypted: None,
        application_consistent_snapshot_enabled: None,
        user_data: None,
        ..i.clone()
    }
}

pub fn get_instance(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance")?;
    app.read(|w| w.zone(&call.zone).instances.get(&id).map(|r| r.instance.clone()))
        .map_or_else(|| Err(ApiError::not_found("instance", id)), json)
}

fn link(id: Uuid) -> Option<(Uuid, String)> {
    Some((id, format!("/instance/{id}")))
}

pub fn create_instance(app: &App, call: &Call) -> ApiResult<Value> {
    let body: CreateInstance = call.body()?;
    let instance_type = body.instance_type.ok_or_else(|| ApiError::bad_request("instance-type: required"))?;
    app.write(|tx| {
        refs::instance(app, tx.world(), &call.zone, &body)?;
        if let Some(name) = &body.name
            && tx.zone(&call.zone).instances.values().any(|i| &i.instance.name == name)
        {
            return Err(ApiError::conflict(format!("name: an instance named {name:?} already exists")));
        }
        let base = Instance {
            id: Uuid::nil(),
            name: String::new(),
            state: InstanceState::Starting,
            instance_type,
            template: body.template,
            disk_size: body.disk_size,
            public_ip: None,
            ipv6_address: None,
            public_ip_assignment: body.public_ip_assignment.clone(),
            private_networks: None,
            security_groups: body.security_groups.clone(),
            anti_affinity_groups: body.anti_affinity_groups.clone(),
            elastic_ips: None,
            labels: body.labels.clone(),
            manager: None,
            deploy_target: body.deploy_target,
            mac_address: None,
            ssh_key: body.ssh_key.clone(),
            ssh_keys: body.ssh_keys.clone(),
            created_at: None,
            secureboot_enabled: body.secureboot_enabled,
            tpm_enabled: body.tpm_enabled,
            disk_encrypted: None,
            application_consistent_snapshot_enabled: body.application_consistent_snapshot_enabled,
            user_data: body.user_data.clone(),
        };
        let mut rec = lifecycle::new_instance(
            tx,
            &app.config,
            &call.zone,
            InstanceTemplate { name: body.name.clone(), prefix: "instance".into(), base },
        );
        if body.auto_start == Some(false) {
            rec.instance.state = InstanceState::Stopped;
            rec.ready_at_ms = None;
        }
        let id = rec.instance.id;
        tx.put(&call.zone, rec);
        json(lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), Completion::Nothing))
    })
}

/// Applies `change` to an existing instance and records an operation.
fn change_instance(
    app: &App,
    call: &Call,
    completion: impl FnOnce(Uuid) -> Completion,
    change: impl FnOnce(&mut InstanceRec) -> ApiResult<()>,
) -> ApiResult<Value> {
    let id = call.id("id", "instance")?;
    app.write(|tx| {
        let mut rec =
            tx.get::<InstanceRec>(&call.zone, id).cloned().ok_or_else(|| ApiError::not_found("instance", id))?;
        change(&mut rec)?;
        tx.put(&call.zone, rec);
        let op = lifecycle::start_operation(tx, &app.config, &call.zone, &call.operation, link(id), completion(id));
        json(op)
    })
}

pub fn update_instance(app: &App, call: &Call) -> ApiResult<Value> {
    let body: UpdateInstance = call.body()?;
    change_instance(
        app,
        call,
        |_| Completion::Nothing,
        |rec| {
            let i = &mut rec.instance;
            if let Some(name) = body.name {
                i.name = name;
            }
            if body.labels.is_some() {
                i.labels = body.labels;
            }
            if body.public_ip_assignment.is_some() {
                i.public_ip_assignment = body.public_ip_assignment;
            }
            if body.user_data.is_some() {
                i.user_data = body.user_data;
            }
            if body.application_consistent_snapshot_enabled.is_some() {
                i.application_consistent_snapshot_enabled = body.application_consistent_snapshot_enabled;
            }
            Ok(())
        },
    )
}

pub fn delete_instance(app: &App, call: &Call) -> ApiResult<Value> {
    change_instance(
        app,
        call,
        |id| Completion::Remove(Target::Instance(id)),
        |rec| {
            rec.instance.state = InstanceState::Destroying;
            Ok(())
        },
    )
}

pub fn power(app: &App, call: &Call) -> ApiResult<Value> {
    let (from_ok, transitional, target): (&[InstanceState], _, _) = match call.operation.as_str() {
        "start-instance" => (&[InstanceState::Stopped], InstanceState::Starting, InstanceState::Running),
        "stop-instance" => {
            (&[InstanceState::Running, InstanceState::Starting], InstanceState::Stopping, InstanceState::Stopped)
        }
        _ => (&[InstanceState::Running], InstanceState::Starting, InstanceState::Running),
    };
    let verb = call.operation.trim_end_matches("-instance").to_owned();
    change_instance(
        app,
        call,
        |id| Completion::InstanceState(id, target),
        |rec| {
            if !from_ok.contains(&rec.instance.state) {
                return Err(ApiError::conflict(format!(
                    "cannot {verb} instance {} in state {}",
                    rec.instance.id, rec.instance.state
                )));
            }
            rec.instance.state = transitional;
            rec.ready_at_ms = None;
            Ok(())
        },
    )
}

pub fn reset_instance(app: &App, call: &Call) -> ApiResult<Value> {
    let body: ResetInstance = call.body()?;
    app.read(|w| refs::machine(app, w, &call.zone, None, body.template))?;
    change_instance(
        app,
        call,
        |id| Completion::InstanceState(id, InstanceState::Running),
        |rec| {
            if let Some(t) = body.template {
                rec.instance.template = Some(t);
            }
            if let Some(size) = body.disk_size {
                rec.instance.disk_size = Some(size);
            }
            rec.instance.state = InstanceState::Starting;
            rec.ready_at_ms = None;
            Ok(())
        },
    )
}

pub fn scale_instance(app: &App, call: &Call) -> ApiResult<Value> {
    let body: ScaleInstance = call.body()?;
    app.read(|w| refs::machine(app, w, &call.zone, Some(body.instance_type), None))?;
    change_instance(
        app,
        call,
        |_| Completion::Nothing,
        |rec| {
            if rec.instance.state != InstanceState::Stopped {
                return Err(ApiError::conflict(format!("instance {} must be stopped to be scaled", rec.instance.id)));
            }
            rec.instance.instance_type = body.instance_type;
            Ok(())
        },
    )
}

pub fn resize_instance_disk(app: &App, call: &Call) -> ApiResult<Value> {
    let body: ResizeInstanceDisk = call.body()?;
    change_instance(
        app,
        call,
        |_| Completion::Nothing,
        |rec| {
            let current = rec.instance.disk_size.unwrap_or(0);
            if body.disk_size <= current {
                return Err(ApiError::bad_request(format!(
                    "disk-size: must be larger than the current {current} GiB, got {}",
                    body.disk_size
                )));
            }
            rec.instance.disk_size = Some(body.disk_size);
            Ok(())
        },
    )
}

pub fn reset_instance_field(app: &App, call: &Call) -> ApiResult<Value> {
    let field = call.param("field").to_owned();
    change_instance(
        app,
        call,
        |_| Completion::Nothing,
        |rec| match field.as_str() {
            "labels" => {
                rec.instance.labels = None;
                Ok(())
            }
            other => Err(ApiError::bad_request(format!("field: cannot reset {other:?}"))),
        },
    )
}

pub fn list_instance_types(app: &App) -> ApiResult<Value> {
    json(InstanceTypeList { instance_types: catalog::instance_types(&app.config.zones) })
}

pub fn get_instance_type(app: &App, call: &Call) -> ApiResult<Value> {
    let id = call.id("id", "instance type")?;
    catalog::instance_type(id, &app.config.zones).map_or_else(|| Err(ApiError::not_found("instance type", id)), json)
}
