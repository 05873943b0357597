//! One handler per orchestrator operation, dispatched by operationId.

mod compute;
mod lookups;
mod nlb;
mod pools;
mod refs;
mod sks;

use serde::Serialize;
use serde_json::Value;

use crate::app::{ApiError, ApiResult, App};
use crate::http::Call;

/// Encodes a response body.
fn json<T: Serialize>(value: T) -> ApiResult<Value> {
    serde_json::to_value(value).map_err(|e| ApiError::internal(format!("encoding response: {e}")))
}

/// Runs the handler of `call.operation`; the answer carries every property
/// the completeness rule asks for (`sks_zone::completeness`).
pub fn dispatch(app: &App, call: &Call) -> ApiResult<Value> {
    let mut answer = handle(app, call)?;
    sks_zone::completeness::complete(&call.operation, &mut answer);
    Ok(answer)
}

fn handle(app: &App, call: &Call) -> ApiResult<Value> {
    match call.operation.as_str() {
        "list-zones" => compute::list_zones(app),
        "get-operation" => compute::get_operation(app, call),
        "list-instances" => compute::list_instances(app, call),
        "get-instance" => compute::get_instance(app, call),
        "create-instance" => compute::create_instance(app, call),
        "update-instance" => compute::update_instance(app, call),
        "delete-instance" => compute::delete_instance(app, call),
        "start-instance" | "stop-instance" | "reboot-instance" => compute::power(app, call),
        "reset-instance" => compute::reset_instance(app, call),
        "scale-instance" => compute::scale_instance(app, call),
        "resize-instance-disk" => compute::resize_instance_disk(app, call),
        "reset-instance-field" => compute::reset_instance_field(app, call),
        "list-instance-types" => compute::list_instance_types(app),
        "get-instance-type" => compute::get_instance_type(app, call),
        "get-reverse-dns-instance" => lookups::get_reverse_dns(app, call),

        "list-templates" => lookups::list_templates(app, call),
        "get-template" => lookups::get_template(app, call),
        "list-security-groups" => lookups::list_security_groups(app, call),
        "get-security-group" => lookups::get_security_group(app, call),

        "create-instance-pool" => pools::create(app, call),
        "list-instance-pools" => pools::list(app, call),
        "get-instance-pool" => pools::get(app, call),
        "update-instance-pool" => pools::update(app, call),
        "delete-instance-pool" => pools::delete(app, call),
        "scale-instance-pool" => pools::scale(app, call),
        "evict-instance-pool-members" => pools::evict(app, call),
        "reset-instance-pool-field" => pools::reset_field(app, call),

        "create-load-balancer" => nlb::create(app, call),
        "list-load-balancers" => nlb::list(app, call),
        "get-load-balancer" => nlb::get(app, call),
        "update-load-balancer" => nlb::update(app, call),
        "delete-load-balancer" => nlb::delete(app, call),
        "reset-load-balancer-field" => nlb::reset_field(app, call),
        "add-service-to-load-balancer" => nlb::add_service(app, call),
        "get-load-balancer-service" => nlb::get_service(app, call),
        "update-load-balancer-service" => nlb::update_service(app, call),
        "delete-load-balancer-service" => nlb::delete_service(app, call),
        "reset-load-balancer-service-field" => nlb::reset_service_field(app, call),

        "create-sks-cluster" => sks::create_cluster(app, call),
        "list-sks-clusters" => sks::list_clusters(app, call),
        "get-sks-cluster" => sks::get_cluster(app, call),
        "update-sks-cluster" => sks::update_cluster(app, call),
        "delete-sks-cluster" => sks::delete_cluster(app, call),
        "upgrade-sks-cluster" => sks::upgrade_cluster(app, call),
        "upgrade-sks-cluster-service-level" => sks::upgrade_service_level(app, call),
        "rotate-sks-ccm-credentials"
        | "rotate-sks-csi-credentials"
        | "rotate-sks-karpenter-credentials"
        | "rotate-sks-operators-ca" => sks::rotate(app, call),
        "list-sks-cluster-versions" => sks::list_versions(app),
        "generate-sks-cluster-kubeconfig" => sks::kubeconfig(app, call),
        "get-sks-cluster-authority-cert" => sks::authority_cert(app, call),
        "list-sks-cluster-deprecated-resources" => sks::deprecated_resources(app, call),
        "get-sks-cluster-inspection" => sks::inspection(app, call),
        "get-active-nodepool-template" => sks::active_template(call),
        "create-sks-nodepool" => sks::create_nodepool(app, call),
        "get-sks-nodepool" => sks::get_nodepool(app, call),
        "update-sks-nodepool" => sks::update_nodepool(app, call),
        "delete-sks-nodepool" => sks::delete_nodepool(app, call),
        "scale-sks-nodepool" => sks::scale_nodepool(app, call),
        "evict-sks-nodepool-members" => sks::evict_nodepool(app, call),

        other => lookups::absent_kind(call).unwrap_or_else(|| {
            Err(ApiError {
                status: axum::http::StatusCode::NOT_IMPLEMENTED,
                message: format!("{other} is in the Exoscale API but not served by sks-zone"),
            })
        }),
    }
}
