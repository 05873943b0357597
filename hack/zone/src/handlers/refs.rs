//! Checks that the resources a request references exist, as the real API
//! does: an unknown instance type, template, security group... is refused
//! with 400 naming the field, before anything changes. What is stored then
//! only references what `exo` can look up when it shows the resource.

use orchestrator::model::{CreateInstance, InstancePoolSpec, Ref, SksNodepoolSpec};
use uuid::Uuid;

use super::lookups;
use crate::account;
use crate::app::{ApiError, ApiResult, App};
use crate::catalog;
use crate::world::World;

/// A kind of resource a request may reference.
#[derive(Debug, Clone, Copy)]
enum Kind {
    InstanceType,
    Template,
    SecurityGroup,
    AntiAffinityGroup,
    PrivateNetwork,
    ElasticIp,
    DeployTarget,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::InstanceType => "instance type",
            Kind::Template => "template",
            Kind::SecurityGroup => "security group",
            Kind::AntiAffinityGroup => "anti-affinity group",
            Kind::PrivateNetwork => "private network",
            Kind::ElasticIp => "elastic IP",
            Kind::DeployTarget => "deploy target",
        }
    }

    fn exists(self, app: &App, world: &World, zone: &str, id: Uuid) -> bool {
        match self {
            Kind::InstanceType => catalog::instance_type(id, &app.config.zones).is_some(),
            Kind::Template => lookups::template(app, world, zone, id).is_some(),
            Kind::SecurityGroup => account::security_group(world, zone, id).is_some(),
            // The account has none of these (`lookups::ABSENT_KINDS`).
            Kind::AntiAffinityGroup | Kind::PrivateNetwork | Kind::ElasticIp | Kind::DeployTarget => false,
        }
    }
}

/// The references of one request, checked together.
struct Check<'a> {
    app: &'a App,
    world: &'a World,
    zone: &'a str,
}

impl Check<'_> {
    fn one(&self, field: &str, kind: Kind, reference: Option<Ref>) -> ApiResult<()> {
        match reference {
            Some(r) if !kind.exists(self.app, self.world, self.zone, r.id) => {
                Err(ApiError::bad_request(format!("{field}.id: unknown {} {}", kind.name(), r.id)))
            }
            _ => Ok(()),
        }
    }

    fn each(&self, field: &str, kind: Kind, references: &Option<Vec<Ref>>) -> ApiResult<()> {
        for (i, r) in references.iter().flatten().enumerate() {
            self.one(&format!("{field}[{i}]"), kind, Some(*r))?;
        }
        Ok(())
    }
}

/// Checks the references of an instance to create.
pub fn instance(app: &App, world: &World, zone: &str, body: &CreateInstance) -> ApiResult<()> {
    let c = Check { app, world, zone };
    c.one("instance-type", Kind::InstanceType, body.instance_type)?;
    c.one("template", Kind::Template, body.template)?;
    c.each("security-groups", Kind::SecurityGroup, &body.security_groups)?;
    c.each("anti-affinity-groups", Kind::AntiAffinityGroup, &body.anti_affinity_groups)?;
    c.one("deploy-target", Kind::DeployTarget, body.deploy_target)
}

/// Checks the instance type and template of a scale or reset.
pub fn machine(
    app: &App,
    world: &World,
    zone: &str,
    instance_type: Option<Ref>,
    template: Option<Ref>,
) -> ApiResult<()> {
    let c = Check { app, world, zone };
    c.one("instance-type", Kind::InstanceType, instance_type)?;
    c.one("template", Kind::Template, template)
}

/// Checks the references of an instance pool spec (create or update).
pub fn pool(app: &App, world: &World, zone: &str, spec: &InstancePoolSpec) -> ApiResult<()> {
    let c = Check { app, world, zone };
    c.one("instance-type", Kind::InstanceType, spec.instance_type)?;
    c.one("template", Kind::Template, spec.template)?;
    c.each("security-groups", Kind::SecurityGroup, &spec.security_groups)?;
    c.each("anti-affinity-groups", Kind::AntiAffinityGroup, &spec.anti_affinity_groups)?;
    c.each("private-networks", Kind::PrivateNetwork, &spec.private_networks)?;
    c.each("elastic-ips", Kind::ElasticIp, &spec.elastic_ips)?;
    c.one("deploy-target", Kind::DeployTarget, spec.deploy_target)
}

/// Checks the references of a nodepool spec (create or update).
pub fn nodepool(app: &App, world: &World, zone: &str, spec: &SksNodepoolSpec) -> ApiResult<()> {
    let c = Check { app, world, zone };
    c.one("instance-type", Kind::InstanceType, spec.instance_type)?;
    c.each("security-groups", Kind::SecurityGroup, &spec.security_groups)?;
    c.each("anti-affinity-groups", Kind::AntiAffinityGroup, &spec.anti_affinity_groups)?;
    c.each("private-networks", Kind::PrivateNetwork, &spec.private_networks)?;
    c.one("deploy-target", Kind::DeployTarget, spec.deploy_target)
}
